"""TensorRT's build progress (its IProgressMonitor callbacks) as one bar, and a stop request as a cancelled build.

TensorRT reports nested phases, each with a step count. The top-level phase's steps drive the bar (its ETA); the
innermost running phase is shown beside it. The callbacks run Python inside TensorRT's C++ build, which is the
only moment a SIGINT/SIGTERM handler can run during the build: the exception it raises (signals.Stopped) is kept
and the build cancelled (step_complete returns False), then raised again once TensorRT has returned, because
TensorRT's binding would print the exception and swallow it.
"""

from __future__ import annotations

from edge_lwdetr.progress import progress_bar


class BuildProgress:
    def __init__(self):
        self.phases: dict[str, str | None] = {}  # running phase -> its parent
        self.bar = None
        self.top: str | None = None
        self.interruption: BaseException | None = None

    def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
        try:
            self.phases[phase_name] = parent_phase
            if parent_phase is None:
                self._close_bar()
                self.top = phase_name
                self.bar = progress_bar(f"building the engine: {phase_name}", "step", total=num_steps)
            elif self.bar is not None:
                self.bar.set_postfix_str(phase_name, refresh=True)
        except BaseException as error:  # noqa: BLE001 - kept and raised after TensorRT returns
            self.interruption = self.interruption or error

    def step_complete(self, phase_name: str, step: int) -> bool:
        """True: go on; False: cancel the build."""
        try:
            if phase_name == self.top and self.bar is not None:
                self.bar.update(step + 1 - self.bar.n)  # `step` counts from 0
        except BaseException as error:  # noqa: BLE001
            self.interruption = self.interruption or error
        return self.interruption is None

    def phase_finish(self, phase_name: str) -> None:
        try:
            self.phases.pop(phase_name, None)
            if phase_name == self.top:
                self._close_bar()
                self.top = None
        except BaseException as error:  # noqa: BLE001
            self.interruption = self.interruption or error

    def raise_interruption(self) -> None:
        """After the build call: raise what stopped it, if something did."""
        self._close_bar()
        if self.interruption is not None:
            raise self.interruption

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
