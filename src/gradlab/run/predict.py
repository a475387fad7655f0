"""Predict with a trained model: raw inputs from the command line or a CSV file, standardised the
way the checkpoint's datamodule standardised its training data, written to a CSV file.
`scripts/predict.py` is a thin Hydra wrapper around `predict(cfg)`.

A CSV file streams (`_stream`): pyarrow reads it a block at a time with every cell as text, the
model's columns are cast to numbers, predicted and appended, so memory holds one block. At the
first doubt (see gradlab.lessons.csvfile: a quote, a cell pyarrow cannot cast, a label the model
was not trained on) the file is read again the serial way, which names the line and column."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from gradlab.lessons.csvfile import (
    DataError,
    check_known_labels,
    inside_float32,
    numeric_columns,
    plain,
    read_header,
    read_table,
    require_column,
)
from gradlab.lessons.data import ClassificationDataModule, CsvDataModule, input_rows
from gradlab.run import signals, threads
from gradlab.run.evaluate import find_checkpoint, restore
from gradlab.run.files import atomic_file
from gradlab.run.rundirs import run_dir_of
from gradlab.show.report import printable

PREDICTIONS = "predictions.csv"  # the file written without output=, in the run's directory
STREAM_BLOCK = 1 << 20  # CSV bytes read, predicted and written at a time; peak memory ~50x this (tests: small)


def predict(cfg: DictConfig) -> Path:
    """Writes cfg.output: the inputs and the model's output columns; prints them for inputs given as x."""
    signals.raise_from_now_on()
    if (cfg.x is None) == (cfg.input is None):
        raise DataError("give the inputs either on the command line (x=[5,7]) or as a CSV file (input=FILE)")
    restored = restore(find_checkpoint(cfg.ckpt_path, cfg.root_dir, cfg.name))
    # one torch thread, as train.py's threads=auto takes for batches this small: a block holds at most
    # STREAM_BLOCK / 2 numbers (a digit and a comma each), and two threads on a busy machine wait
    threads.apply("auto", STREAM_BLOCK // 2, distributed=False)
    n_features = restored.model.hparams.n_features
    # by default beside the run it comes from, not wherever the command was typed
    out = Path(cfg.output) if cfg.output else (run_dir_of(restored.path) or restored.path.parent) / PREDICTIONS
    if out.is_dir():
        raise DataError(f"output={cfg.output}: that is a directory; give the CSV file to write, e.g. "
                        f"output={out / 'predictions.csv'}")
    if cfg.x is not None:
        header, cells, rows = _from_command_line(cfg.x, n_features, restored.dm)
        columns = _outputs(restored, rows)
        for i, value in enumerate(_values(cfg.x)):  # printed first: a file that cannot be written loses none
            shown = ", ".join(f"{name} {printable(_cell(values[i]))}" for name, values in columns.items())
            if list(columns) == ["prediction"]:
                shown = f"{float(columns['prediction'][i]):.8g}"
            print(f"Prediction: f({value if isinstance(value, list) else f'{value:g}'}) = {shown}", flush=True)
        n = _write(out, restored, iter([(header, cells, rows)]))
    else:
        n = _write(out, restored, _stream(str(cfg.input), n_features, restored.dm))
        if n is None:  # a CSV file only the serial pass reads right: it names what is wrong, or reads it
            header, cells, rows = _from_csv(str(cfg.input), n_features, restored.dm)
            n = _write(out, restored, iter([(header, cells, rows)]))
    print(f"gradlab: {n} prediction(s) from {restored.path} written to {out}")
    return out


class _Serial(Exception):
    """The streamed read met something only the serial pass decides."""


def _outputs(restored, rows: torch.Tensor) -> dict[str, list]:
    """The model's output columns for raw input rows (Q, F), each a list of Q values."""
    x = restored.dm.transform(rows)  # (Q, F), as in training
    columns = {name: values.tolist() for name, values in restored.model.outputs(x).items()}  # each (Q,)
    classes = getattr(restored.dm, "classes", None)  # a classifier's labels, in its class order
    if classes is not None and "class" in columns:
        columns["class"] = [classes[i] for i in columns["class"]]
    return columns


def _write(out: Path, restored, blocks: Iterator) -> int | None:
    """Writes the blocks' rows and the model's outputs to `out`, all or nothing: the rows written, or
    None (and nothing written) where a streamed block turned out to need the serial pass."""
    n = 0
    try:
        with atomic_file(out, "w", newline="") as f:  # a complete CSV or none: never half a file
            writer = csv.writer(f)
            for header, cells, rows in blocks:
                columns = _outputs(restored, rows)
                if n == 0:
                    writer.writerow([*header, *columns])
                for i, row in enumerate(cells):  # 9 digits: a float32 exactly
                    writer.writerow([*row, *(_cell(values[i]) for values in columns.values())])
                n += len(cells)
            if n == 0:
                raise _Serial
    except _Serial:
        return None
    return n


def _stream(path: str, n_features: int, dm) -> Iterator[tuple[list[str], list, torch.Tensor]]:
    """The CSV file a block at a time: (header, the block's rows as text, the model's features of them
    as numbers). Raises _Serial at the first doubt, before anything of that block is used."""
    try:
        header, skip = read_header(path)
        if header is None or not plain(path):
            raise _Serial
        wanted = _feature_names(dm)
        if wanted is None:
            target = dm.target if isinstance(dm, CsvDataModule) else None
            wanted = [h for h in header if h != target]
        if len(wanted) != n_features or any(col not in header for col in wanted):
            raise _Serial
        labels = None
        if isinstance(dm, ClassificationDataModule) and dm.label_column in header:
            labels = (header.index(dm.label_column), {str(c) for c in dm.classes})
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pacsv

        names = [str(i) for i in range(len(header))]
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=skip, block_size=STREAM_BLOCK),
            parse_options=pacsv.ParseOptions(quote_char=False),  # plain(): there are no quotes
            convert_options=pacsv.ConvertOptions(column_types={name: pa.string() for name in names},
                                                 null_values=[], strings_can_be_null=False),
        )
        for batch in reader:
            if labels is not None:
                found = {cell.strip() for cell in pc.unique(batch.column(labels[0])).to_pylist()}
                if not found <= labels[1]:
                    raise _Serial  # an unknown or empty label: the serial pass names them all
            rows = np.empty((batch.num_rows, len(wanted)), dtype=np.float32)
            for j, col in enumerate(wanted):
                rows[:, j] = pc.cast(batch.column(header.index(col)), pa.float32()).to_numpy()  # as number()
                if not inside_float32(rows[:, j]):
                    raise _Serial  # number() decides
            cells = list(zip(*(column.to_pylist() for column in batch.columns)))
            yield header, cells, torch.from_numpy(rows)
    except (OSError, ValueError, csv.Error):  # pyarrow.ArrowInvalid and UnicodeDecodeError are ValueErrors
        raise _Serial from None


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
