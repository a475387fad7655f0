"""What a run shows in TensorBoard: the logger, a short HParams row, a text summary, one chart with
the train and val loss together (Custom Scalars), the gap to the best fit, w and b as curves, and
weight histograms (the Histograms and Distributions tabs).

Everything goes through public APIs: Lightning's TensorBoardLogger, torch's SummaryWriter and its
`hparams` summary builder.
"""

from __future__ import annotations

import math
import numbers
import os
import shlex
import sys
import warnings
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as L
import torch
from lightning.pytorch import loggers
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

# Always in HParams, next to what the command line changed: what a reader compares runs by.
FIXED = ("experiment", "data", "model", "model.optimization", "optimizer", "optimizer.lr",
         "trainer.max_epochs", "data.batch_size")
NOT_HPARAMS = ("root_dir", "name", "print_config", "resume", "ckpt_path", "predict_x", "threads", "hydra.",
               "callbacks.")
MAX_HPARAMS = 15  # HParams shows every key as a column; past this a row no longer fits a screen


class EpochlessTensorBoardLogger(loggers.TensorBoardLogger):
    """Lightning's TensorBoardLogger without the `epoch` scalar Lightning adds to every write.

    That chart is a diagonal line, and as TensorBoard sorts groups by name it is the first
    thing a run shows; the step axis already counts epochs in full-batch training.
    """

    def __init__(self, *args: Any, prefix: str = "", **kwargs: Any) -> None:
        super().__init__(*args, prefix=prefix, **kwargs)
        self.tag_prefix = prefix  # tags become "<prefix>-<tag>", as Lightning writes them

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        metrics = {k: v for k, v in metrics.items() if k != "epoch"}
        writer = self.experiment.file_writer
        # writer None: closed by the Trainer at the end of fit, and Lightning's way reopens it
        if self.tag_prefix or writer is None or not all(isinstance(v, (numbers.Real, Tensor))
                                                        for v in metrics.values()):
            return super().log_metrics(metrics, step)
        # The values of one call as one event, where Lightning writes an event per value: without
        # TensorFlow, TensorBoard's writer checksums each event in pure Python
        from torch.utils.tensorboard.summary import scalar

        summary = scalar("", 0.0)
        summary.ClearField("value")
        for key, value in metrics.items():
            summary.value.extend(scalar(key, float(value)).value)
        writer.add_summary(summary, step)
        return None


def hparams(cfg: DictConfig, choices: Mapping[str, str], overrides: list[str]) -> dict[str, Any]:
    """The HParams row of a run: `args`, the fixed keys, then each key the command line set, as
    TensorBoard shows them well (class names short, true/false and null as words, lists as text).

    `args` is what the command line changed, as a sweep job's folder names it (`lr=0.001
    max_epochs=200`: keys by their last part, floats to 6 digits). TensorBoard ticks the first 5
    columns whose values differ between the runs, by name; across a folder of many lessons `data`,
    `experiment`, `model`, ... all differ and would take those places, but `args` sorts before any
    config key, so what a sweep varied is always ticked, with the swept key's own column
    (`optimizer.lr`) beside it for sorting and plots.
    """
    from gradlab.run.sweeps import short_value  # light: no torch

    said = [o.partition("=") for o in overrides if not o.lstrip("+~").startswith(NOT_HPARAMS)]
    last = [k.rsplit(".", 1)[-1] for k, _, _ in said]  # short as in a sweep job's folder name: lr=0.001
    row: dict[str, Any] = {"args": " ".join(f"{short if last.count(short) == 1 else k}={short_value(v)}"
                                            for (k, _, v), short in zip(said, last)) or "defaults"}
    keys = [k for k in FIXED if k in choices or OmegaConf.select(cfg, k, default="__absent__") != "__absent__"]
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key not in keys and not key.startswith(NOT_HPARAMS):
            keys.append(key)
    for key in keys[:MAX_HPARAMS - 1]:
        value = choices[key] if key in choices else OmegaConf.select(cfg, key, default=None)
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        if isinstance(value, Mapping) and "_target_" in value:  # a group's node: the class it builds
            value = str(value["_target_"]).rsplit(".", 1)[-1]
        row[key] = "full" if key == "data.batch_size" and value is None else _hparam_value(value)
    return row


def _hparam_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float, str)):
        return value
    return str(value)


@rank_zero_only
def write_summary(logger: loggers.TensorBoardLogger, row: dict[str, Any], metric_tags: list[str],
                  status: str, report: str, step: int) -> None:
    """The run's HParams row, whose metric columns read the run's own scalar tags (so no `hp/*`
    copies at step 0), and a TEXT entry: status, command line and the final report.
    `metric_tags`: the tags the row's end is reported for."""
    from torch.utils.tensorboard.summary import hparams as hparams_summaries
    from torch.utils.tensorboard.summary import text as text_summary
    from torch.utils.tensorboard.writer import FileWriter

    script = os.path.relpath(sys.argv[0]) if os.path.isabs(sys.argv[0]) else sys.argv[0]
    command = "python " + " ".join(shlex.quote(a) for a in [script, *sys.argv[1:]])
    text = f"{status}\n\n    {command}\n\n" + "\n".join(f"    {line}" for line in report.splitlines())
    # an event file of its own in the run's directory (TensorBoard reads them all as one run): the
    # Trainer has closed the logger's writer by now
    writer = FileWriter(logger.log_dir)
    # The session's start and end only, no experiment summary: TensorBoard then builds the table
    # from all runs, with the keys whose values differ between runs (a sweep's lr) first and
    # ticked, and one metric column per scalar tag of the runs (train/loss, val/loss, ...)
    _, start, end = hparams_summaries(row, {tag: 0.0 for tag in metric_tags})
    writer.add_summary(start)
    writer.add_summary(end)
    writer.add_summary(text_summary("run/summary", text), step)
    writer.close()


def write_evaluation(run_dir: str, text: str, step: int) -> None:
    """eval.py's numbers as a TEXT entry (`run/eval`) of the run itself, at the checkpoint's step.

    Not as scalars: a test split evaluated once is a single dot per chart, and a `test` group sorts
    above `train` in Time Series, so TensorBoard would open on it; nor in a folder of its own, which
    would be one more run in every run list (TensorBoard selects none past about 40)."""
    from torch.utils.tensorboard.summary import text as text_summary
    from torch.utils.tensorboard.writer import FileWriter

    writer = FileWriter(str(run_dir))  # an event file of its own; TensorBoard reads them all as one run
    writer.add_summary(text_summary("run/eval", text), step)
    writer.close()


@rank_zero_only
def write_start(logger: loggers.TensorBoardLogger, row: dict[str, Any]) -> None:
    """hparams.yaml (the HParams row), and Custom Scalars: the train and val loss in one chart."""
    logger.log_hyperparams(row)  # without metrics Lightning writes no HParams summaries itself
    logger.experiment.add_custom_scalars({
        "loss": {
            "train and val loss": ["Multiline", ["train/loss", "val/loss"]],
            "gap to the best fit": ["Multiline", ["train/loss_gap"]],
        },
    })


class TrainingCurves(L.Callback):
    """On the steps the model logs train/loss: train/loss_gap, the training loss minus the best the
    model can do on the training split (`best_fit`, e.g. least squares), and for models with at
    most `max_coefficients` weights each weight and bias (`weights/w`, `weights/b`; `weights/w1`, ...).

    A log-scale chart of the gap shows how fast gradient descent converges, which train/loss
    alone cannot; w and b over time are what the journal prints.
    """

    def __init__(self, max_coefficients: int = 10) -> None:
        self.max_coefficients = max_coefficients
        self.best: dict | None = None
        self.computed_for: Tensor | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        splits = getattr(trainer.datamodule, "splits", None)
        if splits and hasattr(pl_module, "best_fit"):
            self.best = pl_module.best_fit(*splits["train"])
            self.computed_for = splits["train"][0]  # the report reuses it for the same split

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not (trainer.global_step % trainer.log_every_n_steps == 0 or trainer.fast_dev_run):
            return
        values = {}
        loss = _loss_of(outputs)
        if self.best is not None and loss is not None:
            values["train/loss_gap"] = loss.item() - self.best["loss"]
        weight, bias = pl_module.coefficients() or (None, None)  # None: a network with hidden layers
        if weight is not None and weight.numel() + (0 if bias is None else bias.numel()) <= self.max_coefficients:
            values |= _named("weights/w", weight) | ({} if bias is None else _named("weights/b", bias))
        if not all(map(math.isfinite, values.values())):
            return  # nothing non-finite reaches TensorBoard; DivergenceGuard stops the run
        # Computed values go straight to the loggers, as Lightning's LearningRateMonitor logs them:
        # self.log would keep a torchmetrics object per key, several times this model's step. The
        # step is the one Lightning writes this batch's train/loss at (before the optimizer step).
        if values and trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(values, step=trainer.global_step - 1)


def _named(name: str, values: Tensor) -> dict[str, float]:
    flat = values.detach().flatten().tolist()
    return {name: flat[0]} if len(flat) == 1 else {f"{name}{i + 1}": v for i, v in enumerate(flat)}


class WeightHistograms(L.Callback):
    """Logs every parameter as a histogram every `every_n_epochs` (0: only at the end) and at the end.

    Only on those epochs: a histogram costs far more than a training step of a small model.
    """

    def __init__(self, every_n_epochs: int = 100, min_values: int = 11):
        self.every_n_epochs = every_n_epochs
        self.min_values = min_values
        self._logged_at: int | None = None  # global step of the last histograms written

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        n = self.every_n_epochs
        if n > 0 and (trainer.current_epoch + 1) % n == 0:
            self._log(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._logged_at != trainer.global_step:
            self._log(trainer, pl_module)

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._logged_at = trainer.global_step
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_histogram"):  # TensorBoard's SummaryWriter
                for name, p in pl_module.named_parameters():
                    if p.numel() >= self.min_values:  # a histogram of a few numbers looks broken
                        experiment.add_histogram(f"weights/{name}", p.detach().cpu(), trainer.global_step)


def _loss_of(outputs) -> Tensor | None:
    loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
    return loss if isinstance(loss, Tensor) else None


def run_hparams(cfg: DictConfig) -> dict[str, Any]:
    """`hparams` of a run composed by Hydra (its group choices and command line), or by a caller."""
    from hydra.core.hydra_config import HydraConfig

    choices, overrides = {}, []
    if HydraConfig.initialized():
        choices = {k: v for k, v in HydraConfig.get().runtime.choices.items() if v and not k.startswith("hydra")}
        overrides = list(HydraConfig.get().overrides.task)
    return hparams(cfg, choices, overrides)


def summarize(trainer: L.Trainer, cfg: DictConfig, status: str, report: str, metrics: dict) -> None:
    """TensorBoard's HParams row and TEXT entry for the run, whatever its end; then the loggers are
    finalized (their files closed)."""
    if trainer.fast_dev_run:
        return
    row = run_hparams(cfg)
    for lg in trainer.loggers:
        if isinstance(lg, loggers.TensorBoardLogger):
            tags = ["train/loss", "val/loss"] + [k for k in metrics if k.startswith("val/") and k != "val/loss"]
            write_summary(lg, row, tags, status, report, trainer.global_step)
        lg.finalize("success" if status == "FINISHED" else "failed")


class ClassifierBoard(L.Callback):
    """The course's lesson 16 for a classifier: when training starts, the model's graph (`graph`) and a
    grid of `n_images` training inputs (image data); at its end one precision-recall curve per class on
    the test split (the class's probability against "is this the class"), as the lesson's add_graph,
    add_image and add_pr_curve. (The lesson's accuracy curve is the model's own train/accuracy.)

    The graph is drawn here rather than by Lightning's TensorBoardLogger(log_graph=True), which would
    trace every model: a classifier gets it by default, and a regression run does not pay the trace
    (0.1-0.25 s a run)."""

    def __init__(self, n_images: int = 64, graph: bool = True):
        self.n_images = n_images
        self.graph = graph

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        shape = getattr(trainer.datamodule, "image_shape", None)
        writer = self._writer(trainer)
        if writer is None or getattr(pl_module, "task", None) != "classification" or trainer.global_step > 0:
            return  # (a continued run: it drew them when it started)
        if self.graph:
            with warnings.catch_warnings():
                # add_graph traces the model with torch.jit.trace, which torch deprecates (a FutureWarning
                # for TorchScript users); TensorBoard has no other way to draw the graph, so the warning
                # says nothing a learner can act on. Only this warning, only around the trace.
                warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace(_method)?` is deprecated",
                                        category=FutureWarning)
                writer.add_graph(pl_module, pl_module.example_input_array.to(pl_module.device))
        if shape is None:
            return
        x = trainer.datamodule.splits["train"][0][: self.n_images]  # (N, C*H*W), as the model sees them
        images = x.reshape(len(x), -1, *shape[-2:])  # (N, C, H, W)
        low, high = images.amin(), images.amax()
        images = (images - low) / (high - low + 1e-12)  # 0 to 1, as add_images takes them
        # a grey frame round each image, as torchvision's make_grid pads them: without it the grid's
        # 8x8 digits touch and read as stripes
        framed = torch.nn.functional.pad(images, (1, 1, 1, 1), value=0.5)  # (N, C, H + 2, W + 2)
        writer.add_images("inputs/images", framed, trainer.global_step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = self._writer(trainer)
        classes = getattr(trainer.datamodule, "classes", None)
        if writer is None or classes is None or getattr(pl_module, "task", None) != "classification":
            return
        x, y = trainer.datamodule.splits["test"]
        with torch.no_grad():
            p = pl_module.predict_step(x.to(pl_module.device), 0).cpu()  # (N, K) probabilities, or (N, 1)
        if p.shape[1] == 1:  # logistic: the probability of class 1
            p = torch.cat([1 - p, p], 1)
        y = y.reshape(-1).long()
        for k, name in enumerate(classes):
            writer.add_pr_curve(f"pr_curve/{name}", y == k, p[:, k], trainer.global_step)

    @staticmethod
    def _writer(trainer: L.Trainer):
        if not trainer.is_global_zero:
            return None
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_pr_curve"):  # TensorBoard's SummaryWriter
                return experiment
        return None
