"""Progress bars for the long steps: tqdm on stderr, off when stderr is not a terminal (CI logs and pipes stay
clean), with an ETA wherever the amount of work is known."""

from __future__ import annotations

from tqdm import tqdm


def progress_bar(description: str, unit: str, total: int | None = None, iterable=None) -> tqdm:
    """A bar (over `iterable`, or updated by hand up to `total`) that leaves no line behind when done: the
    command's summary line says what was done."""
    return tqdm(iterable, total=total, desc=description, unit=unit, disable=None, leave=False, dynamic_ncols=True)


class Steps:
    """One bar over a command's named steps (load, trace, simplify, ...): the step running is its description.

    For work with no progress hook of its own (torch's ONNX trace), the count of finished steps is the most
    honest progress there is."""

    def __init__(self, description: str, names: list[str]):
        self.description = description
        self.bar = progress_bar(description, "step", total=len(names))
        self.started = False

    def step(self, name: str) -> None:
        """`name` starts: the previous step is done."""
        if self.started:
            self.bar.update()
        self.started = True
        self.bar.set_description_str(f"{self.description}: {name}")

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> Steps:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
