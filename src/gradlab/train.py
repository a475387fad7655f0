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
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from gradlab import logger, resume, runs, safety
from gradlab.callbacks import Diverged, DivergenceGuard, TrainingCurves
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


# `lightning` prints through its own handler; Hydra's root handler would print every line twice
logging.getLogger("lightning").propagate = False
# Lightning's INFO lines (GPU/TPU available, `max_epochs` reached, tips for its cloud products)
# say nothing a gradlab run does not say itself; its warnings still show
for _name in ("lightning.pytorch", "lightning.fabric"):
    logging.getLogger(_name).setLevel(logging.WARNING)


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
    dm = datamodule if datamodule is not None else instantiate(cfg.data, _convert_="all", **_data_needs(cfg))
    dm.setup("fit")  # bad data fails here, before any run directory exists
    x_query = _query(cfg.predict_x, dm)  # so does a predict_x row of the wrong length

    model = instantiate(cfg.model, n_features=dm.n_features, optimizer=instantiate(cfg.optimizer),
                        **_model_needs(cfg, dm))
    ckpt_path, run_dir, is_new = _resolve_run(cfg, model)  # a checkpoint that does not fit fails here
    safety.claim_run(run_dir, ckpt_path, is_new)  # a hostile checkpoint fails here; then this process owns the run
    resume.record(run_dir, ckpt_path, is_new, cfg)  # resumes.yaml: each resume's command line
    if is_new and rank_zero_only.rank == 0:
        _save_config(cfg, run_dir)
    if cfg.print_config and rank_zero_only.rank == 0:
        _print_tree(cfg)
    say(f"gradlab: run directory {run_dir}")

    logger_cfg = cfg.get("logger")
    board = instantiate(logger_cfg, save_dir=str(run_dir), name="", version="",
                        **safety.logger_resume_kwargs(ckpt_path)) if logger_cfg else False
    if isinstance(board, TensorBoardLogger):
        logger.write_start(board, _hparams(cfg))
    stopper = GracefulStop()
    # what every run needs, whatever the config: clean stops, finite checkpoints, restorable files
    always = [stopper, RecordModelClass(), safety.FlushLogsAtCheckpoint(),
              resume.ApplyResumedLearningRate(resume.resumed_lr(cfg, is_new))]
    # the divergence guard first: it sees each step's loss before any callback logs or draws it
    callbacks = [DivergenceGuard(), *(instantiate(c) for c in (cfg.get("callbacks") or {}).values()), *always]
    if not cfg.trainer.get("enable_progress_bar", True):  # Lightning refuses a progress callback then
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        logger=board,
        callbacks=callbacks,
        default_root_dir=str(run_dir),
        plugins=[safety.AtomicCheckpointIO(run_dir / "checkpoints")],  # complete checkpoints or none
    )
    say(_start(cfg, model, trainer))
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
        _summarize(trainer, cfg, f"FAILED: {e}", "", {})
        _result(run_dir, "diverged", {})
        e.run_dir = run_dir  # cli.run names the checkpoints kept from before it diverged
        raise
    finally:
        os.environ.pop("GRADLAB_RUN_DIR", None)

    if not trainer.fast_dev_run:
        # the end state, whatever the periodic checkpoint's schedule; resume continues from it
        trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    if stopper.signum is not None:
        message = (f"gradlab: interrupted at epoch {trainer.current_epoch}; checkpoint saved. Continue with:\n"
                   f"  {resume.continue_command(run_dir)}")
        say(message)
        _summarize(trainer, cfg, "INTERRUPTED", message, _metrics(trainer))
        _result(run_dir, "interrupted", _metrics(trainer))
        return RunResult(run_dir, "interrupted", _metrics(trainer), stopper.signum)

    fit_metrics = {**_metrics(trainer), "train/final_loss": _train_loss(model, dm)}
    # The test split is the final exam: its numbers go to the report, the TEXT summary and
    # result.json, not onto TensorBoard's curves, where a group of single end points named "test"
    # would sort first and be what TensorBoard opens on (eval.py logs them to <run>/eval).
    loggers, trainer.loggers = trainer.loggers, []
    test_metrics = trainer.test(model, datamodule=dm, verbose=False, weights_only=True)[0]
    trainer.loggers = loggers
    metrics = {**fit_metrics, **test_metrics}

    say(_predictions("after training", model, x_query, cfg.predict_x))
    report = _report(model, dm, trainer, metrics, run_dir, time.perf_counter() - started)
    say(report)
    _summarize(trainer, cfg, "FINISHED", report, fit_metrics)
    _result(run_dir, "finished", metrics)
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
        return None, _relative(Path(HydraConfig.get().runtime.output_dir)), True
    return None, runs.new_run_dir(cfg.root_dir, cfg.name), True


def _relative(path: Path) -> Path:
    """`path` from the working directory, as a single run's directory is shown, when it lies below it."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


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


def _overrides_text() -> str:
    if not HydraConfig.initialized():
        return ""
    return " ".join(o for o in HydraConfig.get().overrides.task if not o.startswith(("resume=", "ckpt_path=")))


def _start(cfg: DictConfig, model: L.LightningModule, trainer: L.Trainer) -> str:
    """Two lines: what this run changes from the defaults, and what trains on what."""
    overrides = _overrides_text() or "none (the defaults of conf/train.yaml)"
    n_params = sum(p.numel() for p in model.parameters())
    device = trainer.strategy.root_device
    where = f"{device.type}" + (f":{device.index}" if device.index is not None else "")
    if device.type == "cpu":
        where += f", {torch.get_num_threads()} threads"
    if trainer.world_size > 1:
        where += f", {trainer.world_size} processes"
    return (f"gradlab: overrides: {overrides}\n"
            f"gradlab: {type(model).__name__}, {n_params:,} parameters, on {where}")


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
    if model.task == "classification":
        return _class_predictions(when, model, x, predict_x)
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


@rank_zero_only
def _result(run_dir: Path, status: str, metrics: dict) -> None:
    """result.json: what a sweep's summary reads of this run."""
    runs.write_result(run_dir, {
        "status": status,
        "overrides": _overrides_text(),
        "train_loss": metrics.get("train/final_loss"),
        "val_loss": metrics.get("val/loss", float("inf") if status == "diverged" else None),
        **{k.replace("/", "_"): v for k, v in metrics.items() if k.startswith("test/")},
    })


def _hparams(cfg: DictConfig) -> dict:
    choices, overrides = {}, []
    if HydraConfig.initialized():
        choices = {k: v for k, v in HydraConfig.get().runtime.choices.items() if v and not k.startswith("hydra")}
        overrides = list(HydraConfig.get().overrides.task)
    return logger.hparams(cfg, choices, overrides)


def _summarize(trainer: L.Trainer, cfg: DictConfig, status: str, report: str, metrics: dict) -> None:
    """TensorBoard's HParams row and TEXT entry for the run, whatever its end; then the files are closed."""
    if trainer.fast_dev_run:
        return
    row = _hparams(cfg)
    for lg in trainer.loggers:
        if isinstance(lg, TensorBoardLogger):
            tags = ["train/loss", "val/loss"] + [k for k in metrics if k.startswith("val/") and k != "val/loss"]
            logger.write_summary(lg, row, tags, status, report, trainer.global_step)
        lg.finalize("success" if status == "FINISHED" else "failed")


def _report(model, dm, trainer: L.Trainer, metrics: dict, run_dir: Path, seconds: float) -> str:
    """The end of a run: the learned coefficients next to the best fit's, the final loss, where it went."""
    if model.task == "classification":
        return _classification_report(model, dm, trainer, metrics, run_dir, seconds)
    best = _best_fit(model, dm, trainer)
    weight, bias = model.coefficients()
    lines = [f"Coefficients learned:       {_coefficients(weight, bias)}"]
    if best is not None:
        lines.append(f"Coefficients least squares: {_coefficients(best['weight'], best['bias'])}")
    optimum = f" (least squares: {_loss_text(best['loss'])})" if best is not None else ""
    lines.append(f"Final loss (train {model.loss_name}): {metrics['train/final_loss']:.8g}{optimum}")
    return "\n".join(lines + _ending(trainer, seconds, metrics, "test/r2", run_dir))


def _best_fit(model, dm, trainer: L.Trainer) -> dict | None:
    """The model's best fit on the training split, as the curves callback already computed it
    (a least-squares solve or a logistic fit: seconds on large data), else computed now."""
    x, y = dm.splits["train"]
    for callback in trainer.callbacks:
        if isinstance(callback, TrainingCurves) and callback.computed_for is x:
            return callback.best
    return model.best_fit(x, y)


def _ending(trainer: L.Trainer, seconds: float, metrics: dict, score: str, run_dir: Path) -> list[str]:
    """The last lines of every report, each short enough for 80 columns: how long, the held-out
    numbers (`score`: the model's test metric beside its loss), the run and how to look at it."""
    shown = ", ".join(f"{k} {metrics[k]:.6g}" for k in ("val/loss", "test/loss", score) if k in metrics)
    return [f"gradlab: finished {trainer.current_epoch} epochs in {seconds:.1f} s", f"gradlab: {shown}",
            f"gradlab: run dir {run_dir}", f"gradlab: see it with: tensorboard --logdir {run_dir.parent.parent}"]


def _loss_text(loss: float) -> str:
    return "0" if abs(loss) < 1e-20 else f"{loss:.8g}"  # below 1e-20 it is float64 rounding of 0


def _coefficients(weight: torch.Tensor, bias: torch.Tensor | None) -> str:
    w = weight.detach().cpu().flatten().tolist()
    text = "w = " + (f"{w[0]:.8g}" if len(w) == 1 else "[" + ", ".join(f"{v:.6g}" for v in w) + "]")
    return text + (f", b = {float(bias.flatten()[0]):.8g}" if bias is not None else "")


# ------------------------------------------------------------------ classifiers (gradlab.classifiers)


def _data_needs(cfg: DictConfig) -> dict:
    """What a classifier needs of its data, given at instantiation as n_features is to the model:
    its targets as 0/1 floats (labels="binary", for BCE) or as class indices ("index", for CE)."""
    import inspect

    from hydra.utils import get_class

    model_cls, data_cls = get_class(cfg.model._target_), get_class(cfg.data._target_)
    labels = getattr(model_cls, "labels", None)
    if labels is not None and "labels" not in inspect.signature(data_cls).parameters:
        raise DataError(f"{model_cls.__name__} tells classes apart, but {data_cls.__name__} holds numeric "
                        "targets; use data=breast_cancer, data=wine, data=iris or data=labelled_csv")
    if labels is None and "labels" in inspect.signature(data_cls).parameters:
        raise DataError(f"{data_cls.__name__} holds classes, but {model_cls.__name__} fits numbers; use "
                        "model=logistic (2 classes) or model=softmax")
    return {"labels": labels} if labels is not None else {}


def _model_needs(cfg: DictConfig, dm) -> dict:
    """The number of classes, for a model that has one output per class (softmax)."""
    import inspect

    from hydra.utils import get_class

    takes = "n_classes" in inspect.signature(get_class(cfg.model._target_)).parameters
    return {"n_classes": len(dm.classes)} if takes else {}


def _class_predictions(when: str, model, x: torch.Tensor, predict_x) -> str:
    columns = model.outputs(x.to(model.device))
    shown = [f"{v:g}" if not isinstance(v, list) else str(v) for v in _inputs(predict_x)]
    return "\n".join(f"Prediction {when}: f({v}) = class {int(c)}, probability {float(p):.6g}"
                     for v, c, p in zip(shown, columns["class"], columns["probability"]))


def _classification_report(model, dm, trainer: L.Trainer, metrics: dict, run_dir: Path, seconds: float) -> str:
    """The end of a classifier's run: its largest coefficients, the optimum (or that there is none),
    the test accuracy and the final training loss."""
    x, y = dm.splits["train"]
    weight, bias = model.coefficients()
    names = getattr(dm, "feature_names", None) or [f"x{i + 1}" for i in range(weight.shape[1])]
    lines = [f"Coefficients learned: {_largest(weight, names)}; norm |W| = {float(weight.norm()):.6g}"
             + (f", b = [{', '.join(f'{v:.6g}' for v in bias.tolist())}]" if bias is not None else "")]
    best = _best_fit(model, dm, trainer)
    if best is not None:
        lines.append(f"Optimum (sklearn LogisticRegression(C=inf)): train {model.loss_name} "
                     f"{_loss_text(best['loss'])}, |W| = {float(best['weight'].norm()):.6g}; gap "
                     f"{metrics['train/final_loss'] - best['loss']:.6g}")
    elif (separation := model.separation(x, y)) == "complete":
        lines.append("Optimum: none: the train split is linearly separable, so the loss can approach 0 "
                     "as |W| grows (no finite optimum; no gap is logged)")
    elif separation == "partial":
        lines.append("Optimum: none: some rows of the train split are linearly separable from the rest, so "
                     "the loss keeps falling as |W| grows, towards a limit above 0 (no finite optimum; no gap "
                     "is logged)")
    if "test/accuracy" in metrics:
        n_test = len(dm.splits["test"][0])
        lines.append(f"Test accuracy: {metrics['test/accuracy']:.6g} ({round(metrics['test/accuracy'] * n_test)} "
                     f"of {n_test} rows); test F1 {metrics['test/f1']:.6g}")
    lines.append(f"Final loss (train {model.loss_name}): {metrics['train/final_loss']:.8g}")
    return "\n".join(lines + _ending(trainer, seconds, metrics, "test/accuracy", run_dir))


def _largest(weight: torch.Tensor, names: list[str], n: int = 5) -> str:
    """The n coefficients largest in size, with their feature (and class, for several outputs)."""
    w = weight.detach().cpu()
    order = w.abs().flatten().argsort(descending=True)[:n].tolist()
    rows, cols = w.shape
    label = (lambda k, f: names[f]) if rows == 1 else (lambda k, f: f"{names[f]} (class {k})")
    shown = ", ".join(f"{label(i // cols, i % cols)} {float(w.flatten()[i]):.4g}" for i in order)
    return shown + (f" (largest {len(order)} of {w.numel()})" if w.numel() > len(order) else "")
