"""The behaviour policy's row of the headline tables comes from the run's simulated A/B test
(same seed as the learned policy's arm: the same users), not from the logged episodes."""

from __future__ import annotations

import numpy as np
import pytest
from hydra_config import compose_config
from marl_rec.agents.policies import ACTION_DIM, ConstantPolicy, RandomPolicy
from omegaconf import OmegaConf, open_dict

from marl_rec.data import collect
from marl_rec.experiments.common import simulator_factory
from marl_rec.experiments.fusion_offline import ab_test_seed, behaviour_evaluation
from marl_rec.ope import simulated_ab_test

USERS, GAMMA = 64, 0.99
CONSTANT = {"_target_": "marl_rec.agents.policies.ConstantPolicy"}


def config(data: str):
    cfg = compose_config([f"data={data}", f"evaluation.ab_users_per_group={USERS}"])
    OmegaConf.set_struct(cfg, False)
    return cfg


@pytest.fixture(scope="module")
def logged():
    cfg = config("random")
    return collect(simulator_factory(cfg)(), RandomPolicy(np.random.default_rng(0)), 300, np.random.default_rng(1),
                   batch_size=16)


def test_a_known_logging_policy_is_valued_by_the_ab_test_on_the_learners_users(logged) -> None:
    cfg = config("random")
    with open_dict(cfg):
        cfg.data.behaviour = {**CONSTANT, "action": [0.5] * ACTION_DIM}
    factory = simulator_factory(cfg)
    out = behaviour_evaluation(cfg, logged, factory, GAMMA)
    # the same policy as a learned arm, on the learned arm's users, scores exactly the same
    twin = simulated_ab_test(factory, {"learned": ConstantPolicy([0.5] * ACTION_DIM)}, USERS, seed=ab_test_seed(cfg),
                             gamma=GAMMA)["learned"]
    assert out["behaviour_source"] == "ab_test"
    assert out["behaviour_return"] == twin.undiscounted.value
    assert out["behaviour_discounted_return"] == twin.discounted.value
    assert out["behaviour_return_ci_low"] < out["behaviour_return"] < out["behaviour_return_ci_high"]
    assert out["behaviour_logged_return"] == pytest.approx(float(logged.episode_returns(1.0).mean()))


def test_a_noisy_logging_policy_gets_the_same_value_in_every_run(logged) -> None:
    cfg = config("random")  # RandomPolicy is built with a generator (_partial_): seeded from the evaluation seed
    factory = simulator_factory(cfg)
    first, second = (behaviour_evaluation(cfg, logged, factory, GAMMA) for _ in range(2))
    assert first == second and first["behaviour_source"] == "ab_test"


def test_a_mixture_weights_its_components_by_their_share_of_logged_sessions(logged) -> None:
    cfg = config("mixed")
    actions = ([0.8] * ACTION_DIM, [-0.8] * ACTION_DIM)
    with open_dict(cfg):
        cfg.data.components = [{"fraction": f, "behaviour": {**CONSTANT, "action": a}}
                               for f, a in zip((0.7, 0.3), actions)]
    factory = simulator_factory(cfg)
    out = behaviour_evaluation(cfg, logged, factory, GAMMA)
    arms = simulated_ab_test(factory, {str(i): ConstantPolicy(a) for i, a in enumerate(actions)}, USERS,
                             seed=ab_test_seed(cfg), gamma=GAMMA)
    sessions = np.array([0.7 / arms["0"].session_lengths.mean(), 0.3 / arms["1"].session_lengths.mean()])
    share = sessions / sessions.sum()
    expected = share[0] * arms["0"].undiscounted.value + share[1] * arms["1"].undiscounted.value
    assert out["behaviour_return"] == pytest.approx(expected)
    assert arms["0"].undiscounted.value != arms["1"].undiscounted.value  # the weights matter


def test_an_online_buffer_falls_back_to_the_logged_mean(logged) -> None:
    cfg = config("final_buffer")
    out = behaviour_evaluation(cfg, logged, simulator_factory(cfg), GAMMA)
    assert out["behaviour_source"] == "logged"
    assert out["behaviour_return"] == out["behaviour_logged_return"] == pytest.approx(
        float(logged.episode_returns(1.0).mean()))
