"""The headline run's final evaluation reports an estimator as not applicable only for the one
expected error (no behaviour log-probabilities); any other estimator error fails the run."""

from __future__ import annotations

import numpy as np
import pytest
from hydra_config import compose_config
from marl_rec.agents.policies import ACTION_DIM
from omegaconf import OmegaConf, open_dict

from marl_rec.data import collect
from marl_rec.experiments.common import simulator_factory
from marl_rec.experiments.fusion_offline import final_evaluation
from marl_rec.ope import MissingBehaviourLogProbs, OPEContext


class ConstantLearner:
    """A learned policy stand-in: a constant action and a constant Q."""

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return np.full((len(obs), ACTION_DIM), 0.2, dtype=np.float32)

    def q_value(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        return np.ones(len(obs), dtype=np.float32)


class BrokenEstimator:
    """An estimator with a bug: its ValueError must not be reported as 'not applicable'."""

    name = "broken"

    def estimate(self, context, policy):
        raise ValueError("a bug, not a missing input")


@pytest.fixture(scope="module")
def setting():
    cfg = compose_config(["data=random", "evaluation.ab_users_per_group=16"])
    OmegaConf.set_struct(cfg, False)
    factory = simulator_factory(cfg)
    deterministic = collect(factory(), lambda sim, obs: np.zeros((len(obs), ACTION_DIM)), 64,
                            np.random.default_rng(0), batch_size=8)  # no log-probs
    return cfg, factory, deterministic


def estimators(cfg, nodes: dict) -> None:
    with open_dict(cfg):
        cfg.ope = {"estimators": nodes}


def test_missing_log_probs_is_the_reported_error(setting) -> None:
    cfg, factory, data = setting
    assert data.behaviour_log_probs is None
    with pytest.raises(MissingBehaviourLogProbs):
        _ = OPEContext(data).behaviour_log_probs
    estimators(cfg, {"is": {"_target_": "marl_rec.ope.ImportanceSamplingEstimator"}})
    out = final_evaluation(cfg, ConstantLearner(), data, factory, 0.99)
    assert "behaviour_log_probs" in out["ope_is_error"] and "ope_is" not in out


def test_any_other_estimator_error_fails_the_run(setting) -> None:
    cfg, factory, data = setting
    estimators(cfg, {"broken": {"_target_": f"{__name__}.BrokenEstimator"}})
    with pytest.raises(ValueError, match="a bug"):
        final_evaluation(cfg, ConstantLearner(), data, factory, 0.99)
