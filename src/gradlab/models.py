"""The linear model (an nn.Module) and the LightningModule that trains it with MSE.

Three ways to get the gradient, chosen by `optimization`:
- automatic: Lightning calls backward, step and zero_grad for us;
- manual:    the journal's autograd loop, written out: forward, loss, backward, step, zero_grad;
- analytic:  no autograd at all; dJ/dw = (2/N) X^T (Xw + b - y), dJ/db = (2/N) sum(Xw + b - y)
             written into .grad, then the optimiser steps (the journal's numpy lesson).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Literal

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Optimizer
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection, R2Score

Optimization = Literal["automatic", "manual", "analytic"]


class Diverged(RuntimeError):
    """The loss stopped being finite: training cannot recover from it."""


class Linear(nn.Module):
    """y = x W^T + b: `n_features` in, one value out."""

    def __init__(self, n_features: int, bias: bool = True, init: Literal["default", "zeros"] = "default"):
        super().__init__()
        self.lin = nn.Linear(n_features, 1, bias=bias)
        if init == "zeros":  # the journal starts from w = 0
            nn.init.zeros_(self.lin.weight)
            if bias:
                nn.init.zeros_(self.lin.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.lin(x)  # (N, F) -> (N, 1)


class LinearRegressor(L.LightningModule):
    """Fits `Linear` by minimising the mean squared error; logs MSE, MAE and R2 per stage."""

    def __init__(
        self,
        n_features: int,
        optimizer: Callable[[Iterable[Tensor]], Optimizer],
        bias: bool = True,
        init: Literal["default", "zeros"] = "default",
        optimization: Optimization = "automatic",
    ):
        super().__init__()
        # plain values only, so checkpoints load with torch.load(weights_only=True); logger=False:
        # train.py logs the hyperparameters once, at the end, next to the final metrics
        self.save_hyperparameters(ignore=["optimizer"], logger=False)
        self.net = Linear(n_features, bias, init)
        self.optimizer_factory = optimizer
        self.optimization = optimization
        self.automatic_optimization = optimization == "automatic"
        metrics = MetricCollection({"mse": MeanSquaredError(), "mae": MeanAbsoluteError(), "r2": R2Score()})
        self.train_metrics = metrics.clone(prefix="train/")  # the whole train split, at each validation
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.optimum_mse: float | None = None  # least squares on the train split, set in on_fit_start

    def __setattr__(self, name: str, value) -> None:
        # Lightning sets _current_fx_name around every hook and callback call, about 50 times a
        # step; nn.Module.__setattr__ first checks for parameters, modules and buffers, which on a
        # model this small costs more than its forward pass. A hook name is none of those.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def on_fit_start(self) -> None:
        dm = self.trainer.datamodule
        if dm is not None and hasattr(dm, "least_squares"):
            self.optimum_mse = dm.least_squares(bias=self.net.lin.bias is not None)["mse"]

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        step = self.global_step  # the step Lightning logs this batch at (taken before a manual step)
        # Logging every step costs more than the step itself on small models; log on the steps
        # Lightning writes (every trainer.log_every_n_steps), so nothing logged is thrown away.
        log_now = (step + 1) % max(self.trainer.log_every_n_steps, 1) == 0 or bool(self.trainer.fast_dev_run)
        with torch.set_grad_enabled(self.optimization != "analytic"):  # analytic: no graph
            pred = self(x)  # (N, 1)
            loss = F.mse_loss(pred, y)
        if not math.isfinite(loss.item()):  # every step: 0.1 us, where torch.isfinite takes 4 us
            raise Diverged(self._diverged("training", loss))
        if self.optimization == "manual":
            opt = self.optimizers()
            self.manual_backward(loss)
            opt.step()
            opt.zero_grad()
        elif self.optimization == "analytic":
            opt = self.optimizers()
            self._write_mse_gradient(x, y, pred.detach())
            opt.step()
            opt.zero_grad()
        if log_now:
            # Each self.log costs about 0.1 ms (Lightning keeps a torchmetrics object per key),
            # more than a whole step of this model. So one key goes through it: train/loss, for
            # the progress bar and callbacks. The gap to least squares and the learning rate, which
            # nothing monitors, go straight to the loggers at the same step (the rate under
            # LearningRateMonitor's name, whose callback would cost another ~0.1 ms a step); the
            # train split's MSE, MAE and R2 are logged at each validation (on_validation_epoch_end).
            self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True)
            optimizer = self.trainer.optimizers[0]
            direct = {f"lr-{type(optimizer).__name__}": optimizer.param_groups[0]["lr"]}
            if self.optimum_mse is not None:
                direct["train/mse_gap"] = loss.item() - self.optimum_mse
            for logger in self.loggers:
                logger.log_metrics(direct, step=step)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, "val/loss")

    def on_validation_epoch_end(self) -> None:
        self._log_metrics(self.val_metrics, "val/loss")
        dm = self.trainer.datamodule
        if not self.trainer.sanity_checking and hasattr(dm, "splits"):
            # the whole training split with the weights validated, next to val/*: over- or underfit
            with torch.no_grad():
                x, y = dm.splits["train"]
                for start in range(0, len(x), 65536):  # a large split is scored in pieces
                    xb, yb = (t[start : start + 65536].to(self.device) for t in (x, y))
                    self.train_metrics.update(self(xb).squeeze(-1), yb.squeeze(-1))
            self._log_metrics(self.train_metrics)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics, "test/loss")

    def on_test_epoch_end(self) -> None:
        self._log_metrics(self.test_metrics, "test/loss")

    def predict_step(self, batch: tuple[Tensor, Tensor] | Tensor, batch_idx: int) -> Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x)

    def configure_optimizers(self) -> Optimizer:
        return self.optimizer_factory(self.parameters())

    def configure_gradient_clipping(self, optimizer: Optimizer, gradient_clip_val=None,
                                    gradient_clip_algorithm=None) -> None:
        # Lightning asks every step, and its checks cost ~8 us, more than a tenth of this model's
        # step; without trainer.gradient_clip_val there is nothing to clip.
        if gradient_clip_val:
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def _evaluate(self, batch: tuple[Tensor, Tensor], metrics: MetricCollection, loss_name: str) -> None:
        x, y = batch
        pred = self(x)
        metrics.update(pred.squeeze(-1), y.squeeze(-1))

    def _log_metrics(self, metrics: MetricCollection, loss_name: str | None = None) -> None:
        """Logs the epoch's accumulated metrics (and their MSE again as the loss), then resets them.

        Logged as computed values, not as torchmetrics objects: Lightning would walk each
        object's state on every log call (about 1 ms each). Under DDP compute() gathers every
        rank's share first, so all ranks log the metric of the whole split.
        """
        scores = metrics.compute()
        metrics.reset()
        stage, mse = next((k.split("/")[0], v) for k, v in scores.items() if k.endswith("/mse"))
        if not torch.isfinite(mse):  # stop before inf reaches TensorBoard or a checkpoint's score
            raise Diverged(self._diverged(stage, mse))
        if loss_name is not None:
            self.log(loss_name, scores[loss_name.replace("loss", "mse")], prog_bar=True)
        self.log_dict(scores)

    def _diverged(self, stage: str, loss: Tensor) -> str:
        lr = self.trainer.optimizers[0].param_groups[0]["lr"] if self.trainer.optimizers else None
        advice = f"try optimizer.lr={lr / 10:g}" if lr else "try a smaller optimizer.lr"
        return (
            f"the {stage} loss became {loss.item()} at epoch {self.current_epoch} (step {self.global_step})"
            + (f" with optimizer.lr={lr:g}" if lr else "")
            + f"; the learning rate is probably too high for this data: {advice} (10x smaller)"
        )

    @torch.no_grad()
    def _write_mse_gradient(self, x: Tensor, y: Tensor, pred: Tensor) -> None:
        """The gradient of mean((Xw + b - y)^2) by its closed form, written where autograd would."""
        residual = pred - y  # (N, 1)
        scale = 2.0 / len(x)
        self.net.lin.weight.grad = scale * residual.T @ x  # (1, F), same shape as the weight
        if self.net.lin.bias is not None:
            self.net.lin.bias.grad = scale * residual.sum(0)  # (1,)
