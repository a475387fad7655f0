"""Run directories: lightning_logs/<name>/version_<N>, one per run, created race-free.

TensorBoardLogger numbers versions by listing the folder, so two runs started in the same
instant can pick the same number; here the number is claimed with os.mkdir, which only one
process can win. A run directory holds everything of that run: TensorBoard event files,
hparams.yaml, config.yaml and overrides.yaml (the composed Hydra config), checkpoints/ and
the plots.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

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


class DDPWorkersPerSweepJob(Callback):
    """A Hydra callback: in a sweep (-m), each job's DDP workers run that job, and only that job.

    Lightning starts DDP workers by re-running the command line (sys.argv) with rank 0's
    hydra.run.dir added; in a sweep that command line is the whole sweep, so every worker would
    run every job and write a sweep folder of its own (Lightning #11300, Hydra #2070). Here a
    job's workers get the job's own overrides instead; after the job, the process group and the
    variables Lightning set to launch them are cleared, so the next job starts its own workers
    rather than waiting for the finished ones. Outside sweeps, and where SLURM starts the ranks
    (hydra/launcher=slurm), nothing changes.
    """

    _LAUNCH_VARS = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")

    def __init__(self) -> None:
        self._argv: list[str] | None = None
        self._env: dict[str, str | None] = {}

    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        self._argv = sys.argv[:]
        self._env = {k: os.environ.get(k) for k in self._LAUNCH_VARS}
        sys.argv[1:] = list(config.hydra.overrides.task)

    def on_job_end(self, config: DictConfig, job_return, **kwargs) -> None:
        if self._argv is None:
            return
        sys.argv[:] = self._argv
        self._argv = None
        dist = sys.modules.get("torch.distributed")
        if dist is not None and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for key, value in self._env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
