"""shared_spaces: one observation and one action space for every agent (Tianshou, SuperSuit),
the env's own dynamics underneath, never a masked action."""

from __future__ import annotations

import warnings

import numpy as np
import pettingzoo
import pytest
from pettingzoo.test import api_test

import marl_rec.envs  # noqa: F401  (registers the environments)
from marl_rec.envs.hierarchical import LONG_TERM, SHORT_TERM
from marl_rec.envs.joint_rec_ads import ADVERTISER, RECOMMENDER
from marl_rec.envs.shared_spaces import shared_spaces

SMALL = dict(max_requests=10, items_per_topic=40, ads_per_topic=6)
IDS = {"marl_rec/JointRecAds-v0": {}, "marl_rec/HierarchicalInterest-v0": {"max_sessions": 3}}


@pytest.fixture(autouse=True)
def _quiet_recommendations():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


@pytest.mark.parametrize("env_id", sorted(IDS))
def test_api_test_passes_and_spaces_are_identical(env_id):
    env = shared_spaces(pettingzoo.make("aec", env_id, **IDS[env_id], **SMALL))
    api_test(env, num_cycles=100)
    first, second = env.possible_agents
    assert env.observation_space(first) == env.observation_space(second)
    assert env.action_space(first) == env.action_space(second)


def test_joint_env_advertiser_decodes_to_allowed_slots_and_recommender_passes_through():
    wrapped = shared_spaces(pettingzoo.make("aec", "marl_rec/JointRecAds-v0", **SMALL))
    plain = pettingzoo.make("aec", "marl_rec/JointRecAds-v0", **SMALL)
    wrapped.reset(seed=3)
    plain.reset(seed=3)
    rng = np.random.default_rng(0)
    size = wrapped.action_space(RECOMMENDER).shape[0]
    k1 = plain.action_space(ADVERTISER).n
    served = []
    for agent in wrapped.agent_iter(200):
        obs, _, terminated, truncated, info = wrapped.last()
        p_obs, *_ = plain.last()
        assert obs[-2:].tolist() == ([1.0, 0.0] if agent == RECOMMENDER else [0.0, 1.0])  # agent one-hot
        if terminated or truncated:
            wrapped.step(None)
            plain.step(None)
            continue
        action = rng.uniform(-1, 1, size).astype(np.float32)
        if agent == RECOMMENDER:
            plain_action = action[:plain.action_space(RECOMMENDER).shape[0]]
        else:
            mask = p_obs["action_mask"]
            np.testing.assert_array_equal(obs[p_obs["observation"].size:][:k1], mask)  # mask is observed
            plain_action = int(np.argmax(np.where(mask == 1, action[:k1], -np.inf)))
        wrapped.step(action)
        plain.step(plain_action)
        if agent == ADVERTISER:
            info = wrapped.infos[ADVERTISER]
            assert not info["invalid_action"]
            served.append(info["ad_slot"])
            assert wrapped.rewards == plain.rewards  # the same dynamics underneath
    assert any(served)  # ads were served, within the cap


def test_hierarchical_long_term_reads_the_first_entries():
    env = shared_spaces(pettingzoo.make("aec", "marl_rec/HierarchicalInterest-v0", max_sessions=2, **SMALL))
    env.reset(seed=0)
    assert env.agent_selection == LONG_TERM
    env.step(np.array([1.0, -1.0, 0.3, 0.3], np.float32))  # goal (1, 0); the rest is ignored
    assert env.agent_selection == SHORT_TERM
    np.testing.assert_allclose(env.unwrapped.tracker.goal[0], [1.0, 0.0])
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(2, np.float32))


def test_aec_rewards_appear_only_when_the_outcome_exists():
    """What Tianshou's PettingZooEnv reads after each step (``env.rewards``): nothing after the
    recommender's step (the request is served when the advertiser acts) and nothing for
    ``long_term`` after its own step; its return accrues during ``short_term``'s steps. The
    shared_spaces docstring explains why this starves those agents under Tianshou's convention."""
    joint = shared_spaces(pettingzoo.make("aec", "marl_rec/JointRecAds-v0", **SMALL))
    joint.reset(seed=0)
    size = joint.action_space(RECOMMENDER).shape[0]
    served = 0.0
    for _ in range(5):
        joint.step(np.ones(size, np.float32))  # recommender
        assert joint.rewards == {RECOMMENDER: 0.0, ADVERTISER: 0.0}
        joint.step(np.zeros(size, np.float32))  # advertiser: the request is served
        served += joint.rewards[RECOMMENDER]
    assert served > 0
    hier = shared_spaces(pettingzoo.make("aec", "marl_rec/HierarchicalInterest-v0", max_sessions=2, **SMALL))
    hier.reset(seed=0)
    hier.step(np.zeros(4, np.float32))  # long_term sets the goal
    assert hier.rewards[LONG_TERM] == 0.0
    hier.step(np.zeros(4, np.float32))  # short_term serves a request
    assert hier.agent_selection == SHORT_TERM and hier.rewards[LONG_TERM] == hier.infos[SHORT_TERM]["engagement"]
