"""Predict with a trained model: raw inputs from the command line or a CSV file, standardised the
way the checkpoint's datamodule standardised its training data, written to a CSV file.
`scripts/predict.py` is a thin Hydra wrapper around `predict(cfg)`."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from gradlab.data import CsvDataModule, DataError
from gradlab.evaluate import find_checkpoint, restore


def predict(cfg: DictConfig) -> Path:
    """Writes cfg.output: the inputs and a `prediction` column; prints them for inputs given as x."""
    if (cfg.x is None) == (cfg.input is None):
        raise DataError("give the inputs either on the command line (x=[5,7]) or as a CSV file (input=FILE)")
    restored = restore(find_checkpoint(cfg.ckpt_path, cfg.root_dir, cfg.name))
    n_features = restored.model.net.lin.in_features
    if cfg.x is not None:
        header, cells, rows = _from_command_line(cfg.x, n_features, restored.dm)
    else:
        header, cells, rows = _from_csv(Path(cfg.input), n_features, restored.dm)

    x = restored.dm.transform(torch.tensor(rows, dtype=torch.float32))  # (Q, F), as in training
    with torch.no_grad():
        y = restored.model(x)[:, 0].tolist()  # (Q,)

    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*header, "prediction"])
        writer.writerows([*row, f"{p:.9g}"] for row, p in zip(cells, y))  # 9 digits: float32 exactly
    if cfg.x is not None:
        for value, p in zip(_values(cfg.x), y):
            print(f"Prediction: f({_shown(value)}) = {p:.8g}")
    print(f"gradlab: {len(y)} prediction(s) from {restored.path} written to {out}")
    return out


def _values(x) -> list:
    values = OmegaConf.to_object(x) if OmegaConf.is_config(x) else x
    return values if isinstance(values, list) else [values]


def _shown(value) -> str:
    return str(value) if isinstance(value, list) else f"{value:g}"


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _from_command_line(x, n_features: int, dm) -> tuple[list[str], list[list[str]], list[list[float]]]:
    """x=5, x=[5,7] (a number is used for every feature) or x=[[1,2],[3,4]] (one row each)."""
    rows = []
    for v in _values(x):
        row = v if isinstance(v, list) else [v] * n_features
        if not all(_number(c) for c in row) or len(row) != n_features:
            raise DataError(
                f"x: bad input {v!r}; the model has {n_features} feature(s): give a number per input "
                f"(used for every feature), e.g. x=[5,7], or one row of {n_features} numbers per input, "
                "e.g. x=[[1,2],[3,4]]"
            )
        rows.append([float(c) for c in row])
    header = _feature_names(dm) or (["x"] if n_features == 1 else [f"x{i + 1}" for i in range(n_features)])
    return header, [[f"{c:g}" for c in row] for row in rows], rows


def _from_csv(path: Path, n_features: int, dm) -> tuple[list[str], list[list[str]], list[list[float]]]:
    """The CSV's rows as they are, and the model's feature columns of them as numbers."""
    if not path.is_file():
        raise DataError(f"input={str(path)!r}: no such file; give a CSV file with a header row")
    with path.open(newline="") as f:
        table = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    if len(table) < 2:
        raise DataError(f"{path}: it needs a header row and at least one data row")
    header = [h.strip() for h in table[0]]
    wanted = _feature_names(dm)
    if wanted is None:  # all columns, but the training target if the file has it
        target = dm.target if isinstance(dm, CsvDataModule) else None
        wanted = [h for h in header if h != target]
    missing = [c for c in wanted if c not in header]
    if missing or len(wanted) != n_features:
        raise DataError(
            f"{path}: the model takes {n_features} feature column(s)"
            + (f" named {wanted}" if _feature_names(dm) else "")
            + f", but the columns are {header}" + (f" (missing {missing})" if missing else "")
        )
    cols = [header.index(c) for c in wanted]
    rows = []
    for line, cells in enumerate(table[1:], start=2):
        try:
            row = [float(cells[c]) for c in cols]
        except (ValueError, IndexError):
            row = []
        if len(row) != len(cols) or not all(map(math.isfinite, row)):
            raise DataError(f"{path}, line {line}: the feature cells of {cells} are not all finite numbers")
        rows.append(row)
    return header, table[1:], rows


def _feature_names(dm) -> list[str] | None:
    return list(dm.features) if isinstance(dm, CsvDataModule) and dm.features is not None else None
