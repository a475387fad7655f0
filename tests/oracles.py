"""The independent oracles the tests compare gradlab against: plain PyTorch, no Lightning, no gradlab.

`journal_loop` is the journal's last lesson as written (nn.Linear, MSELoss, an optimiser, and
forward, loss, backward, step, zero_grad), written once here for every test that needs it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


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
