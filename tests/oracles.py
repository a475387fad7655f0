"""The independent oracles the tests compare gradlab against: plain PyTorch, numpy and sklearn, no
Lightning, no gradlab.

`journal_loop` is the journal's last lesson as written (nn.Linear, MSELoss, an optimiser, and
forward, loss, backward, step, zero_grad), written once here for every test that needs it.
`seeded_split` builds the rows a run trains and tests on without gradlab's datamodules.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler
from torch import Tensor, nn


def seeded_rows(n: int, seed: int, val_fraction: float, test_fraction: float) -> dict[str, np.ndarray]:
    """The row numbers of each split of `seeded_split`."""
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    rows = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
    return {name: np.sort(r) for name, r in rows.items()}


def seeded_split(x: np.ndarray, y: np.ndarray, seed: int, val_fraction: float = 0.1, test_fraction: float = 0.1,
                 standardize: bool = False) -> dict[str, tuple[Tensor, Tensor]]:
    """gradlab's documented seeded split (README, "Data"), built again: a permutation of the rows by
    torch.randperm from the seed; its first round(n * val_fraction) rows are val, the next
    round(n * test_fraction) test, the rest train, each kept in file order; features standardised by
    sklearn's StandardScaler fitted on the train rows alone. {split: (x float32 (n, F), y (n, 1))}."""
    n = len(x)
    rows = seeded_rows(n, seed, val_fraction, test_fraction)
    x = np.asarray(x, dtype=np.float64).reshape(n, -1)
    if standardize:
        x = StandardScaler().fit(x[rows["train"]]).transform(x)
    y = np.asarray(y, dtype=np.float32)
    return {name: (torch.from_numpy(x[r].astype(np.float32)), torch.from_numpy(y[r])[:, None])
            for name, r in rows.items() if len(r)}


def journal_loop(x: Tensor, y: Tensor, weight: Tensor, bias: Tensor | None, lr: float, epochs: int,
                 batch_size: int | None = None, optimizer=torch.optim.SGD, stop_at_non_finite: bool = False,
                 **optimizer_kwargs) -> list[tuple[Tensor, Tensor | None, float]]:
    """(w, b, loss) before training and after each epoch; the loss is the last batch's, measured at
    the weights before that batch's update (as the journal prints it).

    Batches are consecutive rows of (x, y), `batch_size` at a time (None: all rows, full batch).
    `stop_at_non_finite`: return as soon as a loss is not finite (that entry last, weights before it).
    """
    model = nn.Linear(x.shape[1], 1, bias=bias is not None)
    with torch.no_grad():
        model.weight.copy_(weight)
        if bias is not None:
            model.bias.copy_(bias)
    criterion = nn.MSELoss()
    opt = optimizer(model.parameters(), lr=lr, **optimizer_kwargs)
    history = [_state(model, float("nan"))]
    bs = batch_size or len(x)
    for _ in range(epochs):
        for start in range(0, len(x), bs):
            y_predicted = model(x[start : start + bs])  # forward pass and loss
            loss = criterion(y_predicted, y[start : start + bs])
            if stop_at_non_finite and not torch.isfinite(loss):
                history.append(_state(model, loss.item()))
                return history
            loss.backward()  # back propagation (to get the gradient)
            opt.step()  # update the weights
            opt.zero_grad()  # zero the gradient
        history.append(_state(model, loss.item()))
    return history


def _state(model: nn.Linear, loss: float) -> tuple[Tensor, Tensor | None, float]:
    bias = None if model.bias is None else model.bias.detach().clone()
    return model.weight.detach().clone(), bias, loss


def course_loop(x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, lr: float, epochs: int,
                n_classes: int | None = None) -> tuple[float, float, Tensor]:
    """The course's lesson 08 as written (n_classes None: a linear model and a sigmoid, nn.BCELoss on
    its output, y of shape (N, 1)), or the same with K outputs and nn.CrossEntropyLoss (y: (N,)
    class indices); from zero weights, SGD, full batch. (final training loss after the last update,
    test accuracy, weight)."""
    linear = nn.Linear(x_train.shape[1], n_classes or 1)
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()
    if n_classes is None:
        def model(x):
            return torch.sigmoid(linear(x))
        criterion = nn.BCELoss()
    else:
        model, criterion = linear, nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(linear.parameters(), lr=lr)
    for _ in range(epochs):
        y_pred = model(x_train)
        loss = criterion(y_pred, y_train)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():
        final_loss = criterion(model(x_train), y_train).item()
        y_predicted = model(x_test)
        y_predicted_cls = y_predicted.round() if n_classes is None else y_predicted.argmax(1)
        acc = y_predicted_cls.eq(y_test).sum() / float(y_test.shape[0])
    return final_loss, acc.item(), linear.weight.detach().clone()


def feedforward_loop(x: Tensor, y: Tensor, hidden: list[int], activation: str, epochs: int, batch_size: int,
                     optimizer, seed: int = 42, n_classes: int | None = None, **optimizer_kwargs):
    """The course's lesson 13 as written (NeuralNet: nn.Linear, an activation module, nn.Linear;
    CrossEntropyLoss on class indices, or MSELoss with n_classes None), any number of hidden layers;
    weights from PyTorch's default initialisation after torch.manual_seed(seed), layers created
    first to last. Batches are consecutive rows (no shuffle). Returns the trained nn.Sequential."""
    module = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "leaky_relu": nn.LeakyReLU}[activation]
    torch.manual_seed(seed)
    widths = [x.shape[1], *hidden, n_classes or 1]
    layers = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers += [nn.Linear(n_in, n_out)] + ([module()] if i < len(widths) - 2 else [])
    model = nn.Sequential(*layers)
    criterion = nn.CrossEntropyLoss() if n_classes else nn.MSELoss()
    opt = optimizer(model.parameters(), **optimizer_kwargs)
    for _ in range(epochs):
        for start in range(0, len(x), batch_size):
            outputs = model(x[start : start + batch_size])  # forward pass
            loss = criterion(outputs, y[start : start + batch_size])
            opt.zero_grad()  # backward and optimize, as the lesson orders them
            loss.backward()
            opt.step()
    return model


def cnn_loop(x: Tensor, y: Tensor, image_shape: tuple[int, int, int], channels: list[int], kernel_size: int,
             padding: int, hidden: list[int], n_classes: int, epochs: int, batch_size: int, lr: float,
             seed: int = 42, start_from: list[Tensor] | None = None, freeze_features: bool = False,
             accuracies: list[float] | None = None, log_every: int = 1) -> nn.Module:
    """The course's lesson 14 as written (ConvNet: conv, relu, max-pool 2 per convolution, then nn.Linear
    layers with relu between them; CrossEntropyLoss, SGD), on rows of pixels viewed as images; weights
    from PyTorch's default initialisation after torch.manual_seed(seed), layers created first to last.
    Batches are consecutive rows (no shuffle). `start_from`: the parameters to start from instead, in layer
    order; `freeze_features`: the convolutions kept fixed; `accuracies`: gets lesson 16's running accuracy
    (right / seen over the batches since the last one) every `log_every` steps. Returns the trained
    nn.Sequential."""
    torch.manual_seed(seed)
    c, h, w = image_shape
    layers: list[nn.Module] = [nn.Unflatten(1, image_shape)]
    for c_out in channels:
        layers += [nn.Conv2d(c, c_out, kernel_size, padding=padding), nn.ReLU(), nn.MaxPool2d(2, 2)]
        c, h, w = c_out, (h + 2 * padding - kernel_size + 1) // 2, (w + 2 * padding - kernel_size + 1) // 2
    layers.append(nn.Flatten())
    widths = [c * h * w, *hidden, n_classes]
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers += [nn.Linear(n_in, n_out)] + ([nn.ReLU()] if i < len(widths) - 2 else [])
    model = nn.Sequential(*layers)
    if start_from is not None:  # lesson 15: a trained model's weights, in layer order (weight, bias, ...)
        with torch.no_grad():
            for param, value in zip(model.parameters(), start_from, strict=True):
                param.copy_(value)
    for layer in model:
        if freeze_features and isinstance(layer, nn.Conv2d):  # lesson 15: requires_grad = False
            layer.requires_grad_(False)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    step, right, seen = 0, 0, 0
    for _ in range(epochs):
        for start in range(0, len(x), batch_size):
            outputs = model(x[start : start + batch_size])  # forward pass
            loss = criterion(outputs, y[start : start + batch_size])
            optimizer.zero_grad()  # backward and optimize, as the lesson orders them
            loss.backward()
            optimizer.step()
            step += 1
            # lesson 16's running_correct
            right += (outputs.argmax(1) == y[start : start + batch_size]).sum().item()
            seen += len(outputs)
            if accuracies is not None and step % log_every == 0:
                accuracies.append(right / seen)
                right, seen = 0, 0
    return model
