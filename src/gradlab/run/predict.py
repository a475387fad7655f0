"""Predict with a trained model: raw inputs from the command line or a CSV file, standardised the
way the checkpoint's datamodule standardised its training data, written to a CSV file.
`scripts/predict.py` is a thin Hydra wrapper around `predict(cfg)`."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from gradlab.lessons.csvfile import DataError, check_known_labels, numeric_columns, read_table, require_column
from gradlab.lessons.data import ClassificationDataModule, CsvDataModule, input_rows
from gradlab.run import signals
from gradlab.run.evaluate import find_checkpoint, restore
from gradlab.run.files import atomic_file
from gradlab.run.rundirs import run_dir_of
from gradlab.show.report import printable

PREDICTIONS = "predictions.csv"  # the file written without output=, in the run's directory


def predict(cfg: DictConfig) -> Path:
    """Writes cfg.output: the inputs and the model's output columns; prints them for inputs given as x."""
    signals.raise_from_now_on()
    if (cfg.x is None) == (cfg.input is None):
        raise DataError("give the inputs either on the command line (x=[5,7]) or as a CSV file (input=FILE)")
    restored = restore(find_checkpoint(cfg.ckpt_path, cfg.root_dir, cfg.name))
    n_features = restored.model.hparams.n_features
    if cfg.x is not None:
        header, cells, rows = _from_command_line(cfg.x, n_features, restored.dm)
    else:
        header, cells, rows = _from_csv(str(cfg.input), n_features, restored.dm)

    x = restored.dm.transform(rows)  # (Q, F), as in training
    columns = {name: values.tolist() for name, values in restored.model.outputs(x).items()}  # each (Q,)
    classes = getattr(restored.dm, "classes", None)  # a classifier's labels, in its class order
    if classes is not None and "class" in columns:
        columns["class"] = [classes[i] for i in columns["class"]]

    # by default beside the run it comes from, not wherever the command was typed
    out = Path(cfg.output) if cfg.output else (run_dir_of(restored.path) or restored.path.parent) / PREDICTIONS
    if out.is_dir():
        raise DataError(f"output={cfg.output}: that is a directory; give the CSV file to write, e.g. "
                        f"output={out / 'predictions.csv'}")
    if cfg.x is not None:  # printed first: a file that cannot be written loses none of them
        for i, value in enumerate(_values(cfg.x)):
            shown = ", ".join(f"{name} {printable(_cell(values[i]))}" for name, values in columns.items())
            if list(columns) == ["prediction"]:
                shown = f"{float(columns['prediction'][i]):.8g}"
            print(f"Prediction: f({value if isinstance(value, list) else f'{value:g}'}) = {shown}", flush=True)
    with atomic_file(out, "w", newline="") as f:  # a complete CSV or none: never half a file
        writer = csv.writer(f)
        writer.writerow([*header, *columns])
        for i, row in enumerate(cells):  # 9 digits: a float32 exactly
            writer.writerow([*row, *(_cell(values[i]) for values in columns.values())])
    n = len(next(iter(columns.values())))
    print(f"gradlab: {n} prediction(s) from {restored.path} written to {out}")
    return out


def _cell(value) -> str:
    return f"{value:.9g}" if isinstance(value, float) else str(value)


def _values(x) -> list:
    values = OmegaConf.to_object(x) if OmegaConf.is_config(x) else x
    return values if isinstance(values, list) else [values]


def _from_command_line(x, n_features: int, dm) -> tuple[list[str], list[list[str]], torch.Tensor]:
    """x=5, x=[5,7] (a number is used for every feature) or x=[[1,2],[3,4]] (one row each)."""
    rows = input_rows(_values(x), n_features, "x")
    header = _feature_names(dm) or (["x"] if n_features == 1 else [f"x{i + 1}" for i in range(n_features)])
    return header, [[f"{c:g}" for c in row] for row in rows.tolist()], rows


def _from_csv(path: str, n_features: int, dm) -> tuple[list[str], list[list[str]], torch.Tensor]:
    """The CSV's rows as they are, and the model's feature columns of them (by name) as numbers."""
    header, numbered = read_table(path, "input")
    if not numbered:
        raise DataError(f"{path}: it needs a header row and at least one data row")
    wanted = _feature_names(dm)
    if wanted is None:  # every column of the training file but its target
        target = dm.target if isinstance(dm, CsvDataModule) else None
        wanted = [h for h in header if h != target]
        if len(wanted) != n_features:
            raise DataError(f"{path}: the model takes {n_features} feature column(s), but the columns "
                            f"are {header}")
    for col in wanted:
        require_column(path, header, col, "a feature the model was trained on")
    if isinstance(dm, ClassificationDataModule) and dm.label_column in header:  # labels to compare with
        check_known_labels(path, header, numbered, dm.label_column, dm.classes)
    rows = torch.from_numpy(numeric_columns(path, header, numbered, wanted)).float()
    return header, [row for _, row in numbered], rows


def _feature_names(dm) -> list[str] | None:
    """The training file's feature columns, by name, where the checkpoint's data came from a CSV."""
    if isinstance(dm, ClassificationDataModule):
        return dm.feature_names  # the CSV's or the sklearn dataset's names
    if not isinstance(dm, CsvDataModule):
        return None
    return list(dm.features) if dm.features is not None else dm.feature_names
