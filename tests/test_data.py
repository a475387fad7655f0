"""The data the lessons train on: sklearn's own rows, split by the seed, served as batches; and
the best fit the reports compare against, against numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from oracles import seeded_rows, seeded_split
from sklearn.datasets import load_diabetes, make_regression
from sklearn.preprocessing import StandardScaler

from gradlab.lessons.data import (
    CsvDataModule,
    DiabetesDataModule,
    EpochShuffle,
    RegressionDataModule,
    TensorBatches,
)
from gradlab.lessons.linear import LinearRegressor


@pytest.mark.parametrize(("n", "features", "noise"), [(100, 1, 20.0), (257, 4, 0.0)])
def test_regression_splits_are_sklearns_make_regression_rows_cast_to_float32(n, features, noise):
    dm = RegressionDataModule(n_samples=n, n_features=features, noise=noise, random_state=3, seed=5)
    dm.setup()
    expected = seeded_split(*make_regression(n_samples=n, n_features=features, noise=noise, random_state=3), 5)
    assert dm.splits.keys() == expected.keys()
    for name, (x, y) in expected.items():
        torch.testing.assert_close(dm.splits[name][0], x, rtol=0, atol=0)
        torch.testing.assert_close(dm.splits[name][1], y, rtol=0, atol=0)


@pytest.mark.parametrize("data", ["regression", "diabetes", "csv"])
def test_standardisation_uses_the_training_splits_mean_and_std_only(data, tmp_path):
    """The oracle scales with sklearn's StandardScaler fitted on the training rows, which it picks
    itself: standardising with every row's statistics (a test-set leak) fails here."""
    x, y = make_regression(n_samples=200, n_features=3, noise=5.0, random_state=0)
    if data == "regression":
        dm = RegressionDataModule(n_samples=200, n_features=3, noise=5.0, random_state=0, standardize=True, seed=9)
    elif data == "diabetes":
        x, y = load_diabetes(return_X_y=True, scaled=False)
        dm = DiabetesDataModule(seed=9)
    else:
        path = tmp_path / "rows.csv"
        x = x * [1.0, 10.0, 0.1] + [0.0, 50.0, -3.0]  # columns far from mean 0, std 1
        np.savetxt(path, np.c_[x, y], delimiter=",", header="a,b,c,y", comments="", fmt="%.17g")
        dm = CsvDataModule(str(path), "y", standardize=True, seed=9)
        x = x.astype(np.float32).astype(np.float64)  # a CSV's numbers are stored as float32, as they are read
    dm.setup()
    fractions = (dm.val_fraction, dm.test_fraction)
    scaler = StandardScaler().fit(x[seeded_rows(len(x), 9, *fractions)["train"]])
    np.testing.assert_allclose(dm.x_mean, scaler.mean_, rtol=1e-12)
    np.testing.assert_allclose(dm.x_std, scaler.scale_, rtol=1e-12)
    for name, (xs, _) in seeded_split(x, y, 9, *fractions, standardize=True).items():
        torch.testing.assert_close(dm.splits[name][0], xs, rtol=0, atol=0)


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
