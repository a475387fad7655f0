"""Reading a CSV file for the datamodules and predict.py: a header row, numeric cells, a label column.

Every bad input is a DataError naming the file, the line an editor shows it on, the column and
what is allowed. One definition of a CSV number (`number`) serves every reader.

Two readers, one result: each cell is the float32 nearest its decimal value (ties to even), rounded
once, as pyarrow's parser rounds it. The fast read (`fast_columns`: pyarrow's multi-threaded C++
parser, only the columns used, straight to float32) knows no line numbers, so it never refuses
anything: at the first doubt (a parse or conversion error, a quote, a NUL byte, text that is not
UTF-8, a NaN, an infinity, a value beyond float32 or at its very edge, fewer than 2 rows) it gives
up, and the serial pass (`read_table` + `numeric_columns`, the csv module and `number` cell by cell)
reads the file again and names the line and column, or, for a number only `number` accepts (spaces
around it), returns the same values. `tests/test_csv_readers.py` holds the two to the same values or
the same refusal.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import math
import re
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import numpy as np

SCAN_BLOCK = 1 << 18  # bytes a time when scanning a file for what only the serial pass reads right:
# small enough that the three scans of a block find it in the CPU's cache


class DataError(ValueError):
    """Bad input data: the message names the file, column or row and what is allowed."""


FLOAT32_MAX = float(np.finfo(np.float32).max)


# What a spreadsheet reads as a number: ASCII digits, one point, an exponent. Python's float() also
# takes "1_000", Arabic-Indic and fullwidth digits; a spreadsheet shows those as text, so they are refused.
NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:nan|inf|infinity)",
                    re.ASCII | re.IGNORECASE)


def number(cell: str, where: str) -> np.float32:
    """A CSV cell as the float32 nearest it, if it is a finite number that fits a float32, or a
    DataError naming `where` it stands."""
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
    return nearest_float32(cell, value)


def nearest_float32(cell: str, value: float) -> np.float32:
    """The float32 nearest the decimal `cell` (ties to even), given `value`, the float64 nearest it.

    Rounding `value` to float32 gives it, unless `value` lies exactly halfway between two float32s
    (a float32 midpoint is a float64, so no other can sit between the decimal and `value`): there
    the decimal itself says which way (rounding twice blindly gets half of those wrong).
    """
    single = np.float32(value)
    if float(single) == value:
        return single
    other = np.nextafter(single, np.float32(math.copysign(math.inf, value - float(single))))
    if value - float(single) != float(other) - value or Fraction(cell) == Fraction(value):
        return single  # not a midpoint, or the decimal is one: float32's own rounding, ties to even
    return max(single, other) if Fraction(cell) > Fraction(value) else min(single, other)


def read_csv(path: str, target: str, features: list[str] | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Reads a numeric CSV into (X, y, the feature columns' names) as float32, naming the file, row
    and column of anything bad."""
    if features is None or (target not in features and len(set(features)) == len(features)):
        found = fast_columns(path, lambda header: [target] + (
            features if features is not None else [h for h in header if h != target]))
        if found is not None and found[1].shape[1] >= 2:
            wanted, data, _ = found
            return data[:, 1:], data[:, 0], wanted[1:]
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


def fast_columns(path: str, choose, labels: str | None = None, min_rows: int = 2):
    """The fast read: (the columns `choose(header)` names, their values as float32 (rows, columns),
    the `labels` column's cells as a pyarrow string column or None), or None wherever the serial pass
    must decide.

    Nothing here raises a DataError: a file it cannot read cleanly is the serial pass's to report.
    """
    try:
        header, skip = read_header(path)
        if header is None:
            return None
        wanted = list(choose(header))
        if not wanted or any(c not in header for c in wanted + ([labels] if labels else [])):
            return None
        import pyarrow as pa
        import pyarrow.csv as pacsv

        names = [str(i) for i in range(len(header))]  # by position: the file's own names are checked above
        used = [names[header.index(c)] for c in wanted]
        types = {name: pa.float32() for name in used}  # rounded once, as number() rounds
        if labels:
            types[names[header.index(labels)]] = pa.string()
        read = dict(
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=skip),
            parse_options=pacsv.ParseOptions(quote_char=False),  # plain(): there are no quotes
            convert_options=pacsv.ConvertOptions(column_types=types, include_columns=list(types),
                                                 null_values=[], strings_can_be_null=False),
        )
        if len(types) == len(names):
            # Every column is parsed: a quote, a NUL byte or bytes that are not UTF-8 fail the parse of
            # a number, and a text column's cells are checked for UTF-8 by pyarrow and for the rest below.
            table, clean = pacsv.read_csv(path, **read), True
        else:
            # While pyarrow parses (in its own threads, the GIL let go), a thread scans the file for what
            # it would misread in the columns it skips (plain()); a file that is not plain throws the
            # table away. The read stays in this thread, whose memory pool gives the table's memory back.
            with ThreadPoolExecutor(1) as pool:
                scan = pool.submit(plain, path)
                table = pacsv.read_csv(path, **read)
                clean = scan.result()
    except (OSError, ValueError, csv.Error):  # pyarrow.ArrowInvalid and UnicodeDecodeError are ValueErrors
        return None
    if not clean or table.num_rows < min_rows:
        return None
    data = np.empty((len(used), table.num_rows), dtype=np.float32)  # a column a row: each written whole
    for j, name in enumerate(used):
        start = 0
        for chunk in table.column(name).chunks:
            values = chunk.to_numpy(zero_copy_only=True)
            data[j, start : start + len(values)] = values
            start += len(values)
        if not inside_float32(data[j]):
            return None
    text = table.column(names[header.index(labels)]) if labels else None
    if text is not None:
        import pyarrow.compute as pc  # here only: its import alone costs a tenth of a large read

        if any(pc.any(pc.match_substring(text, mark)).as_py() for mark in ('"', "\0")):
            return None  # quoted or cut short, as the csv module reads it
    del table
    pa.default_memory_pool().release_unused()
    data = data.T  # (rows, columns), a view
    return wanted, data, text


def inside_float32(values: np.ndarray) -> bool:
    """Whether float32 values a fast read parsed are all numbers number() accepts as they are: not a
    NaN, an infinity, or float32's largest, which is also the nearest float32 to numbers a little
    beyond it (number() refuses those: the serial pass decides). max and min carry a NaN through."""
    return bool(values.max() < FLOAT32_MAX and values.min() > -FLOAT32_MAX)


def read_header(path: str) -> tuple[list[str] | None, int]:
    """The header as read_table reads it (None if it would refuse it), and the lines up to it."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        for row in reader:
            if any(cell.strip() for cell in row):
                header = [h.strip() for h in row]
                try:
                    _check_header(path, header)
                except DataError:
                    return None, 0
                return header, reader.line_num
    return None, 0


def plain(path: str) -> bool:
    """Whether the file is UTF-8 without quotes or NUL bytes: where a plain split at commas and line
    ends reads it cell for cell as the csv module does."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with open(path, "rb") as f:
        while block := f.read(SCAN_BLOCK):
            if b'"' in block or b"\0" in block:
                return False
            if not block.isascii():
                decoder.decode(block)  # a UnicodeDecodeError: not UTF-8
        decoder.decode(b"", final=True)
    return True


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
    """The `wanted` columns of the rows as float32, (rows, len(wanted)); a bad cell is named."""
    cols = [header.index(c) for c in wanted]
    data = np.empty((len(numbered), len(cols)), dtype=np.float32)
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


def fast_labelled(path: str, target: str, features: list[str] | None):
    """data=labelled_csv's fast read: (X float32, each row's class index, the classes, the feature
    columns), as the serial pass and labels_of give them, or None where the serial pass must decide."""
    if features is not None and (not features or target in features):
        return None
    found = fast_columns(path, lambda header: features if features is not None else
                         [h for h in header if h != target], labels=target)
    if found is None:
        return None
    wanted, x, cells = found
    encoded = cells.combine_chunks().dictionary_encode()  # each distinct cell once, as labels_of reads it
    distinct = [cell.strip() for cell in encoded.dictionary.to_pylist()]
    if not all(distinct):
        return None  # an empty label: the serial pass names its line
    try:
        values = [int(c) for c in distinct]
    except ValueError:
        values = distinct
    classes = sorted(set(values))
    position = {c: i for i, c in enumerate(classes)}
    index = np.array([position[v] for v in values], dtype=np.int64)[encoded.indices.to_numpy()]
    return x, index, classes, wanted


def check_known_labels(path: str, header: list[str], numbered: list[tuple[int, list[str]]], column: str,
                       classes: list) -> None:
    """A DataError for a row whose label (in a file given to predict) is none of the model's classes."""
    _, found = labels_of(path, header, numbered, column)
    unknown = [c for c in found if c not in classes and str(c) not in map(str, classes)]
    if unknown:
        raise DataError(f"{path}: the label column {column!r} holds {unknown}, which the model was not trained "
                        f"on; its classes are {classes}")
