"""The one exception type for expected failures: bad input files, sizes, options.

The CLI prints its message on one line, without a traceback, and exits non-zero.
"""


class EdgeLwdetrError(Exception):
    """An expected failure whose message says what was wrong, with which value, and how to fix it."""
