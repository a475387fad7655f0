"""Three ways to make the gradient, one result: `automatic` (Lightning's loop), `manual` (the
journal's backward/step/zero_grad) and `analytic` (the closed-form MSE gradient, no autograd)
give the same weights after every epoch, and so does an independent plain torch loop."""

from __future__ import annotations

from functools import partial

import lightning.pytorch as L
import numpy as np
import pytest
import torch
from oracles import journal_loop

from gradlab.lessons.data import RegressionDataModule, ToyDataModule
from gradlab.lessons.linear import LinearRegressor

PATHS = ["automatic", "manual", "analytic"]
LR = 0.01
# a few float32 ulps: on a CPU the three paths are bitwise equal and the plain loop is within one
# ulp (it subtracts lr * grad where SGD adds -lr * grad); other BLAS builds may round differently
TIGHT = {"rtol": 1e-6, "atol": 1e-6}


class RecordWeights(L.Callback):
    """The weight and bias at the start and after every training epoch."""

    def __init__(self):
        self.weights: list[torch.Tensor] = []
        self.biases: list[torch.Tensor | None] = []

    def _record(self, pl_module) -> None:
        weight, bias = pl_module.coefficients()
        self.weights.append(weight.clone())
        self.biases.append(None if bias is None else bias.clone())

    def on_train_start(self, trainer, pl_module) -> None:
        self._record(pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._record(pl_module)


def _datamodule(data: str, batch_size: int | None):
    if data == "toy":
        return ToyDataModule(batch_size=batch_size)
    # 3 features, held-out splits off: every row trains, in file order (no shuffle)
    return RegressionDataModule(n_features=3, val_fraction=0.0, test_fraction=0.0,
                                batch_size=batch_size, shuffle=False)


def _fit(optimization: str, data: str, bias: bool, batch_size: int | None, epochs: int, optimizer):
    dm = _datamodule(data, batch_size)
    torch.manual_seed(0)  # the same initial weights for every path
    model = LinearRegressor(dm.n_features, optimizer=optimizer, bias=bias, optimization=optimization)
    record = RecordWeights()
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, callbacks=[record],
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    return dm, record


CASES = [
    # data, bias, batch size, epochs
    pytest.param("toy", False, None, 40, id="toy-no-bias"),
    pytest.param("toy", True, None, 40, id="toy-bias"),
    pytest.param("regression", False, None, 30, id="3-features-no-bias"),
    pytest.param("regression", True, None, 30, id="3-features-bias"),
    pytest.param("regression", True, 16, 10, id="3-features-bias-minibatch"),
]


@pytest.mark.parametrize(("data", "bias", "batch_size", "epochs"), CASES)
def test_three_paths_and_a_plain_torch_loop_agree_after_every_epoch(data, bias, batch_size, epochs):
    sgd = partial(torch.optim.SGD, lr=LR)
    runs = {p: _fit(p, data, bias, batch_size, epochs, sgd) for p in PATHS}
    dm, auto = runs["automatic"]
    assert len(auto.weights) == epochs + 1  # the start and one entry per epoch

    x, y = dm.splits["train"]
    oracle = journal_loop(x, y, auto.weights[0], auto.biases[0], LR, epochs, batch_size)
    for path in PATHS:
        record = runs[path][1]
        torch.testing.assert_close(record.weights[0], auto.weights[0], rtol=0, atol=0)  # same init
        for epoch, (w_ref, b_ref, _) in enumerate(oracle):
            torch.testing.assert_close(record.weights[epoch], w_ref, **TIGHT,
                                       msg=lambda m, p=path, e=epoch: f"{p}, epoch {e}: {m}")
            if bias:
                torch.testing.assert_close(record.biases[epoch], b_ref, **TIGHT,
                                           msg=lambda m, p=path, e=epoch: f"{p}, epoch {e}: {m}")
            else:
                assert record.biases[epoch] is None
    # the weights really moved: agreement is not three copies of the initial values
    assert not torch.allclose(auto.weights[-1], auto.weights[0])


def test_paths_agree_with_adam_too():
    """analytic only writes .grad: any optimiser then steps from it as from autograd's gradient."""
    adam = partial(torch.optim.Adam, lr=0.1)
    runs = {p: _fit(p, "regression", True, None, 20, adam) for p in PATHS}
    dm, auto = runs["automatic"]
    x, y = dm.splits["train"]
    oracle = journal_loop(x, y, auto.weights[0], auto.biases[0], 0.1, 20, optimizer=torch.optim.Adam)
    for path in PATHS:
        for epoch, (w, (w_ref, _, _)) in enumerate(zip(runs[path][1].weights, oracle)):
            torch.testing.assert_close(w, w_ref, **TIGHT, msg=lambda m, p=path, e=epoch: f"{p} {e}: {m}")


@pytest.mark.parametrize("bias", [True, False])
def test_analytic_gradient_equals_autograd_and_the_numpy_formula(bias):
    torch.manual_seed(1)
    x, y = torch.randn(50, 4), torch.randn(50, 1)
    model = LinearRegressor(4, optimizer=partial(torch.optim.SGD, lr=LR), bias=bias)
    lin = model.net.lin

    torch.nn.functional.mse_loss(model(x), y).backward()
    autograd = [p.grad.clone() for p in lin.parameters()]
    model.zero_grad()
    with torch.no_grad():
        model.write_gradient(x, y, model(x))
    analytic = [p.grad.clone() for p in lin.parameters()]

    # numpy, float64: dJ/dw = (2/N) X^T (Xw + b - y), dJ/db = (2/N) sum(Xw + b - y)
    xn, yn = x.double().numpy(), y.double().numpy()
    wn = lin.weight.detach().double().numpy()  # (1, F)
    bn = lin.bias.detach().double().numpy() if bias else 0.0
    residual = xn @ wn.T + bn - yn  # (N, 1)
    numpy_grads = [2 / len(xn) * residual.T @ xn] + ([2 / len(xn) * residual.sum(0)] if bias else [])

    assert len(analytic) == len(autograd) == len(numpy_grads) == (2 if bias else 1)
    for a, g, n in zip(analytic, autograd, numpy_grads):
        assert a.shape == g.shape
        torch.testing.assert_close(a, g, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a.double().numpy(), n, rtol=1e-5, atol=1e-6)
