"""Logged-session tables that are subtly wrong: values finite in float64 but not in float32,
int64 nanosecond timestamps as steps, a file that is not UTF-8, a truncated Parquet file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from marl_rec.data import LoggedSessionSchema, from_logged_sessions

SCHEMA = LoggedSessionSchema(state_columns=("s",), action_columns=("a",), reward_column="r")
HEADER = "session_id,step,s,a,r"
ROWS = ["u1,0,0.1,0.5,1.0", "u1,1,0.2,-0.5,0.0", "u2,0,0.3,0.0,2.0"]


def write(path: Path, lines: list[str], encoding: str = "utf-8") -> Path:
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


@pytest.mark.parametrize("row, column", [("u2,1,1e39,0.0,2.0", "s"), ("u2,1,0.3,0.0,-1e39", "r")])
def test_values_beyond_float32_are_named_by_file_column_and_line(tmp_path: Path, row: str, column: str) -> None:
    path = write(tmp_path / "log.csv", [HEADER, *ROWS, row])
    with pytest.raises(ValueError, match=rf"column '{column}', row 3 \(line 5 of log\.csv\): -?1e\+39 is beyond "
                                         r"the float32 range"):
        from_logged_sessions(path, SCHEMA)


def test_a_weighted_reward_beyond_float32_is_named() -> None:
    table = {"session_id": np.array([1, 1]), "step": np.array([0, 1]), "s": np.zeros(2), "a": np.zeros(2),
             "c": np.array([1.0, 3e38])}
    schema = LoggedSessionSchema(state_columns=("s",), action_columns=("a",), component_columns=("c",),
                                 reward_weights=(2.0,))
    with pytest.raises(ValueError, match=r"column 'reward \(reward_weights · component_columns\)', row 1: 6e\+38"):
        from_logged_sessions(table, schema)


def test_nanosecond_timestamps_as_steps_keep_their_order() -> None:
    base = 1_700_000_000_000_000_000  # float64 cannot tell base + 1 from base + 2
    table = {"session_id": np.array([7, 7, 7]), "step": np.array([base + 2, base, base + 1], dtype=np.int64),
             "s": np.array([2.0, 0.0, 1.0]), "a": np.zeros(3), "r": np.array([20.0, 0.0, 10.0])}
    data = from_logged_sessions(table, SCHEMA)
    np.testing.assert_array_equal(data.rewards, [0.0, 10.0, 20.0])  # sorted by the exact steps
    table["step"][0] = base + 1
    with pytest.raises(ValueError, match=rf"step {base + 1} appears twice"):
        from_logged_sessions(table, SCHEMA)


def test_nanosecond_timestamps_in_csv_and_parquet(tmp_path: Path) -> None:
    base = 1_700_000_000_000_000_000
    lines = [HEADER, f"u1,{base + 2},2.0,0.0,20.0", f"u1,{base},0.0,0.0,0.0", f"u1,{base + 1},1.0,0.0,10.0"]
    np.testing.assert_array_equal(from_logged_sessions(write(tmp_path / "log.csv", lines), SCHEMA).rewards,
                                  [0.0, 10.0, 20.0])
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    stamps = pa.array(np.array([base + 2, base, base + 1], dtype="datetime64[ns]"))
    pq.write_table(pa.table({"session_id": ["u1"] * 3, "step": stamps, "s": [2.0, 0.0, 1.0], "a": [0.0] * 3,
                             "r": [20.0, 0.0, 10.0]}), tmp_path / "log.parquet")
    np.testing.assert_array_equal(from_logged_sessions(tmp_path / "log.parquet", SCHEMA).rewards, [0.0, 10.0, 20.0])


def test_a_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = write(tmp_path / "latin.csv", [HEADER, *ROWS[:2], "caf\u00e9,0,0.3,0.0,2.0"], "latin-1")
    with pytest.raises(ValueError, match=r"latin\.csv: the file is not UTF-8 text"):
        from_logged_sessions(path, SCHEMA)


def test_a_truncated_parquet_file_is_named(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "log.parquet"
    pq.write_table(pa.table({"session_id": ["u1", "u1"], "step": [0, 1], "s": [0.0, 1.0], "a": [0.0, 0.0],
                             "r": [1.0, 2.0]}), path)
    assert len(from_logged_sessions(path, SCHEMA)) == 2
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"log\.parquet: not a readable Parquet file"):
        from_logged_sessions(path, SCHEMA)
