"""Faults and hostile files: every file gradlab writes is complete or absent, one process writes a
run, and a checkpoint names no path outside its own run's checkpoints/.

Writes go to a temporary file in the destination's own directory, are flushed and fsynced, then
`os.replace`d: a rename within one filesystem, so a kill at any instant leaves the previous file
or the new one, whatever $TMPDIR is (Lightning's own save falls back to truncate-and-copy when the
destination is on another filesystem than its temporary file).
"""

from __future__ import annotations

import fcntl
import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import lightning.pytorch as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO


class WriteError(OSError):
    """A file gradlab could not write (disk full, read-only or missing folder); nothing is left half-written."""


class RunInUse(RuntimeError):
    """Another process holds the run directory's lock."""


class UnsafeCheckpoint(ValueError):
    """A checkpoint whose callback state names a path outside its own run's checkpoints/ folder."""


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
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _write_error(path, e) from None
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
        raise _write_error(path, e) from None
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


def _write_error(path: Path, e: OSError) -> WriteError:
    reason = e.strerror or type(e).__name__
    return WriteError(
        f"cannot write {path}: {reason}. Free some space or pick a writable place (root_dir=..., "
        "output=...); no partial file was left there"
    )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written with `atomic_file`, and removed only when they are plain files in `folder`.

    The removal check is a second line behind `check_checkpoint_paths`: Lightning deletes a
    ModelCheckpoint's "previous best" recursively, with a path that may come from a resumed file.
    """

    def __init__(self, folder: str | Path) -> None:
        super().__init__()
        self.folder = Path(folder)

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError("gradlab's checkpoint writer takes no storage_options")
        with atomic_file(path, "wb") as f:
            torch.save(checkpoint, f)

    def remove_checkpoint(self, path) -> None:
        p = Path(path)
        if _inside(p, self.folder) and p.is_file() and not p.is_symlink():
            p.unlink()
        elif p.exists():
            print(f"gradlab: kept {p}: it is not a checkpoint file in {self.folder}, so it is not removed")


def _inside(path: Path, folder: Path) -> bool:
    """Whether `path`, with `..` and symbolic links resolved, lies inside `folder` (resolved too)."""
    try:
        return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))
    except (TypeError, ValueError, OSError):
        return False


# what a ModelCheckpoint's state holds that names a file (it removes the "previous" ones)
PATH_KEYS = ("best_model_path", "last_model_path", "kth_best_model_path")


def check_checkpoint_paths(ckpt: dict, folder: str | Path, source: str | Path, strict: bool = True) -> None:
    """UnsafeCheckpoint when a callback's state in `ckpt` names a path outside `folder`.

    Lightning restores these paths into the run's ModelCheckpoints and may later delete them,
    recursively, after a check that does not resolve `..`. `folder` is the checkpoints/ folder of
    the run the resume writes in; checked before Lightning reads the file, so a refused file touches
    nothing. strict=False (a file from outside any run): only paths that Lightning would take for
    its own (those under `folder` as written) must stay inside it once resolved.
    """
    folder = Path(folder)
    states = ckpt.get("callbacks") or {}
    if not isinstance(states, dict):
        raise UnsafeCheckpoint(f"{source}: its callback state is not a mapping; not a checkpoint gradlab wrote")
    for name, state in states.items():
        if not isinstance(state, dict):
            continue
        named = [(key, state.get(key)) for key in PATH_KEYS]
        named += [("best_k_models", key) for key in (state.get("best_k_models") or {})]
        if state.get("dirpath") is not None and strict:
            named.append(("dirpath", state["dirpath"]))
        for key, value in named:
            if value in (None, ""):
                continue
            if not strict and isinstance(value, str) and not _lexically_under(value, folder):
                continue
            ok = isinstance(value, str) and (
                _inside(Path(value), folder) if key != "dirpath" else _same(Path(value), folder))
            if not ok:
                raise UnsafeCheckpoint(
                    f"{source}: refused: its callback state ({str(name)[:60]}) has {key}={value!r}, which is "
                    f"not inside this run's checkpoint folder {folder} (with '..' and links resolved). "
                    "A checkpoint is data: it may not name files for gradlab to manage elsewhere. "
                    "Nothing was run or changed; use a checkpoint gradlab wrote in this run"
                )


def _lexically_under(value: str, folder: Path) -> bool:
    """Lightning's own test for "a file of this callback": `..` not resolved, as it does."""
    parents = Path(value).parents
    return any(f in parents for f in (folder, Path(os.path.abspath(folder)), Path(os.path.realpath(folder))))


def _same(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


LOCK_NAME = "gradlab.lock"
_held: dict[str, int] = {}  # run dir -> its open lock file: the lock lasts as long as the process


def lock_run(run_dir: str | Path) -> None:
    """Takes the run directory's lock for the rest of this process, or raises RunInUse naming its holder.

    An OS lock (flock), so it goes away with the process, however that process ends.
    """
    path = Path(run_dir) / LOCK_NAME
    if os.path.realpath(run_dir) in _held:  # this process resumes a run it wrote (tests, notebooks)
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise _write_error(path, e) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise RunInUse(
            f"the run {run_dir} is in use by {holder}: one process writes a run at a time. Wait for it to "
            "finish (or stop it), then resume; or start a new run without resume=true / ckpt_path"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"host {socket.gethostname()} pid {os.getpid()}\n".encode())
    _held[os.path.realpath(run_dir)] = fd


def claim_run(run_dir: Path, ckpt_path: Path | None, is_new: bool) -> None:
    """Before anything is written to `run_dir`: refuse a checkpoint whose callbacks name paths
    outside the run's checkpoints/, then take the run's lock (rank 0 only: DDP workers and the
    other nodes' ranks write into rank 0's run under its lock)."""
    from lightning.pytorch.utilities import rank_zero_only

    from gradlab.checkpoints import load_checkpoint

    if ckpt_path is not None:
        try:
            # a file outside any run starts a new one (is_new): Lightning's ModelCheckpoint then acts
            # only on the paths that point into the new run's folder, so only those are checked
            check_checkpoint_paths(load_checkpoint(ckpt_path), Path(run_dir) / "checkpoints", ckpt_path,
                                   strict=not is_new)
        except UnsafeCheckpoint:
            if is_new:
                Path(run_dir).rmdir()  # claimed a moment ago and still empty
            raise
    if rank_zero_only.rank == 0:
        lock_run(run_dir)


def logger_resume_kwargs(ckpt_path: Path | None) -> dict:
    """TensorBoard's purge_step on resume: the steps a killed run logged after its checkpoint are
    dropped from the curves, so every step shows once, however the run before it ended."""
    if ckpt_path is None:
        return {}
    from gradlab.checkpoints import load_checkpoint

    return {"purge_step": int(load_checkpoint(ckpt_path).get("global_step", 0))}


class FlushLogsAtCheckpoint(L.Callback):
    """Flushes the loggers' event files whenever a checkpoint is saved: after a kill -9, the curves
    then reach at least the step that resume continues from, so they show no hole before it."""

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        for lg in trainer.loggers:
            flush = getattr(getattr(lg, "experiment", None), "flush", None)
            if callable(flush):
                flush()
