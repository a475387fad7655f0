"""The course's lesson 14: a convolutional neural network.

`ConvNet` is the lesson's ConvNet, built from YAML: `features`, the convolutions (each followed by
ReLU and max-pooling), then `head`, the linear layers (ReLU between them) on the flattened feature
maps. Lesson 14 on CIFAR-10 (3 x 32 x 32) is conv(3->6, 5) -> pool -> conv(6->16, 5) -> pool ->
400 -> 120 -> 84 -> 10; two 5x5 convolutions and two poolings do not fit sklearn's 8 x 8 digits, so
experiment=course_cnn takes 3x3 convolutions with padding 1 (each keeps the size; each pooling halves
it): 1x8x8 -> conv(1->6) -> 6x4x4 -> conv(6->16) -> 16x2x2 = 64 -> 120 -> 84 -> 10.

The data serves each image as a row of C*H*W pixels (as the MLP takes them, so predict.py and the
standardisation stay the same); `forward` views the rows as (N, C, H, W) images.

`CNN` trains it with nn.CrossEntropyLoss on two paths: automatic (Lightning calls backward, step and
zero_grad) and manual (the lesson's loop). There is no analytic path: backpropagation through a
convolution written out by hand is past the course (gradlab.checks.schema refuses it with that reason).
It implements the model interface (gradlab.lessons) as the MLP does: `coefficients()` and `best_fit`
None, `architecture()` the layers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

import lightning.pytorch as L
import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from gradlab.lessons.classifiers import MeanLoss


class ConvNet(nn.Module):
    """(N, C*H*W) pixel rows -> `features` (conv, relu, max-pool per entry of `channels`) -> flatten ->
    `head` (linear layers with relu between them, the last one giving `n_classes` logits)."""

    def __init__(self, image_shape: tuple[int, int, int], channels: list[int], kernel_size: int, padding: int,
                 pool: int, hidden: list[int], n_classes: int):
        super().__init__()
        self.image_shape = tuple(image_shape)  # (C, H, W)
        c, h, w = self.image_shape
        layers: list[nn.Module] = []
        for c_out in channels:
            layers += [nn.Conv2d(c, c_out, kernel_size, padding=padding), nn.ReLU(), nn.MaxPool2d(pool)]
            c = c_out
            h, w = (h + 2 * padding - kernel_size + 1) // pool, (w + 2 * padding - kernel_size + 1) // pool
        self.features = nn.Sequential(*layers)
        self.map_shape = (c, h, w)  # what the last pooling leaves, e.g. (16, 2, 2)
        widths = [c * h * w, *hidden, n_classes]  # e.g. [64, 120, 84, 10]
        head: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            head += [nn.Linear(n_in, n_out)] + ([nn.ReLU()] if i < len(widths) - 2 else [])
        self.head = nn.Sequential(*head)
        self.activation = "relu"  # after each convolution and between linear layers (lesson 12's relu)

    def forward(self, x: Tensor) -> Tensor:
        x = x.view(-1, *self.image_shape)  # (N, C, H, W)
        x = self.features(x)  # (N, 16, 2, 2)
        x = x.flatten(1)  # (N, 64), the lesson's x.view(-1, 16 * 5 * 5)
        return self.head(x)  # (N, K) logits


def map_sizes(image_shape: tuple[int, int, int], channels: list[int], kernel_size: int, padding: int,
              pool: int) -> list[tuple[int, int]]:
    """(H, W) after each convolution, before its pooling; and after each pooling, in turn."""
    _, h, w = image_shape
    sizes = []
    for _ in channels:
        h, w = h + 2 * padding - kernel_size + 1, w + 2 * padding - kernel_size + 1
        sizes.append((h, w))
        h, w = h // pool, w // pool
        sizes.append((h, w))
    return sizes


class CNN(L.LightningModule):
    """Trains `ConvNet` with cross-entropy on `n_classes` classes of images."""

    labels = "index"  # class indices, as nn.CrossEntropyLoss takes them
    accuracy_per_line = True  # the report prints lesson 14's lines: the network's accuracy, then one per class

    def __init__(
        self,
        n_features: int,
        optimizer: Callable[[Iterable[Tensor]], Optimizer],
        n_classes: int,
        image_shape: list[int] | None = None,
        channels: list[int] = (6, 16),
        kernel_size: int = 3,
        padding: int = 1,
        pool: int = 2,
        hidden: list[int] = (120, 84),
        optimization: Literal["automatic", "manual"] = "automatic",
    ):
        super().__init__()
        shape = _image_shape(image_shape, n_features)
        channels, hidden = [int(c) for c in channels], [int(h) for h in hidden]
        sizes = map_sizes(shape, channels, kernel_size, padding, pool)
        for i, size in enumerate(sizes):
            if min(size) < 1:
                raise ValueError(
                    f"model.kernel_size={kernel_size} (padding {padding}, pooling {pool}, {len(channels)} "
                    f"convolutions) does not fit a {shape[1]}x{shape[2]} image: the feature maps would be "
                    f"{' -> '.join(f'{h}x{w}' for h, w in sizes[:i + 1])}; each convolution leaves "
                    f"H + 2*padding - kernel_size + 1 and each pooling divides by {pool}, so pick a smaller "
                    "kernel, more padding or fewer model.channels")
        if optimization not in ("automatic", "manual"):
            raise ValueError(f"optimization={optimization!r}: a CNN trains on 'automatic' or 'manual'; "
                             "backpropagation through a convolution by hand is past the course")
        # plain values only, so checkpoints load with torch.load(weights_only=True)
        self.save_hyperparameters(ignore=["optimizer"], logger=False)
        self.task = "classification"
        self.net = ConvNet(shape, channels, kernel_size, padding, pool, hidden, n_classes)
        self.example_input_array = torch.zeros(1, n_features)  # one input row: what add_graph traces (lesson 16)
        self.optimizer_factory = optimizer
        self.optimization = optimization
        self.automatic_optimization = optimization == "automatic"
        self.criterion = nn.CrossEntropyLoss()
        self.loss_name = "CE"
        metrics = MetricCollection({"loss": MeanLoss(nn.CrossEntropyLoss(reduction="none")),
                                    "accuracy": MulticlassAccuracy(n_classes, average="micro"),
                                    "f1": MulticlassF1Score(n_classes, average="macro")})
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.running_correct, self.running_total = 0, 0  # training images classified right, and seen

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch  # (N, C*H*W) pixels; (N,) class indices
        log_now = self._is_logging_step()  # asked first: a manual step moves global_step
        if self.optimization == "automatic":
            outputs = self(x)  # forward
            loss = self.criterion(outputs, y)  # Lightning does backward, step and zero_grad with it
        else:  # manual: the lesson's loop
            opt = self.optimizers()
            outputs = self(x)  # 1. forward
            loss = self.criterion(outputs, y)
            opt.zero_grad()  # 2. backward and optimize, as the lesson orders them
            self.manual_backward(loss)
            opt.step()
        self.running_correct += (outputs.argmax(1) == y).sum()  # lesson 16's running_correct
        self.running_total += len(y)
        if log_now:
            self.log("train/loss", loss, prog_bar=True)
            self.log("train/accuracy", self.running_correct / self.running_total)  # since the last point
            self.running_correct, self.running_total = 0, 0
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.val_metrics.update(self(x), y)
        self.log_dict(self.val_metrics)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.test_metrics.update(self(x), y)
        self.log_dict(self.test_metrics)

    def predict_step(self, batch: tuple[Tensor, Tensor] | Tensor, batch_idx: int) -> Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return torch.softmax(self(x), 1)

    def configure_optimizers(self) -> Optimizer:
        return self.optimizer_factory(self.parameters())

    def _is_logging_step(self) -> bool:
        # as the MLP's: log only on the steps Lightning writes (trainer.log_every_n_steps)
        return (self.global_step + 1) % self.trainer.log_every_n_steps == 0 or bool(self.trainer.fast_dev_run)

    # ------------------------------------------------------------ the model interface (gradlab.lessons)

    def coefficients(self) -> None:
        """None: a convolution's kernels are not one effect per pixel."""
        return None

    def best_fit(self, x: Tensor, y: Tensor) -> None:
        """None: the loss is not convex in the weights, so no optimum is known."""
        return None

    def architecture(self) -> str:
        """The image and each feature map's shape, then the head's widths, e.g.
        "1x8x8 -> 6x4x4 -> 16x2x2 -> 120 -> 84 -> 10 (3x3 conv, relu, pool 2)"."""
        hp = self.hparams
        shape = self.net.image_shape
        sizes = map_sizes(shape, list(hp.channels), hp.kernel_size, hp.padding, hp.pool)[1::2]
        maps = [f"{c}x{h}x{w}" for c, (h, w) in zip(hp.channels, sizes)]
        widths = [str(m.out_features) for m in self.net.head if isinstance(m, nn.Linear)]
        k = hp.kernel_size
        return " -> ".join(["x".join(map(str, shape)), *maps, *widths]) + f" ({k}x{k} conv, relu, pool {hp.pool})"

    def plain_layers(self) -> nn.Sequential:
        """The network as one nn.Sequential of torch's layers (the same modules, so the same weights):
        the pixel rows viewed as images, the features, flattened (the lesson's x.view), the head."""
        return nn.Sequential(nn.Unflatten(1, self.net.image_shape), *self.net.features, nn.Flatten(),
                             *self.net.head)

    def outputs(self, x: Tensor) -> dict[str, Tensor]:
        """The class (an index into the data's classes) and its probability."""
        with torch.no_grad():
            probability, index = torch.softmax(self(x), 1).max(1)
            return {"class": index, "probability": probability}


def _image_shape(image_shape: list[int] | None, n_features: int) -> tuple[int, int, int]:
    """(C, H, W) from the data's image shape, (H, W) meaning one channel; it must hold n_features pixels."""
    if image_shape is None:
        raise ValueError(f"model=cnn takes images, but the data gives rows of {n_features} numbers with no "
                         "image shape; use data=digits (8x8 images), or a data set with an `image_shape`")
    shape = [int(s) for s in image_shape]
    shape = [1, *shape] if len(shape) == 2 else shape
    if len(shape) != 3 or min(shape) < 1 or shape[0] * shape[1] * shape[2] != n_features:
        raise ValueError(f"image_shape={list(image_shape)}: model=cnn takes (channels, height, width) or "
                         f"(height, width), positive, whose product is the data's {n_features} pixels a row")
    return shape[0], shape[1], shape[2]
