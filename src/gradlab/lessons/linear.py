"""The journal's linear model (an nn.Module) and the LightningModule that trains it with MSE.

Three ways to get the gradient, chosen by `optimization`:
- automatic: Lightning calls backward, step and zero_grad for us;
- manual:    the journal's autograd loop, written out: forward, loss, backward, step, zero_grad;
- analytic:  no autograd at all; dJ/dw = (2/N) X^T (Xw + b - y), dJ/db = (2/N) sum(Xw + b - y)
             written into .grad, then the optimiser steps (the journal's numpy lesson).
It implements the model interface (gradlab.lessons, its package docstring).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

import lightning.pytorch as L
import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection, R2Score

Optimization = Literal["automatic", "manual", "analytic"]


class Linear(nn.Module):
    """y = x W^T + b: `n_features` in, `n_outputs` out."""

    def __init__(self, n_features: int, bias: bool = True, init: Literal["default", "zeros"] = "default",
                 n_outputs: int = 1):
        super().__init__()
        self.lin = nn.Linear(n_features, n_outputs, bias=bias)
        if init == "zeros":  # the journal starts from w = 0
            nn.init.zeros_(self.lin.weight)
            if bias:
                nn.init.zeros_(self.lin.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.lin(x)  # (N, F) -> (N, K)


class LinearRegressor(L.LightningModule):
    """Fits `Linear` by minimising the mean squared error; logs loss (MSE), MAE and R2 per stage."""

    task = "regression"
    loss_name = "MSE"

    def __init__(
        self,
        n_features: int,
        optimizer: Callable[[Iterable[Tensor]], Optimizer],
        bias: bool = True,
        init: Literal["default", "zeros"] = "default",
        optimization: Optimization = "automatic",
    ):
        super().__init__()
        # plain values only, so checkpoints load with torch.load(weights_only=True)
        self.save_hyperparameters(ignore=["optimizer"], logger=False)
        self.net = Linear(n_features, bias, init)
        self.criterion = nn.MSELoss()
        self.optimizer_factory = optimizer
        self.optimization = optimization
        self.automatic_optimization = optimization == "automatic"
        metrics = MetricCollection({"loss": MeanSquaredError(), "mae": MeanAbsoluteError(), "r2": R2Score()})
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch  # (N, F), (N, 1)
        log_now = self._is_logging_step()  # asked first: a manual step moves global_step
        if self.optimization == "automatic":
            y_predicted = self(x)  # forward
            loss = self.criterion(y_predicted, y)  # Lightning does backward, step and zero_grad with it
        elif self.optimization == "manual":  # the journal's autograd loop
            opt = self.optimizers()
            y_predicted = self(x)  # 1. forward
            loss = self.criterion(y_predicted, y)
            self.manual_backward(loss)  # 2. gradient by autograd
            opt.step()  # 3. update the weights
            opt.zero_grad()  # 4. zero the gradient
        else:  # analytic: the journal's numpy lesson, no autograd
            opt = self.optimizers()
            with torch.no_grad():  # no graph: the gradient comes from its formula
                y_predicted = self(x)  # 1. forward
                loss = self.criterion(y_predicted, y)
                self.write_gradient(x, y, y_predicted)  # 2. gradient by the closed form
            opt.step()  # 3. update the weights
            opt.zero_grad()  # 4. zero the gradient
        if log_now:
            self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.val_metrics.update(self(x).squeeze(-1), y.squeeze(-1))
        self.log_dict(self.val_metrics)  # computed over the whole split at the epoch's end

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.test_metrics.update(self(x).squeeze(-1), y.squeeze(-1))
        self.log_dict(self.test_metrics)

    def predict_step(self, batch: tuple[Tensor, Tensor] | Tensor, batch_idx: int) -> Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x)

    def configure_optimizers(self) -> Optimizer:
        return self.optimizer_factory(self.parameters())

    @torch.no_grad()
    def write_gradient(self, x: Tensor, y: Tensor, y_predicted: Tensor) -> None:
        """The gradient of mean((Xw + b - y)^2) by its closed form, written where autograd would."""
        residual = y_predicted - y  # (N, 1)
        scale = 2.0 / len(x)
        self.net.lin.weight.grad = scale * residual.T @ x  # (1, F), same shape as the weight
        if self.net.lin.bias is not None:
            self.net.lin.bias.grad = scale * residual.sum(0)  # (1,)

    def _is_logging_step(self) -> bool:
        # self.log costs more than this model's whole step, and Lightning writes the logged
        # values only every trainer.log_every_n_steps: log on those steps alone
        return (self.global_step + 1) % self.trainer.log_every_n_steps == 0 or bool(self.trainer.fast_dev_run)

    # ------------------------------------------------------------ the model interface (gradlab.lessons)

    def coefficients(self) -> tuple[Tensor, Tensor | None]:
        lin = self.net.lin
        return lin.weight.detach(), None if lin.bias is None else lin.bias.detach()

    def outputs(self, x: Tensor) -> dict[str, Tensor]:
        with torch.no_grad():
            return {"prediction": self(x)[:, 0]}

    def plain_layers(self) -> nn.Sequential:
        """The network as the journal writes it in plain PyTorch: one nn.Linear (the same module, so
        the same weights)."""
        return nn.Sequential(self.net.lin)

    def best_fit(self, x: Tensor, y: Tensor) -> dict:
        """Least squares on (x, y) in float64: the weights no gradient step can improve on."""
        a = x.double()
        if self.net.lin.bias is not None:
            a = torch.cat([a, torch.ones(len(a), 1, dtype=a.dtype)], 1)  # a column of ones: the bias
        solution = torch.linalg.lstsq(a, y.double(), driver="gelsd").solution  # (F [+ 1], 1), rank-safe
        weight = solution[: x.shape[1]].T  # (1, F)
        bias = solution[x.shape[1]:, 0] if self.net.lin.bias is not None else None  # (1,)
        return {"weight": weight, "bias": bias, "loss": ((a @ solution - y.double()) ** 2).mean().item()}
