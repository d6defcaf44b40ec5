"""Hostile input to every command: nothing lost, nothing overwritten, nothing hung.

Each case checks the exit status, that no traceback is printed, that the one error line names the file or value,
that inputs are unchanged (hashes), and that every output is absent or complete: videos decode to the end
(FFmpeg through PyAV), JSONL parses line by line, JSON loads.
"""

import hashlib
import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_lwdetr.bundled import BUNDLED_MODEL
from edge_lwdetr.cli import main
from edge_lwdetr.runtime.pipeline import run_stream
from edge_lwdetr.runtime.sinks import JsonlSink, VideoSink
from edge_lwdetr.runtime.sources import Source
from hf_models import fails_with
from media import decode_all, read_frames, write_video
from stand_ins import StandInBackend, error_of

DEMO = Path(__file__).resolve().parents[1] / "demo" / "shapes.mp4"


def sha(path: Path) -> str:
    if path.is_dir():
        return hashlib.sha256(b"".join(sha(p).encode() for p in sorted(path.rglob("*")) if p.is_file())).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def jsonl_lines(path: Path) -> list[dict]:
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "the last line is incomplete"
    return [json.loads(line) for line in text.splitlines()]


def cli(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_lwdetr", *argv], capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("edge-lwdetr: error: ")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def no_partial_files(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".partial" in p.name or p.name.endswith(".lock")]


@pytest.fixture(scope="module")
def onnx_model(native_export):
    return Path(native_export("tiny")[1])


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "image.png"
    cv2.imwrite(str(path), np.full((120, 160, 3), 127, np.uint8))
    return path


# --- outputs that are inputs --------------------------------------------------------------------------------------


def test_outputs_equal_to_inputs_are_refused(capsys, tmp_path, onnx_model, image):
    video = write_video(tmp_path / "v.avi", 3)
    model = tmp_path / "m.onnx"
    shutil.copy(onnx_model, model)
    data = tmp_path / "coco"
    assert main(["synth", "--coco", str(data), "--count", "2"]) == 0
    annotations = data / "annotations.json"
    before = {p: sha(p) for p in (video, model, image, annotations)}
    cases = [
        (["run", "--model", str(model), "--source", str(video), "--save", str(video)], "--save"),
        (["run", "--model", str(model), "--source", str(video), "--save-json", str(video)], "--save-json"),
        (["run", "--model", str(model), "--source", str(video), "--save-json", str(model)], "--save-json"),
        (["profile", "--model", str(model), "--report", str(model), "--iterations", "1"], "--report"),
        (["rewrite", str(model), str(model)], str(model)),
        (["rewrite", str(model), str(tmp_path / "." / "m.onnx")], "m.onnx"),  # the same file by another name
        (["predict", "--source", str(image), "--save", str(image)], "--save"),
        (["build", "--onnx", str(model), "--output", str(tmp_path / "m.engine"), "--onnx-only"], "fp16 graph"),
        (["eval", "--model", str(model), "--data", str(data), "--report", str(annotations)], "--report"),
        (["export", "--weights", str(model), "--output", str(model)], "--output"),
    ]
    for argv, fragment in cases:
        line = fails_with(capsys, argv, fragment, "input")
        assert "destroy" in line
    assert {p: sha(p) for p in before} == before
    assert no_partial_files(tmp_path) == []


# --- outputs that hold earlier work -------------------------------------------------------------------------------


def test_existing_recordings_models_and_datasets_need_exist_ok(capsys, tmp_path):
    source = write_video(tmp_path / "v.avi", 4)
    recording = tmp_path / "rec.mp4"
    recording.write_bytes(b"yesterday's recording")
    fails_with(capsys, ["run", "--source", str(source), "--save", str(recording)], str(recording), "--exist-ok")
    assert recording.read_bytes() == b"yesterday's recording"
    assert main(["run", "--source", str(source), "--save", str(recording), "--exist-ok"]) == 0
    assert decode_all(recording) == 4

    model = tmp_path / "model"
    shutil.copytree(BUNDLED_MODEL, model)
    before = sha(model)
    fails_with(capsys, ["train", "--output", str(model), "--steps", "1"], str(model), "--exist-ok")
    assert sha(model) == before

    dataset = tmp_path / "data"
    assert main(["synth", "--coco", str(dataset), "--count", "2"]) == 0
    before = sha(dataset)
    fails_with(capsys, ["synth", "--coco", str(dataset), "--count", "3"], "--exist-ok")
    assert sha(dataset) == before
    assert main(["synth", "--coco", str(dataset), "--count", "3", "--exist-ok"]) == 0
    assert len(json.loads((dataset / "annotations.json").read_text())["images"]) == 3
    assert no_partial_files(tmp_path) == []

    fails_with(capsys, ["train", "--output", str(source), "--steps", "1"], "is a file")


# --- option ranges ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["run", "--source", "x", "--imgsz", "0"], "--imgsz"),
        (["run", "--source", "x", "--imgsz", "65536"], "65536"),
        (["predict", "--source", "x", "--imgsz", "-64"], "-64"),
        (["run", "--source", "x", "--conf", "1.5"], "1.5"),
        (["run", "--source", "x", "--conf", "nan"], "nan"),
        (["run", "--source", "x", "--max-frames", "-1"], "-1"),
        (["run", "--source", "x", "--max-frames", "0"], "--max-frames"),
        (["eval", "--data", "x", "--max-images", "-3"], "-3"),
        (["eval", "--data", "x", "--min-map", "-0.5"], "-0.5"),
        (["eval", "--data", "x", "--min-map", "2"], "--min-map"),
        (["train", "--output", "x", "--batch", "0"], "--batch"),
        (["train", "--output", "x", "--lr", "nan"], "nan"),
        (["synth", "--coco", "x", "--count", "0"], "--count"),
        (["export", "--output", "x.onnx", "--batch", "0"], "--batch"),
        (["export", "--output", "x.onnx", "--opset", "7"], "--opset"),
        (["profile", "--iterations", "0"], "--iterations"),
        (["run", "--source", "x", "--stream-timeout", "0"], "--stream-timeout"),
    ],
)
def test_option_ranges(capsys, argv, fragment):
    fails_with(capsys, argv, fragment)


# --- bad media, weights and models ----------------------------------------------------------------------------------


def test_bad_media_weights_and_models(capsys, tmp_path, image, onnx_model):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    fails_with(capsys, ["predict", "--source", str(empty)], "empty.png", "empty")
    (tmp_path / "empty.mp4").write_bytes(b"")
    fails_with(capsys, ["run", "--source", str(tmp_path / "empty.mp4")], "empty.mp4")

    with open(tmp_path / "pickled.pth", "wb") as handle:
        pickle.dump({"model": {"weight": [1.0, 2.0]}}, handle)
    fails_with(capsys, ["predict", "--weights", str(tmp_path / "pickled.pth"), "--source", str(image)], "pickled.pth")
    (tmp_path / "random.pth").write_bytes(np.random.default_rng(0).bytes(4096))
    fails_with(capsys, ["predict", "--weights", str(tmp_path / "random.pth"), "--source", str(image)], "random.pth")

    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "other",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
    )  # fmt: skip
    onnx.save(helper.make_model(graph), tmp_path / "other.onnx")
    fails_with(capsys, ["run", "--model", str(tmp_path / "other.onnx"), "--source", str(DEMO)], "other.onnx", "not an LW-DETR")
    fails_with(capsys, ["profile", "--model", str(onnx_model), "--reference", str(tmp_path / "other.onnx"),
                        "--iterations", "1", "--warmup", "0"], "other.onnx")  # fmt: skip

    fails_with(capsys, ["predict", "--source", str(image), "--device", "bogus"], "bogus")
    fails_with(capsys, ["predict", "--source", str(image), "--save", str(tmp_path / "out.xyz")], "out.xyz")
    fails_with(capsys, ["profile", "--plot", str(tmp_path / "out.xyz"), "--iterations", "1"], "out.xyz")
    fails_with(capsys, ["run", "--source", str(DEMO), "--save", str(tmp_path / "out.webm")], "out.webm")
    assert not (tmp_path / "out.xyz").exists() and not (tmp_path / "out.webm").exists()


def test_non_finite_weights_are_refused_naming_the_tensor(capsys, tmp_path, image):
    from safetensors.torch import load_file, save_file

    model = tmp_path / "nan_model"
    shutil.copytree(BUNDLED_MODEL, model)
    state = load_file(model / "model.safetensors")
    name = sorted(k for k in state if k.endswith("weight") and state[k].is_floating_point())[3]
    state[name] = state[name].clone()
    state[name].view(-1)[0] = float("nan")
    save_file(state, model / "model.safetensors")
    fails_with(capsys, ["predict", "--weights", str(model), "--source", str(image)], "NaN")
    fails_with(capsys, ["run", "--model", str(model), "--source", str(DEMO)], "NaN")


def test_eval_bad_annotations(capsys, tmp_path):
    data = tmp_path / "data"
    assert main(["synth", "--coco", str(data), "--count", "3"]) == 0
    document = json.loads((data / "annotations.json").read_text())

    (data / "annotations.json").write_text(json.dumps([document]))
    fails_with(capsys, ["eval", "--data", str(data)], "annotations.json", "COCO")

    other = dict(document, categories=[{"id": 500 + c["id"], "name": c["name"]} for c in document["categories"]])
    other["annotations"] = [dict(a, category_id=500 + a["category_id"]) for a in document["annotations"]]
    (data / "annotations.json").write_text(json.dumps(other))
    fails_with(capsys, ["eval", "--data", str(data)], "category ids", "match none")

    (data / "annotations.json").write_text(json.dumps(document))
    (data / document["images"][1]["file_name"]).unlink()
    capsys.readouterr()
    assert main(["eval", "--data", str(data), "--report", str(tmp_path / "r.json")]) == 0
    captured = capsys.readouterr()
    assert "1 missing or unreadable, skipped" in captured.out and "skipping image" in captured.err
    assert json.loads((tmp_path / "r.json").read_text())["skipped_images"] == 1


def test_show_without_window_support_says_how_to_get_it(capsys, monkeypatch):
    from edge_lwdetr.runtime import sinks

    if sinks.window_support() is None:
        monkeypatch.delenv("DISPLAY", raising=False)
        monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    fails_with(capsys, ["run", "--source", str(DEMO), "--show"], "--show", "--save")


def test_internal_bug_is_labelled_as_one(monkeypatch, capsys, tmp_path):
    import edge_lwdetr.synthetic.video

    def broken(*args):  # stands for a bug in our code, which no input explains
        return 1 / 0

    monkeypatch.setattr(edge_lwdetr.synthetic.video, "write_video", broken)
    assert main(["synth", "--video", str(tmp_path / "x.mp4")]) == 1
    err = capsys.readouterr().err
    assert "ZeroDivisionError" in err and "bug in edge-lwdetr" in err


# --- frame completeness -------------------------------------------------------------------------------------------


def file_source(path):
    return Source(str(path), lambda: cv2.VideoCapture(str(path)), live=False)


@pytest.mark.parametrize("delay_s", [0.0, 0.02])
def test_every_frame_of_a_file_reaches_every_sink_in_order(tmp_path, delay_s):
    count = 40
    source = write_video(tmp_path / "in.avi", count)
    video, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    sinks = [VideoSink(video, 15, log=lambda m: None), JsonlSink(jsonl)]
    summary = run_stream(StandInBackend(delay_s), file_source(source), sinks, 0.3, threading.Event())
    assert (summary.read, summary.inferred, summary.written, summary.dropped) == (count,) * 3 + (0,)
    assert [line["frame"] for line in jsonl_lines(jsonl)] == list(range(count))
    assert decode_all(video) == count
    # In order: the sliding box's x position grows frame by frame in the written video too.
    xs = [np.argmax(frame[50, :, 2] > 150) for frame in read_frames(video)]
    assert xs == sorted(xs) and xs[-1] > xs[0]


def test_mixed_size_folder_writes_every_frame_letterboxed(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, size in enumerate([(320, 240), (160, 200), (321, 241), (320, 240)]):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((size[1], size[0], 3), 40 * i, np.uint8))
    out = tmp_path / "out.mp4"
    assert main(["run", "--source", str(folder), "--save", str(out), "--save-json", str(tmp_path / "o.jsonl")]) == 0
    assert "letterboxed" in capsys.readouterr().err
    assert decode_all(out) == 4 and len(jsonl_lines(tmp_path / "o.jsonl")) == 4


class FailingSink:
    wants_image = False

    def __init__(self, fail_at):
        self.fail_at, self.count = fail_at, 0

    def write(self, frame, record):
        self.count += 1
        if self.count == self.fail_at:
            raise OSError(28, "No space left on device")

    def close(self):
        pass

    def wrote(self):
        return False


def test_a_failing_sink_ends_the_run_with_its_error(tmp_path):
    source = write_video(tmp_path / "in.avi", 60)
    error = error_of(
        lambda: run_stream(StandInBackend(), file_source(source), [FailingSink(3)], 0.3, threading.Event()),
        "the run hung after its sink failed",
    )
    assert error.errno == 28


def test_truncated_file_and_empty_run_are_reported(tmp_path, capsys):
    full = write_video(tmp_path / "full.avi", 20).read_bytes()
    (tmp_path / "cut.avi").write_bytes(full[: len(full) * 2 // 3])
    capsys.readouterr()
    assert main(["run", "--source", str(tmp_path / "cut.avi"), "--save-json", str(tmp_path / "c.jsonl")]) == 0
    err = capsys.readouterr().err
    assert "of the 20 frames" in err and "truncated" in err

    header_only = write_video(tmp_path / "none.avi", 0)
    if cv2.VideoCapture(str(header_only)).isOpened():
        line = fails_with(capsys, ["run", "--source", str(header_only), "--save", str(tmp_path / "n.mp4")], "no frame")
        assert "wrote" not in line
    assert not (tmp_path / "n.mp4").exists()


def test_reconnect_backoff_is_interrupted_by_stop(tmp_path):
    video = write_video(tmp_path / "cam.avi", 3)
    opened, stop = [], threading.Event()

    def open_capture():
        opened.append(1)
        return cv2.VideoCapture(str(video) if len(opened) == 1 else str(tmp_path / "unplugged"))

    def log(message):  # the user presses Ctrl-C while the source waits to reconnect
        if "reconnecting" in message:
            stop.set()

    source = Source("/dev/video9", open_capture, live=True, log=log, reconnect_delays_s=(600.0,), stop=stop)
    thread = threading.Thread(target=run_stream, args=(StandInBackend(), source, [], 0.3, stop), daemon=True)
    thread.start()
    thread.join(timeout=120)  # hang guard: without the stop-aware wait this sleeps 600 s
    assert not thread.is_alive() and len(opened) == 1


# --- signals, kills, concurrent writers, stalled streams ------------------------------------------------------------


@contextmanager
def running(*argv: str):
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_lwdetr", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def wait_for_lines(path: Path, count: int, process, limit_s: float = 240) -> None:
    deadline = time.monotonic() + limit_s  # a hang guard only: the condition, not the time, is what is awaited
    while not (path.exists() and path.read_text().count("\n") >= count):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run wrote nothing"
        time.sleep(0.1)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_finalises_outputs_and_exits_128_plus_signal(tmp_path, signum):
    source = write_video(tmp_path / "long.avi", 600)
    out, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    with running("run", "--source", str(source), "--save", str(out), "--save-json", str(jsonl)) as process:
        wait_for_lines(jsonl, 5, process)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr
    lines = jsonl_lines(jsonl)
    assert 5 <= len(lines) < 600 and [line["frame"] for line in lines] == list(range(len(lines)))
    assert decode_all(out) == len(lines)
    assert no_partial_files(tmp_path) == []


def test_sigkill_leaves_a_playable_video_and_whole_lines(tmp_path):
    source = write_video(tmp_path / "long.avi", 900)
    out, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    with running("run", "--source", str(source), "--save", str(out), "--save-json", str(jsonl)) as process:
        wait_for_lines(jsonl, 50, process)
        process.kill()
        process.communicate(timeout=60)
        lines = jsonl_lines(jsonl)  # after the kill: every line whole
    assert [line["frame"] for line in lines] == list(range(len(lines)))
    frames = decode_all(out)  # decodes to its end without an error
    fps = 15  # the source's rate: one fragment (one keyframe) per second of video
    assert len(lines) - fps - 1 <= frames <= len(lines) + 1


def test_a_second_writer_of_the_same_output_is_refused(tmp_path):
    source = write_video(tmp_path / "long.avi", 900)
    out, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    with running("run", "--source", str(source), "--save-json", str(jsonl), "--save", str(out)) as first:
        wait_for_lines(jsonl, 3, first)
        second = cli("run", "--source", str(source), "--save-json", str(jsonl), "--exist-ok")
        assert_one_line_error(second, str(jsonl), "another edge-lwdetr command")
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
    assert first.returncode == 130
    assert decode_all(out) == len(jsonl_lines(jsonl))


def test_stalled_stream_honours_sigint(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)  # accepts connections (the kernel does) and never answers: a stalled camera
    port = server.getsockname()[1]
    try:
        with running("run", "--source", f"http://127.0.0.1:{port}/live.mjpg", "--stream-timeout", "600",
                     "--save-json", str(tmp_path / "o.jsonl")) as process:  # fmt: skip
            lines = [process.stderr.readline() for _ in range(1)]
            while "opening" not in lines[-1]:
                assert lines[-1], lines  # the process ended before opening the stream
                lines.append(process.stderr.readline())
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=60)  # hang guard: the open alone would wait 600 s
        assert process.returncode == 130, stderr
        assert "Traceback" not in stderr and "cannot open" not in stderr
        assert not (tmp_path / "o.jsonl").exists() or jsonl_lines(tmp_path / "o.jsonl") == []
    finally:
        server.close()


# --- disk full ------------------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 192 KiB tmpfs (needs root and mount permission)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_video_and_jsonl(small_disk):
    result = cli("run", "--source", str(DEMO), "--save", str(small_disk / "out.mp4"))
    assert_one_line_error(result, "out.mp4", "disk is full")
    frames = decode_all(small_disk / "out.mp4")  # what is on disk plays to its end
    assert 0 < frames < 120
    assert "wrote" not in result.stdout
    (small_disk / "out.mp4").unlink()

    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (150 * 1024))  # leave less room than 120 JSON lines need
    result = cli("run", "--source", str(DEMO), "--save-json", str(small_disk / "out.jsonl"))
    assert_one_line_error(result, "out.jsonl", "disk is full")
    lines = jsonl_lines(small_disk / "out.jsonl")
    assert 0 < len(lines) < 120 and [line["frame"] for line in lines] == list(range(len(lines)))


def test_disk_full_whole_file_outputs_leave_nothing(small_disk, onnx_model, tmp_path):
    result = cli("synth", "--coco", str(small_disk / "data"), "--count", "200")
    assert_one_line_error(result, "data", "space")
    assert list(small_disk.iterdir()) == []  # no half dataset, no temporary folder

    (small_disk / "m.onnx").write_bytes(b"previous")
    result = cli("rewrite", str(onnx_model), str(small_disk / "m.onnx"))  # the graph is larger than the disk
    assert_one_line_error(result, "m.onnx")
    assert (small_disk / "m.onnx").read_bytes() == b"previous"
    assert sorted(p.name for p in small_disk.iterdir()) == ["m.onnx"]
