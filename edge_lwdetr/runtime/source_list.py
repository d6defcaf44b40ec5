"""The sources of a run: `--source` given once or more, and `.streams` files listing source URIs (Ultralytics'
convention: one URI per line; blank lines and lines starting with # are ignored)."""

from __future__ import annotations

from pathlib import Path

from edge_lwdetr.errors import EdgeLwdetrError

STREAMS_SUFFIX = ".streams"


def read_streams_file(path: Path) -> list[str]:
    """The URIs a .streams file lists, in order; a one-line error naming the file (and line) otherwise."""
    if not path.is_file():
        raise EdgeLwdetrError(f"cannot read {path}: no such file (a {STREAMS_SUFFIX} file lists one source per line)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise EdgeLwdetrError(f"cannot read {path}: not a UTF-8 text file; list one source URI per line") from None
    uris = []
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if entry.endswith(STREAMS_SUFFIX):
            raise EdgeLwdetrError(
                f"{path} line {number}: {entry} is another {STREAMS_SUFFIX} file; list its sources here instead"
            )
        if any(c.isspace() or not c.isprintable() for c in entry):
            raise EdgeLwdetrError(
                f"{path} line {number}: {entry!r} holds a space or a control character; write one URI per line "
                "(a path with spaces: pass it with --source)"
            )
        uris.append(entry)
    if not uris:
        raise EdgeLwdetrError(
            f"{path} lists no source: write one URI per line (blank lines and # comments are ignored)"
        )
    return uris


def expand_sources(values: list[str]) -> list[str]:
    """The sources of `--source` values, each .streams file replaced by the sources it lists."""
    sources: list[str] = []
    for value in values:
        sources += read_streams_file(Path(value)) if value.endswith(STREAMS_SUFFIX) else [value]
    return sources


def per_source_path(path: Path, index: int) -> Path:
    """The output of source `index` in a run of several: out.mp4 -> out.0.mp4."""
    return path.with_name(f"{path.stem}.{index}{path.suffix}")
