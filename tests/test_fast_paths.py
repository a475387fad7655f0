"""The fast paths give the numbers of the slow ones: make_regression generated in float32 chunks
straight into the splits is sklearn's make_regression bit for bit, the chunked least squares is
numpy's, and batches cut with index_select are the rows the epoch's permutation names."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import make_regression

from gradlab.data import EpochShuffle, RegressionDataModule, TensorBatches, make_regression_splits


@pytest.mark.parametrize(("n", "features", "noise", "chunk"), [
    (100, 1, 20.0, 16384),  # the journal's data, one chunk
    (100, 1, 20.0, 7),      # many chunks, the last one short
    (3001, 12, 0.0, 1000),  # no noise
    (5000, 100, 5.0, 333),  # more features than make_regression's 10 informative ones
])
def test_make_regression_splits_are_sklearns_rows_cast_to_float32(n, features, noise, chunk):
    dm = RegressionDataModule(n_samples=n, n_features=features, noise=noise, random_state=3)
    parts = dm.split_rows(n)
    splits = make_regression_splits(parts, features, noise, 3, chunk=chunk)
    x, y = make_regression(n_samples=n, n_features=features, noise=noise, random_state=3)  # float64
    x, y = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.float32)).reshape(-1, 1)
    for name, rows in parts.items():
        assert torch.equal(splits[name][0], x[rows]), name
        assert torch.equal(splits[name][1], y[rows]), name


@pytest.mark.parametrize("bias", [True, False])
def test_chunked_least_squares_is_numpys(bias):
    dm = RegressionDataModule(n_samples=40000, n_features=6, standardize=True)  # several 16k-row blocks
    dm.setup()
    x, y = (t.double().numpy() for t in dm.splits["train"])
    a = np.c_[x, np.ones(len(x))] if bias else x
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    best = dm.least_squares(bias=bias)
    np.testing.assert_allclose(best["coef"], coef[: x.shape[1], 0], rtol=1e-9, atol=1e-9)
    assert best["intercept"] == pytest.approx(coef[-1, 0] if bias else 0.0, rel=1e-9, abs=1e-9)
    assert best["mse"] == pytest.approx(((a @ coef - y) ** 2).mean(), rel=1e-9)
    assert dm.least_squares(bias=bias) is best  # computed once


def test_least_squares_on_a_rank_deficient_split_is_the_minimum_norm_solution():
    dm = RegressionDataModule(n_samples=300, n_features=2, val_fraction=0.0, test_fraction=0.0)
    dm.setup()
    x, y = dm.splits["train"]
    dm.splits["train"] = (torch.cat([x, x[:, :1]], 1), y)  # a repeated column: no unique optimum
    best = dm.least_squares()
    a = np.c_[dm.splits["train"][0].double().numpy(), np.ones(len(x))]
    coef, *_ = np.linalg.lstsq(a, y.double().numpy(), rcond=None)  # numpy: the minimum-norm one
    np.testing.assert_allclose(best["coef"] + [best["intercept"]], coef[:, 0], rtol=1e-8, atol=1e-8)


def test_batches_are_the_rows_the_epochs_permutation_names():
    x, y = torch.randn(1000, 3), torch.randn(1000, 1)
    sampler = EpochShuffle(len(x), shuffle=True, seed=7)
    sampler.set_epoch(4)
    order = sampler.indices()
    batches = list(TensorBatches(x, y, 128, sampler))
    assert len(batches) == 8
    torch.testing.assert_close(torch.cat([b[0] for b in batches]), x[order], rtol=0, atol=0)
    torch.testing.assert_close(torch.cat([b[1] for b in batches]), y[order], rtol=0, atol=0)


def test_one_batch_of_every_row_is_the_split_in_file_order():
    x, y = torch.randn(80, 1), torch.randn(80, 1)
    (xb, yb), = TensorBatches(x, y, None, EpochShuffle(len(x), shuffle=True, seed=7))
    assert xb.data_ptr() == x.data_ptr() and yb.data_ptr() == y.data_ptr()  # the tensors themselves
