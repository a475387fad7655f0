"""LightningDataModules for in-memory regression data.

Batches are cut from whole tensors by indexing (a view or one gather per batch), not by a
DataLoader fetching rows one by one and collating them: on small models that per-row work
costs far more than the training step itself.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
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
        bs, sampler = self.batch_size, self.sampler
        # One batch of every row on one process (full-batch gradient descent): its mean does not
        # depend on the row order, so the shuffle and its copy are skipped; rows stay in file order.
        idx = None if bs >= sampler.n and sampler.world_size == 1 else sampler.indices()
        if idx is None and bs >= len(self.x):
            yield self.x, self.y  # the whole split, as it is
            return
        for start in range(0, len(sampler), bs):
            if idx is None:
                yield self.x[start : start + bs], self.y[start : start + bs]
            else:
                rows = idx[start : start + bs]
                # index_select: one gather; x[rows] goes through advanced indexing, 5-8x slower here
                yield self.x.index_select(0, rows), self.y.index_select(0, rows)


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
        self.saved_fingerprint: str | None = None  # the test split's, as a checkpoint recorded it
        self._fingerprint: str | None = None

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
        parts = self.split_rows(len(x))
        self._set_splits({name: (x.index_select(0, r), y.index_select(0, r)) for name, r in parts.items()})

    def split_rows(self, n: int) -> dict[str, Tensor]:
        """Row numbers of the val, test and train splits of n rows (each sorted), from the seed."""
        n_val, n_test = round(n * self.val_fraction), round(n * self.test_fraction)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        parts = {
            "val": order[:n_val],
            "test": order[n_val : n_val + n_test],
            "train": order[n_val + n_test :],
        }
        for name, rows in parts.items():
            # fitting needs 2 training rows, and R2 (logged per split) 2 rows; an empty val or test
            # split is fine (it falls back to the training split)
            if len(rows) == 1 or (name == "train" and len(rows) == 0):
                raise DataError(
                    f"the {name} split would hold {len(rows)} row(s) ({n} rows with data.val_fraction="
                    f"{self.val_fraction} and data.test_fraction={self.test_fraction}); it needs at least 2"
                    f"{'' if name == 'train' else ' or none'}: change the fractions or add rows"
                )
        # sorted: within a split keep the file's order, so unshuffled batches are contiguous
        return {name: rows.sort().values for name, rows in parts.items()}

    def _set_splits(self, splits: dict[str, tuple[Tensor, Tensor]]) -> None:
        """Keeps the splits, standardised in place with the train split's statistics if asked."""
        if self.standardize:
            xt = splits["train"][0]
            mean, std = xt.mean(0), xt.std(0, unbiased=False)
            std = torch.where(std > 0, std, torch.ones_like(std))  # constant column: leave as is
            self.x_mean, self.x_std = mean.tolist(), std.tolist()
            for x, _ in splits.values():  # in place: a large dataset is not copied
                x.sub_(torch.tensor(self.x_mean)).div_(torch.tensor(self.x_std))
        self.splits = splits
        for name in ("val", "test"):
            if len(splits[name][0]) == 0:
                self.splits[name] = self.splits["train"]

    def transform(self, x: Tensor) -> Tensor:
        """Raw features as the model sees them (standardised with the train split's statistics)."""
        if self.x_mean is None:
            return x
        return (x - torch.tensor(self.x_mean)) / torch.tensor(self.x_std)

    def fingerprint(self) -> str | None:
        """A hash of the test split as the model sees it (None before setup); computed once, since
        the splits do not change. eval.py compares it with the one the checkpoint recorded."""
        if self._fingerprint is None and "test" in self.splits:
            x, y = self.splits["test"]
            digest = hashlib.sha256(x.contiguous().numpy().tobytes())
            digest.update(y.contiguous().numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def state_dict(self) -> dict:
        # saved in every checkpoint, so predict.py can standardise raw inputs the same way, and
        # eval.py can tell whether the test split is still the one the run was tested on
        return {"x_mean": self.x_mean, "x_std": self.x_std, "test_fingerprint": self.fingerprint()}

    def load_state_dict(self, state: dict) -> None:
        self.x_mean, self.x_std = state.get("x_mean"), state.get("x_std")
        self.saved_fingerprint = state.get("test_fingerprint")

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
        from sklearn import datasets

        return datasets.make_regression(n_samples=self.n_samples, n_features=self.n_feat, noise=self.noise,
                                        random_state=self.random_state)


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
        self.feature_names: list[str] | None = None  # the columns the model takes, in its order
        self.save_hyperparameters(logger=False)

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        x, y, self.feature_names = read_csv(self.path, self.target, self.features)
        return x, y

    def state_dict(self) -> dict:
        # predict.py takes a new file's features by these names, in any column order
        return {**super().state_dict(), "feature_names": self.feature_names}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.feature_names = state.get("feature_names")


def read_csv(path: str, target: str, features: list[str] | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Reads a numeric CSV into (X, y, the feature columns' names), naming the file, row and column
    of anything bad."""
    header, numbered = read_table(path, "data.path")
    if features is not None:
        if target in features:
            raise DataError(f"{path}: data.features lists the target column {target!r}; list only inputs")
        if len(set(features)) != len(features):
            raise DataError(f"{path}: data.features={features} names a column twice")
    wanted = [target] + (features if features is not None else [h for h in header if h != target])
    for col, key in zip(wanted, ["data.target"] + ["data.features"] * (len(wanted) - 1)):
        require_column(path, header, col, key)
    if len(wanted) < 2:
        raise DataError(f"{path}: no feature columns besides the target {target!r}; columns are {header}")
    if len(numbered) < 2:
        found = "only a header row" if not numbered else "1 data row"
        raise DataError(f"{path}: {found}; at least 2 data rows are needed to fit a line")
    data = numbers(path, header, numbered, wanted)
    return data[:, 1:], data[:, 0], wanted[1:]


def read_table(path: str, key: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """A CSV file's header and its non-blank data rows, each with the line an editor shows it on.

    `key` names the setting that gave the path, for the error messages (data.path, input).
    """
    p = Path(path)
    if not p.is_file():
        what = "a directory, not a file" if p.is_dir() else "no such file"
        raise DataError(f"{key}={str(path)!r}: {what}; give the path of a CSV file with a header row")
    try:
        with p.open(newline="", encoding="utf-8-sig") as f:  # -sig: Excel's byte-order mark is not a name
            reader = csv.reader(f)
            numbered = [(reader.line_num, row) for row in reader]  # line_num: the line an editor shows
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a text CSV file ({e.reason}); save it as UTF-8 CSV") from None
    except csv.Error as e:
        raise DataError(f"{path}: not a readable CSV file ({e})") from None
    numbered = [(n, r) for n, r in numbered if any(cell.strip() for cell in r)]  # blank lines carry nothing
    if not numbered:
        raise DataError(f"{path}: the file is empty; it needs a header row and data rows")
    header = [h.strip() for h in numbered[0][1]]
    _check_header(str(path), header)
    return header, numbered[1:]


def require_column(path: str, header: list[str], col: str, key: str) -> int:
    """The position of column `col` in `header`, or a DataError naming the columns there are."""
    if col in header:
        return header.index(col)
    close = difflib.get_close_matches(col, header, n=1, cutoff=0.6)
    close = close or [h for h in header if h.lower() == col.lower()]
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise DataError(f"{path}: no column {col!r} ({key}); the columns are {header}{hint}")


def numbers(path: str, header: list[str], numbered: list[tuple[int, list[str]]], wanted: list[str]) -> np.ndarray:
    """The `wanted` columns of the rows as float64, (rows, len(wanted)); a bad cell is named."""
    cols = [header.index(c) for c in wanted]
    data = np.empty((len(numbered), len(cols)), dtype=np.float64)
    for i, (line, row) in enumerate(numbered):
        if len(row) != len(header):
            raise DataError(f"{path}, line {line}: {len(row)} cells, but the header has {len(header)}")
        for j, c in enumerate(cols):
            cell = row[c].strip()
            where = f"{path}, line {line}, column {wanted[j]!r}"
            if not cell:
                raise DataError(f"{where}: the cell is empty; fill it or remove the row")
            try:
                value = float(cell)
            except ValueError:
                raise DataError(f"{where}: {cell!r} is not a number") from None
            if not math.isfinite(value):
                raise DataError(f"{where}: {cell!r} is not finite; remove or fill the row")
            if abs(value) > FLOAT32_MAX:
                raise DataError(f"{where}: {cell!r} does not fit a float32 (at most about 3.4e38 in size); "
                                "rescale the column")
            data[i, j] = value
    return data


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_header(path: str, header: list[str]) -> None:
    if len(header) == 1 and any(sep in header[0] for sep in ";\t|"):
        raise DataError(
            f"{path}: the header {header[0]!r} is a single column; gradlab reads comma-separated "
            "files (save it as CSV with ',' between values)"
        )
    for i, name in enumerate(header):
        if not name:
            raise DataError(f"{path}: column {i + 1} of the header has no name; every column needs one")
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise DataError(f"{path}: the header names {duplicates} more than once; column names must be unique")


# ------------------------------------------------------------------ classes (the course's lessons 08-11)


class ClassificationDataModule(TensorDataModule):
    """Rows with a class label, for gradlab.classifiers. Subclasses implement `load_classes()`.

    `labels` is what the model trains on, passed by train.py from the model (never in the YAML):
    "binary" gives (N, 1) 0/1 floats for nn.BCELoss (two classes only), "index" (N,) int64 class
    indices for nn.CrossEntropyLoss. `classes` (the label of each index, sorted) is stored in every
    checkpoint, so predict.py names the class it predicts.
    `split="train_test_split"` splits as the course does, with sklearn's
    train_test_split(test_size=test_fraction, random_state=seed), rows in its order; "seeded" is
    gradlab's own split. Features are standardised with sklearn's StandardScaler fitted on the
    training split, as the course does.
    """

    label_column = "target"  # named in the messages about labels

    def __init__(
        self,
        labels: str = "index",
        split: str = "seeded",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        batch_size: int | None = None,
        shuffle: bool = True,
        standardize: bool = True,
        seed: int = 42,
    ):
        super().__init__(val_fraction, test_fraction, batch_size, shuffle, standardize, seed)
        self.labels, self.split = labels, split
        self.classes: list | None = None
        self.feature_names: list[str] | None = None

    def load_classes(self) -> tuple[np.ndarray, np.ndarray, list]:
        """X (N, F), each row's class index (N,), and the label of each index."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        x, index, classes = self.load_classes()
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        present = sorted({classes[i] for i in index})
        if len(present) < 2:
            raise DataError(f"the label column {self.label_column!r} holds one class only ({present}); "
                            "a classifier needs rows of at least 2 classes")
        if self.labels == "binary" and len(classes) != 2:
            raise DataError(f"model=logistic tells 2 classes apart, but the label column {self.label_column!r} "
                            f"holds {len(classes)}: {classes}; use model=softmax for more than 2")
        self.classes = list(classes)
        rows = self.split_classes(len(x))
        if self.standardize:
            from sklearn.preprocessing import StandardScaler

            scaler = StandardScaler().fit(x[rows["train"]])  # the training split's mean and std only
            x = scaler.transform(x)
            self.x_mean, self.x_std = scaler.mean_.tolist(), scaler.scale_.tolist()
        x32 = torch.from_numpy(x.astype(np.float32))  # (N, F)
        if self.labels == "binary":
            y = torch.from_numpy(index.astype(np.float32)).reshape(-1, 1)  # (N, 1), as the lesson's y.view(-1, 1)
        else:
            y = torch.from_numpy(index.astype(np.int64))  # (N,)
        self.splits = {name: (x32[torch.from_numpy(r)], y[torch.from_numpy(r)]) for name, r in rows.items()}
        for name in ("val", "test"):
            if len(rows[name]) == 0:  # as TensorDataModule: an empty split falls back to the training split
                self.splits[name] = self.splits["train"]

    def split_classes(self, n: int) -> dict[str, np.ndarray]:
        """Row numbers of the val, test and train splits."""
        if self.split != "train_test_split":
            return {name: rows.numpy() for name, rows in self.split_rows(n).items()}
        from sklearn.model_selection import train_test_split

        rows, empty = np.arange(n), np.arange(0)
        train, test = train_test_split(rows, test_size=self.test_fraction, random_state=self.seed) \
            if self.test_fraction else (rows, empty)
        train, val = train_test_split(train, test_size=round(n * self.val_fraction), random_state=self.seed) \
            if self.val_fraction else (train, empty)
        return {"val": val, "test": test, "train": train}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "classes": self.classes, "feature_names": self.feature_names}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.classes, self.feature_names = state.get("classes"), state.get("feature_names")


class BundledClassesDataModule(ClassificationDataModule):
    """One of sklearn's bundled classification datasets (offline), named by `loader`."""

    loader: str  # the sklearn.datasets function that loads it

    def __init__(self, labels: str = "index", split: str = "seeded", val_fraction: float = 0.1,
                 test_fraction: float = 0.1, batch_size: int | None = None, shuffle: bool = True,
                 standardize: bool = True, seed: int = 42):
        super().__init__(labels, split, val_fraction, test_fraction, batch_size, shuffle, standardize, seed)
        self.save_hyperparameters(logger=False)

    def load_classes(self) -> tuple[np.ndarray, np.ndarray, list]:
        from sklearn import datasets

        bunch = getattr(datasets, self.loader)()
        self.feature_names = [str(name) for name in bunch.feature_names]  # plain str: weights_only-safe
        return bunch.data, bunch.target, [str(name) for name in bunch.target_names]


class BreastCancerDataModule(BundledClassesDataModule):
    """sklearn's breast-cancer data (569 x 30, 2 classes): the course's lesson 08. Target 0 is
    malignant, 1 benign, as the lesson trains on it."""

    loader = "load_breast_cancer"


class WineDataModule(BundledClassesDataModule):
    """sklearn's wine data (178 x 13, 3 classes): the course's wine.csv (lesson 09)."""

    loader = "load_wine"


class IrisDataModule(BundledClassesDataModule):
    """sklearn's iris data (150 x 4, 3 classes)."""

    loader = "load_iris"


class LabelledCsvDataModule(ClassificationDataModule):
    """A CSV file with a header row: a label column (integers or text) and numeric feature columns."""

    def __init__(
        self,
        path: str,
        target: str,
        features: list[str] | None = None,
        labels: str = "index",
        split: str = "seeded",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        batch_size: int | None = None,
        shuffle: bool = True,
        standardize: bool = True,
        seed: int = 42,
    ):
        super().__init__(labels, split, val_fraction, test_fraction, batch_size, shuffle, standardize, seed)
        self.path, self.target = path, target
        self.features = list(features) if features is not None else None
        self.label_column = target
        self.save_hyperparameters(logger=False)

    def load_classes(self) -> tuple[np.ndarray, np.ndarray, list]:
        header, numbered = read_table(self.path, "data.path")
        require_column(self.path, header, self.target, "data.target")
        if self.features is not None and self.target in self.features:
            raise DataError(f"{self.path}: data.features lists the label column {self.target!r}; list only inputs")
        wanted = self.features if self.features is not None else [h for h in header if h != self.target]
        for col in wanted:
            require_column(self.path, header, col, "data.features")
        if not wanted:
            raise DataError(f"{self.path}: no feature columns besides the labels {self.target!r}; "
                            f"columns are {header}")
        if len(numbered) < 2:
            raise DataError(f"{self.path}: {len(numbered)} data row(s); at least 2 are needed")
        x = numbers(self.path, header, numbered, wanted)  # names a non-numeric feature cell
        self.feature_names = list(wanted)
        return (x, *labels_of(self.path, header, numbered, self.target))


def labels_of(path: str, header: list[str], numbered: list[tuple[int, list[str]]],
              column: str) -> tuple[np.ndarray, list]:
    """Each row's class index and the classes, sorted: integers if every label is one, else text."""
    col = header.index(column)
    cells = []
    for line, row in numbered:
        cell = row[col].strip() if col < len(row) else ""
        if not cell:
            raise DataError(f"{path}, line {line}, column {column!r}: the label is empty; fill it or "
                            "remove the row")
        cells.append(cell)
    try:
        values = [int(c) for c in cells]
    except ValueError:
        values = cells
    classes = sorted(set(values))
    position = {c: i for i, c in enumerate(classes)}
    return np.array([position[v] for v in values]), classes


def check_known_labels(path: str, header: list[str], numbered: list[tuple[int, list[str]]], column: str,
                       classes: list) -> None:
    """A DataError for a row whose label (in a file given to predict) is none of the model's classes."""
    _, found = labels_of(path, header, numbered, column)
    unknown = [c for c in found if c not in classes and str(c) not in map(str, classes)]
    if unknown:
        raise DataError(f"{path}: the label column {column!r} holds {unknown}, which the model was not trained "
                        f"on; its classes are {classes}")
