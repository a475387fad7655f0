"""The course's lesson 13: a feed-forward neural network, and backpropagation written out.

`Network` is the lesson's NeuralNet: nn.Linear layers with an activation between them (64 -> 500 ReLU
-> 10 on the digits). `MLP` trains it, for classification (K outputs, nn.CrossEntropyLoss) or for
regression (one output, nn.MSELoss), on the three paths of gradlab.lessons.linear:
- automatic: Lightning calls backward, step and zero_grad;
- manual:    the lesson's loop: forward, loss, backward, step, zero_grad;
- analytic:  no autograd. The forward pass keeps each layer's input a and pre-activation z; the
             backward pass applies the chain rule from the last layer to the first (below) and
             writes every .grad; then the optimiser steps.

Backpropagation, for layers z_l = a_l W_l^T + b_l and a_{l+1} = act(z_l) (a_1 = x, the last z the output):
    delta_L = dJ/dz_L                        the loss's gradient at the output, (N, K)
    dJ/dW_l = delta_l^T a_l                  (out, in), the weight's shape
    dJ/db_l = sum over rows of delta_l       (out,)
    delta_{l-1} = (delta_l W_l) * act'(z_{l-1})   back through the weights, then the activation
It is the journal's dJ/dw = 2 x (w x - y), one layer deeper at a time.

It implements the model interface (gradlab.lessons), with what a hidden layer changes: no
`coefficients()` (None: the weights of a hidden layer are no per-feature effects) and no `best_fit`
(None: the loss is not convex in the weights, so there is no optimum to compare with);
`architecture()` says what it has instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

import lightning.pytorch as L
import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection, R2Score
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from gradlab.lessons.classifiers import MeanLoss
from gradlab.lessons.linear import Optimization

Activation = Literal["relu", "tanh", "sigmoid", "leaky_relu"]
LEAKY_SLOPE = 0.01  # nn.LeakyReLU's default, what lesson 12 prints


# ------------------------------------------------------------------ activations and their derivatives (lesson 12)

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "leaky_relu": lambda z: nn.functional.leaky_relu(z, LEAKY_SLOPE),
}
ACTIVATION_LAYERS: dict[str, Callable[[], nn.Module]] = {  # the same, as the nn layers lesson 12 also shows
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": lambda: nn.LeakyReLU(LEAKY_SLOPE),
}


def derivative(activation: str, z: Tensor) -> Tensor:
    """act'(z), elementwise: what the analytic path multiplies by on the way back through a layer.

    At a kink (z = 0 for relu and leaky_relu) it takes the value autograd takes: the slope on the left.
    """
    if activation == "relu":
        return (z > 0).to(z.dtype)  # 1 where the unit is on, 0 where it is off
    if activation == "leaky_relu":
        return torch.where(z > 0, torch.ones_like(z), torch.full_like(z, LEAKY_SLOPE))  # 0.01 in z's dtype
    if activation == "tanh":
        return 1 - torch.tanh(z) ** 2
    if activation == "sigmoid":
        s = torch.sigmoid(z)
        return s * (1 - s)
    raise ValueError(f"no derivative written for activation {activation!r}; the analytic path knows "
                     f"{', '.join(ACTIVATIONS)}")


# ------------------------------------------------------------------ the network (the lesson's NeuralNet)


class Network(nn.Module):
    """x -> Linear -> act -> ... -> Linear: `hidden` widths between `n_features` inputs and `n_outputs`."""

    def __init__(self, n_features: int, hidden: list[int], n_outputs: int, activation: str):
        super().__init__()
        widths = [n_features, *hidden, n_outputs]  # e.g. [64, 500, 10]
        self.layers = nn.ModuleList(nn.Linear(n_in, n_out) for n_in, n_out in zip(widths[:-1], widths[1:]))
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        a = x  # (N, F)
        for layer in self.layers[:-1]:
            a = ACTIVATIONS[self.activation](layer(a))  # (N, hidden)
        return self.layers[-1](a)  # (N, K): logits, or the prediction of a regression

    def forward_keeping(self, x: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """The forward pass, keeping what the backward pass needs: each layer's input a and its
        pre-activation z = a W^T + b."""
        inputs, pre_activations = [], []
        a = x
        for i, layer in enumerate(self.layers):
            inputs.append(a)
            z = a @ layer.weight.T + layer.bias  # (N, out)
            pre_activations.append(z)
            a = ACTIVATIONS[self.activation](z) if i < len(self.layers) - 1 else z
        return a, inputs, pre_activations

    @torch.no_grad()
    def backward_by_hand(self, delta: Tensor, inputs: list[Tensor], pre_activations: list[Tensor]) -> None:
        """Backpropagation: from dJ/dz of the last layer (`delta`, (N, K)), every layer's .grad."""
        for i in reversed(range(len(self.layers))):
            layer = self.layers[i]
            layer.weight.grad = delta.T @ inputs[i]  # (out, in) = (out, N) @ (N, in)
            layer.bias.grad = delta.sum(0)  # (out,)
            if i > 0:  # on to the layer below: back through the weights, then through its activation
                delta = (delta @ layer.weight) * derivative(self.activation, pre_activations[i - 1])  # (N, in)


# ------------------------------------------------------------------ the LightningModule (the lesson's loop)


class MLP(L.LightningModule):
    """Trains `Network` with cross-entropy on `n_classes` classes, or with MSE (n_classes None)."""

    labels = "index"  # on classes: class indices, as nn.CrossEntropyLoss takes them
    fits_numbers_too = True  # on numeric targets (no classes, so n_classes None): a regression

    def __init__(
        self,
        n_features: int,
        optimizer: Callable[[Iterable[Tensor]], Optimizer],
        hidden: list[int] = (500,),
        activation: Activation = "relu",
        n_classes: int | None = None,
        init: Literal["default"] = "default",
        optimization: Optimization = "automatic",
    ):
        super().__init__()
        hidden = [int(h) for h in hidden]
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden={hidden}: a network needs at least one hidden layer of width >= 1")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r}: allowed are {', '.join(ACTIVATIONS)}")
        if init != "default":  # a symmetric network: every hidden unit gets the same gradient
            raise ValueError(f"init={init!r}: a network with hidden layers starts from PyTorch's random "
                             "weights ('default'); from zeros every hidden unit would stay the same")
        # plain values only, so checkpoints load with torch.load(weights_only=True)
        self.save_hyperparameters(ignore=["optimizer"], logger=False)
        self.task = "classification" if n_classes else "regression"
        self.net = Network(n_features, hidden, n_classes or 1, activation)
        self.example_input_array = torch.zeros(1, n_features)  # one input row: what add_graph traces (lesson 16)
        self.optimizer_factory = optimizer
        self.optimization = optimization
        self.automatic_optimization = optimization == "automatic"
        if n_classes:
            self.criterion = nn.CrossEntropyLoss()  # softmax and the negative log-likelihood in one
            self.loss_name = "CE"
            metrics = MetricCollection({"loss": MeanLoss(nn.CrossEntropyLoss(reduction="none")),
                                        "accuracy": MulticlassAccuracy(n_classes, average="micro"),
                                        "f1": MulticlassF1Score(n_classes, average="macro")})
            self.running_correct, self.running_total = 0, 0  # training rows classified right, and seen
        else:
            self.criterion = nn.MSELoss()
            self.loss_name = "MSE"
            metrics = MetricCollection({"loss": MeanSquaredError(), "mae": MeanAbsoluteError(), "r2": R2Score()})
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch  # (N, F); (N,) class indices or (N, 1) numbers
        log_now = self._is_logging_step()  # asked first: a manual step moves global_step
        if self.optimization == "automatic":
            outputs = self(x)  # forward
            loss = self.criterion(outputs, y)  # Lightning does backward, step and zero_grad with it
        elif self.optimization == "manual":  # the lesson's loop
            opt = self.optimizers()
            outputs = self(x)  # 1. forward
            loss = self.criterion(outputs, y)
            self.manual_backward(loss)  # 2. backward: the gradient by autograd
            opt.step()  # 3. update the weights
            opt.zero_grad()  # 4. zero the gradient
        else:  # analytic: backpropagation written out, no autograd
            opt = self.optimizers()
            with torch.no_grad():  # no graph: the gradient comes from the chain rule below
                outputs, inputs, pre_activations = self.net.forward_keeping(x)  # 1. forward, keeping a and z
                loss = self.criterion(outputs, y)
                self.net.backward_by_hand(self.output_gradient(outputs, y), inputs, pre_activations)  # 2.
            opt.step()  # 3. update the weights
            opt.zero_grad()  # 4. zero the gradient
        if self.task == "classification":
            self.running_correct += (outputs.argmax(1) == y).sum()  # lesson 16's running_correct
            self.running_total += len(y)
        if log_now:
            self.log("train/loss", loss, prog_bar=True)
            if self.task == "classification":
                self.log("train/accuracy", self.running_correct / self.running_total)  # since the last point
                self.running_correct, self.running_total = 0, 0
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.val_metrics.update(*self._scored(x, y))
        self.log_dict(self.val_metrics)  # computed over the whole split at the epoch's end

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.test_metrics.update(*self._scored(x, y))
        self.log_dict(self.test_metrics)

    def predict_step(self, batch: tuple[Tensor, Tensor] | Tensor, batch_idx: int) -> Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return torch.softmax(self(x), 1) if self.task == "classification" else self(x)

    def configure_optimizers(self) -> Optimizer:
        return self.optimizer_factory(self.parameters())

    def output_gradient(self, output: Tensor, y: Tensor) -> Tensor:
        """dJ/dz at the output, where backpropagation starts: (softmax(z) - one_hot(y)) / N for the
        mean cross-entropy, 2 (z - y) / N for the mean squared error of one output."""
        if self.task == "classification":
            return (torch.softmax(output, 1) - nn.functional.one_hot(y, output.shape[1])) / len(output)
        return 2 * (output - y) / output.numel()

    def _scored(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        output = self(x)
        return (output, y) if self.task == "classification" else (output.squeeze(-1), y.squeeze(-1))

    def _is_logging_step(self) -> bool:
        # as LinearRegressor's: log only on the steps Lightning writes (trainer.log_every_n_steps)
        return (self.global_step + 1) % self.trainer.log_every_n_steps == 0 or bool(self.trainer.fast_dev_run)

    # ------------------------------------------------------------ the model interface (gradlab.lessons)

    def coefficients(self) -> None:
        """None: a hidden layer's weights are not one effect per feature, so there are none to show."""
        return None

    def best_fit(self, x: Tensor, y: Tensor) -> None:
        """None: the loss of a network with a hidden layer is not convex in its weights (swapping two
        hidden units gives the same loss), so no optimum is known to measure a gap to."""
        return None

    def architecture(self) -> str:
        """The layers, e.g. "64 -> 500 relu -> 10"."""
        widths = [self.net.layers[0].in_features] + [layer.out_features for layer in self.net.layers]
        return " -> ".join([str(widths[0])] + [f"{w} {self.net.activation}" for w in widths[1:-1]]
                           + [str(widths[-1])])

    def plain_layers(self) -> nn.Sequential:
        """The network as the lesson writes it, nn.Linear layers with the activation's nn layer between
        them (the same nn.Linear modules, so the same weights)."""
        layers: list[nn.Module] = []
        for layer in self.net.layers[:-1]:
            layers += [layer, ACTIVATION_LAYERS[self.net.activation]()]
        return nn.Sequential(*layers, self.net.layers[-1])

    def outputs(self, x: Tensor) -> dict[str, Tensor]:
        """A classifier's class (an index into the data's classes) and its probability; a regression's
        prediction."""
        with torch.no_grad():
            if self.task == "regression":
                return {"prediction": self(x)[:, 0]}
            probability, index = torch.softmax(self(x), 1).max(1)
            return {"class": index, "probability": probability}
