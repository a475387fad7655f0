"""One training run, top to bottom: check, seed, data, run dir, model, logger, trainer, fit,
test, report. `scripts/train.py` is a thin Hydra wrapper around `train(cfg)`."""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import lightning.pytorch as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from gradlab import resume, runs, safety
from gradlab.callbacks import Diverged, DivergenceGuard
from gradlab.checkpoints import RecordModelClass, check_fits, load_checkpoint
from gradlab.config import check
from gradlab.data import DataError
from gradlab.interrupt import GracefulStop

# Full-batch runs have one batch per epoch, fewer than log_every_n_steps; logging is by step
# across epochs here, so this warning does not apply.
warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
# Data is served as in-memory tensors, not through DataLoader workers.
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
# A new run's directory is always new; a resumed run continues in its own checkpoints/ on purpose.
warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*")


def _no_ads(record: logging.LogRecord) -> bool:
    return "💡 Tip" not in str(record.msg)  # Lightning's advertisements for its cloud products


for _name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(_no_ads)
# `lightning` prints through its own handler; Hydra's root handler would print every line twice
logging.getLogger("lightning").propagate = False


@dataclass
class RunResult:
    run_dir: Path
    status: Literal["finished", "interrupted"]
    metrics: dict[str, float] = field(default_factory=dict)
    signum: int | None = None


def train(cfg: DictConfig, datamodule: L.LightningDataModule | None = None) -> RunResult:
    """Trains, tests and reports one run described by a composed gradlab config.

    `datamodule`: an already built one to use instead of `cfg.data` (scripts/benchmark.py shares
    one between gradlab and its plain loop, so a large dataset is held in memory once).
    """
    cfg = resume.effective_config(cfg)  # a resume: its run's own config.yaml plus what this command line changes
    check(cfg)  # the CLI checked already; this is for callers that compose a config themselves
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    started = time.perf_counter()
    say = rank_zero_only(print)

    # plain lists: checkpoints stay weights_only-safe
    dm = datamodule if datamodule is not None else instantiate(cfg.data, _convert_="all")
    dm.setup("fit")  # bad data fails here, before any run directory exists
    x_query = _query(cfg.predict_x, dm)  # so does a predict_x row of the wrong length

    model = instantiate(cfg.model, n_features=dm.n_features, optimizer=instantiate(cfg.optimizer))
    ckpt_path, run_dir, is_new = _resolve_run(cfg, model)  # a checkpoint that does not fit fails here
    safety.claim_run(run_dir, ckpt_path, is_new)  # a hostile checkpoint fails here; then this process owns the run
    resume.record(run_dir, ckpt_path, is_new, cfg)  # resumes.yaml: each resume's command line
    if is_new and rank_zero_only.rank == 0:
        _save_config(cfg, run_dir)
    if cfg.print_config and rank_zero_only.rank == 0:
        _print_tree(cfg)
    say(f"gradlab: run directory {run_dir}")

    logger_cfg = cfg.get("logger")
    logger = instantiate(logger_cfg, save_dir=str(run_dir), name="", version="",
                         **safety.logger_resume_kwargs(ckpt_path)) if logger_cfg else False
    stopper = GracefulStop()
    # what every run needs, whatever the config: clean stops, finite checkpoints, restorable files
    always = [stopper, DivergenceGuard(), RecordModelClass(), safety.FlushLogsAtCheckpoint(),
              resume.ApplyResumedLearningRate(resume.resumed_lr(cfg, is_new))]
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()] + always
    progress = cfg.trainer.enable_progress_bar
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        logger=logger,
        callbacks=callbacks,
        default_root_dir=str(run_dir),
        plugins=[safety.AtomicCheckpointIO(run_dir / "checkpoints")],  # complete checkpoints or none
        enable_progress_bar=_isatty() if progress is None else progress,
    )

    say(_predictions("before training", model, x_query, cfg.predict_x))

    os.environ["GRADLAB_RUN_DIR"] = str(run_dir)  # DDP workers re-run this script: same run dir
    try:
        trainer.fit(model, datamodule=dm, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True)
        if stopper.signum is None and not trainer.fast_dev_run and trainer.current_epoch % (
            trainer.check_val_every_n_epoch or 1
        ):
            # Validation runs every check_val_every_n_epoch (200 by default: one costs ~20 training
            # epochs of the journal's model); the last epoch is always validated too, so val/* and
            # a sweep's score describe the final weights, however short the run.
            trainer.validate(model, datamodule=dm, verbose=False)
    except Diverged as e:
        _mark_failed(trainer, cfg, str(e))
        e.run_dir = run_dir  # cli.run names the checkpoints kept from before it diverged
        raise
    finally:
        os.environ.pop("GRADLAB_RUN_DIR", None)

    if not trainer.fast_dev_run:
        # the end state, whatever the periodic checkpoint's schedule; resume continues from it
        trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    if stopper.signum is not None:
        say(f"gradlab: interrupted at epoch {trainer.current_epoch}; checkpoint saved. Continue with:\n"
            f"  {resume.continue_command(run_dir)}")
        _log_hparams(trainer, cfg, {"hp/val_loss": _metric(trainer, "val/loss")})
        return RunResult(run_dir, "interrupted", _metrics(trainer), stopper.signum)

    fit_metrics = {**_metrics(trainer), "train/final_loss": _train_loss(model, dm)}
    test_metrics = trainer.test(model, datamodule=dm, verbose=False, weights_only=True)[0]
    metrics = {**fit_metrics, **test_metrics}
    _log_hparams(trainer, cfg, {f"hp/{k.replace('/', '_')}": v for k, v in metrics.items()
                                if k.startswith(("val/", "test/")) or k == "train/final_loss"})

    say(_predictions("after training", model, x_query, cfg.predict_x))
    say(_report(model, dm, trainer, metrics, run_dir, time.perf_counter() - started))
    return RunResult(run_dir, "finished", metrics)


def _resolve_run(cfg: DictConfig, model: L.LightningModule) -> tuple[Path | None, Path, bool]:
    """(checkpoint to resume from, run directory, whether the directory is new)."""
    ckpt = cfg.ckpt_path or ("last" if cfg.resume else None)
    if ckpt == "last":
        last = resume.resume_checkpoint(cfg.root_dir, cfg.name)  # the newest run's, or it says which have one
        # a clear error for a corrupt file or one this model cannot take, before Lightning reads it
        check_fits(load_checkpoint(last), model, last)
        return last, runs.run_dir_of(last), False
    if ckpt is not None:
        path = Path(ckpt)
        check_fits(load_checkpoint(path), model, path)
        owner = runs.run_dir_of(path)
        if owner is not None:
            return path, owner, False
        return path, runs.new_run_dir(cfg.root_dir, cfg.name), True
    if (child := runs.ddp_child_run_dir()) is not None:
        return None, child, False
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        # a sweep job: Hydra gives each job its own folder under the sweep's folder
        return None, Path(HydraConfig.get().runtime.output_dir), True
    return None, runs.new_run_dir(cfg.root_dir, cfg.name), True


def _save_config(cfg: DictConfig, run_dir: Path) -> None:
    safety.write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg))
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    safety.write_text(run_dir / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(overrides)))


def _print_tree(cfg: DictConfig) -> None:
    """The composed config as a tree, one branch per group (print_config=false skips it)."""
    from rich import print as rich_print
    from rich.tree import Tree

    tree = Tree("config", guide_style="dim")
    for key, value in cfg.items():
        if OmegaConf.is_dict(value):
            tree.add(f"[bold]{key}[/bold]").add(OmegaConf.to_yaml(value, resolve=True).rstrip())
        else:
            tree.add(f"[bold]{key}[/bold]: {value}")
    rich_print(tree)


def _isatty() -> bool:
    import sys

    return sys.stdout.isatty()


def _inputs(predict_x) -> list:
    values = OmegaConf.to_object(predict_x) if OmegaConf.is_config(predict_x) else predict_x
    return values if isinstance(values, list) else [values]


def _query(predict_x, dm) -> torch.Tensor:
    """The raw inputs to predict for, one row each: a number is used for every feature."""
    rows = []
    for v in _inputs(predict_x):
        row = [float(x) for x in v] if isinstance(v, list) else [float(v)] * dm.n_features
        if len(row) != dm.n_features:
            raise DataError(f"predict_x row {v} has {len(row)} values; the data has {dm.n_features} features")
        rows.append(row)
    return dm.transform(torch.tensor(rows, dtype=torch.float32))  # (Q, F)


def _predictions(when: str, model, x: torch.Tensor, predict_x) -> str:
    with torch.no_grad():
        y = model(x.to(model.device)).cpu()[:, 0]
    shown = [f"{v:g}" if not isinstance(v, list) else str(v) for v in _inputs(predict_x)]
    return "\n".join(f"Prediction {when}: f({v}) = {float(p):.8g}" for v, p in zip(shown, y))


def _metrics(trainer: L.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def _train_loss(model, dm) -> float:
    """The training loss after the last update (the logged train/loss is measured before each)."""
    x, y = dm.splits["train"]
    with torch.no_grad():
        return model.criterion(model(x.to(model.device)), y.to(model.device)).item()


def _metric(trainer: L.Trainer, key: str) -> float:
    v = trainer.callback_metrics.get(key)
    return float(v) if v is not None else float("nan")


def _log_hparams(trainer: L.Trainer, cfg: DictConfig, metrics: dict[str, float]) -> None:
    """Fills TensorBoard's HPARAMS tab: the run's settings next to its real final metrics."""
    if not trainer.loggers or trainer.fast_dev_run:
        return
    params = _flatten(OmegaConf.to_container(cfg, resolve=True))
    for lg in trainer.loggers:
        lg.log_hyperparams(params, metrics)
        lg.finalize("success")


def _mark_failed(trainer: L.Trainer, cfg: DictConfig, message: str) -> None:
    """TensorBoard shows a diverged run as failed (a status text), not as a line of NaN."""
    for lg in trainer.loggers:
        experiment = getattr(lg, "experiment", None)
        if hasattr(experiment, "add_text"):
            experiment.add_text("run/status", f"FAILED: {message}", global_step=trainer.global_step)
        lg.log_hyperparams(_flatten(OmegaConf.to_container(cfg, resolve=True)), {"hp/diverged": 1.0})
        lg.finalize("failed")


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out


def _report(model, dm, trainer: L.Trainer, metrics: dict, run_dir: Path, seconds: float) -> str:
    """The end of a run: the learned coefficients next to the best fit's, the final loss, where it went."""
    best = model.best_fit(*dm.splits["train"])
    weight, bias = model.coefficients()
    lines = [f"Coefficients learned:       {_coefficients(weight, bias)}"]
    if best is not None:
        lines.append(f"Coefficients least squares: {_coefficients(best['weight'], best['bias'])}")
    optimum = f" (least squares: {_loss_text(best['loss'])})" if best is not None else ""
    lines.append(f"Final loss (train {model.loss_name}): {metrics['train/final_loss']:.8g}{optimum}")
    shown = ", ".join(f"{k} {metrics[k]:.6g}" for k in ("val/loss", "test/loss", "test/r2") if k in metrics)
    lines.append(f"gradlab: finished {trainer.current_epoch} epochs in {seconds:.1f} s; {shown}; "
                 f"run dir {run_dir} (tensorboard --logdir {run_dir.parent.parent})")
    return "\n".join(lines)


def _loss_text(loss: float) -> str:
    return "0" if abs(loss) < 1e-20 else f"{loss:.8g}"  # below 1e-20 it is float64 rounding of 0


def _coefficients(weight: torch.Tensor, bias: torch.Tensor | None) -> str:
    w = weight.detach().cpu().flatten().tolist()
    text = "w = " + (f"{w[0]:.8g}" if len(w) == 1 else "[" + ", ".join(f"{v:.6g}" for v in w) + "]")
    return text + (f", b = {float(bias.flatten()[0]):.8g}" if bias is not None else "")
