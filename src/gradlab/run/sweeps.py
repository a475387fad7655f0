"""Sweeps (-m): each job's folder name, its DDP workers, the jobs of a stopped parallel sweep, and the
table at the end.

Hydra callbacks (conf/train.yaml's hydra.callbacks) and the resolver that names job folders.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import math
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf


class RefuseBeforeTheSweep(Callback):
    """A Hydra callback: a sweep (-m) is checked before Hydra creates its folder, so a refused value
    leaves nothing behind, as a single run's does. Each job's own values are checked when it starts.

    Also refused here: continuing runs in a sweep (resume=true, ckpt_path=...: several jobs would
    continue one run; continue a stopped job with its own printed command), a sweep folder that
    exists already (a fixed hydra.sweep.dir given twice: the second sweep would write into the first's
    job folders), and a sweep started on several nodes at once (NODE_RANK, or torchrun's WORLD_SIZE):
    each node would claim a sweep folder of its own.
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
            launched = {k: os.environ[k] for k in ("NODE_RANK", "WORLD_SIZE") if k in os.environ}
            if "NODE_RANK" in launched or int(launched.get("WORLD_SIZE", "1") or 1) > 1:
                raise ConfigError(
                    f"a sweep (-m) cannot be started on several nodes at once "
                    f"({', '.join(f'{k}={v}' for k, v in launched.items())}): each node would run every job, "
                    "into a sweep folder of its own. Allowed: one run per command on several nodes (drop -m), "
                    "or hydra/launcher=slurm from one machine, which starts each job's ranks itself. Nothing "
                    "was run and no sweep folder was created."
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
    """A sweep job's folder name: what it changes, short, e.g. `lr=0.001` or `optimizer=adam,lr=0.1`.

    It is the run's name in TensorBoard's legends, so each key is its last part (`optimizer.lr` ->
    `lr`) unless two keys of the job share it, and a float is written to 6 significant digits (an
    Optuna trial's lr has 16-19). Hydra's override_dirname is the raw command line (`data.path=../x`
    holds `/` and `..`), so the name is one safe path component: only letters, digits and `._=,+-`,
    at most ~100 characters. A job that changes nothing is named by its number.
    """
    pairs = [item.split("=", 1) for item in _ITEM.split(str(overrides or "")) if "=" in item]
    last = [key.rsplit(".", 1)[-1] for key, _ in pairs]
    shown = [f"{short if last.count(short) == 1 else key}={short_value(value)}"
             for (key, value), short in zip(pairs, last)]
    text = re.sub(r"[^A-Za-z0-9._=,+-]+", "_", ",".join(shown))
    text = re.sub(r"_+", "_", re.sub(r"\.{2,}", "_", text)).strip("._")[:96]
    return text or str(num)


_ITEM = re.compile(r",(?=[\w.+~/-]+=)")  # override_dirname's separators: a comma before the next key=


def short_value(value: str) -> str:
    """A float written in an override to 6 significant digits; anything else as it was written."""
    if re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][+-]?\d+)", value):
        return f"{float(value):.6g}"
    return value


def claim_job_dir(sweep: Any, num: Any, overrides: Any) -> str:
    """The job's folder in the sweep, claimed with os.mkdir: `job_dir_name`, or, where an earlier job
    of the sweep changed the same (a repeated value, an Optuna trial drawn twice), that name and
    `-<job number>`; so folders stay unique while names stay short."""
    name = job_dir_name(num, overrides)
    try:
        (Path(str(sweep)) / name).mkdir(parents=True)
    except FileExistsError:
        name = f"{name[:90]}-{num}"
    return name


def claim_sweep_dir(root: Any, name: Any) -> str:
    """A new sweep's folder, `<root>/<name>/sweep-<HHMM>` (then `-2`, `-3`, ... where that exists: the
    same minute, or another day). Short, as it starts every job's name in TensorBoard; compare.py
    shows when each run ended. Nothing is created here (`--cfg hydra` resolves it too); the launcher
    creates it a moment later, and each job claims its own folder in it with os.mkdir."""
    base = Path(str(root)) / str(name)
    stamp = time.strftime("%H%M")
    for k in itertools.count(1):
        path = base / (f"sweep-{stamp}" if k == 1 else f"sweep-{stamp}-{k}")
        if not path.exists():
            return str(path)
    raise AssertionError("unreachable")


def register_launcher() -> None:
    """hydra/launcher=joblib as hydra_plugins.gradlab.joblib_launcher.JoblibLauncher: hydra-joblib-launcher's
    config with gradlab's subclass as its target, stored under the plugin's own name. After Hydra's scan of
    its plugins (done here, once per process: Hydra reuses it), which stores the plugin's own entry."""
    from dataclasses import dataclass

    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins
    from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf

    Plugins.instance()

    @dataclass
    class StoppableJobLibLauncherConf(JobLibLauncherConf):
        _target_: str = "hydra_plugins.gradlab.joblib_launcher.JoblibLauncher"

    ConfigStore.instance().store(group="hydra/launcher", name="joblib", node=StoppableJobLibLauncherConf,
                                 provider="gradlab")


def register_resolvers() -> None:
    """The sweep and job folders of conf/train.yaml (hydra.sweep.dir and .subdir).

    Cached (use_cache): Hydra resolves the sweep folder in the launcher and again in every job, and
    copies the first answer into each job's config, so a sweep claims one folder, a job one."""
    if not OmegaConf.has_resolver("gradlab_sweep_dir"):
        OmegaConf.register_new_resolver("gradlab_sweep_dir", claim_sweep_dir, use_cache=True)
    if not OmegaConf.has_resolver("gradlab_job_dir"):
        OmegaConf.register_new_resolver("gradlab_job_dir", claim_job_dir, use_cache=True)


# -- sweep jobs in worker processes, stopped (gradlab.run.signals, hydra_plugins.gradlab) --


def job_not_started() -> float:
    """A sweep job that a worker reached after the sweep was stopped (gradlab.run.signals): not run, its
    empty folder removed; nan is its objective."""
    folder = _drop_empty_job_folder()
    print(f"gradlab: sweep job {folder.name} not started: the sweep was stopped", file=sys.stderr, flush=True)
    return float("nan")


def _drop_empty_job_folder() -> Path:
    """The sweep job's folder (from the working directory, as runs are shown), removed if the job left it
    empty, as Hydra made it: nothing to continue."""
    from hydra.core.hydra_config import HydraConfig

    folder = Path(os.path.relpath(HydraConfig.get().runtime.output_dir))
    with contextlib.suppress(OSError):
        folder.rmdir()  # only if empty
    return folder


def record_stopped_job() -> None:
    """A sweep job stopped outside training, in its result.json for the sweep's table: with its continue
    command (also printed) if it has a checkpoint (stopped in its test stage), else as not trained."""
    from hydra.core.hydra_config import HydraConfig

    from gradlab.run import resume, rundirs

    folder = _drop_empty_job_folder()
    if not folder.is_dir():
        return  # it was empty: removed
    job = {"overrides": " ".join(HydraConfig.get().overrides.task), "job_num": HydraConfig.get().job.num}
    if not (folder / "checkpoints" / "last.ckpt").is_file():
        rundirs.write_result(folder, {"status": "not trained", **job})
        return
    command = resume.continue_command(folder)
    print(f"gradlab: its checkpoint is kept. Continue with:\n  {command}", flush=True)
    rundirs.write_result(folder, {"status": "interrupted", "continue_with": command, **job})


class SweepSummary(Callback):
    """A Hydra callback: at the end of a sweep (-m), a table of its jobs and the best one by the
    sweep's objective (val/loss, lowest first), printed within 80 columns and written as
    sweep_summary.csv.

    The best is chosen among the jobs that converged (train loss within CONVERGED of the model's
    best fit on its training split, where one is known): a job still on its way can score a lower
    val/loss on a small validation split by chance (README, "Sweeps"), and naming it would be the
    wrong answer. Such a job is named in a note instead.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        if not sys.stderr.isatty():
            # Optuna colours its log lines whatever the stream (colorlog without a stream); piped to a
            # file they would be escape codes. NO_COLOR is the convention colorlog honours.
            os.environ.setdefault("NO_COLOR", "1")

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep = Path(str(config.hydra.sweep.dir))
        rows = _rows(sweep)
        if not rows:
            _continue_commands(rows)
            return
        minimize = OmegaConf.select(config, "hydra.sweeper.direction", default="minimize") != "maximize"
        best, fastest = _verdict(rows, minimize)
        columns = ["status", "train_loss", "optimum", "val_loss"]
        cells = [[r["status"], _formatted(r.get("train_loss")), _formatted(r.get("best_fit_loss")),
                  _formatted(r.get("val_loss"))] for r in rows]
        widths = [max(len(c), *(len(t[i]) for t in cells)) for i, c in enumerate(columns)]
        job_width = max(3, min(max(len(r["shown"]) for r in rows), 76 - sum(w + 2 for w in widths) - 1))
        lines = ["  ".join([_cut(job, job_width).ljust(job_width), *(v.ljust(w) for v, w in zip(values, widths))])
                 for job, values in [("job", columns), *((r["shown"], t) for r, t in zip(rows, cells))]]
        print(f"gradlab: sweep {sweep}")
        print("\n".join("  " + line.rstrip() for line in lines))
        print("  (optimum: the best fit's train loss; converged: train loss within 1% of it)")
        from gradlab.run import signals

        if signals.received is not None:
            pass  # stopped: which job is best is not known yet; what to continue is (_continue_commands)
        elif best is not None:
            print(f"gradlab: best by val/loss among converged jobs:\n  {_cut(best['shown'], 76)}: "
                  f"val/loss {_formatted(best['val_loss'])}, train loss {_formatted(best.get('train_loss'))}")
        else:
            print("gradlab: no job converged (train loss within 1% of the optimum): train longer "
                  "(trainer.max_epochs) before comparing val/loss")
        if fastest is not None:
            lower = _formatted(fastest["val_loss"])
            print(f"gradlab: note: {_cut(fastest['shown'], 30)} has a lower val/loss ({lower})\n  but has not "
                  "converged: on a small validation split that is chance\n  (README, \"Sweeps\")")
        from gradlab.run.files import atomic_file  # here: a script imports this module before any check

        out = sweep / "sweep_summary.csv"
        with atomic_file(out, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["job", "overrides", *columns, "converged", "best"])
            for r, t in zip(rows, cells):
                writer.writerow([r["job"], _six_digits(r.get("overrides", "")), *t,
                                 {True: "yes", False: "no", None: ""}[_converged(r)], "yes" if r is best else ""])
        print(f"gradlab: summary written to {out}")
        _continue_commands(rows)


def _continue_commands(rows: list[dict]) -> None:
    """After a sweep whose workers were stopped (gradlab.run.signals): each stopped job's own command."""
    from gradlab.run import signals
    from gradlab.show.report import printable

    if signals.received is None:
        return
    stopped = [r for r in rows if r["status"] == "interrupted" and isinstance(r.get("continue_with"), str)]
    print(f"gradlab: the sweep was stopped by {signal.Signals(signals.received).name}; "
          f"{len(stopped)} job(s) stopped with a checkpoint" + (". Continue each with:" if stopped else "."))
    for r in stopped:
        print(f"  {printable(r['continue_with'])}")
    print("  Jobs that had not trained were not run: start them again with -m.")


CONVERGED = 0.01  # a train loss within 1% of the best fit's counts as converged


def _rows(sweep: Path) -> list[dict]:
    """Each job's result.json, with its folder name as `job`, in the order the jobs ran."""
    from gradlab.run.rundirs import RESULT

    rows = []
    for path in sweep.glob(f"*/{RESULT}"):
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        rows.append({**result, "job": path.parent.name, "status": str(result.get("status", ""))})
    rows = sorted(rows, key=lambda r: (r.get("job_num") if isinstance(r.get("job_num"), int) else 1 << 30,
                                       r["job"]))
    for r, shown in zip(rows, _what_differs([r["job"] for r in rows])):
        r["shown"] = shown
    return rows


def _what_differs(names: list[str]) -> list[str]:
    """Each job folder's name without the settings every job shares (`data=csv,lr=0.1,seed=1` and
    `data=csv,lr=0.1,seed=2` show as `seed=1` and `seed=2`): the table's column is narrow, and the
    shared settings would fill it. A single job keeps its whole name."""
    split = [re.split(r",(?=[^,=\[\]]+=)", name) for name in names]  # at the commas before a key
    shared = set.intersection(*map(set, split)) if len(names) > 1 else set()
    return [",".join(p for p in parts if p not in shared) or name for parts, name in zip(split, names)]


def _converged(row: dict) -> bool | None:
    """Whether the job's final train loss is within CONVERGED of its best fit's (None: no best fit known)."""
    loss, best = row.get("train_loss"), row.get("best_fit_loss")
    if not (_finite(loss) and _finite(best)):
        return None
    return loss - best <= CONVERGED * abs(best) + 1e-6


def _verdict(rows: list[dict], minimize: bool) -> tuple[dict | None, dict | None]:
    """The best finished job by val/loss among those that converged (or whose convergence is unknown),
    and the job that would have won had convergence been ignored, when that is another one."""
    finished = [r for r in rows if r["status"] == "finished" and _finite(r.get("val_loss"))]
    pick = min if minimize else max
    best = pick((r for r in finished if _converged(r) is not False), key=lambda r: r["val_loss"], default=None)
    anyway = pick(finished, key=lambda r: r["val_loss"], default=None)
    return best, (anyway if anyway is not best and minimize else None)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


def _six_digits(overrides: str) -> str:
    """Overrides with each float value to 6 significant digits."""
    return " ".join(f"{k}={short_value(v)}" if "=" in o else o
                    for o in str(overrides).split() for k, _, v in [o.partition("=")])


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _formatted(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, (int, float)) else str(value if value is not None else "")
