"""The libraries' own chatter (ModelOpt's INFO logs, ONNX Runtime's calibration prints, polygraphy's reports),
kept off the terminal unless the user asks for it with --verbose: our commands say what matters in a few lines."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator

verbose = False  # set by the CLI's --verbose


@contextlib.contextmanager
def libraries_quiet() -> Iterator[None]:
    """Inside the block: Python logging below ERROR off, and what libraries print to stdout dropped."""
    if verbose:
        yield
        return
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(logging.NOTSET)


def polygraphy_quiet() -> None:
    """polygraphy's global logger at WARNING (it reports every runner's inputs and outputs at INFO)."""
    if not verbose:
        from polygraphy.logger import G_LOGGER

        G_LOGGER.module_severity = G_LOGGER.WARNING
