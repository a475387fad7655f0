"""Run directories: lightning_logs/<name>/version_<N>, one per run, created race-free and written
by one process at a time.

TensorBoardLogger numbers versions by listing the folder, so two runs started in the same
instant can pick the same number; here the number is claimed with os.mkdir, which only one
process can win. A run directory holds everything of that run: TensorBoard event files,
hparams.yaml, config.yaml and overrides.yaml (the composed Hydra config), checkpoints/ and
the plots. An OS lock (flock on gradlab.lock) says which process writes it.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
from pathlib import Path

from gradlab.run.files import write_error, write_text

_VERSION = re.compile(r"version_(\d+)$")


def versions(base: Path) -> list[tuple[int, Path]]:
    """(N, path) of each version_<N> run folder in `base`, oldest first."""
    if not base.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in base.iterdir() if (m := _VERSION.match(p.name))]
    return sorted(found)


def new_run_dir(root: str | Path, name: str) -> Path:
    """Claims the next free <root>/<name>/version_<N> by creating it."""
    base = Path(root) / name
    base.mkdir(parents=True, exist_ok=True)
    while True:
        claimed = versions(base)
        n = claimed[-1][0] + 1 if claimed else 0
        try:
            (base / f"version_{n}").mkdir()
        except FileExistsError:  # another run claimed it between listing and mkdir
            continue
        return base / f"version_{n}"


def last_checkpoint(root: str | Path, name: str) -> Path | None:
    """checkpoints/last.ckpt of the newest run of `name` that has one (what resume continues)."""
    for _, run_dir in reversed(versions(Path(root) / name)):
        ckpt = run_dir / "checkpoints" / "last.ckpt"
        if ckpt.is_file():
            return ckpt
    return None


def run_dir_of(ckpt: Path) -> Path | None:
    """The run directory a checkpoint was written in, if it sits in one's checkpoints/ folder."""
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else None


def ddp_child_run_dir() -> Path | None:
    """The run directory rank 0 chose, in a DDP worker that Lightning started as a subprocess."""
    if int(os.environ.get("LOCAL_RANK", "0")) > 0 and "GRADLAB_RUN_DIR" in os.environ:
        return Path(os.environ["GRADLAB_RUN_DIR"])
    return None


RESULT = "result.json"  # what each run leaves for the sweep's summary


def write_result(run_dir: Path, result: dict) -> None:
    """The run's outcome (status, final losses, overrides) as JSON, written whole or not at all."""
    write_text(run_dir / RESULT, json.dumps(result, indent=1))


class RunInUse(RuntimeError):
    """Another process holds the run directory's lock."""


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
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)  # never through a planted link
    except OSError as e:
        raise write_error(path, e) from None
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

    from gradlab.checks.checkpoint import UnsafeCheckpoint, check_checkpoint_paths, load_checkpoint

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
        refuse_links(run_dir)
        lock_run(run_dir)
        remove_stale_temporary_files(run_dir)


class UnsafeRunFolder(ValueError):
    """A run folder holding symbolic links: Lightning and TensorBoard would write through them."""


def refuse_links(run_dir: str | Path) -> None:
    """UnsafeRunFolder naming the symbolic links in a run folder (a downloaded or shared one may hold
    planted links): gradlab's own files never follow one, but event files, hparams.yaml and
    Lightning's writes would, so such a folder is refused before the first write."""
    links = [os.path.join(folder, name) for folder, dirs, files in os.walk(run_dir)
             for name in dirs + files if os.path.islink(os.path.join(folder, name))]
    if links:
        shown = ", ".join(repr(p) for p in links[:5]) + (f" and {len(links) - 5} more" if len(links) > 5 else "")
        raise UnsafeRunFolder(
            f"refused: the run folder {run_dir} holds symbolic links ({shown}); gradlab and Lightning would "
            "write through them, to places outside the run. Nothing was written. Remove the links (a run "
            "folder holds only files gradlab wrote), or start a new run without resume=true / ckpt_path"
        )


def remove_stale_temporary_files(run_dir: str | Path) -> None:
    """Removes the temporary files (gradlab.run.files) that a process killed mid-write left in the run:
    each carries its writer's pid, and a pid that is no longer running has nothing left to finish."""
    from gradlab.run.files import temporary_owner

    for path in Path(run_dir).rglob(".*.tmp"):
        pid = temporary_owner(path)
        if pid is not None and not _running(pid) and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: running
        return True
    return True
