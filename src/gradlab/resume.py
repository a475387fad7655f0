"""Resume means one thing: `resume=true` (or `ckpt_path=` a file in a run's checkpoints/) continues
that run from its own saved config.yaml plus what the new command line changes.

Only the settings in MAY_CHANGE may differ from the run's config.yaml (how long to train, the
learning rate, the logging and checkpoint schedules, where and how to show it); anything else
(data, model, another optimizer) would continue weights and optimiser state in a run that no
longer describes them, so it is refused with the difference shown. Each resume's command line is
appended to the run's resumes.yaml.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import lightning.pytorch as L
from omegaconf import DictConfig, OmegaConf

from gradlab import runs
from gradlab.config import ConfigError

# keys (fnmatch patterns on the dotted path) a resume may change; everything else must match
MAY_CHANGE = (
    "resume", "ckpt_path", "print_config", "predict_x", "root_dir", "name",  # where it is, what to show
    "trainer.max_epochs", "trainer.max_steps", "trainer.min_epochs", "trainer.log_every_n_steps",
    "trainer.check_val_every_n_epoch", "trainer.enable_progress_bar", "trainer.enable_model_summary",
    "trainer.accelerator", "trainer.devices", "trainer.strategy", "trainer.num_nodes",
    "optimizer.lr",
    "callbacks.*.every_n_epochs", "callbacks.plots.*", "callbacks.histograms.*",
)


def run_to_resume(cfg: DictConfig) -> Path | None:
    """The run directory this command line continues (None: a new run), with its checkpoint."""
    ckpt = cfg.get("ckpt_path") or ("last" if cfg.get("resume") else None)
    if ckpt is None:
        return None
    if ckpt == "last":
        return runs.run_dir_of(resume_checkpoint(cfg.root_dir, cfg.name))
    return runs.run_dir_of(Path(ckpt))


def resume_checkpoint(root: str | Path, name: str) -> Path:
    """checkpoints/last.ckpt of the newest run of `name`; FileNotFoundError if it has none."""
    versions = runs.versions(Path(root) / name)
    if not versions:
        raise FileNotFoundError(
            f"resume: no run of {name!r} with a checkpoint under {root}/{name}/; "
            "start one first (without resume=true), or give ckpt_path=PATH"
        )
    newest = versions[-1][1]
    last = newest / "checkpoints" / "last.ckpt"
    if last.is_file():
        return last
    others = [str(d / "checkpoints" / "last.ckpt") for _, d in reversed(versions)
              if (d / "checkpoints" / "last.ckpt").is_file()]
    listing = ("; runs of it that have one: " + ", ".join(f"ckpt_path={p}" for p in others[:5])
               if others else "; no run of it has one")
    raise FileNotFoundError(
        f"resume: the newest run of {name!r}, {newest}, has no checkpoints/last.ckpt (stopped before its "
        f"first checkpoint, or still running), and resume=true continues only the newest run{listing}. "
        "Give one as ckpt_path=..., or start a new run without resume=true"
    )


def effective_config(cfg: DictConfig) -> DictConfig:
    """The config a resume runs with: its run's config.yaml, plus the settings this command line
    changes, which must be among MAY_CHANGE (ConfigError showing the difference otherwise). A new
    run, or a run without a saved config, keeps `cfg`."""
    run_dir = run_to_resume(cfg)
    saved_file = run_dir / "config.yaml" if run_dir is not None else None
    if saved_file is None or not saved_file.is_file():
        return cfg
    saved = OmegaConf.load(saved_file)
    given = _given_keys()
    merged = OmegaConf.to_container(saved, resolve=False)
    problems = []
    for key in sorted(set(_leaves(saved)) | set(_leaves(cfg))):
        theirs, ours = _select(saved, key), _select(cfg, key)
        if theirs == ours:
            continue
        said = given is None or any(key == g or key.startswith(g + ".") for g in given)
        if not said:
            continue  # a default of this command line, not the user's word: the run's own value stands
        if any(fnmatch.fnmatchcase(key, pattern) for pattern in MAY_CHANGE):
            _assign(merged, key, ours)
        else:
            problems.append(f"{key}: {_shown(theirs)} in the run, {_shown(ours)} now")
    if problems:
        raise ConfigError(
            f"resume: this command line changes what the run {run_dir} was trained with "
            f"({'; '.join(problems)}; from {saved_file}). A resume may change only "
            f"{', '.join(MAY_CHANGE[6:])}. Drop those overrides (the run's own config.yaml is used), "
            "or start a new run without resume=true / ckpt_path. Nothing was run or written."
        )
    return OmegaConf.create(merged)


def record(run_dir: Path, ckpt_path: Path | None, is_new: bool, cfg: DictConfig) -> None:
    """Appends this resume's command line to the run's resumes.yaml, and saves the config it runs
    with as the run's config.yaml, so the next resume continues from it (each file complete or not
    at all)."""
    from lightning.pytorch.utilities import rank_zero_only

    if ckpt_path is None or is_new or rank_zero_only.rank != 0:
        return
    from hydra.core.hydra_config import HydraConfig

    from gradlab.safety import write_text

    path = Path(run_dir) / "resumes.yaml"
    earlier = OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else []
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    write_text(path, OmegaConf.to_yaml(OmegaConf.create([*(earlier or []), overrides])))
    if (Path(run_dir) / "config.yaml").is_file():
        write_text(Path(run_dir) / "config.yaml", OmegaConf.to_yaml(cfg))


def continue_command(run_dir: Path) -> str:
    """The command that continues this run, shell-quoted so that it works when pasted. A sweep job
    is continued by its checkpoint (resume=true looks for version_<N> runs, not sweep jobs)."""
    import shlex

    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    kept = [o for o in overrides if not o.startswith(("resume=", "ckpt_path="))]
    in_sweep = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    last = str(Path(run_dir) / "checkpoints" / "last.ckpt")
    how = f"ckpt_path={_hydra_value(last)}" if in_sweep else "resume=true"
    command = " ".join(shlex.quote(a) for a in ["python", "scripts/train.py", *kept, how])
    if in_sweep:
        command += "\n  (this sweep job only: the sweep stopped here, so start the jobs after it again with -m)"
    return command


def _hydra_value(text: str) -> str:
    """`text` as one value of a Hydra override: quoted when it holds what Hydra's grammar reads
    (a sweep job's folder is named like `0_optimizer.lr=0.1,trainer.max_epochs=20`)."""
    if re.fullmatch(r"[\w./-]+", text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class ApplyResumedLearningRate(L.Callback):
    """Lightning restores the optimiser's state, its learning rate included, from the checkpoint;
    a resume that sets optimizer.lr means that rate from now on, so it is put back after the restore."""

    def __init__(self, lr: float | None) -> None:
        self.lr = lr

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.lr is None:
            return
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = self.lr


def resumed_lr(cfg: DictConfig, is_new: bool) -> float | None:
    """optimizer.lr where this run continues a checkpoint (None for a new run)."""
    return None if is_new or not (cfg.get("ckpt_path") or cfg.get("resume")) else cfg.optimizer.get("lr")


def _given_keys() -> list[str] | None:
    """The keys (and groups) this command line sets; None where no command line is known."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task))
    return [o.key_or_group.lstrip("+~") for o in parsed]


def _shown(value) -> str:
    return "not set" if value == "<absent>" else repr(value)


def _leaves(cfg) -> list[str]:
    out = []

    def walk(node, prefix):
        for k, v in node.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict) and v:
                walk(v, f"{key}.")
            else:
                out.append(key)

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out


def _select(cfg, key: str):
    value = OmegaConf.select(cfg, key, default="<absent>")
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _assign(tree: dict, key: str, value) -> None:
    """Sets a dotted key; "<absent>" removes it (e.g. ~callbacks.plots), and any folder it empties."""
    *parents, last = key.split(".")
    path = [tree]
    for p in parents:
        path.append(path[-1].setdefault(p, {}))
    if value != "<absent>":
        path[-1][last] = value
        return
    path[-1].pop(last, None)
    for node, name in zip(reversed(path[:-1]), reversed(parents)):
        if node.get(name) == {}:
            node.pop(name)
