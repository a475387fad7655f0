"""The fast CSV read (pyarrow) and the serial pass (the csv module and csvfile.number, cell by cell)
give the same float32 values for the same cells, or the fast read declines and the serial pass
decides: it never accepts a cell the serial pass refuses."""

from __future__ import annotations

import decimal
import random
from fractions import Fraction

import numpy as np
import pytest

from gradlab.lessons.csvfile import (
    DataError,
    fast_columns,
    fast_labelled,
    labels_of,
    numeric_columns,
    read_csv,
    read_table,
)

AWKWARD = [
    "0", "-0", "+3", "1.", ".5", "-.5e-3", "1e5", "1E+05", " 7", "7 ", "  -2.5  ", "\t4", "3.4028235e38",
    "-3.4028234e38", "3.5e38", "1e39", "1e-46", "1e-400", "1e400", "123456789012345678901234567890",
    "0.1000000000000000055511151231257827", "16777217", "1_000", "1__0", "_1", "٣", "١٢.٥", "１２", "²",
    "", " ", "nan", "NaN", "-nan", "inf", "-Infinity", "infinity", "0x10", "1e", "e5", "1.2.3", "--1", "1,5",
    "'4'", '"4"', '"4', "4\x00", "true", "None", "NA", "null", "1d5", "½", "1 2", "é",
]


def _serial(path, wanted):
    header, numbered = read_table(str(path), "data.path")
    return numeric_columns(str(path), header, numbered, wanted)


def _both(path, wanted):
    """(the fast read's values or None, the serial pass's values or its DataError)."""
    found = fast_columns(str(path), lambda header: wanted)
    try:
        serial = _serial(path, wanted)
    except DataError as e:
        serial = e
    return (None if found is None else found[1]), serial


@pytest.mark.parametrize("cell", AWKWARD, ids=repr)
def test_one_cell_gets_the_same_value_from_both_readers_or_the_same_refusal(cell, tmp_path):
    path = tmp_path / "cells.csv"
    path.write_text(f"x,y\n{cell},1\n2,3\n4,5\n", encoding="utf-8", newline="")
    fast, serial = _both(path, ["x", "y"])
    if isinstance(serial, DataError):
        assert fast is None, f"the fast read accepted {cell!r}, which the serial pass refuses: {serial}"
        with pytest.raises(DataError, match="cells.csv"):  # read_csv refuses it too (the serial pass's order)
            read_csv(str(path), "y", ["x"])
    else:
        if fast is not None:
            assert fast.dtype == serial.dtype == np.float32
            assert fast.tobytes() == serial.tobytes()  # bit for bit, -0.0 included
        x, y, _ = read_csv(str(path), "y", ["x"])
        assert x[:, 0].tobytes() == serial[:, 0].tobytes() and y.tobytes() == serial[:, 1].tobytes()


def _nearest_float32(cell: str) -> np.float32:
    """The oracle: the float32 nearest the decimal, by exact fractions (ties to an even significand)."""
    exact = Fraction(cell)
    guess = np.float32(float(cell))
    around = [np.nextafter(guess, np.float32(-np.inf)), guess, np.nextafter(guess, np.float32(np.inf))]
    return min(around, key=lambda f: (abs(Fraction(float(f)) - exact), int(f.view(np.uint32)) & 1))


def _beside_a_midpoint(rng: random.Random) -> str:
    """A decimal a hair above or below the midpoint of two float32s (or the midpoint's own repr):
    where rounding to float64 first and then to float32 can pick the wrong one."""
    f = np.float32(rng.uniform(-1e4, 1e4))
    middle = (Fraction(float(f)) + Fraction(float(np.nextafter(f, np.float32(np.inf))))) / 2
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        exact = decimal.Decimal(middle.numerator) / middle.denominator
        return rng.choice([repr(float(middle)), str(exact * (1 + decimal.Decimal("1e-30"))),
                           str(exact * (1 - decimal.Decimal("1e-30")))])


def test_plain_numbers_take_the_fast_read_and_both_give_the_float32_nearest_each_cell(tmp_path):
    rng = random.Random(22)
    rows = []
    for _ in range(20_000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.choice([1, 4, 9, 17, 25])))
        exponent = rng.randint(-46, 38)
        rows.append([f"{rng.choice(['', '-'])}{digits[0]}.{digits[1:]}e{exponent}", _beside_a_midpoint(rng),
                     str(rng.randint(-9, 9))])
    rows = [r for r in rows if abs(float(r[0])) < 3.4e38]  # what fits a float32
    path = tmp_path / "plain.csv"
    path.write_text("a,b,c\n" + "\n".join(",".join(r) for r in rows) + "\n")
    fast, serial = _both(path, ["c", "a", "b"])
    assert fast is not None  # the file is plain: the fast read took it
    assert fast.tobytes() == serial.tobytes()
    expected = np.array([[_nearest_float32(r[2]), _nearest_float32(r[0]), _nearest_float32(r[1])] for r in rows])
    assert serial.tobytes() == expected.astype(np.float32).tobytes()
    twice = np.array([np.float32(float(r[1])) for r in rows])
    assert (twice != expected[:, 2]).sum() > 1000  # the file holds cells that rounding twice gets wrong


@pytest.mark.parametrize("content", [
    "\n\nx,y\n1,2\n\n3,4\n5,6",          # blank lines before the header and between rows, no final newline
    "\ufeffx,y\r\n1,2\r\n3,4\r\n5,6\r\n",  # Excel: a byte-order mark and CRLF
    "x, y ,z\n1,2,a\n3,4,b\n5,6,c\n",     # a text column not used, names with spaces
])
def test_the_fast_read_finds_the_rows_and_columns_the_serial_pass_finds(content, tmp_path):
    path = tmp_path / "shapes.csv"
    path.write_text(content, encoding="utf-8", newline="")
    fast, serial = _both(path, ["y", "x"])
    assert fast is not None and fast.tobytes() == serial.tobytes()


@pytest.mark.parametrize("every_column", [True, False], ids=["every column used", "a column skipped"])
@pytest.mark.parametrize("odd", [
    b'"1.5"', b'"1,5"', b'"1\n2,3"', b'1"', b"1\x002", b"1\xff", b"\xc3", b'"', b"\x00", b"\xef\xbb\xbf1",
    "é".encode(), b"1\r2",
    b'"x\n9,9,cat,"',  # a quoted line end that, read without quotes, splits into rows of the right width
], ids=repr)
def test_a_quote_nul_or_odd_byte_anywhere_leaves_the_fast_read_no_room_to_differ(odd, every_column, tmp_path):
    """Whichever column holds the odd cell (a number, the labels, a column the read skips), the fast
    read declines or reads what the serial pass reads; it never accepts what the serial pass refuses."""
    numbers = ["a", "b", "c"] if every_column else ["a", "b"]  # c: skipped, or read too
    for where in range(4):
        rows = [[b"1", b"2", b"cat", b"7"], [b"3", b"4", b"dog", b"8"], [b"5", b"6", b"cat", b"9"]]
        rows[1][where] = odd
        path = tmp_path / "odd.csv"
        path.write_bytes(b"a,b,label,c\n" + b"".join(b",".join(r) + b"\n" for r in rows))
        for labelled in (False, True):
            found = (fast_labelled(str(path), "label", numbers) if labelled
                     else fast_columns(str(path), lambda header: numbers))
            try:
                header, numbered = read_table(str(path), "data.path")
                serial = numeric_columns(str(path), header, numbered, numbers)
                serial_labels = labels_of(str(path), header, numbered, "label") if labelled else None
            except DataError:
                assert found is None, f"the fast read took what the serial pass refuses ({where=}, {labelled=})"
                continue
            if found is not None:
                assert (found[0] if labelled else found[1]).tobytes() == serial.tobytes(), (where, labelled)
                if labelled:
                    assert (found[2], found[1].tolist()) == (serial_labels[1], serial_labels[0].tolist()), where


def test_labels_read_fast_are_labels_of_the_serial_pass(tmp_path):
    rng = random.Random(5)
    for labels in (["3", "10", " 2", "10"], ["cat", "dog", "Cat", " dog "]):
        path = tmp_path / "labelled.csv"
        path.write_text("u,label,v\n" + "".join(f"{rng.random()},{rng.choice(labels)},{rng.random()}\n"
                                                for _ in range(300)))
        found = fast_labelled(str(path), "label", None)
        assert found is not None
        header, numbered = read_table(str(path), "data.path")
        index, classes = labels_of(str(path), header, numbered, "label")
        assert found[2] == classes and found[1].tolist() == index.tolist() and found[3] == ["u", "v"]
        assert found[0].tobytes() == numeric_columns(str(path), header, numbered, ["u", "v"]).tobytes()
