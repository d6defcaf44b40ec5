"""How every command writes its outputs without ever destroying an input or leaving a fragment.

- An output that is the same file as an input is refused before any work starts.
- Outputs that hold user work (recordings, engines, trained model folders, datasets) are replaced only with
  `--exist-ok`; derived files (ONNX graphs, reports, images, plots) are replaced, but only as a whole.
- Whole-file outputs are written to a temporary file in the same folder and renamed into place when complete
  (rename is atomic within a file system), so an error or a kill leaves the previous file or nothing.
- Each output is claimed with an exclusive lock for the life of the command, so a second command writing the same
  path refuses instead of interleaving with the first.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from edge_lwdetr.errors import EdgeLwdetrError


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where they would be
        return a.resolve() == b.resolve()


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


def refuse_overwriting_inputs(outputs: dict[str, Path | None], inputs: Iterable[str | Path | None]) -> None:
    """Refuse (one line) any output that is one of the inputs, or a folder output that holds an input.

    `outputs` maps each option's name (for the message) to its path; `inputs` are the paths the command reads.
    """
    sources = [Path(i) for i in inputs if i is not None and str(i) != ""]
    for option, output in outputs.items():
        if output is None:
            continue
        for source in sources:
            if _same_file(output, source) or (output.is_dir() and source.exists() and _inside(source, output)):
                raise EdgeLwdetrError(
                    f"{option} {output} is the input {source}: writing it would destroy the input; choose another path"
                )


def refuse_existing(path: Path | None, option: str, exist_ok: bool, what: str) -> None:
    """Outputs holding user work are replaced only on request (Ultralytics' `exist_ok`)."""
    if path is None or exist_ok or not path.exists():
        return
    if path.is_dir() and not any(path.iterdir()):
        return  # an empty folder holds nothing to lose
    raise EdgeLwdetrError(
        f"{option} {path} already exists and holds {what}; pass --exist-ok to replace it, or choose another path"
    )


class Claim:
    """An exclusive lock on an output path for as long as the command writes it.

    The lock lives on a hidden file beside the output (`.NAME.lock`), so the output itself can be replaced by a
    rename while it is held. The kernel releases it when the process dies, even by SIGKILL.
    """

    def __init__(self, path: Path):
        self.path = path
        self.lock_path = path.parent / f".{path.name}.lock"
        self._fd: int | None = None

    def acquire(self) -> Claim:
        if not self.path.parent.is_dir():
            raise EdgeLwdetrError(f"cannot write {self.path}: folder {self.path.parent} does not exist")
        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                raise EdgeLwdetrError(f"cannot write {self.path}: {error.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise EdgeLwdetrError(
                    f"{self.path} is being written by another edge-lwdetr command; wait for it or choose another path"
                ) from None
            # The holder before us may have unlinked the lock file after we opened it: then ours is stale.
            try:
                if os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino:
                    self._fd = fd
                    return self
            except FileNotFoundError:
                pass
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.lock_path)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Claim:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def claim_all(stack: contextlib.ExitStack, *paths: Path | None) -> None:
    """Claim every given output path for the life of `stack`."""
    for path in paths:
        if path is not None:
            stack.enter_context(Claim(path))


def _write_error(path: Path, error: OSError) -> EdgeLwdetrError:
    hint = "; free some space and run again" if error.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return EdgeLwdetrError(f"cannot write {path}: {error.strerror or error}{hint} (nothing was written there)")


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` (same suffix, so writers that choose a format by suffix still work); renamed
    onto `path` when the block completes, deleted when it raises."""
    if not path.parent.is_dir():
        raise EdgeLwdetrError(f"cannot write {path}: folder {path.parent} does not exist")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent)
    except OSError as error:
        raise _write_error(path, error) from None
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        with open(temporary, "rb") as handle:  # on disk before the rename makes it visible
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)  # mkstemp's 0600 is not what a plain open() would have given
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise _write_error(path, error) from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_file(path) as temporary:
        temporary.write_bytes(data)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_folder(path: Path) -> Iterator[Path]:
    """A temporary folder beside `path`; it replaces `path` when the block completes, and is deleted when it raises.

    The old folder is moved aside first and deleted only once the new one is in place, so at every moment `path` is
    either the old folder or the complete new one (for the instant between the two renames, absent).
    """
    parent = path.parent
    if not parent.is_dir():
        raise EdgeLwdetrError(f"cannot write {path}: folder {parent} does not exist")
    if path.exists() and not path.is_dir():
        raise EdgeLwdetrError(f"{path} is a file, not a folder; choose a folder path")
    try:
        temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=parent))
    except OSError as error:
        raise _write_error(path, error) from None
    try:
        yield temporary
        os.chmod(temporary, 0o755)
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=parent))
            os.replace(path, old / "folder")
        try:
            os.replace(temporary, path)
        except OSError:
            if old is not None:
                os.replace(old / "folder", path)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as error:
        shutil.rmtree(temporary, ignore_errors=True)
        raise _write_error(path, error) from None
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
