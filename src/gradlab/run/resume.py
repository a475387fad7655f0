"""A continued run only moves forward: `resume=true` (or `ckpt_path=` a file in a run's checkpoints/)
continues that run from its newest state and its own saved config.yaml, plus what the new command
line changes.

Only the settings in MAY_CHANGE may differ from the run's config.yaml (how long to train, the
learning rate, the logging and checkpoint schedules, where and how to show it); anything else
(data, model, another optimizer) would continue weights and optimiser state in a run that no
longer describes them, so it is refused with the difference shown, and so are an older checkpoint
of the run and data whose rows changed. The saved config is data: it is checked like a command line
before anything is built from it. Each resume's command line is appended to the run's resumes.yaml.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import lightning.pytorch as L
from omegaconf import DictConfig, OmegaConf

from gradlab.checks.config import ConfigError, check
from gradlab.run import rundirs

# keys (fnmatch patterns on the dotted path) a resume may change; everything else must match:
# where the run is and what to show, then how it goes on training
WHERE_AND_WHAT_TO_SHOW = ("resume", "ckpt_path", "print_config", "predict_x", "root_dir", "name", "threads")
HOW_IT_GOES_ON = (
    "trainer.max_epochs", "trainer.max_steps", "trainer.min_epochs", "trainer.log_every_n_steps",
    "trainer.check_val_every_n_epoch", "trainer.enable_progress_bar", "trainer.enable_model_summary",
    "trainer.accelerator", "trainer.devices", "trainer.strategy", "trainer.num_nodes", "ddp_timeout_s",
    "optimizer.lr",
    "callbacks.*.every_n_epochs", "callbacks.plots.*", "callbacks.histograms.*",
)
MAY_CHANGE = WHERE_AND_WHAT_TO_SHOW + HOW_IT_GOES_ON


def run_to_resume(cfg: DictConfig) -> Path | None:
    """The run directory this command line continues (None: a new run), with its checkpoint."""
    ckpt = cfg.get("ckpt_path") or ("last" if cfg.get("resume") else None)
    if ckpt is None:
        return None
    if ckpt == "last":
        return rundirs.run_dir_of(resume_checkpoint(cfg.root_dir, cfg.name))
    return rundirs.run_dir_of(Path(ckpt))


def resume_checkpoint(root: str | Path, name: str) -> Path:
    """checkpoints/last.ckpt of the newest run of `name`; FileNotFoundError if it has none."""
    versions = rundirs.versions(Path(root) / name)
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
    """The config a resume runs with: its run's config.yaml, with the keys this command line changes
    merged onto it. Those keys must match MAY_CHANGE (ConfigError showing the difference otherwise).
    A new run, or a run without a saved config, keeps `cfg`."""
    run_dir = run_to_resume(cfg)
    saved_file = run_dir / "config.yaml" if run_dir is not None else None
    if saved_file is None or not saved_file.is_file():
        return cfg
    saved = OmegaConf.create(_current_targets(OmegaConf.to_container(OmegaConf.load(saved_file))))
    changed = {key: value for key, value in _changes(saved, cfg).items() if _said(key, _given_keys())}
    refused = [key for key in changed if not any(fnmatch.fnmatchcase(key, p) for p in MAY_CHANGE)]
    if refused:
        diff = "; ".join(f"{key}: {_shown(_leaf(saved, key))} in the run, {_shown(changed[key])} now"
                         for key in refused)
        raise ConfigError(
            f"resume: this command line changes what the run {run_dir} was trained with ({diff}; from "
            f"{saved_file}). A resume may change only {', '.join(HOW_IT_GOES_ON)}. Drop those "
            "overrides (the run's own config.yaml is used), or start a new run without resume=true / "
            "ckpt_path. Nothing was run or written."
        )
    if "optimizer.lr" in changed and saved.get("scheduler"):
        raise ConfigError(
            f"resume: optimizer.lr={_shown(changed['optimizer.lr'])} on a run with a learning-rate schedule "
            f"(scheduler: {saved.scheduler._target_}): the schedule decides the rate from its own state in "
            "the checkpoint, so a new starting rate is refused. Drop optimizer.lr to continue the schedule, "
            "or start a new run from this one's weights (ckpt_path=...). Nothing was run or written."
        )
    for key, value in changed.items():
        if value is ABSENT:  # removed on the command line, e.g. ~callbacks.plots: and any group it empties
            parent, _, last = key.rpartition(".")
            while True:
                node = OmegaConf.select(saved, parent) if parent else saved
                node.pop(last)
                if not parent or len(node) > 0:
                    break
                parent, _, last = parent.rpartition(".")
        else:
            OmegaConf.update(saved, key, value, force_add=True)
    # a run folder is data: what it says is checked like a command line, every class it names
    # included, before anything is built from it
    check(saved, source=str(saved_file))
    return saved


def record(run_dir: Path, ckpt_path: Path | None, is_new: bool, cfg: DictConfig) -> None:
    """Appends this resume's command line to the run's resumes.yaml, and saves the config it runs
    with as the run's config.yaml, so the next resume continues from it (each file complete or not
    at all)."""
    from lightning.pytorch.utilities import rank_zero_only

    if ckpt_path is None or is_new or rank_zero_only.rank != 0:
        return
    from hydra.core.hydra_config import HydraConfig

    from gradlab.run.files import write_text

    path = Path(run_dir) / "resumes.yaml"
    earlier = OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else []
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    write_text(path, OmegaConf.to_yaml(OmegaConf.create([*(earlier or []), overrides])))
    if (Path(run_dir) / "config.yaml").is_file():
        write_text(Path(run_dir) / "config.yaml", OmegaConf.to_yaml(cfg))


def continuing(model: L.LightningModule, ckpt_path: Path, run_dir: Path, is_new: bool) -> int:
    """Puts the checkpoint's weights into `model` now, so the predictions "before training" are the
    restored model's (Lightning would restore them only inside fit), says what this run continues,
    and returns the epochs the checkpoint had completed."""
    from gradlab.checks.checkpoint import load_checkpoint
    from gradlab.show.report import say

    ckpt = load_checkpoint(ckpt_path)
    model.load_state_dict(ckpt["state_dict"])
    done = epochs_done(ckpt)
    if is_new:
        say(f"gradlab: a new run from the weights of epoch {done} of\n  {ckpt_path}")
    else:
        inside = Path(ckpt_path).parent.parent == Path(run_dir)
        say(f"gradlab: continuing {run_dir} from epoch {done}\n  (checkpoint "
            f"{Path(ckpt_path).relative_to(run_dir) if inside else ckpt_path})")  # each line within 80 columns
    return done


def epochs_done(ckpt: dict) -> int:
    """The epochs a checkpoint had completed: its fit loop's count (a checkpoint saved at the end of an
    epoch by a callback records that epoch's index as `epoch`, one less), else `epoch`."""
    completed = (ckpt.get("loops") or {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
    return int(completed.get("completed", ckpt.get("epoch", 0)))


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
    return " ".join(shlex.quote(a) for a in ["python", "scripts/train.py", *kept, how])


def _hydra_value(text: str) -> str:
    """`text` as one value of a Hydra override: quoted when it holds what Hydra's grammar reads
    (a sweep job's folder is named like `lr=0.1,max_epochs=20`)."""
    if re.fullmatch(r"[\w./-]+", text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'  # in a shell's '...' it reads well


def check_moves_forward(path: Path, saved: dict, run_dir: Path) -> None:
    """ConfigError when `path` is older than the run's newest state (its last.ckpt): continuing it
    would write over the later steps, in the checkpoints and in TensorBoard."""
    last = Path(run_dir) / "checkpoints" / "last.ckpt"
    if not last.is_file() or last.resolve() == Path(path).resolve():
        return
    from gradlab.checks.checkpoint import load_checkpoint

    newest, older = load_checkpoint(last).get("global_step", 0), saved.get("global_step", 0)
    if older < newest:
        raise ConfigError(
            f"ckpt_path={path} is at step {older}, older than its run's newest state ({last}, step {newest}); "
            "continuing it would overwrite the run's later steps. Continue the run from its newest state "
            f"with resume=true (name={Path(run_dir).parent.name}), or start a new run from these weights: "
            f"copy the file out of the run (cp {path} from_step_{older}.ckpt) and give ckpt_path=from_step_"
            f"{older}.ckpt. Nothing was run or written."
        )


def check_same_data(path: Path, saved: dict, dm) -> None:
    """DataError when the data a resume would train on are not the rows the run was trained on (a
    CSV edited since, another seed): the new steps would continue the old ones on other data."""
    from gradlab.checks.checkpoint import data_states
    from gradlab.lessons.csvfile import DataError

    for name, state in data_states(saved).items():
        recorded = state.get("fingerprints")
        if recorded is None:
            print(f"gradlab: note: {path} records the test split's fingerprint only (written before every "
                  "split's was), so whether the training rows are still the run's was not checked")
            recorded = {"test": state.get("test_fingerprint")}
        changed = [s for s, value in recorded.items() if value is not None and dm.fingerprint(s) != value]
        if changed:
            prints = ", ".join(f"{recorded[s]} then, {dm.fingerprint(s)} now" for s in changed)
            raise DataError(
                f"{path}: the {', '.join(changed)} split(s) of {name} are no longer the rows the run was "
                f"trained on (fingerprints {prints}): its data have changed since. Restore the data, or start "
                "a new run on the new data (without resume=true / ckpt_path). Nothing was run or written."
            )


def optimizer_state_fits(saved: dict, model: L.LightningModule) -> bool:
    """Whether the checkpoint's optimiser state is the kind the model's optimiser takes (the same
    settings in each parameter group: SGD's momentum, Adam's betas, ...)."""
    states = saved.get("optimizer_states") or []
    if not states:
        return False
    ours = set(model.configure_optimizers().param_groups[0]) - {"params"}
    return all(set(group) - {"params", "initial_lr"} == ours
               for state in states for group in state["param_groups"])


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
    if cfg.get("scheduler"):  # the schedule's rate, restored with its state (a new lr is refused above)
        return None
    return None if is_new or not (cfg.get("ckpt_path") or cfg.get("resume")) else cfg.optimizer.get("lr")


ABSENT = object()  # a key one config has and the other has not


def _given_keys() -> list[str] | None:
    """The keys (and groups) this command line sets, e.g. optimizer.lr, trainer (for trainer=ddp_cpu),
    callbacks.plots (for ~callbacks.plots); None where no command line is known (a config composed
    in Python): then every difference counts as said."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return [o.split("=", 1)[0].lstrip("+~") for o in HydraConfig.get().overrides.task]


def _said(key: str, given: list[str] | None) -> bool:
    # a key the command line did not name is one of its defaults: the run's own value stands
    return given is None or any(key == g or key.startswith(g + ".") for g in given)


def _leaves(node, prefix: str = "") -> dict:
    """{dotted key: value} of every leaf (an empty mapping is a leaf)."""
    out = {}
    for k, v in node.items():
        if isinstance(v, dict) and v:
            out |= _leaves(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def _changes(saved: DictConfig, cfg: DictConfig) -> dict:
    """{key: the command line's value, or ABSENT} for every leaf where the two configs differ."""
    ours = _leaves(OmegaConf.to_container(cfg, resolve=True))
    theirs = _leaves(OmegaConf.to_container(saved, resolve=True))
    return {key: ours.get(key, ABSENT) for key in sorted(ours.keys() | theirs.keys())
            if ours.get(key, ABSENT) != theirs.get(key, ABSENT)}


def _leaf(cfg: DictConfig, key: str):
    return _leaves(OmegaConf.to_container(cfg, resolve=True)).get(key, ABSENT)


def _shown(value) -> str:
    return "not set" if value is ABSENT else repr(value)


def _current_targets(node):
    """A saved config with each class path as it is named now (configs saved before the layout change
    name gradlab.models.LinearRegressor and the like)."""
    from gradlab.run.checkpoints import moved

    if isinstance(node, dict):
        return {k: moved(v) if k == "_target_" else _current_targets(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_current_targets(v) for v in node]
    return node
