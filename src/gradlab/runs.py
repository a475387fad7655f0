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
from pathlib import Path

_VERSION = re.compile(r"version_(\d+)$")


def _versions(base: Path) -> list[tuple[int, Path]]:
    if not base.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in base.iterdir() if (m := _VERSION.match(p.name))]
    return sorted(found)


def new_run_dir(root: str | Path, name: str) -> Path:
    """Claims the next free <root>/<name>/version_<N> by creating it."""
    base = Path(root) / name
    base.mkdir(parents=True, exist_ok=True)
    while True:
        versions = _versions(base)
        n = versions[-1][0] + 1 if versions else 0
        try:
            (base / f"version_{n}").mkdir()
        except FileExistsError:  # another run claimed it between listing and mkdir
            continue
        return base / f"version_{n}"


def last_checkpoint(root: str | Path, name: str) -> Path | None:
    """checkpoints/last.ckpt of the newest run of `name` that has one (what resume continues)."""
    for _, run_dir in reversed(_versions(Path(root) / name)):
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
