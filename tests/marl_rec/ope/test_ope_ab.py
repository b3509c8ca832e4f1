"""The simulated A/B test (ground truth) on the fusion-ranking simulator, and the OPE configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from marl_rec.agents.policies import ConstantPolicy, GaussianNoisePolicy, RandomPolicy
from marl_rec.envs.rollout import run_sessions
from marl_rec.envs.simulator import SimulatorConfig, UserSimulator
from marl_rec.ope import (DoublyRobustEstimator, FQEConfig, FQEEstimator, ImportanceSamplingEstimator,
                          paired_difference, simulated_ab_test, true_values)

CONFIG = SimulatorConfig(max_requests=20, items_per_topic=60, ads_per_topic=5)
CONF_DIR = Path(__file__).resolve().parents[3] / "conf"


def make_sim() -> UserSimulator:
    return UserSimulator(CONFIG)


class ConstantAlgorithm:
    """An algorithm-like policy (``act``) acting on observations only."""

    def __init__(self, action) -> None:
        self.action = np.asarray(action, dtype=np.float32)

    def act(self, obs, deterministic=True):
        return np.broadcast_to(self.action, (len(obs), 4)).copy()


def test_ab_test_matches_the_simulator_rollout():
    """One batch under CRN is exactly marl_rec.envs.rollout.run_sessions with the documented seed."""
    policy = ConstantPolicy([0.5, 0.0, -0.5, 0.2])
    arms = simulated_ab_test(make_sim, {"constant": policy}, users_per_group=300, seed=11, gamma=0.95)
    reference = run_sessions(policy, 300, np.random.default_rng(np.random.SeedSequence(11).spawn(1)[0]),
                             sim=make_sim(), gamma=0.95)
    arm = arms["constant"]
    np.testing.assert_allclose(arm.discounted_returns, reference.discounted_returns)
    np.testing.assert_allclose(arm.returns, reference.returns)
    np.testing.assert_array_equal(arm.session_lengths, reference.lengths)
    assert arm.discounted.value == pytest.approx(reference.discounted_returns.mean())
    assert arm.discounted.ci_low < arm.discounted.value < arm.discounted.ci_high
    assert arm.undiscounted.value > arm.discounted.value > 0


def test_common_random_numbers_and_batches():
    policies = {"a": ConstantAlgorithm([0.5, 0.0, -0.5, 0.2]), "b": ConstantPolicy([0.5, 0.0, -0.5, 0.2]),
                "random": RandomPolicy(np.random.default_rng(0))}
    crn = simulated_ab_test(make_sim, policies, users_per_group=500, seed=3, batch_size=200)
    # identical policies on twin users: identical sessions, a zero paired difference
    np.testing.assert_array_equal(crn["a"].returns, crn["b"].returns)
    difference = paired_difference(crn["a"], crn["b"])
    assert difference.value == 0.0 and difference.std_error == 0.0
    assert len(crn["random"].returns) == 500
    # without CRN the groups are independent draws: same policy, different users
    independent = simulated_ab_test(make_sim, policies, users_per_group=500, seed=3, batch_size=200,
                                    common_random_numbers=False)
    assert not np.array_equal(independent["a"].returns, independent["b"].returns)
    # ... and both designs estimate the same value
    assert abs(independent["a"].value() - crn["a"].value()) < 4 * crn["a"].discounted.std_error
    # CRN makes a difference between policies tighter than the independent design does
    paired = paired_difference(crn["a"], crn["random"])
    unpaired_se = np.hypot(independent["a"].discounted.std_error, independent["random"].discounted.std_error)
    assert paired.std_error < unpaired_se
    assert set(true_values(crn)) == {"a", "b", "random"}
    assert true_values(crn, discounted=False)["a"] == crn["a"].undiscounted.value


def test_ab_test_ranks_policies_like_the_simulator_says():
    """Noise around a constant action costs value; all arms' intervals are honest about it."""
    base = ConstantPolicy([-1.0, -1.0, -1.0, 0.0])  # the best constant of the default world (issue #16)
    policies = {"constant": base, "noisy": GaussianNoisePolicy(base, 0.8, np.random.default_rng(1))}
    arms = simulated_ab_test(make_sim, policies, users_per_group=2000, seed=5)
    assert paired_difference(arms["constant"], arms["noisy"]).ci_low > 0
    assert arms["noisy"].to_dict()["num_users"] == 2000


def test_ab_test_rejects_bad_input():
    with pytest.raises(ValueError, match="users_per_group"):
        simulated_ab_test(make_sim, {"a": ConstantAlgorithm([0, 0, 0, 0])}, users_per_group=1, seed=0)
    with pytest.raises(ValueError, match="gamma"):
        simulated_ab_test(make_sim, {"a": ConstantAlgorithm([0, 0, 0, 0])}, users_per_group=10, seed=0, gamma=2.0)
    with pytest.raises(ValueError, match="policies is empty"):
        simulated_ab_test(make_sim, {}, users_per_group=10, seed=0)
    with pytest.raises(TypeError, match="act\\(obs, deterministic\\)"):
        simulated_ab_test(make_sim, {"a": 3}, users_per_group=10, seed=0)


@pytest.mark.parametrize("name, kind", [("fqe", FQEEstimator), ("conservative_fqe", FQEEstimator),
                                        ("is", ImportanceSamplingEstimator), ("wis", ImportanceSamplingEstimator),
                                        ("pdis", ImportanceSamplingEstimator), ("wpdis", ImportanceSamplingEstimator),
                                        ("dr", DoublyRobustEstimator), ("wdr", DoublyRobustEstimator)])
def test_hydra_configs_instantiate(name, kind):
    with initialize_config_dir(config_dir=str(CONF_DIR / "ope"), version_base="1.3"):
        cfg = compose(config_name=name)
    estimator = instantiate(cfg.estimators[name])
    assert isinstance(estimator, kind) and estimator.name == name


def test_hydra_all_estimators_share_one_fqe_model():
    """``ope=all`` in the app's root config: every estimator, DR/WDR on the FQE estimator's config."""
    from marl_rec.schema import register_schemas

    register_schemas()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["ope=all", "ope.estimators.wpdis.config.bandwidth=0.3"])
    estimators = {name: instantiate(spec) for name, spec in cfg.ope.estimators.items()}
    assert estimators["wpdis"].config.bandwidth == 0.3
    assert list(estimators) == ["fqe", "conservative_fqe", "is", "wis", "pdis", "wpdis", "dr", "wdr"]
    assert estimators["conservative_fqe"].config.conservative_weight > 0
    fqe: FQEConfig = estimators["fqe"].config
    assert estimators["dr"].config.fqe == fqe and estimators["wdr"].config.fqe == fqe
