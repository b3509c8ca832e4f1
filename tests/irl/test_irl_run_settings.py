"""The reward-learning run checks every setting before any work: a bad value fails the run with
the config key (``irl.<field>``, ``irl.<node>.<field>``) in the message before any data is
collected (reward_learning.run: instantiate_checked + validate_settings)."""

from __future__ import annotations

from pathlib import Path

import pytest

import marl_rec.irl.experiments.reward_learning as reward_learning
from hydra_config import compose_config
from run_settings import assert_refused_before_work, reached


@pytest.mark.parametrize("override, message", [
    ("irl.num_transitions=0", r"irl.num_transitions=0: must be an integer >= 1"),
    ("irl.airl_transitions=-5", r"irl.airl_transitions=-5: must be an integer >= 1"),
    ("irl.maxent_segments=0", r"irl.maxent_segments=0: must be an integer >= 1"),
    ("irl.behaviour_sigma=nan", r"irl.behaviour_sigma=nan: must be a finite number > 0"),
    ("irl.airl_expert_beta=inf", r"irl.airl_expert_beta=inf: must be a finite number > 0"),
    ("irl.airl_expert_proposals=1", r"irl.airl_expert_proposals=1: must be an integer >= 2"),
    ("irl.airl.uniform_negatives=1.5", r"irl.airl.uniform_negatives must be in \[0, 1\), got 1.5"),
    ("irl.epic_gamma=0", r"irl.epic_gamma=0: must be a discount in \(0, 1\]"),
    ("irl.feature_set=bogus", r"irl.feature_set='bogus': must be one of"),
    ("irl.selections=[]", r"irl.selections=\[\]: must be a non-empty list"),
    ("irl.heldout_fraction=nan", r"irl.heldout_fraction must be in \(0, 1\), got nan"),
    ("irl.reference.lr=-1", r"irl.reference.lr=-1: must be a finite number > 0"),
    ("irl.reference.steps=0", r"irl.reference.steps=0: must be an integer >= 1"),
    ("irl.maxent.gamma=2", r"irl.maxent.gamma must be in \(0, 1\), got 2"),
    ("irl.oracle.mistake_rate=2", r"irl.oracle.mistake_rate must be in \[0, 1\]"),
    ("irl.preference.budget=0", r"irl.preference.budget must be >= 1, got 0"),
    ("irl.reward_model.ensemble_size=0", r"irl.reward_model.ensemble_size must be >= 1, got 0"),
    ("irl.airl.iterations=0", r"irl.airl.iterations must be >= 1, got 0"),
    ("irl.retrain.eval_users=1", r"irl.retrain.eval_users must be >= 2"),
    ("irl.retrain.gamma=0", r"irl.retrain.gamma=0: must be a discount in \(0, 1\]"),
    ("env.config.leave_slope=nan", r"irl.simulator.leave_slope must be finite, got nan"),
    (None, None),  # a valid run: reaches the collection (the sentinel)
])
def test_reward_learning_checks_its_settings_before_collecting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              override: str | None, message: str | None) -> None:
    for collector in ("collect_topic_demonstrations", "collect_with_utility"):
        monkeypatch.setattr(reward_learning, collector, reached)
    cfg = compose_config(["+experiment=reward_learning", *([override] if override else [])])
    assert_refused_before_work(reward_learning.run, cfg, tmp_path / "run", message)
