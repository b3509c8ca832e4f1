"""Fuzz: logged-session tables (CSV and Parquet) broken at random are refused with an error
naming the column, line or file (see tests/helpers/fuzzing.py for the property)."""

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

from marl_rec.data import LoggedSessionSchema, OfflineDataset, from_logged_sessions

SCHEMA = LoggedSessionSchema(state_prefix="s_", action_prefix="a", reward_column="r", component_columns=("click",),
                             terminal_column="done")
HEADER = ["session_id", "step", "s_x", "s_y", "a0", "a1", "r", "click", "done"]
ROWS = [["u1", "0", "0.1", "0.2", "0.5", "-0.5", "1.0", "1", "false"],
        ["u1", "1", "0.3", "0.1", "0.0", "0.25", "0.0", "0", "false"],
        ["u1", "2", "0.2", "0.2", "-1", "1", "2.0", "1", "true"],
        ["u2", "5", "0.4", "0.0", "0.75", "0.1", "0.5", "0", "false"],
        ["u2", "7", "0.1", "0.9", "0.2", "0.2", "0.0", "0", "true"]]
NUMERIC = ["step", "s_x", "s_y", "a0", "a1", "r", "click"]
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _finite_float(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return math.isfinite(value)


def _csv_bytes(header: list[str], rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)  # lineterminator \r\n: cells holding \r or \n are quoted
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def _load(path: Path) -> OfflineDataset:
    return from_logged_sessions(path, SCHEMA)


def test_the_base_table_loads(tmp_path: Path) -> None:
    (tmp_path / "log.csv").write_bytes(_csv_bytes(HEADER, ROWS))
    assert len(_load(tmp_path / "log.csv")) == 5  # the fuzzing below starts from a valid table


not_a_number = st.one_of(
    st.sampled_from(["", "  ", "nan", "NaN", "inf", "-inf", "-1e400", "abc", "1.0.0", "--1", "0x1F", "None", "1,5",
                     "true"]),
    st.text(max_size=6).filter(lambda t: not _finite_float(t)))
beyond_float32 = st.floats(min_value=FLOAT32_MAX * 1.01, max_value=1e300).map(lambda v: repr(v))
outside_action_box = st.floats(min_value=1.0001, max_value=1e6).flatmap(lambda v: st.sampled_from([repr(v), repr(-v)]))


@FUZZ
@given(column=st.sampled_from(NUMERIC), row=st.integers(0, len(ROWS) - 1), data=st.data())
def test_a_bad_number_is_named_by_column_and_line(tmp_path: Path, column: str, row: int, data) -> None:
    choices = [not_a_number]
    if column != "step":  # steps are float64 (or int64): any finite step is fine
        choices.append(beyond_float32)
    if column in ("a0", "a1"):
        choices.append(outside_action_box)
    token = data.draw(st.one_of(choices))
    rows = [list(r) for r in ROWS]
    rows[row][HEADER.index(column)] = token
    (tmp_path / "log.csv").write_bytes(_csv_bytes(HEADER, rows))
    error = assert_refused(lambda: _load(tmp_path / "log.csv"), [f"'{column}'"])
    assert f"line {row + 2}" in str(error) or column == "step", error


@FUZZ
@given(row=st.integers(0, len(ROWS) - 1),
       token=st.text(max_size=6).filter(lambda t: t.strip().lower() not in
                                         {"1", "1.0", "true", "t", "yes", "y", "0", "0.0", "false", "f", "no", "n"}))
def test_a_bad_flag_is_named(tmp_path: Path, row: int, token: str) -> None:
    rows = [list(r) for r in ROWS]
    rows[row][HEADER.index("done")] = token
    (tmp_path / "log.csv").write_bytes(_csv_bytes(HEADER, rows))
    assert_refused(lambda: _load(tmp_path / "log.csv"), ["'done'"])


@FUZZ
@given(kind=st.sampled_from(["early_flag", "blank_session", "duplicate_step", "drop_column", "duplicate_header",
                             "ragged_row", "not_utf8"]),
       row=st.integers(0, len(ROWS) - 2), column=st.sampled_from(HEADER))
def test_structural_faults_are_named(tmp_path: Path, kind: str, row: int, column: str) -> None:
    header, rows = list(HEADER), [list(r) for r in ROWS]
    expected = [f"'{column}'"]
    if kind == "early_flag":
        row = 0 if row >= 2 else row  # a row of u1 that is not its last
        rows[row][HEADER.index("done")] = "true"
        expected = ["'done'"]
    elif kind == "blank_session":
        rows[row][0] = " "
        expected = ["'session_id'"]
    elif kind == "duplicate_step":
        rows[1][1] = rows[0][1]
        expected = ["'step'"]
    elif kind == "drop_column":
        if column.startswith(("s_", "a")):
            return  # the prefix picks the columns that remain: a valid table with a smaller state/action
        index = header.index(column)
        header.pop(index)
        for r in rows:
            r.pop(index)
        expected = [f"'{column}'"]
    elif kind == "duplicate_header":
        header[(header.index(column) + 1) % len(header)] = column
        expected = ["duplicated column names"]
    elif kind == "ragged_row":
        rows[row] = rows[row][:-1] if row % 2 else rows[row] + ["extra"]
        expected = [f"line {row + 2}"]
    content = _csv_bytes(header, rows)
    if kind == "not_utf8":
        content = content.replace(b"u2", b"\xff\xfe", 1)
        expected = ["log.csv"]
    (tmp_path / "log.csv").write_bytes(content)
    assert_refused(lambda: _load(tmp_path / "log.csv"), expected)


@FUZZ
@given(cut=st.integers(0, len(_csv_bytes(HEADER, ROWS)) - 1), noise=st.binary(max_size=40))
def test_truncated_or_garbled_files_load_or_are_refused(tmp_path: Path, cut: int, noise: bytes) -> None:
    """Cut anywhere, with random bytes appended: a shorter valid table, or an error naming the
    file or a column — never another exception."""
    (tmp_path / "log.csv").write_bytes(_csv_bytes(HEADER, ROWS)[:cut] + noise)
    result = outcome(lambda: _load(tmp_path / "log.csv"))
    if isinstance(result, BaseException):
        assert "log.csv" in str(result) or any(f"'{c}'" in str(result) for c in HEADER) \
            or "no column starts with" in str(result), result
    else:
        assert 0 < len(result) <= len(ROWS)


pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq

arrow_columns = st.sampled_from([
    lambda n: pa.array(["x"] * n), lambda n: pa.array([None] * n, type=pa.float64()),
    lambda n: pa.array([[1.0]] * n), lambda n: pa.array([np.datetime64(1, "s")] * n),
    lambda n: pa.array([math.nan] * n), lambda n: pa.array([1e39] * n), lambda n: pa.array([{"a": 1}] * n),
])


@FUZZ
@given(column=st.sampled_from([c for c in HEADER if c not in ("session_id", "done")]), make=arrow_columns)
def test_a_parquet_column_of_the_wrong_type_is_named(tmp_path: Path, column: str, make) -> None:
    table = {name: [r[i] for r in ROWS] for i, name in enumerate(HEADER)}
    arrays = {name: pa.array([float(v) for v in values]) if name in NUMERIC else pa.array(values)
              for name, values in table.items()}
    replacement = make(len(ROWS))
    if column == "step" and pa.types.is_timestamp(replacement.type):
        return  # timestamps are valid steps (distinct values needed, tested in test_logs_faults)
    arrays[column] = replacement
    pq.write_table(pa.table(arrays), tmp_path / "log.parquet")
    assert_refused(lambda: from_logged_sessions(tmp_path / "log.parquet", SCHEMA), [f"'{column}'"])


@FUZZ
@given(cut=st.integers(0, 2000), noise=st.binary(max_size=64))
def test_a_broken_parquet_file_is_named(tmp_path: Path, cut: int, noise: bytes) -> None:
    arrays = {name: pa.array([float(r[i]) if name in NUMERIC else r[i] for r in ROWS]) for i, name in enumerate(HEADER)}
    pq.write_table(pa.table(arrays), tmp_path / "log.parquet")
    content = (tmp_path / "log.parquet").read_bytes()
    if cut >= len(content) and not noise:
        return  # the intact file
    (tmp_path / "log.parquet").write_bytes(content[:cut] + noise)
    assert_refused(lambda: from_logged_sessions(tmp_path / "log.parquet", SCHEMA), ["log.parquet"])
