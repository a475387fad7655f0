"""Monitoring that is not the lesson: divergence, and the distance to the best fit.

Both work through the model interface (gradlab.models) and the datamodule's `splits`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import lightning.pytorch as L
import torch
from torch import Tensor


class Diverged(RuntimeError):
    """The loss stopped being finite: training cannot recover from it."""


def _loss(outputs) -> Tensor | None:
    loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
    return loss if isinstance(loss, Tensor) else None


class DivergenceGuard(L.Callback):
    """Stops the run at the first non-finite loss, naming its step; no checkpoint holds one.

    On the CPU a loss is checked as it comes (reading it costs nothing). On a GPU reading it would
    make the host wait for the device every step, so the first bad step is recorded on the device
    and read at logging steps, before each validation and before each checkpoint is written.
    """

    def __init__(self, read_every_step: bool | None = None) -> None:
        # None: read each loss on the CPU, record it on a GPU; False records everywhere (tests use it
        # to run the GPU's way on a CPU)
        self.read_every_step = read_every_step
        self._first_bad: Tensor | None = None  # on the device: the first non-finite step, or inf

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._first_bad = torch.tensor(math.inf, device=pl_module.device)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = _loss(outputs)
        if loss is None:
            return
        step = trainer.global_step - 1  # the optimizer step this loss was computed for
        if self.read_every_step if self.read_every_step is not None else loss.device.type == "cpu":
            if not math.isfinite(loss.item()):
                raise Diverged(self._message(trainer, "training", loss.item(), step))
            return
        bad = torch.where(torch.isfinite(loss.detach()), math.inf, float(step))
        torch.minimum(self._first_bad, bad, out=self._first_bad)
        if trainer.global_step % trainer.log_every_n_steps == 0:
            self._check(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        # the batch's loss once more (validation is rare): Lightning logs the epoch's metrics
        # right after the last batch, with no hook between, and an infinite val/loss would
        # reach TensorBoard and ModelCheckpoint's ranking
        x, y = batch
        with torch.no_grad():
            loss = pl_module.criterion(pl_module(x), y)
        if not trainer.sanity_checking and not torch.isfinite(loss):
            raise Diverged(self._message(trainer, "val", loss.item(), trainer.global_step))

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._check(trainer)  # raising here stops the file from being written

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)

    def _check(self, trainer: L.Trainer) -> None:
        if self._first_bad is not None and math.isfinite(step := float(self._first_bad)):
            raise Diverged(self._message(trainer, "training", math.nan, int(step)))

    @staticmethod
    def _message(trainer: L.Trainer, stage: str, value: float, step: int) -> str:
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        advice = f"try optimizer.lr={lr / 10:g}" if lr else "try a smaller optimizer.lr"
        value_text = f"became {value}" if not math.isnan(value) or stage != "training" else "stopped being finite"
        return (
            f"the {stage} loss {value_text} at epoch {trainer.current_epoch} (step {step})"
            + (f" with optimizer.lr={lr:g}" if lr else "")
            + f"; the learning rate is probably too high for this data: {advice} (10x smaller)"
        )


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
        loss = _loss(outputs)
        if self.best is not None and loss is not None:
            values["train/loss_gap"] = loss.item() - self.best["loss"]
        weight, bias = pl_module.coefficients()
        if weight.numel() + (0 if bias is None else bias.numel()) <= self.max_coefficients:
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
