"""The data the lessons train on: sklearn's own rows, split by the seed, served as batches; and
the best fit the reports compare against, against numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import make_regression

from gradlab.data import EpochShuffle, RegressionDataModule, TensorBatches
from gradlab.models import LinearRegressor


@pytest.mark.parametrize(("n", "features", "noise"), [(100, 1, 20.0), (257, 4, 0.0)])
def test_regression_splits_are_sklearns_make_regression_rows_cast_to_float32(n, features, noise):
    dm = RegressionDataModule(n_samples=n, n_features=features, noise=noise, random_state=3)
    dm.setup()
    x, y = make_regression(n_samples=n, n_features=features, noise=noise, random_state=3)
    rows = dm.split_rows(n)
    for name, (xs, ys) in dm.splits.items():
        np.testing.assert_array_equal(xs.numpy(), x[rows[name].numpy()].astype(np.float32))
        np.testing.assert_array_equal(ys.numpy()[:, 0], y[rows[name].numpy()].astype(np.float32))
    assert sum(len(r) for r in rows.values()) == n and len(set(torch.cat(list(rows.values())).tolist())) == n


@pytest.mark.parametrize("bias", [True, False])
def test_best_fit_is_numpys_least_squares(bias):
    dm = RegressionDataModule(n_samples=300, n_features=5, noise=3.0)
    dm.setup()
    x, y = dm.splits["train"]
    best = LinearRegressor(5, optimizer=torch.optim.SGD, bias=bias).best_fit(x, y)
    a = x.double().numpy()
    a = np.c_[a, np.ones(len(a))] if bias else a
    coef, *_ = np.linalg.lstsq(a, y.double().numpy(), rcond=None)
    np.testing.assert_allclose(best["weight"].numpy()[0], coef[:5, 0], rtol=1e-9, atol=1e-9)
    if bias:
        np.testing.assert_allclose(best["bias"].numpy(), coef[5], rtol=1e-9, atol=1e-9)
    else:
        assert best["bias"] is None
    assert best["loss"] == pytest.approx(float(np.mean((a @ coef - y.double().numpy()) ** 2)), rel=1e-12)


def test_best_fit_on_a_rank_deficient_split_is_the_minimum_norm_solution():
    x = torch.tensor([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]])  # the second column is twice the first
    y = torch.tensor([[1.0], [2.0], [3.0]])
    best = LinearRegressor(2, optimizer=torch.optim.SGD, bias=False).best_fit(x, y)
    minimum_norm = np.linalg.pinv(x.double().numpy()) @ [1, 2, 3]
    np.testing.assert_allclose(best["weight"].numpy()[0], minimum_norm, atol=1e-12)
    assert best["loss"] == pytest.approx(0.0, abs=1e-20)


def test_batches_are_the_rows_the_epochs_permutation_names():
    x, y = torch.arange(10.0).reshape(10, 1), torch.arange(10.0).reshape(10, 1) * 2
    sampler = EpochShuffle(10, shuffle=True, seed=7)
    sampler.set_epoch(3)
    order = sampler.indices()
    batches = list(TensorBatches(x, y, 4, sampler))
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    torch.testing.assert_close(torch.cat([b[0] for b in batches])[:, 0], order.float())
    torch.testing.assert_close(torch.cat([b[1] for b in batches]), torch.cat([b[0] for b in batches]) * 2)
    sampler.set_epoch(4)
    assert not torch.equal(sampler.indices(), order)  # a new order each epoch, from (seed, epoch) alone
