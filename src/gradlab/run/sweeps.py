"""Sweeps (-m): each job's folder name, its DDP workers, and the table at the end.

Hydra callbacks (conf/train.yaml's hydra.callbacks) and the resolver that names job folders.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from gradlab.run.files import atomic_file
from gradlab.run.rundirs import RESULT


class RefuseBeforeTheSweep(Callback):
    """A Hydra callback: a sweep (-m) is checked before Hydra creates its folder, so a refused value
    leaves nothing behind, as a single run's does. Each job's own values are checked when it starts.

    Also refused here: continuing runs in a sweep (resume=true, ckpt_path=...: several jobs would
    continue one run; continue a stopped job with its own printed command), and a sweep folder that
    exists already (a fixed hydra.sweep.dir given twice: the second sweep would write into the first's
    job folders).
    """

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from gradlab.checks.config import ConfigError, check
        from gradlab.run.cli import fail

        task = list(config.hydra.overrides.task)
        job = OmegaConf.create({k: v for k, v in config.items() if k != "hydra"})
        try:
            check(job)
            continuing = [o for o in task if o.split("=", 1)[0].lstrip("+~") in ("resume", "ckpt_path")]
            if continuing or job.get("resume") or job.get("ckpt_path"):
                said = " ".join(continuing) or "resume/ckpt_path in the config"
                raise ConfigError(
                    f"a sweep (-m) cannot continue runs ({said}): its jobs would continue one run each time "
                    "over. Continue one run at a time without -m (a stopped sweep job prints its own command). "
                    "Nothing was run and no sweep folder was created."
                )
            sweep = Path(config.hydra.sweep.dir)
            if sweep.exists() and any(sweep.iterdir()):
                raise ConfigError(
                    f"the sweep folder {sweep} exists already (hydra.sweep.dir): this sweep would write into "
                    "another sweep's job folders. Give a new hydra.sweep.dir, or leave it out (each sweep then "
                    "gets a folder of its own). Nothing was run."
                )
        except ConfigError as e:
            fail(str(e), 2)
        from gradlab.run import signals

        signals.raise_from_now_on()  # Hydra writes the sweep folder next: a stop is cleaned up from here


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


def job_dir_name(num: Any, overrides: Any) -> str:
    """A sweep job's folder name: its number and overrides, e.g. `3_optimizer.lr=0.001`.

    Hydra's override_dirname is the raw command line (`data.path=../x/y.csv` holds `/` and `..`),
    so it is made one safe path component: only letters, digits and `._=,+-` kept, at most ~100
    characters; the job number in front keeps names unique.
    """
    text = re.sub(r"[^A-Za-z0-9._=,+-]+", "_", str(overrides or ""))
    text = re.sub(r"_+", "_", re.sub(r"\.{2,}", "_", text)).strip("._")[:96]
    return f"{num}_{text}" if text else str(num)


def register_resolvers() -> None:
    """`${gradlab_job_dir:${hydra.job.num},${hydra.job.override_dirname}}` in conf/train.yaml."""
    if not OmegaConf.has_resolver("gradlab_job_dir"):
        OmegaConf.register_new_resolver("gradlab_job_dir", job_dir_name)


class SweepSummary(Callback):
    """A Hydra callback: at the end of a sweep (-m), a table of its jobs and the best one by the
    sweep's objective (val/loss, lowest first), printed and written as sweep_summary.csv."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep = Path(config.hydra.sweep.dir)
        rows = []
        for path in sorted(sweep.glob(f"*/{RESULT}"), key=lambda p: _job_number(p.parent.name)):
            try:
                result = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            rows.append({"job": path.parent.name.split("_", 1)[0], **result})
        if not rows:
            return
        direction = OmegaConf.select(config, "hydra.sweeper.direction", default="minimize")
        worst = float("inf") if direction != "maximize" else float("-inf")
        finished = [r for r in rows if r.get("status") == "finished" and _finite(r.get("val_loss"))]
        best = (min if direction != "maximize" else max)(finished, key=lambda r: r["val_loss"], default=None)
        columns = ["job", "overrides", "status", "train_loss", "val_loss"]
        table = [[str(r.get(c, "")) if c in ("job", "overrides", "status") else _formatted(r.get(c, worst))
                  for c in columns] for r in rows]
        widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(columns)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
        lines += ["  ".join(v.ljust(w) for v, w in zip(t, widths)) for t in table]
        print("gradlab: sweep summary (train_loss: after the last update; val_loss: the sweep's objective)")
        print("\n".join("  " + line for line in lines))
        if best is not None:
            print(f"gradlab: best by val/loss: job {best['job']} ({best.get('overrides') or 'defaults'}), "
                  f"val/loss {_formatted(best['val_loss'])}, train loss {_formatted(best.get('train_loss'))}")
            fitted = min((r for r in finished if _finite(r.get("train_loss"))), key=lambda r: r["train_loss"])
            if fitted is not best and direction != "maximize":
                print(f"gradlab: note: job {fitted['job']} fits the training data best (train loss "
                      f"{_formatted(fitted['train_loss'])}); val/loss of a small validation split can rank "
                      "runs otherwise by chance (README, \"Sweeps\")")
        out = sweep / "sweep_summary.csv"
        with atomic_file(out, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([*columns, "best"])
            for r, t in zip(rows, table):
                writer.writerow([*t, "yes" if r is best else ""])
        print(f"gradlab: sweep summary written to {out}")


def _job_number(name: str) -> int:
    head = name.split("_", 1)[0]
    return int(head) if head.isdigit() else 1 << 30


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _formatted(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, (int, float)) else str(value if value is not None else "")
