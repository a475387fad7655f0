"""The course's next lessons: the same linear model, followed by a sigmoid or a softmax.

- `LogisticClassifier` (lesson 08): p = sigmoid(x w^T + b), trained with nn.BCELoss on p and 0/1 targets;
- `SoftmaxClassifier` (lesson 11): K outputs (logits), trained with nn.CrossEntropyLoss on class indices.

Both train on the three paths of gradlab.lessons.linear (automatic, manual, analytic). The analytic
gradient is the closed form both losses share: with p the predicted probabilities (N, K) and y the
0/1 (one-hot) targets, dJ/dW = (p - y)^T X / N and dJ/db = mean(p - y), written into .grad.
They implement the model interface (gradlab.lessons); their best fit is sklearn's
LogisticRegression(C=inf), or None where the training split is linearly separable, wholly or in
part (then no finite optimum exists; `separation` says which).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

import lightning.pytorch as L
import numpy as np
import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryF1Score, MulticlassAccuracy, MulticlassF1Score

from gradlab.lessons.linear import Linear, Optimization


class MeanLoss(MeanMetric):
    """The criterion's mean over every row of a split (not a mean of batch means)."""

    def __init__(self, per_row: nn.Module):
        super().__init__()
        self.per_row = per_row  # the training criterion with reduction="none"

    def update(self, output: Tensor, target: Tensor) -> None:
        super().update(self.per_row(output, target))


class LinearClassifier(L.LightningModule):
    """What logistic and softmax regression share: the lesson's training step and the interface."""

    task = "classification"
    labels: Literal["binary", "index"]  # the targets the data must give (lessons.data.ClassificationDataModule)
    loss_name: str

    def __init__(self, n_features: int, n_outputs: int, optimizer: Callable[[Iterable[Tensor]], Optimizer],
                 bias: bool, init: Literal["default", "zeros"], optimization: Optimization):
        super().__init__()
        self.net = Linear(n_features, bias, init, n_outputs)
        self.example_input_array = torch.zeros(1, n_features)  # one input row: what add_graph traces (lesson 16)
        self.optimizer_factory = optimizer
        self.optimization = optimization
        self.automatic_optimization = optimization == "automatic"
        self.running_correct, self.running_total = 0, 0  # training rows classified right, and seen

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch  # (N, F); (N, 1) 0/1 floats or (N,) class indices
        log_now = self._is_logging_step()  # asked first: a manual step moves global_step
        if self.optimization == "automatic":
            outputs = self(x)  # forward
            loss = self.criterion(outputs, y)  # Lightning does backward, step and zero_grad with it
        elif self.optimization == "manual":  # the lesson's loop
            opt = self.optimizers()
            outputs = self(x)  # 1. forward
            loss = self.criterion(outputs, y)
            self.manual_backward(loss)  # 2. gradient by autograd
            opt.step()  # 3. update the weights
            opt.zero_grad()  # 4. zero the gradient
        else:  # analytic: no autograd
            opt = self.optimizers()
            with torch.no_grad():  # no graph: the gradient comes from its formula
                outputs = self(x)  # 1. forward
                loss = self.criterion(outputs, y)
                self.write_gradient(x, self.probabilities(outputs), self.one_hot(y))  # 2. closed form
            opt.step()  # 3. update the weights
            opt.zero_grad()  # 4. zero the gradient
        # lesson 16's running_correct: the rows classified right since the last logged point
        self.running_correct += (self.predicted(outputs) == self.class_index(y)).sum()
        self.running_total += len(y)
        if log_now:
            self.log("train/loss", loss, prog_bar=True)
            self.log("train/accuracy", self.running_correct / self.running_total)  # since the last point
            self.running_correct, self.running_total = 0, 0
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.val_metrics.update(self(x), y)
        self.log_dict(self.val_metrics)  # computed over the whole split at the epoch's end

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.test_metrics.update(self(x), y)
        self.log_dict(self.test_metrics)

    def predict_step(self, batch: tuple[Tensor, Tensor] | Tensor, batch_idx: int) -> Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.probabilities(self(x))

    def configure_optimizers(self) -> Optimizer:
        return self.optimizer_factory(self.parameters())

    @torch.no_grad()
    def write_gradient(self, x: Tensor, p: Tensor, y: Tensor) -> None:
        """The gradient of the cross-entropy by its closed form, written where autograd would."""
        error = p - y.to(p.dtype)  # (N, K): predicted probabilities minus 0/1 targets
        self.net.lin.weight.grad = error.T @ x / len(x)  # (K, F), same shape as the weight
        if self.net.lin.bias is not None:
            self.net.lin.bias.grad = error.mean(0)  # (K,)

    def _is_logging_step(self) -> bool:
        # as LinearRegressor's: log only on the steps Lightning writes (trainer.log_every_n_steps)
        return (self.global_step + 1) % self.trainer.log_every_n_steps == 0 or bool(self.trainer.fast_dev_run)

    def _metrics(self, per_row: nn.Module, accuracy, f1) -> None:
        metrics = MetricCollection({"loss": MeanLoss(per_row), "accuracy": accuracy, "f1": f1})
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    # ------------------------------------------------------------ the model interface (gradlab.lessons)

    def coefficients(self) -> tuple[Tensor, Tensor | None]:
        lin = self.net.lin
        return lin.weight.detach(), None if lin.bias is None else lin.bias.detach()

    def plain_layers(self) -> nn.Sequential:
        """The model as the lesson writes it in plain PyTorch, its weights shared: nn.Linear, then the
        sigmoid for logistic regression (softmax regression gives logits, as nn.CrossEntropyLoss takes)."""
        return nn.Sequential(self.net.lin, *([nn.Sigmoid()] if self.labels == "binary" else []))

    def outputs(self, x: Tensor) -> dict[str, Tensor]:
        """The predicted class (an index into the data's classes) and its probability."""
        with torch.no_grad():
            p = self.probabilities(self(x))  # (Q, K)
            if p.shape[1] == 1:  # logistic: the probability of class 1
                p = torch.cat([1 - p, p], 1)
            probability, index = p.max(1)
            return {"class": index, "probability": probability}

    def best_fit(self, x: Tensor, y: Tensor) -> dict | None:
        """sklearn's unregularised LogisticRegression on (x, y); None where rows are separable."""
        if self.separation(x, y) is not None:
            return None  # no finite optimum: a solver would stop wherever its tolerance says
        from sklearn.linear_model import LogisticRegression

        index = self.class_index(y)
        bias = self.net.lin.bias is not None
        fit = LogisticRegression(C=np.inf, fit_intercept=bias, tol=1e-10, max_iter=100_000)
        fit.fit(x.double().numpy(), index.numpy())
        weight = torch.from_numpy(fit.coef_)  # (1, F) for two classes, (K, F) for more
        intercept = torch.from_numpy(fit.intercept_) if bias else None
        if self.net.lin.out_features > 1 and len(weight) == 1:  # softmax on two classes: logits 0 and z
            weight = torch.cat([torch.zeros_like(weight), weight])
            intercept = torch.cat([torch.zeros_like(intercept), intercept]) if bias else None
        logits = x.double() @ weight.T + (intercept if bias else 0)
        if weight.shape[0] == 1:
            loss = nn.functional.binary_cross_entropy_with_logits(logits, index.double()[:, None])
        else:
            loss = nn.functional.cross_entropy(logits, index)
        return {"weight": weight, "bias": intercept, "loss": loss.item()}

    def separation(self, x: Tensor, y: Tensor) -> Literal["complete", "partial"] | None:
        """Whether the rows of (x, y) are linearly separable, which leaves the loss no finite optimum.

        "complete": some W puts every row's class strictly ahead of every other class, so scaling W
        up drives the loss to 0. "partial": some direction D of the weights puts no row's class
        behind and at least one strictly ahead (e.g. one class apart from the rest), so the loss
        falls forever along D towards a positive limit. None: a finite optimum exists. Both are
        linear programmes on the margins (d_{y_i} - d_k) . x_i (Albert and Anderson, 1984).
        """
        from scipy.optimize import linprog

        margins = self._margin_rows(x, y)  # (rows x classes, K * D): one row per margin
        count, width = margins.shape
        # the largest sum of margins, all >= 0, with every weight in [-1, 1]: 0 unless some separate
        most = linprog(-np.asarray(margins.sum(0)).ravel(), A_ub=-margins, b_ub=np.zeros(count), bounds=(-1, 1),
                       method="highs")
        if most.status != 0 or -most.fun <= 1e-7 * count:
            return None
        strict = linprog(np.zeros(width), A_ub=-margins, b_ub=-np.ones(count), bounds=(None, None), method="highs")
        return "complete" if strict.status == 0 else "partial"  # 0: every margin >= 1 is feasible

    def _margin_rows(self, x: Tensor, y: Tensor):
        """A sparse (N (K - 1), K D) matrix whose product with the flattened weights gives every margin."""
        from scipy.sparse import csr_matrix

        index = self.class_index(y).numpy()
        k = max(self.net.lin.out_features, 2)  # logistic: class 1's score against class 0's
        xs = x.double().numpy()
        if self.net.lin.bias is not None:
            xs = np.hstack([xs, np.ones((len(xs), 1))])
        n, d = xs.shape
        row, other = np.nonzero(np.arange(k)[None, :] != index[:, None])  # every (row i, class k != y_i)
        cols = np.arange(d)
        columns = np.hstack([index[row, None] * d + cols, other[:, None] * d + cols])  # + w_{y_i}, - w_k
        values = np.hstack([xs[row], -xs[row]])
        return csr_matrix((values.ravel(), (np.repeat(np.arange(len(row)), 2 * d), columns.ravel())),
                          shape=(len(row), k * d))

    def class_index(self, y: Tensor) -> Tensor:
        return y.reshape(-1).long()


class LogisticClassifier(LinearClassifier):
    """Lesson 08: a linear model and a sigmoid, binary cross-entropy; logs loss (BCE), accuracy and F1."""

    labels = "binary"
    loss_name = "BCE"

    def __init__(
        self,
        n_features: int,
        optimizer: Callable[[Iterable[Tensor]], Optimizer],
        bias: bool = True,
        init: Literal["default", "zeros"] = "default",
        optimization: Optimization = "automatic",
    ):
        super().__init__(n_features, 1, optimizer, bias, init, optimization)
        # plain values only, so checkpoints load with torch.load(weights_only=True)
        self.save_hyperparameters(ignore=["optimizer"], logger=False)
        self.criterion = nn.BCELoss()  # on the sigmoid's output, as the lesson has it
        self._metrics(nn.BCELoss(reduction="none"), BinaryAccuracy(), BinaryF1Score())

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.net(x))  # (N, 1): the probability of class 1

    def probabilities(self, output: Tensor) -> Tensor:
        return output  # (N, 1)

    def predicted(self, output: Tensor) -> Tensor:
        return (output[:, 0] > 0.5).long()  # (N,) class 1 where it is the likelier

    def one_hot(self, y: Tensor) -> Tensor:
        return y  # already (N, 1) 0/1


class SoftmaxClassifier(LinearClassifier):
    """Lesson 11: a linear model with K outputs, softmax cross-entropy; logs loss (CE), accuracy and F1."""

    labels = "index"
    loss_name = "CE"

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        optimizer: Callable[[Iterable[Tensor]], Optimizer],
        bias: bool = True,
        init: Literal["default", "zeros"] = "default",
        optimization: Optimization = "automatic",
    ):
        super().__init__(n_features, n_classes, optimizer, bias, init, optimization)
        self.save_hyperparameters(ignore=["optimizer"], logger=False)
        self.criterion = nn.CrossEntropyLoss()  # softmax and the negative log-likelihood in one, on logits
        # accuracy: the share of rows classified right (micro); F1: the mean over classes (macro)
        self._metrics(nn.CrossEntropyLoss(reduction="none"), MulticlassAccuracy(n_classes, average="micro"),
                      MulticlassF1Score(n_classes, average="macro"))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # (N, K) logits

    def probabilities(self, output: Tensor) -> Tensor:
        return torch.softmax(output, 1)  # (N, K)

    def predicted(self, output: Tensor) -> Tensor:
        return output.argmax(1)  # (N,) the class of the largest logit

    def one_hot(self, y: Tensor) -> Tensor:
        return nn.functional.one_hot(y, self.net.lin.out_features)  # (N, K) 0/1
