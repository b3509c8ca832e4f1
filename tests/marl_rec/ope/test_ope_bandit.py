"""Bandit feedback: loading and validating logged tables, and IPS / SNIPS / DR / DM on them.

The synthetic bandit has 4 contexts (2 features each), 3 actions and Bernoulli rewards with
known means, so a target policy's value Σ_x P(x) Σ_a π(a|x) p(x, a) is exact. Tolerance on
20 000 logged rows: 5% for every estimator.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from marl_rec.ope import (BanditSchema, DoublyRobustConfig, DoublyRobustEstimator, FQEConfig, FQEEstimator,
                          ImportanceConfig, ImportanceSamplingEstimator, OPEContext, load_bandit_log)

torch.set_num_threads(1)
FEATURES = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
P_CONTEXT = np.array([0.4, 0.3, 0.2, 0.1])
P_REWARD = np.array([[0.1, 0.5, 0.2], [0.6, 0.1, 0.3], [0.2, 0.2, 0.7], [0.5, 0.4, 0.1]])
LOGGING = np.array([[0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.4, 0.4, 0.2], [0.3, 0.3, 0.4]])
SCHEMA = BanditSchema(context_columns=("x0", "x1"), action_columns="action", reward_column="reward",
                      propensity_column="propensity", position_column="position", num_positions=2)


def context_of(obs: np.ndarray) -> np.ndarray:
    return (np.asarray(obs)[:, 0] > 0.5).astype(int) + 2 * (np.asarray(obs)[:, 1] > 0.5).astype(int)


class TablePolicy:
    def __init__(self, probs: np.ndarray) -> None:
        self.probs = np.asarray(probs)

    def act(self, obs, deterministic=True):
        return self.probs[context_of(obs)].argmax(1)

    def log_prob(self, obs, actions):
        return np.log(self.probs[context_of(obs), np.asarray(actions, dtype=int)])

    def value(self) -> float:
        return float(P_CONTEXT @ (self.probs * P_REWARD).sum(1))


def write_log(path: Path, rows: list[dict], fieldnames: list[str] | None = None) -> Path:
    fieldnames = fieldnames or list(rows[0])
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    return path


def simulate_rows(n: int, rng: np.random.Generator) -> list[dict]:
    x = rng.choice(4, size=n, p=P_CONTEXT)
    a = (rng.random((n, 1)) > np.cumsum(LOGGING[x], 1)).sum(1).clip(max=2)
    r = (rng.random(n) < P_REWARD[x, a]).astype(float)
    position = rng.integers(0, 2, size=n)
    return [{"x0": FEATURES[c, 0], "x1": FEATURES[c, 1], "action": int(ai), "reward": ri,
             "propensity": LOGGING[c, ai], "position": int(p)} for c, ai, ri, p in zip(x, a, r, position)]


@pytest.fixture(scope="module")
def bandit_csv(tmp_path_factory) -> Path:
    return write_log(tmp_path_factory.mktemp("bandit") / "log.csv", simulate_rows(20000, np.random.default_rng(0)))


def test_csv_loads_as_one_step_episodes(bandit_csv):
    log = load_bandit_log(bandit_csv, SCHEMA)
    data = log.dataset
    assert len(data) == 20000 and int(data.episode_starts.sum()) == 20000
    assert data.terminals.all() and data.episode_starts.all()
    assert data.action_spec.discrete and data.action_spec.num_actions == 3
    assert data.observations.shape == (20000, 4)  # 2 features + one-hot of 2 positions
    np.testing.assert_array_equal(data.observations[:, 2:].argmax(1), log.positions)
    np.testing.assert_allclose(np.exp(data.behaviour_log_probs), LOGGING[context_of(data.observations),
                                                                         data.actions], rtol=1e-6)


def test_estimators_on_bandit_feedback(bandit_csv):
    """IPS = ``is``, SNIPS = ``wis``, DR = ``dr``, direct method = FQE at horizon 1."""
    context = OPEContext(load_bandit_log(bandit_csv, SCHEMA).dataset, gamma=0.9)
    target = TablePolicy(np.array([[0.1, 0.8, 0.1], [0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]]))
    truth = target.value()
    fqe = FQEConfig(hidden=(32, 32), learning_rate=3e-3, batch_size=256, num_updates=600, tau=0.05, num_bootstrap=200)
    estimators = [ImportanceSamplingEstimator(ImportanceConfig(kind="is", num_bootstrap=200)),
                  ImportanceSamplingEstimator(ImportanceConfig(kind="wis", num_bootstrap=200)),
                  DoublyRobustEstimator(DoublyRobustConfig(fqe=fqe, num_bootstrap=200)), FQEEstimator(fqe)]
    for estimator in estimators:
        estimate = estimator.estimate(context, target)
        assert abs(estimate.value - truth) / truth < 0.05, (estimator.name, estimate.value, truth)
        assert estimate.ci_low < truth < estimate.ci_high or estimator.name == "fqe", (estimator.name, estimate)
    assert context.horizon == 1


def test_parquet_roundtrip(tmp_path, bandit_csv):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = simulate_rows(200, np.random.default_rng(1))
    table = pa.table({k: [row[k] for row in rows] for k in rows[0]})
    pq.write_table(table, tmp_path / "log.parquet")
    from_parquet = load_bandit_log(tmp_path / "log.parquet", SCHEMA).dataset
    from_csv = load_bandit_log(write_log(tmp_path / "log.csv", rows), SCHEMA).dataset
    for name in ("observations", "actions", "rewards", "behaviour_log_probs"):
        np.testing.assert_array_equal(getattr(from_parquet, name), getattr(from_csv, name))
    nulls = table.set_column(table.schema.get_field_index("reward"), "reward",
                             pa.array([None] + [row["reward"] for row in rows[1:]], type=pa.float64()))
    pq.write_table(nulls, tmp_path / "nulls.parquet")
    with pytest.raises(ValueError, match="column 'reward' row 0"):
        load_bandit_log(tmp_path / "nulls.parquet", SCHEMA)
    with pytest.raises(ValueError, match="missing column 'x1'"):
        pq.write_table(table.drop(["x1"]), tmp_path / "no_x1.parquet")
        load_bandit_log(tmp_path / "no_x1.parquet", SCHEMA)


@pytest.mark.parametrize("column, value, message", [
    ("propensity", 0.0, "column 'propensity' row 3 has value 0.0; propensities must be in \\(0, 1\\]"),
    ("propensity", 1.5, "column 'propensity' row 3 has value 1.5"),
    ("propensity", -0.2, "column 'propensity' row 3"),
    ("reward", "nan", "column 'reward' row 3 is NaN"),
    ("x0", "", "column 'x0' row 3: empty cell"),
    ("x1", "abc", "column 'x1' row 3: non-numeric value 'abc'"),
    ("action", 1.5, "column 'action' row 3 has value 1.5; expected an integer"),
    ("action", -1, "column 'action' row 3"),
    ("position", 2, "column 'position' row 3 has value 2.0; expected an integer 0..1"),
])
def test_invalid_cells_are_named_by_column_and_row(tmp_path, column, value, message):
    rows = simulate_rows(10, np.random.default_rng(2))
    rows[3][column] = value
    with pytest.raises(ValueError, match=message):
        load_bandit_log(write_log(tmp_path / "bad.csv", rows), SCHEMA)


def test_invalid_files_and_schemas(tmp_path):
    rows = simulate_rows(10, np.random.default_rng(3))
    missing = write_log(tmp_path / "missing.csv", [{k: v for k, v in r.items() if k != "propensity"} for r in rows])
    with pytest.raises(ValueError, match="missing column 'propensity'"):
        load_bandit_log(missing, SCHEMA)
    # without a propensity column the log loads, and the IS family asks for a behaviour model
    no_propensity = BanditSchema(context_columns=("x0", "x1"), propensity_column=None)
    data = load_bandit_log(missing, no_propensity).dataset
    assert data.behaviour_log_probs is None
    with pytest.raises(ValueError, match="behaviour_log_probs"):
        ImportanceSamplingEstimator().estimate(OPEContext(data), TablePolicy(LOGGING))
    empty = tmp_path / "empty.csv"
    empty.write_text("x0,x1,action,reward,propensity,position\n")
    with pytest.raises(ValueError, match="no data rows"):
        load_bandit_log(empty, SCHEMA)
    with pytest.raises(ValueError, match="unknown file type"):
        load_bandit_log(tmp_path / "log.json", SCHEMA)
    with pytest.raises(ValueError, match="one column for discrete"):
        BanditSchema(context_columns=("x0",), action_columns=("a", "b"))
    with pytest.raises(ValueError, match="context_columns"):
        BanditSchema(context_columns=())


def test_continuous_action_log(tmp_path):
    """Continuous actions: one column per dimension, the propensity is a density (> 0, may exceed 1)."""
    rows = [{"x": 0.5, "a0": 0.1, "a1": -0.3, "reward": 1.0, "propensity": 2.5},
            {"x": 0.2, "a0": 0.9, "a1": 0.0, "reward": 0.0, "propensity": 0.4}]
    schema = BanditSchema(context_columns=("x",), action_columns=("a0", "a1"), continuous_actions=True)
    data = load_bandit_log(write_log(tmp_path / "c.csv", rows), schema).dataset
    assert data.actions.shape == (2, 2) and not data.action_spec.discrete
    assert data.behaviour_log_probs[0] == pytest.approx(np.log(2.5))
    rows[1]["a0"] = 1.5
    with pytest.raises(ValueError, match="row 1 lie outside the action box"):
        load_bandit_log(write_log(tmp_path / "c2.csv", rows), schema)
