"""Stand-ins for the model in tests of the pipeline around it (not a model: fixed outputs)."""

import threading
import time

import numpy as np


class StandInBackend:
    """A stand-in model for testing the pipeline (not a model): fixed outputs, optionally slower than decoding.
    `batch` set: a static-batch model; `calls` records the batch size of every call."""

    name, image_size, input_format, variant = "stand-in", 64, "float", "none"
    id2label = {0: "thing"}

    def __init__(self, delay_s: float = 0.0, batch: int | None = None):
        self.delay_s, self.stage_ms, self.batch, self.calls = delay_s, {}, batch, []

    def infer(self, images):
        assert self.batch is None or len(images) == self.batch, f"a static batch of {self.batch} got {len(images)}"
        self.calls.append(len(images))
        time.sleep(self.delay_s)
        logits = np.full((len(images), 3, 1), -10.0, np.float32)
        logits[:, 0] = 3.0
        return logits, np.tile(np.float32([[0.5, 0.5, 0.2, 0.2]]), (len(images), 3, 1))

    def close(self):
        pass


class RecordingSink:
    """A sink that keeps the records it is given (what the pipeline wrote, in order)."""

    wants_image = False

    def __init__(self):
        self.records, self.closed = [], False

    def write(self, frame, record):
        self.records.append(record)

    def close(self):
        self.closed = True


def error_of(run, hang_message: str) -> BaseException | None:
    """Call `run` in a thread and return the error it raised (None if none). The thread must end: the 120 s join
    is a hang guard, not a timing check (a failing run ends within a few frames)."""
    result = {}

    def target():
        try:
            run()
        except Exception as error:  # noqa: BLE001 - returned to the test, which checks it
            result["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), hang_message
    return result.get("error")
