"""Bandit logs that are subtly wrong: a byte-order mark, a duplicated header, a huge outlier
position, values beyond float32, a file that is not UTF-8, a truncated Parquet file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from marl_rec.ope import BanditSchema, load_bandit_log
from marl_rec.ope.bandit import MAX_INFERRED_POSITIONS

SCHEMA = BanditSchema(context_columns=("x0",), position_column="position")
HEADER = "x0,action,reward,propensity,position"
ROWS = ["0.5,0,1.0,0.5,0", "-0.5,1,0.0,0.5,1", "0.0,1,1.0,0.25,2"]


def write(path: Path, lines: list[str], encoding: str = "utf-8") -> Path:
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    plain = load_bandit_log(write(tmp_path / "plain.csv", [HEADER, *ROWS]), SCHEMA).dataset
    bom = load_bandit_log(write(tmp_path / "bom.csv", [HEADER, *ROWS], "utf-8-sig"), SCHEMA).dataset
    np.testing.assert_array_equal(plain.observations, bom.observations)
    assert plain.observations.shape == (3, 1 + 3)  # x0 and the one-hot of 3 positions


def test_a_duplicated_header_column_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "dup.csv", [HEADER + ",x0", *[row + ",9" for row in ROWS]])
    with pytest.raises(ValueError, match=r"duplicated column names in the header: \['x0'\]"):
        load_bandit_log(path, SCHEMA)


def test_an_outlier_position_needs_num_positions(tmp_path: Path) -> None:
    path = write(tmp_path / "far.csv", [HEADER, *ROWS[:2], "0.0,1,1.0,0.25,1000000"])
    with pytest.raises(ValueError, match=r"column 'position' row 2 has position 1000000.*num_positions"):
        load_bandit_log(path, SCHEMA)
    near = write(tmp_path / "near.csv", [HEADER, *ROWS[:2], f"0.0,1,1.0,0.25,{MAX_INFERRED_POSITIONS - 1}"])
    assert load_bandit_log(near, SCHEMA).dataset.observations.shape == (3, 1 + MAX_INFERRED_POSITIONS)
    explicit = BanditSchema(context_columns=("x0",), position_column="position", num_positions=1000)
    wide = write(tmp_path / "wide.csv", [HEADER, *ROWS[:2], "0.0,1,1.0,0.25,999"])
    assert load_bandit_log(wide, explicit).dataset.observations.shape == (3, 1 + 1000)


@pytest.mark.parametrize("row, column", [("1e39,0,1.0,0.5,0", "x0"), ("0.5,0,-1e39,0.5,0", "reward")])
def test_values_beyond_float32_are_named_by_column_and_row(tmp_path: Path, row: str, column: str) -> None:
    path = write(tmp_path / "big.csv", [HEADER, *ROWS[:2], row])
    with pytest.raises(ValueError, match=rf"column '{column}' row 2 has value -?1e\+39, beyond the float32 range"):
        load_bandit_log(path, SCHEMA)


def test_a_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = write(tmp_path / "latin.csv", [HEADER + ",caf\u00e9", *[row + ",1" for row in ROWS]], "latin-1")
    with pytest.raises(ValueError, match=r"latin\.csv: the file is not UTF-8 text"):
        load_bandit_log(path, SCHEMA)
    with pytest.raises(FileNotFoundError, match="no bandit log"):
        load_bandit_log(tmp_path / "absent.parquet", SCHEMA)


def test_a_truncated_parquet_file_is_named(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "log.parquet"
    pq.write_table(pa.table({"x0": [0.5, -0.5], "action": [0, 1], "reward": [1.0, 0.0],
                             "propensity": [0.5, 0.5], "position": [0, 1]}), path)
    assert len(load_bandit_log(path, SCHEMA).dataset) == 2
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"log\.parquet: not a readable Parquet file"):
        load_bandit_log(path, SCHEMA)


@pytest.mark.parametrize("action", ["1e39", "2000000"])
def test_a_huge_action_index_needs_num_actions(tmp_path: Path, action: str) -> None:
    path = write(tmp_path / "far.csv", [HEADER, *ROWS[:2], f"0.0,{action},1.0,0.25,1"])
    with pytest.raises(ValueError, match=r"column 'action' row 2 .* \(set BanditSchema.num_actions for more\)"):
        load_bandit_log(path, SCHEMA)
