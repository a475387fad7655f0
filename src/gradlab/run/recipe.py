"""One training run, top to bottom: check, seed, data, run directory, model, logger, trainer, fit,
test, report. `scripts/train.py` is a thin Hydra wrapper around `train(cfg)`."""

from __future__ import annotations

import inspect
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import lightning.pytorch as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from gradlab.checks.checkpoint import check_fits, load_checkpoint
from gradlab.checks.config import check, check_arguments
from gradlab.lessons.csvfile import DataError
from gradlab.lessons.data import input_rows
from gradlab.run import nodes, resume, rundirs, signals, threads, transfer
from gradlab.run.checkpoints import AtomicCheckpointIO, CheckpointBookkeeping, logger_resume_kwargs
from gradlab.run.files import write_text
from gradlab.run.stopping import Diverged, Stopping
from gradlab.show import report, tensorboard
from gradlab.show.report import say

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


@dataclass
class RunDir:
    path: Path
    ckpt_path: Path | None  # the checkpoint it continues from, if any
    is_new: bool
    weights_only: bool = False  # a new run from a checkpoint's weights, its optimiser starting fresh


def train(cfg: DictConfig, datamodule: L.LightningDataModule | None = None) -> RunResult:
    """Trains, tests and reports one run described by a composed gradlab config.

    `datamodule`: an already built one to use instead of `cfg.data` (scripts/benchmark.py shares
    one between gradlab and its plain loop, so a large dataset is held in memory once).
    """
    signals.raise_from_now_on()  # a stop from here is cleaned up on the way out (gradlab.run.signals)
    cfg = resume.effective_config(cfg)  # a resume: its run's config.yaml plus what this command line changes
    check(cfg)  # cli.run checked the command line's before the imports; this is for Python callers and resumes
    probe = check_arguments(cfg)  # what only the imported classes know, still before a run directory
    nodes.connect(cfg, probe)  # processes a launcher started (several nodes, torchrun, srun) join, on one config
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    started = time.perf_counter()
    dm = datamodule or _data(cfg)  # bad data fails here, before any run directory exists
    threads.apply(cfg.get("threads", "auto"), _batch_numbers(dm), _distributed(cfg))
    queries = input_rows(_plain(cfg.predict_x), dm.n_features, "predict_x")  # so does a bad predict_x
    model = _model(cfg, dm)
    run = _run_dir(cfg, model, dm)  # a checkpoint that does not fit, or names paths elsewhere, fails here
    board = _logger(cfg, run)
    stopper = Stopping()
    trainer = _trainer(cfg, run, board, stopper)
    shown = _shown_inputs(cfg.predict_x)
    say(report.start(_overrides_text(), model, trainer))
    first_epoch = resume.continuing(model, run.ckpt_path, run.path, run.is_new) if run.ckpt_path else 0
    say(report.predictions("before training", model, dm.transform(queries), shown))

    _fit(trainer, model, dm, run, cfg, stopper)
    if not trainer.fast_dev_run:
        # the end state, whatever the periodic checkpoint's schedule; resume continues from it
        trainer.save_checkpoint(run.path / "checkpoints" / "last.ckpt", weights_only=False)  # with optimiser state
    if stopper.signum is not None:
        return _interrupted(trainer, cfg, run, stopper.signum)

    fit_metrics = {**_metrics(trainer), "train/final_loss": _train_loss(model, dm)}
    metrics = {**fit_metrics, **_test(trainer, model, dm)}
    say(report.predictions("after training", model, dm.transform(queries), shown))
    best, seconds = _best_fit(model, dm, trainer), time.perf_counter() - started
    text = report.final(model, dm, trainer, metrics, best, run.path, seconds, first_epoch)
    say(text)
    tensorboard.summarize(trainer, cfg, "FINISHED", text, fit_metrics)
    _result(run.path, "finished", metrics, epochs=trainer.current_epoch, seconds=round(seconds, 3),
            best_fit_loss=best["loss"] if best is not None else None)
    return RunResult(run.path, "finished", metrics)


# ------------------------------------------------------------------ the steps, in the order train() takes them


def _data(cfg: DictConfig) -> L.LightningDataModule:
    """The datamodule, set up. A classifier's data gets the form of targets its model trains on:
    0/1 floats (labels="binary", for BCE) or class indices ("index", for CE)."""
    model_cls, data_cls = get_class(cfg.model._target_), get_class(cfg.data._target_)
    labels = getattr(model_cls, "labels", None)
    takes_labels = "labels" in inspect.signature(data_cls).parameters
    if labels is not None and not takes_labels and not getattr(model_cls, "fits_numbers_too", False):
        raise DataError(f"{model_cls.__name__} tells classes apart, but {data_cls.__name__} holds numeric "
                        "targets; use data=breast_cancer, data=wine, data=iris or data=labelled_csv")
    if labels is None and takes_labels:
        raise DataError(f"{data_cls.__name__} holds classes, but {model_cls.__name__} fits numbers; use "
                        "model=logistic (2 classes) or model=softmax")
    # _convert_="all": plain lists, so checkpoints stay weights_only-safe
    given = {"labels": labels} if labels is not None and takes_labels else {}
    dm = instantiate(cfg.data, _convert_="all", **given)
    dm.setup("fit")
    return dm


def _model(cfg: DictConfig, dm: L.LightningDataModule) -> L.LightningModule:
    """The model, with what the data decides: its number of features (and of classes, for softmax; and
    the image shape, for a CNN)."""
    takes = inspect.signature(get_class(cfg.model._target_)).parameters
    classes = getattr(dm, "classes", None)  # none for numeric targets: a model fitting both then fits numbers
    given = {"n_classes": len(classes)} if "n_classes" in takes and classes is not None else {}
    if "image_shape" in takes:  # a CNN: the data's (H, W) or (C, H, W), None for rows that are no images
        shape = getattr(dm, "image_shape", None)
        given["image_shape"] = list(shape) if shape is not None else None
    arguments = OmegaConf.create({k: v for k, v in cfg.model.items() if k not in transfer.KEYS})
    model = instantiate(arguments, n_features=dm.n_features, optimizer=instantiate(cfg.optimizer), _convert_="all",
                        **given)
    if cfg.model.get("init_from"):  # transfer learning (lesson 15): another run's weights, a fresh optimiser
        transfer.init_from(model, cfg.model.init_from)
        say(f"gradlab: the weights of {cfg.model.init_from}; the optimiser starts fresh")
    if frozen := transfer.freeze(model, list(cfg.model.get("freeze") or [])):
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        say(f"gradlab: frozen {', '.join(frozen)}; {trainable:,} trainable parameters")
    return model


def _run_dir(cfg: DictConfig, model: L.LightningModule, dm) -> RunDir:
    """The run directory, claimed for this process: a new one, or the one a checkpoint continues.
    The checkpoint is checked first; a new run's config.yaml is saved, a resume is recorded."""
    run = nodes.from_rank_0(lambda: _claim(cfg, model, dm))  # several nodes: every rank gets rank 0's
    resume.record(run.path, run.ckpt_path, run.is_new, cfg)  # resumes.yaml: each resume's command line
    if run.is_new and rank_zero_only.rank == 0:
        write_text(run.path / "config.yaml", OmegaConf.to_yaml(cfg))
        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
        write_text(run.path / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(overrides)))
    if cfg.print_config and rank_zero_only.rank == 0:
        _print_tree(cfg)
    say(f"gradlab: run directory {run.path}")
    return run


def _claim(cfg: DictConfig, model: L.LightningModule, dm) -> RunDir:
    run = _resolve(cfg, model, dm)
    rundirs.claim_run(run.path, run.ckpt_path, run.is_new)
    return run


def _logger(cfg: DictConfig, run: RunDir) -> TensorBoardLogger | bool:
    """TensorBoard in the run directory itself; a resume drops the steps logged after its checkpoint."""
    if not cfg.get("logger"):
        return False
    board = instantiate(cfg.logger, save_dir=str(run.path), name="", version="",
                        **logger_resume_kwargs(None if run.weights_only else run.ckpt_path))
    if isinstance(board, TensorBoardLogger):
        tensorboard.write_start(board, tensorboard.run_hparams(cfg))
    return board


def _trainer(cfg: DictConfig, run: RunDir, board, stopper: Stopping) -> L.Trainer:
    # What every run needs, whatever the config: clean stops, finite checkpoints, restorable files.
    # Few callbacks, each added only where it has work: Lightning calls every callback at each of
    # ~9 hooks a step, ~20 us an epoch each on the journal's model (README "Speed").
    # The stops first: the divergence guard sees each step's loss before any callback logs or draws it.
    configured = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    callbacks = [stopper, *configured, CheckpointBookkeeping()]
    if (lr := resume.resumed_lr(cfg, run.is_new)) is not None:  # a resume that sets optimizer.lr
        callbacks.append(resume.ApplyResumedLearningRate(lr))
    if cfg.get("scheduler"):  # scheduler=step: torch's StepLR, stepped every epoch, for any model
        callbacks.append(instantiate(cfg.scheduler))
    if not cfg.trainer.get("enable_progress_bar", True):  # Lightning refuses a progress callback then
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    return instantiate(cfg.trainer, strategy=nodes.strategy(cfg), logger=board, callbacks=callbacks,
                       default_root_dir=str(run.path),
                       plugins=[AtomicCheckpointIO(run.path / "checkpoints")])  # complete checkpoints or none


def _fit(trainer: L.Trainer, model: L.LightningModule, dm, run: RunDir, cfg: DictConfig,
         stopper: Stopping) -> None:
    """Fits, then validates the last epoch if the schedule skipped it. A diverged run is reported
    (FAILED in TensorBoard, result.json) and Diverged raised again."""
    os.environ["GRADLAB_RUN_DIR"] = str(run.path)  # DDP workers re-run this script: same run dir
    ckpt_path = run.ckpt_path
    if run.weights_only:  # the weights alone, from epoch 0, with a fresh optimiser: as model.init_from does
        transfer.init_from(model, str(ckpt_path))
        ckpt_path = None
    try:
        trainer.fit(model, datamodule=dm, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True)
        last_epoch_unvalidated = trainer.current_epoch % (trainer.check_val_every_n_epoch or 1)
        if stopper.signum is None and not trainer.fast_dev_run and last_epoch_unvalidated:
            # Validation runs every check_val_every_n_epoch (200 by default: one costs ~20 training
            # epochs of the journal's model); the last epoch is always validated too, so val/* and
            # a sweep's score describe the final weights, however short the run.
            trainer.validate(model, datamodule=dm, verbose=False)
    except Diverged as e:
        tensorboard.summarize(trainer, cfg, f"FAILED: {e}", "", {})
        _result(run.path, "diverged", {})
        e.run_dir = run.path  # cli.run names the checkpoints kept from before it diverged
        raise
    finally:
        os.environ.pop("GRADLAB_RUN_DIR", None)


def _interrupted(trainer: L.Trainer, cfg: DictConfig, run: RunDir, signum: int) -> RunResult:
    command = resume.continue_command(run.path)
    message = (f"gradlab: interrupted at epoch {trainer.current_epoch}; checkpoint saved. Continue with:\n"
               f"  {command}")
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        message += "\n  (this sweep job only: start the jobs that had not started again with -m)"
    say(message)
    tensorboard.summarize(trainer, cfg, "INTERRUPTED", message, _metrics(trainer))
    # the command again in result.json: a stopped sweep lists every job's at its end
    _result(run.path, "interrupted", _metrics(trainer), epochs=trainer.current_epoch, continue_with=command)
    return RunResult(run.path, "interrupted", _metrics(trainer), signum)


def _test(trainer: L.Trainer, model: L.LightningModule, dm) -> dict[str, float]:
    """The test split is the final exam: its numbers go to the report, the TEXT summary and
    result.json, not onto TensorBoard's curves, where a group of single end points named "test"
    would sort first and be what TensorBoard opens on (eval.py adds them to the run's TEXT tab)."""
    loggers, trainer.loggers = trainer.loggers, []
    try:
        return trainer.test(model, datamodule=dm, verbose=False, weights_only=True)[0]
    finally:
        trainer.loggers = loggers


# ------------------------------------------------------------------ helpers of the steps


def _resolve(cfg: DictConfig, model: L.LightningModule, dm) -> RunDir:
    """Which run this is: a checkpoint's (resume), a sweep job's folder, or a new version_<N>."""
    ckpt = cfg.ckpt_path or ("last" if cfg.resume else None)
    if ckpt is not None:
        path = resume.resume_checkpoint(cfg.root_dir, cfg.name) if ckpt == "last" else Path(ckpt)
        # a clear error for a corrupt file or one this model cannot take, before Lightning reads it
        saved = load_checkpoint(path)
        check_fits(saved, model, path)
        owner = rundirs.run_dir_of(path)
        if owner is not None:
            resume.check_moves_forward(path, saved, owner)
            resume.check_same_data(path, saved, dm)
            return RunDir(owner, path, False)
        # a file outside any run: a new run from its weights (and its optimiser state, if it fits)
        fresh = not resume.optimizer_state_fits(saved, model)
        if fresh:
            say(f"gradlab: a new run from the weights of {path}; its optimiser state is not "
                f"{type(model.configure_optimizers()).__name__}'s, so the optimiser starts fresh, from epoch 0")
        return RunDir(rundirs.new_run_dir(cfg.root_dir, cfg.name), path, True, weights_only=fresh)
    if (child := rundirs.ddp_child_run_dir()) is not None:
        nodes.leave_at_exit()  # a worker Lightning started: its process group closed before it ends
        return RunDir(child, None, False)
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        # a sweep job: Hydra gives each job its own folder under the sweep's folder
        return RunDir(_relative(Path(HydraConfig.get().runtime.output_dir)), None, True)
    return RunDir(rundirs.new_run_dir(cfg.root_dir, cfg.name), None, True)


def _relative(path: Path) -> Path:
    """`path` from the working directory, as a single run's directory is shown, when it lies below it."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _print_tree(cfg: DictConfig) -> None:
    """The composed config as a tree, one branch per group (print_config=false skips it)."""
    from rich import print as rich_print
    from rich.text import Text
    from rich.tree import Tree

    # Text, not markup: a value such as "[/b]" is printed as it is
    tree = Tree("config", guide_style="dim")
    for key, value in cfg.items():
        if OmegaConf.is_dict(value):
            tree.add(Text(str(key), style="bold")).add(Text(OmegaConf.to_yaml(value, resolve=True).rstrip()))
        else:
            tree.add(Text.assemble((str(key), "bold"), f": {value}"))
    rich_print(tree)


def _overrides_text() -> str:
    if not HydraConfig.initialized():
        return ""
    return " ".join(o for o in HydraConfig.get().overrides.task if not o.startswith(("resume=", "ckpt_path=")))


def _plain(value):
    return OmegaConf.to_object(value) if OmegaConf.is_config(value) else value


def _shown_inputs(predict_x) -> list[str]:
    values = _plain(predict_x)
    values = values if isinstance(values, list) else [values]
    return [str(v) if isinstance(v, list) else f"{v:g}" for v in values]


def _batch_numbers(dm) -> int:
    """Numbers in one training batch (rows x features): the work a step splits across threads."""
    x = dm.splits["train"][0] if getattr(dm, "splits", None) else None
    if x is None:
        return 0
    rows = getattr(dm, "batch_size", None) or len(x)
    return min(rows, len(x)) * (x[0].numel() if len(x) else 0)


def _distributed(cfg: DictConfig) -> bool:
    """DDP or several nodes: Lightning divides the cores between the processes itself."""
    strategy = str(cfg.trainer.get("strategy", "auto"))
    return "ddp" in strategy or int(cfg.trainer.get("num_nodes", 1) or 1) > 1 or "LOCAL_RANK" in os.environ


def _metrics(trainer: L.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def _train_loss(model, dm) -> float:
    """The training loss after the last update (the logged train/loss is measured before each)."""
    import torch

    x, y = dm.splits["train"]
    with torch.no_grad():
        return model.criterion(model(x.to(model.device)), y.to(model.device)).item()


def _best_fit(model, dm, trainer: L.Trainer) -> dict | None:
    """The model's best fit on the training split, as the curves callback already computed it
    (a least-squares solve or a logistic fit: seconds on large data), else computed now."""
    x, y = dm.splits["train"]
    for callback in trainer.callbacks:
        if isinstance(callback, tensorboard.TrainingCurves) and callback.computed_for is x:
            return callback.best
    return model.best_fit(x, y)


@rank_zero_only
def _result(run_dir: Path, status: str, metrics: dict, **extra) -> None:
    """result.json: what a sweep's summary and compare.py read of this run."""
    in_sweep = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    rundirs.write_result(run_dir, {
        "status": status,
        "overrides": _overrides_text(),
        "ended": time.strftime("%Y-%m-%d %H:%M:%S"),
        **({"job_num": HydraConfig.get().job.num} if in_sweep else {}),
        **extra,
        "train_loss": metrics.get("train/final_loss"),
        "val_loss": metrics.get("val/loss", float("inf") if status == "diverged" else None),
        **{k.replace("/", "_"): v for k, v in metrics.items() if k.startswith("test/")},
    })
