"""Reading a CSV file for the datamodules and predict.py: a header row, numeric cells, a label column.

Every bad input is a DataError naming the file, the line an editor shows it on, the column and
what is allowed. One definition of a CSV number (`number`) serves every reader.
"""

from __future__ import annotations

import csv
import difflib
import math
import re
from pathlib import Path

import numpy as np


class DataError(ValueError):
    """Bad input data: the message names the file, column or row and what is allowed."""


FLOAT32_MAX = float(np.finfo(np.float32).max)


# What a spreadsheet reads as a number: ASCII digits, one point, an exponent. Python's float() also
# takes "1_000", Arabic-Indic and fullwidth digits; a spreadsheet shows those as text, so they are refused.
NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:nan|inf|infinity)",
                    re.ASCII | re.IGNORECASE)


def number(cell: str, where: str) -> float:
    """A CSV cell as a finite number that fits a float32, or a DataError naming `where` it stands."""
    cell = cell.strip()
    if not cell:
        raise DataError(f"{where}: the cell is empty; fill it or remove the row")
    if not NUMBER.fullmatch(cell):
        raise DataError(f"{where}: {cell!r} is not a number (digits 0-9 with an optional '.' and exponent, "
                        "e.g. 1.5e-3; no '_', thousands separators or other digits)")
    value = float(cell)
    if not math.isfinite(value):
        raise DataError(f"{where}: {cell!r} is not finite; remove or fill the row")
    if abs(value) > FLOAT32_MAX:
        raise DataError(f"{where}: {cell!r} does not fit a float32 (at most about 3.4e38 in size); "
                        "rescale the column")
    return value


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
    data = numeric_columns(path, header, numbered, wanted)
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


def numeric_columns(path: str, header: list[str], numbered: list[tuple[int, list[str]]],
                    wanted: list[str]) -> np.ndarray:
    """The `wanted` columns of the rows as float64, (rows, len(wanted)); a bad cell is named."""
    cols = [header.index(c) for c in wanted]
    data = np.empty((len(numbered), len(cols)), dtype=np.float64)
    for i, (line, row) in enumerate(numbered):
        if len(row) != len(header):
            raise DataError(f"{path}, line {line}: {len(row)} cells, but the header has {len(header)}")
        for j, c in enumerate(cols):
            data[i, j] = number(row[c], f"{path}, line {line}, column {wanted[j]!r}")
    return data


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
