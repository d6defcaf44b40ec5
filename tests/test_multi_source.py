"""Several sources in one run: frames batched across sources and routed back to each source's outputs, --vid-stride,
.streams files, and the Jetson hardware-decoding pipelines (their strings and their selection; they run only on a
Jetson). A stand-in takes the model's place: the pipeline around it is under test."""

import json
import threading

import cv2
import numpy as np
import pytest
from media import decode_all, frame_index, read_frames, write_indexed_video, write_video
from stand_ins import RecordingSink, StandInBackend, error_of

import edge_lwdetr.backends
from edge_lwdetr.cli import main
from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.runtime import gstreamer
from edge_lwdetr.runtime.pipeline import Feed, _Lanes, batch_limit, run_streams
from edge_lwdetr.runtime.source_list import expand_sources, read_streams_file
from edge_lwdetr.runtime.sources import Source, open_source

RED, GREEN = 2, 1  # the channel that carries each source's frame index


@pytest.fixture
def stand_in(monkeypatch):
    """The CLI's model replaced by a stand-in (the CLI imports open_backend when it runs)."""
    backend = StandInBackend()
    monkeypatch.setattr(edge_lwdetr.backends, "open_backend", lambda *args, **kwargs: backend)
    return backend


@pytest.fixture
def two_files(tmp_path):
    """Two files of different lengths and sizes, each frame marking its index in its source's channel."""
    return (
        write_indexed_video(tmp_path / "a.avi", 9, (320, 240), RED),
        write_indexed_video(tmp_path / "b.avi", 14, (208, 160), GREEN),
    )


def jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_files_every_frame_once_in_order_in_its_own_outputs(tmp_path, two_files, stand_in, capsys):
    out = tmp_path / "out.mp4"
    argv = ["run", "--source", str(two_files[0]), "--source", str(two_files[1]), "--save", str(out)]
    assert main(argv + ["--save-json", str(tmp_path / "out.jsonl")]) == 0
    printed = capsys.readouterr().out
    assert not out.exists() and not (tmp_path / "out.jsonl").exists()
    cases = [(two_files[0], 9, RED, GREEN, (240, 320)), (two_files[1], 14, GREEN, RED, (160, 208))]
    for k, (source, count, channel, other, shape) in enumerate(cases):
        video = tmp_path / f"out.{k}.mp4"
        assert decode_all(video) == count
        frames = read_frames(video)
        assert [frame_index(f, channel) for f in frames] == list(range(count))  # each once, in order, its own
        assert {frame_index(f, other) for f in frames} <= {0, 1}  # level 30: no frame of the other source here
        assert frames[0].shape[:2] == shape
        lines = jsonl(tmp_path / f"out.{k}.jsonl")
        assert [line["frame"] for line in lines] == list(range(count))
        assert {(line["source_index"], line["uri"]) for line in lines} == {(k, str(source))}
        assert f"source {k} {source}: {count} read, {count} inferred, {count} written" in printed
    assert "23 read, 23 inferred, 23 written" in printed
    assert max(stand_in.calls) <= 2 and sum(stand_in.calls) == 23  # batched across sources, one frame of each

    assert main(argv) == 2  # each source's recording is kept like a single one
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--save (source 0)" in err[0] and "out.0.mp4" in err[0] and "--exist-ok" in err[0]
    assert main(argv + ["--exist-ok"]) == 0


def test_tiled_view_is_one_video_and_one_frame_per_batch(tmp_path, two_files, stand_in, capsys):
    out = tmp_path / "tiled.mp4"
    argv = ["run", "--source", str(two_files[0]), "--source", str(two_files[1]), "--save", str(out), "--tile"]
    assert main(argv + ["--save-json", str(tmp_path / "d.jsonl")]) == 0
    capsys.readouterr()
    assert decode_all(out) == len(stand_in.calls)  # one tiled frame per model call
    assert read_frames(out)[0].shape == (540, 1920, 3)  # two 16:9 cells of 960 x 540
    assert not (tmp_path / "tiled.0.mp4").exists()
    assert [len(jsonl(tmp_path / f"d.{k}.jsonl")) for k in (0, 1)] == [9, 14]


def test_static_batch_of_one_runs_sources_one_by_one(tmp_path, two_files):
    backend = StandInBackend(batch=1)
    sinks = [RecordingSink(), RecordingSink()]
    feeds = [Feed(open_source(str(path)), [sink]) for path, sink in zip(two_files, sinks)]
    summary = run_streams(backend, feeds, 0.3, threading.Event())
    assert set(backend.calls) == {1} and summary.batches == 23
    assert [[r["frame"] for r in sink.records] for sink in sinks] == [list(range(9)), list(range(14))]


def test_a_live_source_that_dies_does_not_stop_a_file(tmp_path, two_files):
    opened = []

    def open_capture():  # the first open works (3 frames); afterwards the camera is gone
        opened.append(1)
        return cv2.VideoCapture(str(two_files[0]) if len(opened) == 1 else str(tmp_path / "unplugged"))

    messages = []
    camera = Source("/dev/video9", open_capture, live=True, log=messages.append, reconnect_delays_s=(0.01, 0.01))
    camera_sink, file_sink = RecordingSink(), RecordingSink()
    feeds = [Feed(camera, [camera_sink]), Feed(open_source(str(two_files[1])), [file_sink])]
    summary = run_streams(StandInBackend(delay_s=0.01), feeds, 0.3, threading.Event())
    assert "gone" in messages[-1] and len(opened) == 3
    assert [r["frame"] for r in file_sink.records] == list(range(14))  # the file went on to its end
    live = summary.sources[0]
    assert live.read == 9 and live.inferred + live.dropped == 9 and live.written == len(camera_sink.records) >= 1


def test_vid_stride_counts_for_files_and_live_sources(tmp_path, two_files, stand_in, capsys):
    video, jsonl_path = tmp_path / "s.mp4", tmp_path / "s.jsonl"
    argv = [
        "run",
        "--source",
        str(two_files[1]),
        "--vid-stride",
        "3",
        "--save",
        str(video),
        "--save-json",
        str(jsonl_path),
    ]
    assert main(argv) == 0
    assert "14 read, 5 inferred, 5 written, 9 passed over (--vid-stride 3)" in capsys.readouterr().out
    assert [line["frame"] for line in jsonl(jsonl_path)] == [0, 3, 6, 9, 12]
    assert [frame_index(f, GREEN) for f in read_frames(video)] == [0, 3, 6, 9, 12]

    class LiveStandIn:  # a camera of 20 frames, faster than anything reads it
        live, fps, uri = True, 30.0, "camera"

        def __init__(self):
            self.left = 20

        def read(self):
            self.left -= 1
            return np.zeros((48, 64, 3), np.uint8) if self.left >= 0 else None

        def close(self):
            pass

    sink = RecordingSink()
    summary = run_streams(
        StandInBackend(delay_s=0.005), [Feed(LiveStandIn(), [sink])], 0.3, threading.Event(), vid_stride=3
    )
    assert (summary.read, summary.strided) == (20, 13)
    assert summary.inferred + summary.dropped == 7 and summary.written == len(sink.records) == summary.inferred
    assert all(r["frame"] % 3 == 0 for r in sink.records)  # at most every 3rd frame


def test_streams_file(tmp_path, two_files, stand_in, capsys):
    listed = tmp_path / "cams.streams"
    listed.write_text(f"# two cameras\n\n  {two_files[0]}  \n{two_files[1]}\n")
    assert read_streams_file(listed) == [str(p) for p in two_files]
    assert expand_sources([str(listed), "0"]) == [*map(str, two_files), "0"]
    assert main(["run", "--source", str(listed), "--save-json", str(tmp_path / "o.jsonl")]) == 0
    assert "23 read, 23 inferred, 23 written" in capsys.readouterr().out

    (tmp_path / "empty.streams").write_text("# nothing yet\n\n")
    (tmp_path / "bad.streams").write_text(f"{two_files[0]}\nrtsp://a rtsp://b\n")
    (tmp_path / "nested.streams").write_text(f"{listed}\n")
    for name, fragment in [
        ("missing.streams", "no such file"),
        ("empty.streams", "lists no source"),
        ("bad.streams", "line 2: 'rtsp://a rtsp://b' holds a space"),
        ("nested.streams", "line 1"),
    ]:
        with pytest.raises(EdgeLwdetrError) as caught:
            read_streams_file(tmp_path / name)
        assert fragment in str(caught.value) and name in str(caught.value)
        capsys.readouterr()
        assert main(["run", "--source", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and fragment in err[0], err


def test_lanes_take_one_frame_per_source_in_turn():
    lanes, give_up = _Lanes([False, False, True]), threading.Event()
    for lane in (0, 1):
        for i in range(2):
            assert lanes.put_every(lane, (lane, i), give_up)
    assert lanes.put_newest(2, (2, 0)) is None and lanes.put_newest(2, (2, 1)) == (2, 0)  # the stale one dropped
    assert lanes.take(2, 0.0) == [(0, (0, 0)), (1, (1, 0))]
    assert lanes.take(2, 0.0) == [(2, (2, 1)), (0, (0, 1))]  # the source left out last time goes first
    assert lanes.take(2, 0.0) == [(1, (1, 1))]
    assert lanes.take(2, 0.0) == []
    for lane in range(3):
        lanes.end(lane)
    assert lanes.take(2, 0.0) is None


def test_batch_limit():
    from edge_lwdetr.backends.tensorrt_backend import batch_range
    from edge_lwdetr.engine.sidecar import IoTensor

    # An engine tells its batch by its input's shape and optimization profile.
    assert batch_range(IoTensor("images", True, (-1, 3, 256, 256), (8, 3, 256, 256))) == (None, 8)
    assert batch_range(IoTensor("images", True, (1, 3, 256, 256), (1, 3, 256, 256))) == (1, 1)
    dynamic = StandInBackend()
    assert batch_limit(dynamic, 1) == 1 and batch_limit(dynamic, 4) == 4 and batch_limit(dynamic, 20) == 8
    dynamic.max_batch = 2  # an engine's optimization profile
    assert batch_limit(dynamic, 4) == 2
    assert batch_limit(StandInBackend(batch=1), 4) == 1 and batch_limit(StandInBackend(batch=4), 2) == 4


def test_hardware_decoding_pipelines_and_selection(tmp_path, monkeypatch):
    pipeline, what = gstreamer.decode_pipeline("/data/cam 1.mp4", "avc1")
    assert pipeline == (
        'filesrc location="/data/cam 1.mp4" ! qtdemux ! h264parse ! nvv4l2decoder ! nvvidconv ! '
        "video/x-raw, format=BGRx ! videoconvert ! video/x-raw, format=BGR ! appsink max-buffers=4 drop=false sync=false"
    )
    assert what == "h264, .mp4"
    pipeline, _ = gstreamer.decode_pipeline("rtsp://10.0.0.2/stream", "hevc")
    assert pipeline.startswith(
        'rtspsrc location="rtsp://10.0.0.2/stream" latency=200 ! rtph265depay ! h265parse ! nvv4l2decoder'
    )
    assert pipeline.endswith("appsink drop=true max-buffers=1 sync=false")  # live: the newest frame only
    assert gstreamer.decode_pipeline("a.mkv", "hvc1")[0].startswith(
        'filesrc location="a.mkv" ! matroskademux ! h265parse'
    )
    assert gstreamer.decode_pipeline("a.avi", "mjpg") == (
        None,
        "codec 'mjpg' is not one nvv4l2decoder is used for here (H.264, H.265)",
    )
    assert "container .flv" in gstreamer.decode_pipeline("a.flv", "h264")[1]
    assert gstreamer.fourcc_text(cv2.VideoWriter_fourcc(*"avc1")) == "avc1"

    assert gstreamer.hardware_decoding(lambda: False, lambda name: True) == "this OpenCV has no GStreamer"
    assert "no nvv4l2decoder" in gstreamer.hardware_decoding(lambda: True, lambda name: False)
    assert gstreamer.hardware_decoding(lambda: True, lambda name: name == "nvv4l2decoder") is None

    # Where the hardware path is chosen but its pipeline does not open (here: OpenCV without GStreamer), the source
    # keeps the software capture it opened first, and says so.
    video = write_indexed_video(tmp_path / "v.avi", 3, (64, 48), RED)
    monkeypatch.setattr("edge_lwdetr.runtime.sources.hardware_decoding", lambda: None)
    source = Source(str(video), lambda: cv2.VideoCapture(str(video)), live=False,
                    hardware_pipeline=lambda fourcc: ("filesrc location=/nonexistent ! fakesink", "test"))  # fmt: skip
    assert source.decoder == "software (the nvv4l2decoder pipeline did not open)"
    assert source.read() is not None and source.frame_count == 3
    assert open_source(str(video)).decoder.startswith("software (")


def test_python_api_runs_a_list_of_videos_batched(two_files, stand_in):
    from edge_lwdetr import Detector

    with Detector() as detector:  # the stand-in
        results = list(detector.predict([str(p) for p in two_files], stream=True))
        for path, count, channel in [(two_files[0], 9, RED), (two_files[1], 14, GREEN)]:
            mine = [r for r in results if r.source == str(path)]
            assert [r.frame for r in mine] == list(range(count))
            assert [frame_index(r.image, channel) for r in mine] == list(range(count)) and len(mine[0]) == 1
        first = next(iter(detector.predict([str(p) for p in two_files], stream=True)))  # stopped early: no hang
        assert first.frame == 0
        with pytest.raises(EdgeLwdetrError, match="cannot be one of several video sources"):
            detector.predict([str(two_files[0]), np.zeros((8, 8, 3), np.uint8)])


def test_a_failing_sink_ends_a_run_of_several_sources_with_its_error(tmp_path, two_files):
    class FailingSink(RecordingSink):
        def write(self, frame, record):
            if len(self.records) == 3:
                raise OSError(28, "No space left on device")
            super().write(frame, record)

    feeds = [
        Feed(open_source(str(two_files[0])), [FailingSink()]),
        Feed(open_source(str(two_files[1])), [RecordingSink()]),
    ]
    error = error_of(
        lambda: run_streams(StandInBackend(), feeds, 0.3, threading.Event()), "the run hung after one source's sink failed"
    )
    assert error.errno == 28


def test_a_frame_that_cannot_be_prepared_ends_the_run_with_its_error(two_files, monkeypatch):
    """Frames are prepared off the inference thread (a pool, then the assembling thread); a preparation error still
    ends the run with that error, after the frames before it, and every sink is closed."""
    from edge_lwdetr.runtime import pipeline

    prepare = pipeline.model_input

    def failing_at_frame_5(backend, frame):
        if frame_index(frame, RED) == 5:
            raise ValueError("frame 5 cannot be prepared")
        return prepare(backend, frame)

    monkeypatch.setattr(pipeline, "model_input", failing_at_frame_5)
    sinks = [RecordingSink(), RecordingSink()]
    feeds = [Feed(open_source(str(path)), [sink]) for path, sink in zip(two_files, sinks)]
    error = error_of(lambda: run_streams(StandInBackend(), feeds, 0.3, threading.Event()), "the run hung")
    assert isinstance(error, ValueError) and "frame 5" in str(error)
    assert all(sink.closed for sink in sinks)
    assert [record["frame"] for record in sinks[0].records] == list(range(len(sinks[0].records)))
    assert len(sinks[0].records) <= 5


def test_max_frames_with_a_fast_model_ends_cleanly(tmp_path):
    """With a model faster than decoding, the run ends (--max-frames) while a capture thread is still reading: the
    frame it then hands over must not fail the run (it did: "cannot schedule new futures after shutdown")."""
    video = write_video(tmp_path / "long.avi", 60, size=(640, 480))
    for _ in range(5):
        sink = RecordingSink()
        summary = run_streams(StandInBackend(), [Feed(open_source(str(video)), [sink])], 0.3, threading.Event(), 6)
        assert summary.inferred == 6 and [record["frame"] for record in sink.records] == list(range(6))
