"""Progress on the long steps: bars on a terminal and none in logs; calibration's bar rides on the calibration
itself (ModelOpt through our reader calibrates exactly as through its own); a stop during a TensorRT build."""

import fcntl
import importlib.util
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
from pathlib import Path

import numpy as np
import onnx
import pytest

from edge_lwdetr.cli import main
from edge_lwdetr.engine.build_progress import BuildProgress
from edge_lwdetr.engine.calibration import CalibrationReader
from edge_lwdetr.signals import Stopped
from hf_models import ONNX_SIZES

ROOT = Path(__file__).resolve().parents[1]
needs_modelopt = pytest.mark.skipif(
    importlib.util.find_spec("modelopt") is None, reason="NVIDIA ModelOpt is not installed (the quant extra)"
)


def test_calibration_reader_hands_each_image_once_in_order_and_rewinds():
    images = np.arange(4, dtype=np.float32).reshape(4, 1, 1, 1)
    reader = CalibrationReader({"images": images})
    first = reader.get_first()["images"]
    seen = []
    while (item := reader.get_next()) is not None:
        seen.append(item["images"])
    assert first.shape == (1, 1, 1, 1) and first[0, 0, 0, 0] == 0
    assert [float(s[0, 0, 0, 0]) for s in seen] == [0, 1, 2, 3]
    assert reader.get_next() is None  # stays exhausted
    reader.rewind()
    assert float(reader.get_next()["images"][0, 0, 0, 0]) == 0


@needs_modelopt
def test_modelopt_calibrates_through_our_reader_exactly_as_through_its_own(native_export, tmp_path):
    from modelopt.onnx.quantization import quantize

    from edge_lwdetr.engine.precision import gpu_hidden, inline_msda

    _, native_path, _ = native_export("tiny")
    inlined, _ = inline_msda(onnx.load(native_path))
    source = tmp_path / "inlined.onnx"
    onnx.save(inlined, source)
    size = ONNX_SIZES["tiny"]
    images = np.random.default_rng(0).random((3, 3, size, size), dtype=np.float32)

    scales = {}
    for way, data in {
        "modelopt's provider": {"calibration_data": {"images": images}},
        "our reader": {"calibration_data_reader": CalibrationReader({"images": images})},
    }.items():
        output = tmp_path / f"{way}.onnx"
        with gpu_hidden():
            quantize(onnx_path=str(source), quantize_mode="int8", calibration_method="entropy", calibration_eps=["cpu"],
                     op_types_to_quantize=["MatMul", "Gemm", "Conv"], high_precision_dtype="fp32",
                     output_path=str(output), log_level="ERROR", **data)  # fmt: skip
        model = onnx.load(output)
        scales[way] = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer if "scale" in i.name}
    ours, theirs = scales["our reader"], scales["modelopt's provider"]
    assert len(theirs) > 10 and ours.keys() == theirs.keys()
    for name in theirs:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)


def tensorrt_like_build(progress: BuildProgress, steps: int = 4) -> list[bool]:
    """The callback order of TensorRT's builder (sampleProgressMonitor): nested phases inside a top-level one."""
    answers = []
    progress.phase_start("Building engine", None, steps)
    for step in range(steps):
        progress.phase_start("Tactic selection", "Building engine", 2)
        answers += [progress.step_complete("Tactic selection", 0), progress.step_complete("Tactic selection", 1)]
        progress.phase_finish("Tactic selection")
        answers.append(progress.step_complete("Building engine", step))
    progress.phase_finish("Building engine")
    return answers


def test_build_progress_goes_on_through_a_whole_build():
    progress = BuildProgress()
    assert all(tensorrt_like_build(progress))
    progress.raise_interruption()  # nothing to raise
    assert progress.bar is None and not progress.phases


def test_a_stop_during_the_build_cancels_it_and_is_raised_after_tensorrt_returns():
    class StopArrives:
        """Where a SIGINT handler would raise: inside the Python code a callback runs."""

        n = 0

        def update(self, count):
            raise Stopped(signal.SIGINT)

        def close(self):
            pass

        def set_postfix_str(self, *args, **kwargs):
            pass

    progress = BuildProgress()
    progress.phase_start("Building engine", None, 4)
    progress.bar = StopArrives()
    assert progress.step_complete("Building engine", 0) is False  # TensorRT cancels the build
    assert progress.step_complete("Building engine", 1) is False
    with pytest.raises(Stopped):
        progress.raise_interruption()


def run_on_a_terminal(argv: list[str], cwd: Path) -> str:
    """Run the CLI with stderr on a pseudo-terminal (where users see bars); returns what the terminal got."""
    controller, terminal = pty.openpty()
    # A real terminal has a size; a fresh pseudo-terminal's is 0 x 0, where tqdm draws an empty bar.
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_lwdetr.cli", *argv], cwd=cwd, stdout=subprocess.PIPE, stderr=terminal,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    os.close(terminal)
    received = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal closed: the process ended
            break
        if not chunk:
            break
        received += chunk
    os.close(controller)
    assert process.wait(timeout=600) == 0, received.decode(errors="replace")
    return received.decode(errors="replace")


def test_export_shows_its_steps_on_a_terminal_and_nothing_in_a_pipe(hf_checkpoint, tmp_path, capsys):
    folder, _ = hf_checkpoint("tiny")
    argv = ["export", "--weights", str(folder), "--imgsz", "256"]
    terminal = run_on_a_terminal(argv + ["--output", str(tmp_path / "tty.onnx")], tmp_path)
    assert "export: tracing (torch.onnx)" in terminal and "export: writing" in terminal
    capsys.readouterr()
    assert main(argv + ["--output", str(tmp_path / "pipe.onnx")]) == 0  # pytest's capture: not a terminal
    assert "export:" not in capsys.readouterr().err
