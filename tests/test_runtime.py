"""The streaming runtime end to end with the ONNX Runtime backend, on generated video."""

import importlib.util
import json
import threading
import time

import cv2
import numpy as np
import pytest

from edge_lwdetr.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge_lwdetr.cli import main
from edge_lwdetr.processing import postprocess, to_model_input
from edge_lwdetr.runtime.pipeline import run_stream
from edge_lwdetr.runtime.sources import Source
from hf_models import build_plugin_library
from media import read_frames, write_video
from stand_ins import RecordingSink


@pytest.fixture(scope="module")
def model(native_export):
    return str(native_export("tiny")[1])


def test_video_file_end_to_end(model, tmp_path, capsys):
    source = write_video(tmp_path / "in.avi", 12)
    argv = ["run", "--model", model, "--source", str(source), "--save", str(tmp_path / "out.mp4")]
    assert main(argv + ["--save-json", str(tmp_path / "out.jsonl"), "--conf", "0.2"]) == 0
    assert "12 read, 12 inferred, 12 written" in capsys.readouterr().out

    assert len(read_frames(tmp_path / "out.mp4")) == 12  # every frame, in order, playable
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(12))
    assert lines[3]["time"] == pytest.approx(3 / 15)
    assert {"capture", "preprocess", "infer", "postprocess"} <= set(lines[0]["timings_ms"])
    # The detections are the model's on each decoded frame, in that frame's pixels (320 x 240, not 256 x 256).
    backend = OnnxRuntimeBackend(model)
    for line, frame in zip(lines[::5], read_frames(source)[::5]):
        logits, boxes = backend.infer(to_model_input(frame, backend.image_size)[None])
        expected = postprocess(logits[0], boxes[0], frame.shape[:2], backend.id2label, 0.2)
        assert len(line["detections"]) == len(expected)
        for got, want in zip(line["detections"], expected):
            assert got["label"] == want.label and got["score"] == pytest.approx(want.score, abs=1e-6)
            assert got["box"] == pytest.approx(want.box, abs=1e-3)


def test_image_folder_in_order_skipping_unreadable(model, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, frame in enumerate(read_frames(write_video(tmp_path / "v.avi", 3))):
        cv2.imwrite(str(folder / f"{i:03d}.png"), frame)
    (folder / "001b.jpg").write_text("not an image")
    assert main(["run", "--model", model, "--source", str(folder), "--save-json", str(tmp_path / "o.jsonl")]) == 0
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 3


def test_corrupt_and_truncated_files(model, tmp_path, capsys):
    (tmp_path / "garbage.mp4").write_bytes(bytes(range(256)) * 40)
    capsys.readouterr()
    assert main(["run", "--model", model, "--source", str(tmp_path / "garbage.mp4")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot open source" in err[0] and "corrupt" in err[0]

    full = write_video(tmp_path / "full.avi", 20).read_bytes()
    (tmp_path / "cut.avi").write_bytes(full[: len(full) * 2 // 3])
    decodable = len(read_frames(tmp_path / "cut.avi"))
    assert 0 < decodable < 20
    assert main(["run", "--model", model, "--source", str(tmp_path / "cut.avi"), "--save-json", str(tmp_path / "c.jsonl")]) == 0
    assert len((tmp_path / "c.jsonl").read_text().splitlines()) == decodable


class FastLiveSource:
    """A live source that always has a new frame at once (a camera faster than the model)."""

    live, fps, uri = True, 30.0, "test-camera"

    def __init__(self, frames, count):
        self.frames, self.count, self.index = frames, count, 0

    def read(self):
        if self.index >= self.count:
            return None
        self.index += 1
        time.sleep(0.002)
        return self.frames[self.index % len(self.frames)].copy()

    def close(self):
        pass



def test_live_source_drops_stale_frames(model, tmp_path):
    frames = read_frames(write_video(tmp_path / "v.avi", 4))
    sink = RecordingSink()
    summary = run_stream(OnnxRuntimeBackend(model), FastLiveSource(frames, 300), [sink], 0.3, threading.Event())
    frames = [r["frame"] for r in sink.records]
    assert summary.dropped > 0 and summary.inferred + summary.dropped <= summary.read <= 300
    assert frames == sorted(frames) and len(set(frames)) == len(frames)  # newest first, never an older frame again


def test_camera_that_disappears_ends_cleanly(model, tmp_path):
    video = write_video(tmp_path / "cam.avi", 6)
    opened = []

    def open_capture():  # the first open works; afterwards the device is gone
        opened.append(1)
        return cv2.VideoCapture(str(video) if len(opened) == 1 else str(tmp_path / "unplugged"))

    messages = []
    source = Source("/dev/video9", open_capture, live=True, log=messages.append, reconnect_delays_s=(0.01, 0.02))
    sink = RecordingSink()
    summary = run_stream(OnnxRuntimeBackend(model), source, [sink], 0.3, threading.Event())
    assert len(opened) == 3 and summary.inferred >= 1
    assert any("reconnecting" in m for m in messages) and "gone" in messages[-1]


def test_backend_must_fit_the_model(model, tmp_path, capsys):
    source = write_video(tmp_path / "v.avi", 2)
    capsys.readouterr()
    assert main(["run", "--model", model, "--source", str(source), "--backend", "tensorrt"]) == 2
    assert "cannot run" in capsys.readouterr().err


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is None or importlib.util.find_spec("pycuda") is None,
    reason="the TensorRT backend needs tensorrt and pycuda (GPU machines)",
)
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_tensorrt_backend_matches_onnxruntime(model, tmp_path, cuda_graph):
    from edge_lwdetr.backends.tensorrt_backend import TensorRTBackend

    plugin = build_plugin_library(tmp_path / "plugins")
    engine = tmp_path / "tiny.fp32.engine"
    assert main(["build", "--onnx", model, "--precision", "fp32", "--output", str(engine), "--plugin", str(plugin)]) == 0
    frames = read_frames(write_video(tmp_path / "v.avi", 4))
    reference, backend = OnnxRuntimeBackend(model), TensorRTBackend(engine, plugin, cuda_graph=cuda_graph)
    try:
        for frame in frames:  # the first call captures the graph, the next ones replay it
            batch = to_model_input(frame, backend.image_size)[None]
            for got, want in zip(backend.infer(batch), reference.infer(batch)):
                np.testing.assert_allclose(got, want, atol=1e-3, rtol=1e-3)
            assert {"h2d", "infer", "d2h"} <= set(backend.stage_ms)
    finally:
        backend.close()
