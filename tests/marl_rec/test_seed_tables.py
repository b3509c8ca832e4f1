"""The tables over seeds shared by the experiment tasks (marl_rec/report.py: seed_table,
format_seed_table, difference_vs_spread, json_safe), as the joint_rec_ads and hierarchical
experiments use them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from marl_rec.agents.experiments.hierarchical import compare as hierarchical_compare
from marl_rec.agents.experiments.hierarchical import format_table as hierarchical_table
from marl_rec.agents.experiments.joint_rec_ads import compare as joint_compare
from marl_rec.agents.experiments.joint_rec_ads import format_table as joint_table
from marl_rec.report import difference_vs_spread, format_seed_table, json_safe, seed_table


def per_seed(values: dict[str, list[float]], metric: str = "team_return") -> list[dict]:
    """{policy: one value per seed} → the experiments' per-seed records."""
    num_seeds = len(next(iter(values.values())))
    return [{"seed": i, "results": {p: {metric: v[i]} for p, v in values.items()}} for i in range(num_seeds)]


def test_seed_table_is_mean_and_sample_std_per_policy_and_metric() -> None:
    records = per_seed({"a": [1.0, 2.0, 6.0], "b": [4.0, 4.0, 4.0]})
    table = seed_table(records)
    assert table["a"]["team_return"] == {"mean": 3.0, "std": pytest.approx(np.std([1, 2, 6], ddof=1))}
    assert table["b"]["team_return"] == {"mean": 4.0, "std": 0.0}
    assert seed_table(per_seed({"a": [5.0]}))["a"]["team_return"] == {"mean": 5.0, "std": 0.0}  # one seed


def test_format_seed_table_lays_out_mean_and_std_cells() -> None:
    table = {"behaviour": {"x": {"mean": 1.5, "std": 0.25}}, "learned": {"x": {"mean": -12.0, "std": 3.0}}}
    text = format_seed_table("title line", table, {"x": "metric x"}, policy_width=10, mean_width=7, std_width=5,
                             digits=2)
    assert text.split("\n") == ["title line",
                                "policy           metric x",
                                "-" * 25,
                                "behaviour    1.50 ± 0.25 ",
                                "learned    -12.00 ± 3.00 "]


def test_experiment_tables_keep_their_layout() -> None:
    joint = {p: {m: {"mean": 1.0, "std": 0.5} for m in ("team_return", "engagement", "revenue", "session_length",
                                                         "ad_load")} for p in ("behaviour", "centralised")}
    lines = joint_table(joint, 3, 4.0).split("\n")
    assert lines[0].startswith("joint_rec_ads (team return = engagement + 4 x revenue")
    assert lines[3] == "behaviour    " + "       1.000 ± 0.500" * 5
    hier = {"flat": {m: {"mean": 2.0, "std": 0.1} for m in ("lifetime_engagement", "retention", "session_length")}}
    assert hierarchical_table(hier, 2).split("\n")[3] == f"{'flat':<24}" + "           2.00 ± 0.10  " * 3


def test_difference_vs_spread() -> None:
    out = difference_vs_spread(np.array([10.0, 12.0, 14.0]), np.array([5.0, 5.5, 6.0]))
    assert out["difference"] == pytest.approx(6.5) and out["spread"] == pytest.approx(2.0) and out["beats"]
    close = difference_vs_spread(np.array([10.0, 12.0, 14.0]), np.array([9.0, 10.0, 11.0]))
    assert close["difference"] == pytest.approx(2.0) and not close["beats"]  # not more than the spread
    single = difference_vs_spread(np.array([3.0]), np.array([1.0]))
    assert single == {"difference": 2.0, "spread": 0.0, "beats": True}  # one seed: no spread to beat


def test_experiment_comparisons_use_the_spread_rule() -> None:
    records = per_seed({"centralised": [10.0, 12.0, 14.0], "independent": [9.0, 10.0, 11.0],
                        "behaviour": [8.0, 8.0, 8.0]})
    joint = joint_compare(records)
    assert joint["centralised_minus_independent"] == pytest.approx(2.0) and joint["spread"] == pytest.approx(2.0)
    assert not joint["centralised_beats_independent"] and joint["both_beat_behaviour"] and not joint["target_met"]
    hier = [{"results": {"hierarchical": {"lifetime_engagement": h, "retention": h / 10},
                         "flat": {"lifetime_engagement": f, "retention": f / 10}}}
            for h, f in ((20.0, 10.0), (22.0, 11.0))]
    result = hierarchical_compare(hier)
    assert result["lifetime_engagement"]["difference"] == pytest.approx(10.5) and result["target_met"]


def test_json_safe_turns_non_finite_floats_into_null() -> None:
    value = {"a": float("nan"), "b": (1.0, float("inf")), "c": [{"d": -math.inf, "e": 2}], "f": "text"}
    safe = json_safe(value)
    assert safe == {"a": None, "b": [1.0, None], "c": [{"d": None, "e": 2}], "f": "text"}
    json.dumps(safe, allow_nan=False)  # strict JSON
