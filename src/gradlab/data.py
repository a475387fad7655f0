"""LightningDataModules for in-memory regression data.

Batches are cut from whole tensors by indexing (a view or one gather per batch), not by a
DataLoader fetching rows one by one and collating them: on small models that per-row work
costs far more than the training step itself.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import lightning.pytorch as L
import numpy as np
import torch
from torch import Tensor


class DataError(ValueError):
    """Bad input data: the message names the file, column or row and what is allowed."""


class EpochShuffle:
    """The order in which one process visits its samples in one epoch.

    The permutation depends on (seed, epoch) only, never on global RNG state, so a run resumed
    at an epoch boundary sees exactly the batches an uninterrupted run would. Lightning calls
    `set_epoch` at the start of every epoch on a loader's `sampler`.
    Under DDP each rank takes every `world_size`-th index of the permutation (padded, like
    torch's DistributedSampler, so every rank runs the same number of steps).
    """

    def __init__(self, n: int, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1):
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.n / self.world_size)

    def indices(self) -> Tensor | None:
        """Row indices for this rank and epoch; None means all rows in order (cheap slices)."""
        if not self.shuffle and self.world_size == 1:
            return None
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        padded = len(self) * self.world_size
        if padded > self.n:
            order = torch.cat([order, order[: padded - self.n]])
        return order[self.rank :: self.world_size]


class TensorBatches:
    """An iterable of (x, y) batches cut from two tensors in the order `sampler` gives."""

    batch_sampler = None  # Lightning inspects loaders DataLoader-style; batches are cut here

    def __init__(self, x: Tensor, y: Tensor, batch_size: int | None, sampler: EpochShuffle):
        self.x, self.y, self.sampler = x, y, sampler
        self.batch_size = batch_size or len(sampler)  # None: the whole (rank's) split at once

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self):
        idx, bs = self.sampler.indices(), self.batch_size
        for start in range(0, len(self.sampler), bs):
            if idx is None:
                yield self.x[start : start + bs], self.y[start : start + bs]
            else:
                rows = idx[start : start + bs]
                yield self.x[rows], self.y[rows]


class TensorDataModule(L.LightningDataModule):
    """Splits (X, y) into seeded train/val/test tensors and serves them as TensorBatches.

    Subclasses implement `load()`. An empty val or test split (fraction 0) falls back to the
    training split, so the journal's lessons, which have no held-out data, still report a fit.
    """

    def __init__(
        self,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        batch_size: int | None = None,
        shuffle: bool = True,
        standardize: bool = False,
        seed: int = 42,
    ):
        super().__init__()
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.batch_size, self.shuffle = batch_size, shuffle
        self.standardize, self.seed = standardize, seed
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}
        self.x_mean: list[float] | None = None
        self.x_std: list[float] | None = None

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole dataset: X of shape (N, F) and y of shape (N,)."""
        raise NotImplementedError

    @property
    def n_features(self) -> int:
        self.setup("fit")
        return self.splits["train"][0].shape[1]

    def setup(self, stage: str | None = None) -> None:
        if self.splits:  # idempotent: train.py sets up early to learn n_features and fail fast
            return
        x, y = self.load()
        x = torch.as_tensor(np.asarray(x, dtype=np.float32)).reshape(len(x), -1)  # (N, F)
        y = torch.as_tensor(np.asarray(y, dtype=np.float32)).reshape(-1, 1)  # (N, 1)
        n = len(x)
        n_val, n_test = round(n * self.val_fraction), round(n * self.test_fraction)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        parts = {
            "val": order[:n_val],
            "test": order[n_val : n_val + n_test],
            "train": order[n_val + n_test :],
        }
        if len(parts["train"]) < 1:
            raise DataError(
                f"the training split is empty: {n} rows with val_fraction={self.val_fraction} and "
                f"test_fraction={self.test_fraction}; lower the fractions or add rows"
            )
        if self.standardize:
            xt = x[parts["train"]]
            mean, std = xt.mean(0), xt.std(0, unbiased=False)
            std = torch.where(std > 0, std, torch.ones_like(std))  # constant column: leave as is
            self.x_mean, self.x_std = mean.tolist(), std.tolist()
        x = self.transform(x)
        for name, rows in parts.items():
            # sorted: within a split keep the file's order, so unshuffled batches are contiguous
            rows = rows.sort().values
            self.splits[name] = (x[rows].contiguous(), y[rows].contiguous())
        for name in ("val", "test"):
            if len(parts[name]) == 0:
                self.splits[name] = self.splits["train"]

    def transform(self, x: Tensor) -> Tensor:
        """Raw features as the model sees them (standardised with the train split's statistics)."""
        if self.x_mean is None:
            return x
        return (x - torch.tensor(self.x_mean)) / torch.tensor(self.x_std)

    def state_dict(self) -> dict:
        # saved in every checkpoint, so predict.py can standardise raw inputs the same way
        return {"x_mean": self.x_mean, "x_std": self.x_std}

    def load_state_dict(self, state: dict) -> None:
        self.x_mean, self.x_std = state.get("x_mean"), state.get("x_std")

    def _loader(self, split: str, shuffle: bool) -> TensorBatches:
        x, y = self.splits[split]
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        sampler = EpochShuffle(len(x), shuffle, self.seed, rank, world)
        return TensorBatches(x, y, self.batch_size, sampler)

    def train_dataloader(self) -> TensorBatches:
        return self._loader("train", self.shuffle)

    def val_dataloader(self) -> TensorBatches:
        return self._loader("val", False)

    def test_dataloader(self) -> TensorBatches:
        return self._loader("test", False)

    def predict_dataloader(self) -> TensorBatches:
        return self._loader("test", False)

    def least_squares(self, bias: bool = True) -> dict:
        """The closed-form optimum on the training split, in float64: coefficients and its MSE."""
        x, y = (t.double() for t in self.splits["train"])
        a = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1) if bias else x
        sol = torch.linalg.lstsq(a, y, driver="gelsd").solution  # gelsd: rank-deficient safe
        mse = ((a @ sol - y) ** 2).mean().item()
        coef = sol[: x.shape[1], 0].tolist()
        return {"coef": coef, "intercept": sol[-1, 0].item() if bias else 0.0, "mse": mse}


class ToyDataModule(TensorDataModule):
    """The journal's toy data: X = [1, 2, 3, 4], Y = 2X, all of it used for training."""

    def __init__(self, batch_size: int | None = None, shuffle: bool = False, seed: int = 42):
        super().__init__(0.0, 0.0, batch_size, shuffle, standardize=False, seed=seed)
        self.save_hyperparameters(logger=False)  # stored in checkpoints: eval rebuilds the data

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        x = np.array([1, 2, 3, 4], dtype=np.float32)
        return x, 2 * x


class RegressionDataModule(TensorDataModule):
    """sklearn's make_regression, as in the journal's last lesson."""

    def __init__(
        self,
        n_samples: int = 100,
        n_features: int = 1,
        noise: float = 20.0,
        random_state: int = 1,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        batch_size: int | None = None,
        shuffle: bool = True,
        standardize: bool = False,
        seed: int = 42,
    ):
        super().__init__(val_fraction, test_fraction, batch_size, shuffle, standardize, seed)
        self.n_samples, self.n_feat = n_samples, n_features
        self.noise, self.random_state = noise, random_state
        self.save_hyperparameters(logger=False)

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.datasets import make_regression  # heavy import: only where used

        return make_regression(
            n_samples=self.n_samples,
            n_features=self.n_feat,
            noise=self.noise,
            random_state=self.random_state,
        )


class DiabetesDataModule(TensorDataModule):
    """sklearn's bundled diabetes data (442 x 10, offline), standardised on the train split."""

    def __init__(
        self,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        batch_size: int | None = None,
        shuffle: bool = True,
        standardize: bool = True,
        seed: int = 42,
    ):
        super().__init__(val_fraction, test_fraction, batch_size, shuffle, standardize, seed)
        self.save_hyperparameters(logger=False)

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.datasets import load_diabetes

        # scaled=False: sklearn's own scaling uses all rows, which would leak test statistics
        return load_diabetes(return_X_y=True, scaled=False)


class CsvDataModule(TensorDataModule):
    """A numeric CSV file with a header row: one target column, some or all others as features."""

    def __init__(
        self,
        path: str,
        target: str,
        features: list[str] | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        batch_size: int | None = None,
        shuffle: bool = True,
        standardize: bool = False,
        seed: int = 42,
    ):
        super().__init__(val_fraction, test_fraction, batch_size, shuffle, standardize, seed)
        self.path, self.target = path, target
        self.features = list(features) if features is not None else None
        self.save_hyperparameters(logger=False)

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        return read_csv(self.path, self.target, self.features)


def read_csv(path: str, target: str, features: list[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """Reads a numeric CSV into (X, y), naming the file, row and column of anything bad."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data.path={path!r}: no such file; give the path of a CSV file with a header row")
    try:
        with p.open(newline="") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a text CSV file ({e.reason}); save it as UTF-8 CSV") from None
    rows = [r for r in rows if any(cell.strip() for cell in r)]  # blank lines carry nothing
    if not rows:
        raise DataError(f"{path}: the file is empty; it needs a header row and at least 2 data rows")
    header = [h.strip() for h in rows[0]]
    wanted = [target] + (features if features is not None else [h for h in header if h != target])
    for col in wanted:
        if col not in header:
            raise DataError(f"{path}: no column {col!r}; the columns are {header}")
    if len(wanted) < 2:
        raise DataError(f"{path}: no feature columns besides the target {target!r}; columns are {header}")
    if len(rows) < 3:
        raise DataError(f"{path}: {len(rows) - 1} data row(s); at least 2 are needed to fit a line")
    cols = [header.index(c) for c in wanted]
    data = np.empty((len(rows) - 1, len(cols)), dtype=np.float64)
    for i, row in enumerate(rows[1:]):
        line = i + 2  # 1-based, after the header: what an editor shows
        if len(row) != len(header):
            raise DataError(f"{path}, line {line}: {len(row)} cells, but the header has {len(header)}")
        for j, c in enumerate(cols):
            cell = row[c].strip()
            try:
                value = float(cell)
            except ValueError:
                raise DataError(
                    f"{path}, line {line}, column {wanted[j]!r}: {cell!r} is not a number"
                ) from None
            if not math.isfinite(value):
                raise DataError(
                    f"{path}, line {line}, column {wanted[j]!r}: {cell!r} is not finite; "
                    "remove or fill the row"
                )
            data[i, j] = value
    return data[:, 1:], data[:, 0]
