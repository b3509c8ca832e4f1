"""Building an OfflineDataset from logged-session tables (CSV, Parquet, in-memory)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

from marl_rec.data import (
    LoggedSessionSchema,
    OfflineDataset,
    collect,
    from_logged_sessions,
)

HEADER = ["session_id", "step", "s_a", "s_b", "act0", "act1", "click", "watch", "prop", "left"]
# deliberately out of order: sessions u1, u2, u3 by first appearance; u1's steps shuffled
ROWS = [
    ["u1", "1", "0.1", "0.2", "0.5", "-0.5", "1", "3.0", "0.5", "0"],
    ["u2", "0", "1.0", "1.1", "0.1", "0.1", "0", "1.0", "0.25", "1"],
    ["u1", "0", "0.0", "0.0", "0.3", "0.3", "0", "2.0", "1.0", "0"],
    ["u1", "2", "0.3", "0.4", "0.0", "0.0", "1", "1.0", "0.5", "1"],
    ["u3", "0", "5", "5", "0", "0", "0", "0", "1", "0"],
    ["u3", "1", "6", "6", "0", "0", "1", "0", "1", "0"],
]
SCHEMA = LoggedSessionSchema(state_prefix="s_", action_prefix="act", component_columns=("click", "watch"),
                             reward_weights=(1.0, 0.1), propensity_column="prop", terminal_column="left")


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def as_columns(header: list[str], rows: list[list[str]]) -> dict[str, np.ndarray]:
    """The same table as numeric/str numpy columns (what a DataFrame would hold)."""
    columns = {}
    for j, name in enumerate(header):
        values = [row[j] for row in rows]
        columns[name] = np.array(values) if name == "session_id" else np.array(values, dtype=np.float64)
    return columns


def test_csv_import_builds_sorted_episodes(tmp_path: Path) -> None:
    dataset = from_logged_sessions(write_csv(tmp_path / "log.csv", HEADER, ROWS), SCHEMA)
    # u1 steps 0,1,2 (terminal at 2) | u2 step 0 (terminal) | u3 step 0 only: its truncated last row
    # (step 1) just provides the next state and is dropped
    close = np.testing.assert_allclose
    close(dataset.observations, [[0, 0], [0.1, 0.2], [0.3, 0.4], [1.0, 1.1], [5, 5]], rtol=1e-6)
    close(dataset.actions, [[0.3, 0.3], [0.5, -0.5], [0, 0], [0.1, 0.1], [0, 0]], rtol=1e-6)
    close(dataset.next_observations, [[0.1, 0.2], [0.3, 0.4], [0, 0], [0, 0], [6, 6]], rtol=1e-6)
    close(dataset.rewards, [0.2, 1.3, 1.1, 0.1, 0.0], rtol=1e-6)
    close(dataset.reward_components, [[0, 2], [1, 3], [1, 1], [0, 1], [0, 0]], rtol=1e-6)
    assert dataset.component_names == ["click", "watch"]
    assert dataset.behaviour_log_probs.tolist() == pytest.approx(np.log([1.0, 0.5, 0.5, 0.25, 1.0]).tolist())
    assert dataset.terminals.tolist() == [False, False, True, True, False]
    assert dataset.truncations.tolist() == [False, False, False, False, True]
    assert dataset.episode_starts.tolist() == [True, False, False, True, True]
    assert dataset.action_spec.kind == "continuous" and dataset.action_spec.dim == 2
    assert dataset.metadata["num_sessions"] == 3 and dataset.metadata["dropped_rows"] == 1
    assert dataset.metadata["dropped_sessions"] == 0


def test_same_result_from_every_table_kind(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    expected = from_logged_sessions(write_csv(tmp_path / "log.csv", HEADER, ROWS), SCHEMA)
    columns = as_columns(HEADER, ROWS)
    table = pa.table(columns)
    pq.write_table(table, tmp_path / "log.parquet")
    with open(tmp_path / "log.tsv", "w") as f:
        f.write("\n".join("\t".join(r) for r in [HEADER] + ROWS) + "\n")
    sources = [columns, table, tmp_path / "log.parquet", str(tmp_path / "log.tsv")]
    for source in sources:
        dataset = from_logged_sessions(source, SCHEMA)
        for name in ("observations", "actions", "rewards", "next_observations", "terminals", "truncations",
                     "episode_starts", "behaviour_log_probs", "reward_components"):
            assert np.array_equal(getattr(dataset, name), getattr(expected, name)), (type(source), name)


def test_explicit_reward_next_state_columns_and_flags() -> None:
    table = {
        "sid": np.array([7, 7, 7, 9, 9]), "t": np.array([0.0, 10.5, 20.0, 3.0, 4.0]),
        "x": np.arange(5.0), "nx": np.arange(5.0) + 100, "a": np.array([0, 2, 1, 1, 0]),
        "r": np.array([1.0, 2.0, 3.0, 4.0, 5.0]), "click": np.ones(5),
        "cut": np.array(["no", "no", "yes", "no", "no"]), "logp": np.log([0.5, 0.5, 0.25, 1.0, 0.5]),
    }
    schema = LoggedSessionSchema(session_column="sid", step_column="t", state_columns=("x",),
                                 next_state_columns=("nx",), action_columns=("a",), action_kind="discrete",
                                 num_actions=3, reward_column="r", component_columns=("click",),
                                 propensity_column="logp", propensity_kind="log_probability",
                                 truncated_column="cut")
    dataset = from_logged_sessions(table, schema)
    assert len(dataset) == 5  # with next-state columns a truncated session keeps its last row
    assert dataset.next_observations[:, 0].tolist() == [100, 101, 102, 103, 104]
    assert dataset.actions.dtype == np.int64 and dataset.actions.tolist() == [0, 2, 1, 1, 0]
    assert dataset.action_spec.discrete and dataset.action_spec.num_actions == 3
    assert dataset.rewards.tolist() == [1, 2, 3, 4, 5]  # the reward column, not the components
    assert dataset.truncations.tolist() == [False, False, True, False, False]
    assert dataset.terminals.tolist() == [False, False, False, False, True]  # last row, not flagged truncated
    assert dataset.behaviour_log_probs.tolist() == pytest.approx(np.log([0.5, 0.5, 0.25, 1.0, 0.5]).tolist())


def test_default_last_step_is_terminal_and_single_truncated_rows_vanish() -> None:
    table = {"session_id": np.array(["a", "a", "b", "c", "c"]), "step": np.array([0, 1, 0, 0, 1]),
             "s": np.arange(5.0), "act": np.zeros(5), "r": np.ones(5)}
    base = dict(state_columns=("s",), action_columns=("act",), reward_column="r")
    dataset = from_logged_sessions(table, LoggedSessionSchema(**base))
    assert dataset.terminals.tolist() == [False, True, True, False, True] and not dataset.truncations.any()
    table["trunc"] = np.array([False, False, True, False, True])
    dataset = from_logged_sessions(table, LoggedSessionSchema(**base, truncated_column="trunc"))
    # b (one truncated row) gives no transition; c keeps one transition ending truncated
    assert dataset.observations[:, 0].tolist() == [0, 1, 3]
    assert dataset.terminals.tolist() == [False, True, False]
    assert dataset.truncations.tolist() == [False, False, True]
    assert dataset.next_observations[:, 0].tolist() == [1, 0, 4]
    assert dataset.metadata["dropped_sessions"] == 1 and dataset.metadata["dropped_rows"] == 2


def test_simulator_dataset_survives_a_csv_round_trip(tmp_path: Path) -> None:
    """An exported simulator dataset (shuffled rows) imports back column for column."""
    from marl_rec.agents.policies import RandomPolicy
    from marl_rec.envs.simulator import SimulatorConfig, UserSimulator

    sim = UserSimulator(SimulatorConfig(max_requests=6))
    original = collect(sim, RandomPolicy(np.random.default_rng(0)), 200, np.random.default_rng(1), batch_size=16)
    d, k = original.obs_dim, original.action_spec.dim
    episode = np.cumsum(original.episode_starts) - 1
    step = np.arange(len(original)) - np.flatnonzero(original.episode_starts)[episode]
    header = (["session", "step"] + [f"obs_{i}" for i in range(d)] + [f"next_{i}" for i in range(d)]
              + [f"w_{i}" for i in range(k)] + ["reward", *original.component_names, "logp", "done", "cut"])
    rows = []
    for i in range(len(original)):
        values = [*original.observations[i], *original.next_observations[i], *original.actions[i],
                  original.rewards[i], *original.reward_components[i], original.behaviour_log_probs[i]]
        rows.append([f"user-{episode[i]}", str(step[i])] + [repr(float(v)) for v in values]
                    + [str(int(original.terminals[i])), str(int(original.truncations[i]))])
    rows = [rows[i] for i in np.random.default_rng(2).permutation(len(rows))]  # logs come in any order
    schema = LoggedSessionSchema(session_column="session", state_prefix="obs_", next_state_prefix="next_",
                                 action_prefix="w_", reward_column="reward",
                                 component_columns=tuple(original.component_names), propensity_column="logp",
                                 propensity_kind="log_probability", terminal_column="done", truncated_column="cut")
    imported = from_logged_sessions(write_csv(tmp_path / "export.csv", header, rows), schema)
    # sessions come out in order of first appearance: put them back in the original order
    first_seen = [int(session.split("-")[1]) for session in dict.fromkeys(row[0] for row in rows)]
    imported = imported.subset_episodes(np.argsort(first_seen))
    for name in ("observations", "actions", "rewards", "next_observations", "terminals", "truncations",
                 "episode_starts", "behaviour_log_probs", "reward_components"):
        assert np.array_equal(getattr(imported, name), getattr(original, name)), name


# ----------------------------------------------------------------- violations
def table_with(**changes: object) -> dict[str, np.ndarray]:
    columns = as_columns(HEADER, ROWS)
    for name, value in changes.items():
        if value is None:
            del columns[name]
        else:
            columns[name] = np.asarray(value)
    return columns


def obj(*values: object) -> np.ndarray:
    return np.array(values, dtype=object)


@pytest.mark.parametrize("changes, schema_changes, message", [
    ({"watch": None}, {}, "column 'watch' \\(component in the schema\\) is missing; the table has columns"),
    ({"s_b": [0, 0, np.nan, 0, 0, 0]}, {}, "column 's_b', row 2: missing value \\(NaN\\)"),
    ({"act0": [0, 0, 0, np.inf, 0, 0]}, {}, "column 'act0', row 3: .* is not finite"),
    ({"click": obj("1", "0", "x", "1", "0", "1")}, {}, "column 'click', row 2: 'x' is not a number"),
    ({"click": obj(1, 0, None, 1, 0, 1)}, {}, "column 'click', row 2: missing value"),
    ({"step": [1, 0, 1, 2, 0, 1]}, {},
     "column 'step': step 1 appears twice in session 'u1' \\(row 0 and row 2\\)"),
    ({"prop": [0.5, 0.25, 0.0, 0.5, 1, 1]}, {},
     "column 'prop', row 2: propensity 0 is not a probability in \\(0, 1\\]"),
    ({"prop": [0.5, 1.5, 1.0, 0.5, 1, 1]}, {}, "column 'prop', row 1: propensity 1.5 is not a probability"),
    ({"left": [1, 1, 0, 1, 0, 0]}, {},
     "column 'left', row 0: session 'u1' is marked terminal at step 1 but continues"),
    ({"left": obj("0", "1", "0", "maybe", "0", "0")}, {}, "column 'left', row 3: 'maybe' is not a flag"),
    ({"act1": [0, 0, 0, 0, 0, 1.5]}, {},
     "column 'act1', row 5: 1.5 is outside the action range \\[-1.0, 1.0\\]"),
    ({"session_id": obj("u1", None, "u1", "u1", "u3", "u3")}, {}, "column 'session_id', row 1: missing session id"),
    ({"cut": [0, 1, 0, 0, 0, 0]}, {"truncated_column": "cut"},
     "row 1: marked both terminal \\('left'\\) and truncated \\('cut'\\)"),
    ({}, {"state_prefix": "z_"}, "no column starts with state_prefix='z_'"),
    ({}, {"state_prefix": None, "state_columns": ("s_a", "act0")},
     "column 'act0' is used both as state and as action"),
    ({}, {"state_prefix": "s"}, "column 'session_id' is used both as session and as state"),
    ({}, {"action_prefix": None, "action_columns": ("act0", "watch")},
     "column 'watch' is used both as action and as component"),
])
def test_violations_name_column_and_row(changes: dict, schema_changes: dict, message: str) -> None:
    schema = LoggedSessionSchema(**{**SCHEMA.__dict__, **schema_changes})
    with pytest.raises(ValueError, match=message):
        from_logged_sessions(table_with(**changes), schema)


def test_discrete_action_must_be_an_index() -> None:
    table = {"session_id": np.array([1, 1]), "step": np.array([0, 1]), "s": np.zeros(2),
             "a": np.array([0.0, 2.5]), "r": np.zeros(2)}
    schema = LoggedSessionSchema(state_columns=("s",), action_columns=("a",), action_kind="discrete",
                                 num_actions=3, reward_column="r")
    with pytest.raises(ValueError, match="column 'a', row 1: 2.5 is not an action index in 0..2"):
        from_logged_sessions(table, schema)
    table["a"] = np.array([0.0, 3.0])
    with pytest.raises(ValueError, match="column 'a', row 1: 3 is not an action index"):
        from_logged_sessions(table, schema)


def test_csv_errors_give_the_file_line(tmp_path: Path) -> None:
    rows = [list(r) for r in ROWS]
    rows[3][3] = ""
    with pytest.raises(ValueError, match="column 's_b', row 3 \\(line 5 of log.csv\\): missing value"):
        from_logged_sessions(write_csv(tmp_path / "log.csv", HEADER, rows), SCHEMA)
    rows[3][3] = "0.4"
    rows[4] = rows[4][:-1]
    with pytest.raises(ValueError, match="line 6: 9 fields, the header has 10"):
        from_logged_sessions(write_csv(tmp_path / "log.csv", HEADER, rows), SCHEMA)
    with pytest.raises(ValueError, match="duplicated column names.*'click'"):
        from_logged_sessions(write_csv(tmp_path / "dup.csv", HEADER + ["click"], [r + ["1"] for r in ROWS]), SCHEMA)
    with pytest.raises(ValueError, match="has no data rows"):
        from_logged_sessions(write_csv(tmp_path / "empty.csv", HEADER, []), SCHEMA)
    (tmp_path / "nothing.csv").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        from_logged_sessions(tmp_path / "nothing.csv", SCHEMA)
    with pytest.raises(FileNotFoundError):
        from_logged_sessions(tmp_path / "missing.csv", SCHEMA)
    (tmp_path / "log.xlsx").write_text("")
    with pytest.raises(ValueError, match="unsupported logged-session file type '.xlsx'"):
        from_logged_sessions(tmp_path / "log.xlsx", SCHEMA)


def test_parquet_without_pyarrow_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "log.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError, match="marl-rec\\[parquet\\]"):
        from_logged_sessions(tmp_path / "log.parquet", SCHEMA)


def test_parquet_nulls_are_named() -> None:
    pa = pytest.importorskip("pyarrow")
    columns = as_columns(HEADER, ROWS)
    table = pa.table({**columns, "watch": pa.array([1.0, None, 2.0, 1.0, 0.0, 0.0])})
    with pytest.raises(ValueError, match="column 'watch', row 1: missing value \\(null\\)"):
        from_logged_sessions(table, SCHEMA)


@pytest.mark.parametrize("fields, message", [
    (dict(state_prefix="s_", action_prefix="a"), "exactly one of reward_column and reward_weights"),
    (dict(state_prefix="s_", action_prefix="a", reward_column="r", reward_weights=(1.0,),
          component_columns=("c",)), "exactly one of reward_column and reward_weights"),
    (dict(state_prefix="s_", action_prefix="a", reward_weights=(1.0, 2.0), component_columns=("c",)),
     "2 weights for 1 component_columns"),
    (dict(state_prefix="s_", state_columns=("x",), action_prefix="a", reward_column="r"),
     "state_columns and state_prefix"),
    (dict(state_prefix="s_", reward_column="r"), "action_columns and action_prefix"),
    (dict(state_prefix="s_", action_prefix="a", reward_column="r", action_kind="discrete"), "num_actions must be >= 2"),
    (dict(state_prefix="s_", action_prefix="a", reward_column="r", propensity_kind="odds"), "propensity_kind"),
])
def test_schema_is_checked(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LoggedSessionSchema(**fields)


def test_imported_dataset_saves_and_loads(tmp_path: Path) -> None:
    dataset = from_logged_sessions(write_csv(tmp_path / "log.csv", HEADER, ROWS), SCHEMA)
    dataset.save(tmp_path / "ds")
    loaded = OfflineDataset.load(tmp_path / "ds")
    assert np.array_equal(loaded.rewards, dataset.rewards)
    assert loaded.metadata["schema"]["reward_weights"] == [1.0, 0.1]


# ------------------------------------------------- consumed columns and the export
def test_consumed_columns_are_kept_by_name_and_never_weighted() -> None:
    columns = as_columns(HEADER, ROWS)
    columns["consumed_items"] = np.array([1, 0, 0, 2, 0, 1], dtype=np.float64)
    columns["ad_bid"] = np.array([0, 0, 0, 1.5, 0, 0], dtype=np.float64)
    schema = LoggedSessionSchema(**{**SCHEMA.__dict__, "consumed_columns": ("consumed_items", "ad_bid")})
    with_consumed = from_logged_sessions(columns, schema)
    without = from_logged_sessions(as_columns(HEADER, ROWS), SCHEMA)
    assert with_consumed.component_names == ["click", "watch", "consumed_items", "ad_bid"]
    assert np.array_equal(with_consumed.rewards, without.rewards)  # reward_weights cover the components only
    assert np.array_equal(with_consumed.reward_components[:, :2], without.reward_components)
    # sorted like every other column: u1 steps 0, 1, 2 come from rows 2, 0, 3
    assert with_consumed.reward_components[:3, 2].tolist() == [0, 1, 2]
    assert with_consumed.reward_components[:3, 3].tolist() == [0, 0, 1.5]
    by_prefix = from_logged_sessions(columns, LoggedSessionSchema(**{**SCHEMA.__dict__, "consumed_prefix": "consumed_"}))
    assert by_prefix.component_names == ["click", "watch", "consumed_items"]


@pytest.mark.parametrize("changes, schema_changes, message", [
    ({}, {"consumed_columns": ("consumed_items",)},
     "column 'consumed_items' \\(consumed in the schema\\) is missing; the table has columns"),
    ({}, {"consumed_prefix": "consumed_"}, "no column starts with consumed_prefix='consumed_'"),
    ({"consumed_items": obj(1, 0, "two", 1, 0, 1)}, {"consumed_columns": ("consumed_items",)},
     "column 'consumed_items', row 2: 'two' is not a number"),
    ({"consumed_items": [1, 0, np.nan, 1, 0, 1]}, {"consumed_columns": ("consumed_items",)},
     "column 'consumed_items', row 2: missing value \\(NaN\\)"),
    ({}, {"consumed_columns": ("click",)}, "column 'click' is used both as component and as consumed"),
])
def test_consumed_column_violations_are_named(changes: dict, schema_changes: dict, message: str) -> None:
    schema = LoggedSessionSchema(**{**SCHEMA.__dict__, **schema_changes})
    with pytest.raises(ValueError, match=message):
        from_logged_sessions(table_with(**changes), schema)


def test_schema_takes_one_way_of_naming_the_consumed_columns() -> None:
    with pytest.raises(ValueError, match="at most one of consumed_columns and consumed_prefix"):
        LoggedSessionSchema(**{**SCHEMA.__dict__, "consumed_columns": ("a",), "consumed_prefix": "c"})


COLUMNS = ("observations", "actions", "rewards", "next_observations", "terminals", "truncations",
           "episode_starts", "behaviour_log_probs", "reward_components")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_written_logs_read_back_to_the_same_dataset(tmp_path: Path, suffix: str) -> None:
    """write_logged_sessions -> from_logged_sessions is the identity on every column, names included,
    with truncated sessions kept whole (their next states are written)."""
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    from marl_rec.agents.policies import RandomPolicy
    from marl_rec.envs.simulator import (
        SimulatorConfig,
        UserSimulator,
        observation_names,
    )

    from marl_rec.data.logs import write_logged_sessions

    config = SimulatorConfig(max_requests=6, items_per_topic=40, ads_per_topic=2)
    original = collect(UserSimulator(config), RandomPolicy(np.random.default_rng(0)), 200,
                       np.random.default_rng(1), batch_size=16)
    assert original.truncations.any() and original.terminals.any()
    schema = write_logged_sessions(original, tmp_path / f"log{suffix}", state_names=observation_names(config))
    imported = from_logged_sessions(tmp_path / f"log{suffix}", schema)
    for name in COLUMNS:
        assert np.array_equal(getattr(imported, name), getattr(original, name)), name
    assert imported.component_names == original.component_names and imported.action_spec == original.action_spec
    assert schema.state_columns[0] == "state_profile_topic0"
    with pytest.raises(ValueError, match="unsupported logged-session file type '.json'"):
        write_logged_sessions(original, tmp_path / "log.json")
    with pytest.raises(ValueError, match="state_names has 2 names"):
        write_logged_sessions(original, tmp_path / "log.csv", state_names=["a", "b"])
