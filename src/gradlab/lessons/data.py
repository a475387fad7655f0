"""LightningDataModules for in-memory data: the journal's regressions and the course's classes.

Batches are cut from whole tensors by indexing (a view or one gather per batch), not by a
DataLoader fetching rows one by one and collating them: on small models that per-row work
costs far more than the training step itself. `loader="dataloader"` serves the same stored
tensors the course's way (lessons 09 and 10): a torch Dataset, per-sample transforms, and a
DataLoader whose sampler draws the same order, so the batches, and the weights, are the same.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import lightning.pytorch as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from gradlab.lessons.csvfile import (
    DataError,
    fast_labelled,
    labels_of,
    numeric_columns,
    read_csv,
    read_table,
    require_column,
)


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


# ------------------------------------------------------------------ the Dataset and DataLoader (lessons 09, 10)


class SplitDataset(Dataset):
    """The lesson's Dataset over one stored split: sample i is (x[i], y[i]), passed through `transform`.

    The stored tensors are the same ones the in-memory batches are cut from (already scaled once);
    a transform gets the row and returns a new sample, never writing into the stored one.
    """

    def __init__(self, x: Tensor, y: Tensor, transform: Callable | None = None):
        self.x, self.y, self.transform = x, y, transform

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        sample = self.x[index], self.y[index]  # views of the stored rows
        return self.transform(sample) if self.transform else sample

    def __len__(self) -> int:
        return len(self.x)


class EpochSampler(Sampler[int]):
    """The indices gradlab's in-memory batches take, for a DataLoader: EpochShuffle's permutation of
    (seed, epoch), so both loaders give the same batches in the same order (and Lightning's
    `set_epoch` reaches it). `whole`: one batch of all rows, kept in file order, as TensorBatches keeps it."""

    def __init__(self, order: EpochShuffle, whole: bool = False):
        self.order, self.whole = order, whole

    def set_epoch(self, epoch: int) -> None:
        self.order.set_epoch(epoch)

    def __iter__(self):
        indices = None if self.whole else self.order.indices()
        return iter(range(len(self.order)) if indices is None else indices.tolist())

    def __len__(self) -> int:
        return len(self.order)


class ToTensor:
    """Lesson 10's ToTensor: a sample's inputs and targets as tensors (they already are, once stored)."""

    def __call__(self, sample):
        inputs, targets = sample
        return torch.as_tensor(inputs), torch.as_tensor(targets)


class MulTransform:
    """Lesson 10's MulTransform: the inputs times `factor`, as a new tensor. The lesson's `inputs *=
    factor` writes into the row it was given, which torch.from_numpy shares with the dataset: every
    read of a row would multiply it again (a test holds that this one does not)."""

    def __init__(self, factor: float):
        self.factor = factor

    def __call__(self, sample):
        inputs, targets = sample
        return inputs * self.factor, targets


TRANSFORM_SPEC = r"^(?:ToTensor|MulTransform\((?P<factor>[-+0-9.eE]+)\)|(?P<path>[A-Za-z_][\w.]*\.[A-Za-z_]\w*))$"


class Compose:
    """The transforms named by `specs`, applied in order (torchvision's Compose is this loop):
    "ToTensor", "MulTransform(4)", or the dotted path of your own callable class (built without
    arguments), e.g. "my_transforms.Flip"."""

    def __init__(self, specs: list[str]):
        self.specs = list(specs)
        self.steps = [self._build(spec) for spec in self.specs]

    def __call__(self, sample):
        for step in self.steps:
            sample = step(sample)
        return sample

    @staticmethod
    def _build(spec: str) -> Callable:
        import importlib
        import re

        match = re.match(TRANSFORM_SPEC, spec)
        if match is None:
            raise DataError(f"data.transforms: {spec!r} is not a transform; allowed: ToTensor, MulTransform(F) "
                            "(a number F), or the dotted path of a callable class, e.g. my_transforms.Flip")
        if match.group("factor"):
            return MulTransform(float(match.group("factor")))
        if match.group("path"):
            module, _, name = spec.rpartition(".")
            try:
                return getattr(importlib.import_module(module), name)()
            except Exception as e:
                raise DataError(f"data.transforms: {spec!r} cannot be built ({type(e).__name__}: {e}); give "
                                "an importable class that takes no arguments") from None
        return ToTensor()


class TensorDataModule(L.LightningDataModule):
    """Splits (X, y) into train/val/test tensors, standardises X with the training split's statistics
    if asked, and serves them as TensorBatches.

    Subclasses implement `load()`. `split`: "seeded" (gradlab's: a permutation of the rows drawn from
    `seed`, each split kept in file order) or "train_test_split" (sklearn's, random_state=seed, rows in
    its order, as the course splits). An empty val or test split (fraction 0) falls back to the
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
        split: str = "seeded",
        loader: str = "memory",
        transforms: list[str] | None = None,
    ):
        super().__init__()
        self.loader, self.transforms = loader, list(transforms or [])
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.batch_size, self.shuffle = batch_size, shuffle
        self.standardize, self.seed, self.split = standardize, seed, split
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}
        self.x_mean: list[float] | None = None
        self.x_std: list[float] | None = None
        self.saved_fingerprint: str | None = None  # the test split's, as a checkpoint recorded it
        self.saved_fingerprints: dict[str, str] | None = None  # every split's, as a checkpoint recorded them
        self._fingerprints: dict[str, str] = {}

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole dataset: X of shape (N, F) and y of shape (N,)."""
        raise NotImplementedError

    def targets(self, y: np.ndarray) -> Tensor:
        """y as the model trains on it: (N, 1) float32 for a regression."""
        return torch.as_tensor(np.asarray(y, dtype=np.float32)).reshape(-1, 1)

    @property
    def n_features(self) -> int:
        self.setup("fit")
        return self.splits["train"][0].shape[1]

    def setup(self, stage: str | None = None) -> None:
        if self.splits:  # idempotent: train() sets up early to learn n_features and fail fast
            return
        x, y = self.load()
        x, y = np.asarray(x), np.asarray(y)
        x = x.reshape(len(x), -1)  # (N, F)
        rows = self.split_rows(len(x))
        mean, std = self.scaling(x, rows["train"])
        if mean is not None:
            self.x_mean, self.x_std = mean.tolist(), std.tolist()
        self.splits = {name: (features(x, r, mean, std), self.targets(y[r])) for name, r in rows.items()}
        for name in ("val", "test"):
            if len(rows[name]) == 0:
                self.splits[name] = self.splits["train"]
        self.try_transforms()

    def split_rows(self, n: int) -> dict[str, np.ndarray]:
        """Row numbers of the val, test and train splits of n rows."""
        n_val, n_test = round(n * self.val_fraction), round(n * self.test_fraction)
        if self.split == "train_test_split":
            from sklearn.model_selection import train_test_split

            train, empty, seed = np.arange(n), np.arange(0), self.seed
            # the course's call, with the fraction as it has it (sklearn rounds it up)
            train, test = train_test_split(train, test_size=self.test_fraction, random_state=seed) \
                if self.test_fraction else (train, empty)
            train, val = train_test_split(train, test_size=n_val, random_state=seed) if n_val else (train, empty)
            parts = {"val": val, "test": test, "train": train}
        else:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).numpy()
            which = np.zeros(n, dtype=np.int8)  # each row's split: 0 train, 1 val, 2 test
            which[order[:n_val]], which[order[n_val : n_val + n_test]] = 1, 2
            # each split in the file's order, so unshuffled batches are contiguous (no sort: a pass)
            parts = {name: np.flatnonzero(which == k) for name, k in (("val", 1), ("test", 2), ("train", 0))}
        for name, rows in parts.items():
            # fitting needs 2 training rows, and R2 (logged per split) 2 rows; an empty val or test
            # split is fine (it falls back to the training split)
            if len(rows) == 1 or (name == "train" and len(rows) == 0):
                raise DataError(
                    f"the {name} split would hold {len(rows)} row(s) ({n} rows with data.val_fraction="
                    f"{self.val_fraction} and data.test_fraction={self.test_fraction}); it needs at least 2"
                    f"{'' if name == 'train' else ' or none'}: change the fractions or add rows"
                )
        return parts

    def scaling(self, x: np.ndarray, train: np.ndarray) -> tuple[Tensor, Tensor] | tuple[None, None]:
        """The (mean, std) each feature is scaled by, (x - mean) / std, stored in checkpoints so
        predict.py takes raw values; (None, None): none. The training rows' statistics if asked."""
        return standardization(x, train) if self.standardize else (None, None)

    def transform(self, x: Tensor) -> Tensor:
        """Raw features as the model sees them (standardised with the train split's statistics)."""
        if self.x_mean is None:
            return x
        mean, std = torch.tensor(self.x_mean, dtype=torch.float64), torch.tensor(self.x_std, dtype=torch.float64)
        return ((x.double() - mean) / std).to(x.dtype)

    def fingerprint(self, split: str = "test") -> str | None:
        """A hash of a split as the model sees it (None before setup). eval.py compares the test
        split's with the one the checkpoint recorded, a resume every split's."""
        if split not in self._fingerprints and split in self.splits:
            x, y = self.splits[split]
            digest = hashlib.sha256(x.contiguous().numpy().tobytes())
            digest.update(y.contiguous().numpy().tobytes())
            self._fingerprints[split] = digest.hexdigest()[:16]
        return self._fingerprints.get(split)

    def state_dict(self) -> dict:
        # saved in every checkpoint, so predict.py can standardise raw inputs the same way, and
        # eval.py and a resume can tell whether the data are still the run's
        return {"x_mean": self.x_mean, "x_std": self.x_std, "test_fingerprint": self.fingerprint(),
                "fingerprints": {split: self.fingerprint(split) for split in ("train", "val", "test")}}

    def load_state_dict(self, state: dict) -> None:
        self.x_mean, self.x_std = state.get("x_mean"), state.get("x_std")
        self.saved_fingerprint = state.get("test_fingerprint")
        self.saved_fingerprints = state.get("fingerprints")  # None in checkpoints before it was recorded

    def _loader(self, split: str, shuffle: bool) -> TensorBatches | DataLoader:
        x, y = self.splits[split]
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        order = EpochShuffle(len(x), shuffle, self.seed, rank, world)
        if self.loader == "dataloader":  # lesson 09: a Dataset, a sampler, a DataLoader collating samples
            batch_size = self.batch_size or len(order)
            transform = Compose(self.transforms) if self.transforms else None
            return DataLoader(SplitDataset(x, y, transform), batch_size=batch_size,
                              sampler=EpochSampler(order, whole=batch_size >= len(x) and world == 1))
        return TensorBatches(x, y, self.batch_size, order)

    def train_dataloader(self) -> TensorBatches | DataLoader:
        return self._loader("train", self.shuffle)

    def val_dataloader(self) -> TensorBatches | DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> TensorBatches | DataLoader:
        return self._loader("test", False)

    def predict_dataloader(self) -> TensorBatches | DataLoader:
        return self._loader("test", False)

    def try_transforms(self) -> None:
        """Each transform on the first training sample, so one that fails does before any run exists."""
        if self.loader != "dataloader" or not self.transforms:
            return
        x, y = self.splits["train"]
        sample = (x[0], y[0])
        for spec, step in zip(self.transforms, Compose(self.transforms).steps):
            try:
                sample = step(sample)
                inputs = sample[0]
            except Exception as e:
                raise DataError(f"data.transforms: {spec} fails on the first training sample ({type(e).__name__}: "
                                f"{e}); fix it or drop it from data.transforms={self.transforms}") from None
            fits = isinstance(inputs, Tensor) and inputs.shape == x[0].shape
            if not (fits and bool(torch.isfinite(inputs).all())):
                raise DataError(f"data.transforms: {spec} gives {inputs!r} as the first training sample's inputs, "
                                f"not a finite tensor of shape {tuple(x[0].shape)} as the model takes; fix it or "
                                f"drop it from data.transforms={self.transforms}")


CHUNK = 65_536  # rows converted at a time: a large dataset is never copied whole in float64


def standardization(x: np.ndarray, train: np.ndarray) -> tuple[Tensor, Tensor]:
    """The mean and std of the `train` rows of x, per column, in float64, computed as sklearn's
    StandardScaler computes them (population std, with its rounding correction); a constant column
    gets std 1, so it is left as it is. In chunks: a large dataset is never copied whole."""
    chunks = [train[start : start + CHUNK] for start in range(0, len(train), CHUNK)]
    mean = sum(np.sum(x[rows], axis=0, dtype=np.float64) for rows in chunks) / len(train)
    centred = [x[rows].astype(np.float64) - mean for rows in chunks]  # one chunk at a time
    correction = sum(np.sum(c, axis=0) for c in centred)
    variance = (sum(np.sum(c**2, axis=0) for c in centred) - correction**2 / len(train)) / len(train)
    std = np.sqrt(np.maximum(variance, 0))
    return torch.from_numpy(mean), torch.from_numpy(np.where(std > 0, std, 1.0))


def features(x: np.ndarray, rows: np.ndarray, mean: Tensor | None, std: Tensor | None) -> Tensor:
    """The `rows` of x as float32, (len(rows), F), standardised in float64 first where mean is given."""
    if mean is None and x.dtype == np.float32:  # nothing to convert: one gather, no float64 copy
        return torch.from_numpy(x[rows])
    out = torch.empty((len(rows), x.shape[1]), dtype=torch.float32)
    for start in range(0, len(rows), CHUNK):
        part = torch.as_tensor(x[rows[start : start + CHUNK]])
        out[start : start + len(part)] = part if mean is None else (part.double() - mean) / std
    return out


def input_rows(values, n_features: int, key: str) -> Tensor:
    """Raw inputs given on a command line (`key`), one row each, (Q, F): a number is used for
    every feature, a list is one row with a number per feature."""
    rows = []
    for v in values if isinstance(values, list) else [values]:
        row = [float(c) for c in v] if isinstance(v, list) else [float(v)] * n_features
        if len(row) != n_features:
            raise DataError(
                f"{key}: the input {v} has {len(row)} value(s), but the model takes {n_features} feature(s): "
                f"give a number per input (used for every feature), e.g. {key}=[5,7], or one row of "
                f"{n_features} numbers per input"
            )
        rows.append(row)
    if not rows:
        raise DataError(f"{key}=[]: no inputs; give at least one, e.g. {key}=[5]")
    return torch.tensor(rows, dtype=torch.float32)


class ToyDataModule(TensorDataModule):
    """The journal's toy data: X = [1, 2, 3, 4], Y = 2X, all of it used for training."""

    def __init__(self, batch_size: int | None = None, shuffle: bool = False, seed: int = 42,
                 loader: str = "memory", transforms: list[str] | None = None):
        super().__init__(0.0, 0.0, batch_size, shuffle, standardize=False, seed=seed, loader=loader,
                         transforms=transforms)
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
        loader: str = "memory",
        transforms: list[str] | None = None,
    ):
        super().__init__(val_fraction, test_fraction, batch_size, shuffle, standardize, seed,
                         loader=loader, transforms=transforms)
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
        loader: str = "memory",
        transforms: list[str] | None = None,
    ):
        super().__init__(val_fraction, test_fraction, batch_size, shuffle, standardize, seed,
                         loader=loader, transforms=transforms)
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
        loader: str = "memory",
        transforms: list[str] | None = None,
    ):
        super().__init__(val_fraction, test_fraction, batch_size, shuffle, standardize, seed,
                         loader=loader, transforms=transforms)
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


# ------------------------------------------------------------------ classes (the course's lessons 08-11)


class ClassificationDataModule(TensorDataModule):
    """Rows with a class label, for gradlab.lessons.classifiers. Subclasses implement `load_classes()`.

    `labels` is what the model trains on, passed by the recipe from the model (never in the YAML):
    "binary" gives (N, 1) 0/1 floats for nn.BCELoss (two classes only), "index" (N,) int64 class
    indices for nn.CrossEntropyLoss. `classes` (the label of each index, sorted) is stored in every
    checkpoint, so predict.py names the class it predicts. Features are standardised with the
    training split's mean and std, as the course's StandardScaler does.
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
        loader: str = "memory",
        transforms: list[str] | None = None,
    ):
        super().__init__(val_fraction, test_fraction, batch_size, shuffle, standardize, seed, split,
                         loader=loader, transforms=transforms)
        self.labels = labels
        self.classes: list | None = None
        self.feature_names: list[str] | None = None

    def load_classes(self) -> tuple[np.ndarray, np.ndarray, list]:
        """X (N, F), each row's class index (N,), and the label of each index."""
        raise NotImplementedError

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        x, index, classes = self.load_classes()
        present = sorted({classes[i] for i in index})
        if len(present) < 2:
            raise DataError(f"the label column {self.label_column!r} holds one class only ({present}); "
                            "a classifier needs rows of at least 2 classes")
        if self.labels == "binary" and len(classes) != 2:
            raise DataError(f"model=logistic tells 2 classes apart, but the label column {self.label_column!r} "
                            f"holds {len(classes)}: {classes}; use model=softmax for more than 2")
        self.classes = list(classes)
        return np.asarray(x), np.asarray(index)  # a CSV's float32 stays float32

    def targets(self, index: np.ndarray) -> Tensor:
        if self.labels == "binary":
            return torch.from_numpy(index.astype(np.float32)).reshape(-1, 1)  # (N, 1), the lesson's y.view(-1, 1)
        return torch.from_numpy(index.astype(np.int64))  # (N,)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "classes": self.classes, "feature_names": self.feature_names}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.classes, self.feature_names = state.get("classes"), state.get("feature_names")


class BundledClassesDataModule(ClassificationDataModule):
    """One of sklearn's bundled classification datasets (offline), named by `sklearn_loader`."""

    sklearn_loader: str  # the sklearn.datasets function that loads it

    def __init__(self, labels: str = "index", split: str = "seeded", val_fraction: float = 0.1,
                 test_fraction: float = 0.1, batch_size: int | None = None, shuffle: bool = True,
                 standardize: bool = True, seed: int = 42, loader: str = "memory",
                 transforms: list[str] | None = None):
        super().__init__(labels, split, val_fraction, test_fraction, batch_size, shuffle, standardize, seed,
                         loader=loader, transforms=transforms)
        self.save_hyperparameters(logger=False)

    def load_classes(self) -> tuple[np.ndarray, np.ndarray, list]:
        from sklearn import datasets

        bunch = getattr(datasets, self.sklearn_loader)()
        self.feature_names = [str(name) for name in bunch.feature_names]  # plain str: weights_only-safe
        return bunch.data, bunch.target, [str(name) for name in bunch.target_names]


class BreastCancerDataModule(BundledClassesDataModule):
    """sklearn's breast-cancer data (569 x 30, 2 classes): the course's lesson 08. Target 0 is
    malignant, 1 benign, as the lesson trains on it."""

    sklearn_loader = "load_breast_cancer"


class WineDataModule(BundledClassesDataModule):
    """sklearn's wine data (178 x 13, 3 classes): the course's wine.csv (lesson 09)."""

    sklearn_loader = "load_wine"


class IrisDataModule(BundledClassesDataModule):
    """sklearn's iris data (150 x 4, 3 classes)."""

    sklearn_loader = "load_iris"


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
        loader: str = "memory",
        transforms: list[str] | None = None,
    ):
        super().__init__(labels, split, val_fraction, test_fraction, batch_size, shuffle, standardize, seed,
                         loader=loader, transforms=transforms)
        self.path, self.target = path, target
        self.features = list(features) if features is not None else None
        self.label_column = target
        self.save_hyperparameters(logger=False)

    def load_classes(self) -> tuple[np.ndarray, np.ndarray, list]:
        found = fast_labelled(self.path, self.target, self.features)  # None: the serial pass below decides
        if found is not None:
            x, index, classes, self.feature_names = found
            return x, index, classes
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
        x = numeric_columns(self.path, header, numbered, wanted)  # names a non-numeric feature cell
        self.feature_names = list(wanted)
        return (x, *labels_of(self.path, header, numbered, self.target))


class DigitsDataModule(BundledClassesDataModule):
    """sklearn's handwritten digits (1797 images of 8 x 8 pixels, 10 classes, offline): the course's
    MNIST (lesson 13) at teaching size. Pixels are 0..16 in the file; the model sees them divided by
    16, so 0..1, as torchvision's ToTensor gives MNIST's pixels to the lesson's network. The factor is
    stored as the checkpoint's scaling (mean 0, std 16), so predict.py takes raw 0..16 pixel values.
    Feature names are sklearn's pixel_0_0 ... pixel_7_7 (row, column); `image_shape` is (8, 8), for
    the pictures: the network sees 64 inputs.
    """

    sklearn_loader = "load_digits"
    image_shape = (8, 8)
    PIXEL_MAX = 16.0  # load_digits' brightest pixel

    def __init__(self, labels: str = "index", split: str = "train_test_split", val_fraction: float = 0.0,
                 test_fraction: float = 0.2, batch_size: int | None = 100, shuffle: bool = True,
                 standardize: bool = False, seed: int = 1234, loader: str = "memory",
                 transforms: list[str] | None = None, keep_classes: list[int] | None = None):
        super().__init__(labels, split, val_fraction, test_fraction, batch_size, shuffle, standardize, seed,
                         loader=loader, transforms=transforms)
        self.keep_classes = None if keep_classes is None else [int(d) for d in keep_classes]

    def scaling(self, x: np.ndarray, train: np.ndarray) -> tuple[Tensor, Tensor]:
        if self.standardize:  # per pixel, as the other datasets: a pixel always 0 in training keeps std 1
            return standardization(x, train)
        width = x.shape[1]
        return torch.zeros(width, dtype=torch.float64), torch.full((width,), self.PIXEL_MAX, dtype=torch.float64)

    def load_classes(self) -> tuple[np.ndarray, np.ndarray, list]:
        x, index, classes = super().load_classes()
        if self.keep_classes is None:
            return x, index, [str(c) for c in classes]  # "0" ... "9"
        # lesson 15's new task: only these digits, relabelled 0, 1, ... in the order given (names kept)
        unknown = [d for d in self.keep_classes if d not in range(len(classes))]
        if unknown or len(set(self.keep_classes)) != len(self.keep_classes) or len(self.keep_classes) < 2:
            raise DataError(f"data.keep_classes={self.keep_classes}: give at least 2 different digits of 0 ... 9, "
                            "e.g. data.keep_classes=[5,6,7,8,9]")
        rows = np.isin(index, self.keep_classes)
        relabel = {d: i for i, d in enumerate(self.keep_classes)}
        return x[rows], np.array([relabel[d] for d in index[rows]]), [str(d) for d in self.keep_classes]
