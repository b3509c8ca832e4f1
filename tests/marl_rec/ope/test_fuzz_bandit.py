"""Fuzz: bandit logs (CSV and Parquet) broken at random are refused with an error naming the
column or file (see tests/helpers/fuzzing.py for the property)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import pytest
from fuzzing import FUZZ, assert_refused, outcome
from hypothesis import given
from hypothesis import strategies as st

from marl_rec.ope import BanditSchema, load_bandit_log

SCHEMA = BanditSchema(context_columns=("x0", "x1"), position_column="position")
HEADER = ["x0", "x1", "action", "reward", "propensity", "position"]
ROWS = [["0.5", "1", "0", "1.0", "0.5", "0"], ["-0.5", "0", "1", "0.0", "0.25", "1"],
        ["0.0", "2", "2", "1.0", "0.75", "2"], ["1.5", "-1", "1", "0.5", "1.0", "0"]]
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _finite_float(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(out.getvalue().encode("utf-8"))
    return path


def test_the_base_log_loads(tmp_path: Path) -> None:
    assert len(load_bandit_log(_write(tmp_path / "log.csv", HEADER, ROWS), SCHEMA).dataset) == 4


not_a_number = st.one_of(st.sampled_from(["", " ", "nan", "inf", "-inf", "-1e400", "abc", "1.0.0", "None"]),
                         st.text(max_size=6).filter(lambda t: not _finite_float(t)))
# per column: values that are numbers but still invalid there
INVALID_NUMBERS = {
    "x0": st.floats(min_value=FLOAT32_MAX * 1.01, max_value=1e300).map(repr),
    "x1": st.floats(min_value=FLOAT32_MAX * 1.01, max_value=1e300).map(lambda v: repr(-v)),
    "reward": st.floats(min_value=FLOAT32_MAX * 1.01, max_value=1e300).map(repr),
    "action": st.one_of(st.integers(max_value=-1).map(str), st.sampled_from(["0.5", "1.25"])),
    "propensity": st.one_of(st.floats(max_value=0.0, allow_nan=False, allow_infinity=False).map(repr),
                            st.floats(min_value=1.0001, max_value=1e9).map(repr)),
    "position": st.one_of(st.integers(max_value=-1).map(str), st.integers(101, 10**12).map(str),
                          st.sampled_from(["0.5", "2.5"])),
}


@FUZZ
@given(column=st.sampled_from(HEADER), row=st.integers(0, len(ROWS) - 1), data=st.data())
def test_a_bad_cell_is_named_by_column_and_row(tmp_path: Path, column: str, row: int, data) -> None:
    token = data.draw(st.one_of(not_a_number, INVALID_NUMBERS[column]))
    rows = [list(r) for r in ROWS]
    rows[row][HEADER.index(column)] = token
    error = assert_refused(lambda: load_bandit_log(_write(tmp_path / "log.csv", HEADER, rows), SCHEMA),
                           [f"'{column}'"])
    assert f"row {row}" in str(error), error


@FUZZ
@given(kind=st.sampled_from(["drop_column", "duplicate_header", "not_utf8", "no_rows"]),
       column=st.sampled_from(HEADER))
def test_structural_faults_are_named(tmp_path: Path, kind: str, column: str) -> None:
    header, rows, expected = list(HEADER), [list(r) for r in ROWS], [f"'{column}'"]
    if kind == "drop_column":
        index = header.index(column)
        header.pop(index)
        for r in rows:
            r.pop(index)
    elif kind == "duplicate_header":
        header[(header.index(column) + 1) % len(header)] = column
        expected = ["duplicated column names"]
    elif kind == "no_rows":
        rows, expected = [], ["no data rows"]
    path = _write(tmp_path / "log.csv", header, rows)
    if kind == "not_utf8":
        path.write_bytes(path.read_bytes().replace(b"0.25", b"\xff\xfe", 1))
        expected = ["log.csv"]
    assert_refused(lambda: load_bandit_log(path, SCHEMA), expected)


@FUZZ
@given(cut=st.integers(0, 200), noise=st.binary(max_size=40))
def test_truncated_or_garbled_files_load_or_are_refused(tmp_path: Path, cut: int, noise: bytes) -> None:
    path = _write(tmp_path / "log.csv", HEADER, ROWS)
    path.write_bytes(path.read_bytes()[:cut] + noise)
    result = outcome(lambda: load_bandit_log(path, SCHEMA))
    if isinstance(result, BaseException):
        assert "log.csv" in str(result) or any(f"'{c}'" in str(result) for c in HEADER), result
    else:
        assert 0 < len(result.dataset) <= len(ROWS)


pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq


@FUZZ
@given(column=st.sampled_from(HEADER), cut=st.one_of(st.none(), st.integers(0, 3000)), noise=st.binary(max_size=32),
       values=st.sampled_from([["x"] * 4, [None] * 4, [[1.0]] * 4, [math.nan] * 4, [1e39] * 4, [True] * 4]))
def test_broken_parquet_is_named(tmp_path: Path, column: str, cut: int | None, noise: bytes, values: list) -> None:
    arrays = {name: [float(r[i]) for r in ROWS] for i, name in enumerate(HEADER)}
    if cut is None:  # a column of the wrong kind
        if values == [True] * 4 and column != "action":
            values = [2.0] * 4 if column == "propensity" else values  # bools are 0/1: valid almost everywhere
        arrays[column] = values
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table(arrays), path)
    if cut is not None:
        content = path.read_bytes()
        if cut >= len(content) and not noise:
            return  # the intact file
        path.write_bytes(content[:cut] + noise)
    if cut is None and values == [True] * 4:
        result = outcome(lambda: load_bandit_log(path, SCHEMA))  # 1 is a valid value in most columns
        assert not isinstance(result, BaseException) or f"'{column}'" in str(result), result
        return
    assert_refused(lambda: load_bandit_log(path, SCHEMA), [f"'{column}'" if cut is None else "log.parquet"])
