"""SIGINT and SIGTERM as a command sees them: a request to stop, answered by finalising outputs and exiting with
128 + the signal's number (130, 143), as shells report a process a signal ended."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(Exception):
    """The command was asked to stop by a signal; its outputs are finalised or removed."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def _raise_stopped(signum, frame) -> None:
    raise Stopped(signum)


@contextlib.contextmanager
def stop_raises() -> Iterator[None]:
    """SIGINT/SIGTERM raise Stopped in the main thread: `finally` blocks and atomic writes clean up (a plain SIGTERM
    would end the process without running them)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def stop_sets(stop: threading.Event) -> Iterator[list[int]]:
    """SIGINT/SIGTERM set `stop` (the streaming runtime drains and closes its sinks); yields the signals caught."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def handler(signum, frame) -> None:
        caught.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield caught
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
