"""The one way gradlab writes a file: complete or not at all.

Writes go to a temporary file in the destination's own directory, are flushed and fsynced, then
`os.replace`d: a rename within one filesystem, so a kill at any instant leaves the previous file
or the new one, whatever $TMPDIR is (Lightning's own save falls back to truncate-and-copy when the
destination is on another filesystem than its temporary file).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


class WriteError(OSError):
    """A file gradlab could not write (disk full, read-only or missing folder); nothing is left half-written."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Opens a temporary file beside `path`; on a clean exit it is fsynced and replaces `path`.
    On any failure (or a signal's exception) the temporary file is removed and `path` is untouched."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # the writer's pid in the name: the next run in the folder removes what a killed writer left
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise write_error(path, e) from None
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would make outputs private to their writer
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        _discard(tmp)
        if isinstance(e, WriteError):
            raise
        raise write_error(path, e) from None
    except BaseException:
        _discard(tmp)
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_file(path, "w") as f:
        f.write(text)


def _discard(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


def write_error(path: Path, e: OSError) -> WriteError:
    reason = e.strerror or type(e).__name__
    return WriteError(
        f"cannot write {path}: {reason}. Free some space or pick a writable place (root_dir=..., "
        "output=...); no partial file was left there"
    )


def temporary_owner(path: Path) -> int | None:
    """The pid of the process writing `path`, if it is one of atomic_file's temporary files."""
    parts = path.name.split(".")  # "", name..., pid, random, "tmp"
    return int(parts[-3]) if len(parts) >= 5 and parts[-1] == "tmp" and parts[-3].isdigit() else None
