"""Fuzz: every environment's ``step`` with malformed actions (wrong type, shape, dtype, NaN,
missing or extra agents, out-of-range discrete choices) raises a ValueError / TypeError naming
the agent or the action, or — for a value it accepts — returns finite observations inside
their spaces and finite rewards (tests/helpers/fuzzing.py for the property)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fuzzing import FUZZ, outcome
from hypothesis import given
from hypothesis import strategies as st
from marl_rec.envs.fusion_env import FusionRankingEnv, FusionRankingGymEnv
from marl_rec.envs.hierarchical import HierarchicalInterestEnv
from marl_rec.envs.joint_rec_ads import JointRecAdsEnv

SMALL = dict(max_requests=6, items_per_topic=40, ads_per_topic=6)  # short sessions, fast world
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # 1e300 as float32

odd_floats = st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1e300, 0.0, 0.5, -1.0, 1.0, 2.0])
malformed = st.one_of(
    st.none(), st.text(max_size=3), st.booleans(), st.integers(-10**20, 10**20), odd_floats,
    st.lists(odd_floats, max_size=6).map(np.array),
    st.lists(odd_floats, min_size=4, max_size=4).map(lambda v: np.array(v, dtype=np.float32)),
    st.lists(st.integers(-3, 3), min_size=4, max_size=4).map(np.array),
    st.just(np.zeros((2, 4), dtype=np.float32)), st.just(np.array(["a", "b", "c", "d"])),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))


def _check_accepted(env, observations, rewards) -> None:
    for agent, obs in observations.items():
        space = env.observation_space(agent)
        assert space.contains(obs), f"observation of {agent!r} outside its space"
    assert all(math.isfinite(float(r)) for r in rewards.values())


def _assert_named(result, names: list[str]) -> None:
    if isinstance(result, BaseException):
        assert any(n in str(result) for n in names), f"{type(result).__name__} names none of {names}: {result}"


@pytest.fixture(scope="module")
def fusion() -> FusionRankingEnv:
    return FusionRankingEnv(**SMALL)


@pytest.fixture(scope="module")
def joint() -> JointRecAdsEnv:
    return JointRecAdsEnv(**SMALL)


@FUZZ
@given(seed=st.integers(0, 2**16), action=malformed, extra=st.booleans())
def test_fusion_step(fusion: FusionRankingEnv, seed: int, action, extra: bool) -> None:
    fusion.reset(seed=seed)
    actions = {"recommender": action, **({"intruder": 0} if extra else {})}
    result = outcome(lambda: fusion.step(actions))
    if isinstance(result, BaseException):
        _assert_named(result, ["'recommender'", "'intruder'", "recommender"])
    else:
        assert not extra, "an unknown agent's action was accepted"
        _check_accepted(fusion, result[0], result[1])


@FUZZ
@given(seed=st.integers(0, 2**16), action=malformed)
def test_gymnasium_view_step(seed: int, action) -> None:
    env = FusionRankingGymEnv(**SMALL)
    env.reset(seed=seed)
    result = outcome(lambda: env.step(action))
    if isinstance(result, BaseException):
        _assert_named(result, ["action"])
    else:
        assert env.observation_space.contains(result[0]) and math.isfinite(float(result[1]))


@FUZZ
@given(seed=st.integers(0, 2**16), recommender=malformed, advertiser=malformed, drop=st.sampled_from([None, 0, 1]))
def test_joint_step(joint: JointRecAdsEnv, seed: int, recommender, advertiser, drop) -> None:
    joint.reset(seed=seed)
    actions = {"recommender": recommender, "advertiser": advertiser}
    if drop is not None:
        actions.pop(["recommender", "advertiser"][drop])
    result = outcome(lambda: joint.step(actions))
    if isinstance(result, BaseException):
        _assert_named(result, ["'recommender'", "'advertiser'"])
    else:
        assert drop is None, "a missing agent's action was accepted"
        _check_accepted(joint, result[0], result[1])


@FUZZ
@given(seed=st.integers(0, 2**16), actions=st.lists(malformed, min_size=1, max_size=4))
def test_hierarchical_step(seed: int, actions: list) -> None:
    env = HierarchicalInterestEnv(**SMALL)
    env.reset(seed=seed)
    for action in actions:
        if not env.agents:
            break
        agent = env.agent_selection
        result = outcome(lambda: env.step(action))  # noqa: B023 (called at once)
        if isinstance(result, BaseException):
            _assert_named(result, [f"'{agent}'"])
            return
        observation = env.observe(env.agent_selection)
        assert env.observation_space(env.agent_selection).contains(observation)
        assert all(math.isfinite(float(r)) for r in env.rewards.values())


# ---------------------------------------------------------------- the AEC forms (OrderEnforcingWrapper)
@pytest.fixture(scope="module")
def fusion_aec():
    from marl_rec.envs import fusion_env

    return fusion_env.env(**SMALL)


@pytest.fixture(scope="module")
def joint_aec():
    from marl_rec.envs import joint_rec_ads

    return joint_rec_ads.env(**SMALL)


def _fuzz_aec(env, seed: int, actions: list) -> None:
    """Step the AEC env with ``actions`` in turn (a done agent too: only ``None`` is its
    action, as PettingZoo requires): an error must be a ValueError / TypeError naming an agent whose
    action is in the joint step (the wrapper checks the actions when the round's last agent
    steps); an accepted action must leave observations inside their spaces and finite rewards."""
    env.reset(seed=seed)
    round_agents: list[str] = []  # the agents whose actions the next joint step will see
    for action in actions:
        if not env.agents:
            break
        agent, last = env.agent_selection, env.agents[-1]
        round_agents.append(agent)
        result = outcome(lambda: env.step(action))  # noqa: B023 (called at once)
        if isinstance(result, BaseException):
            _assert_named(result, [f"'{a}'" for a in round_agents])
            return
        if agent == last:
            round_agents = []
        for other in env.agents:
            assert env.observation_space(other).contains(env.observe(other)), f"observation of {other!r} outside its space"
        assert all(math.isfinite(float(r)) for r in env.rewards.values())


@FUZZ
@given(seed=st.integers(0, 2**16), actions=st.lists(malformed, min_size=1, max_size=4))
def test_fusion_aec_step(fusion_aec, seed: int, actions: list) -> None:
    _fuzz_aec(fusion_aec, seed, actions)


@FUZZ
@given(seed=st.integers(0, 2**16), actions=st.lists(malformed, min_size=1, max_size=6))
def test_joint_aec_step(joint_aec, seed: int, actions: list) -> None:
    _fuzz_aec(joint_aec, seed, actions)


@FUZZ
@given(seed=st.integers(0, 2**16), clipped=st.lists(st.sampled_from([-1e300, -2.0, 2.0, 1e300]), min_size=4, max_size=4))
def test_aec_clips_out_of_range_fusion_actions(fusion_aec, joint_aec, seed: int, clipped: list) -> None:
    """The documented rule: finite fusion actions outside [-1, 1] are clipped, in the AEC forms
    as in the Parallel ones (the same step as the action clipped by hand)."""
    for env in (fusion_aec, joint_aec):
        rewards = []
        for action in (np.array(clipped, dtype=np.float64), np.clip(np.array(clipped, dtype=np.float64), -1, 1)):
            env.reset(seed=seed)
            for agent in list(env.agents):
                env.step(action if agent == "recommender" else 0)
            rewards.append(dict(env.rewards))
        assert rewards[0] == rewards[1]


@FUZZ
@given(seed=st.integers(0, 2**16), action=malformed)
def test_aec_done_agent_step(fusion_aec, joint_aec, seed: int, action) -> None:
    """An agent that is done (the session ended) takes ``None``; anything else is a ValueError
    naming it (PettingZoo's own wrapper fails a bare assert there)."""
    for env in (fusion_aec, joint_aec):
        env.reset(seed=seed)
        while env.agents and not (env.terminations[env.agent_selection] or env.truncations[env.agent_selection]):
            env.step(np.zeros(4, dtype=np.float32) if env.agent_selection == "recommender" else 0)
        agent = env.agent_selection
        result = outcome(lambda: env.step(action))  # noqa: B023 (called at once)
        if action is None:
            assert not isinstance(result, BaseException), f"the done agent's None step was refused: {result}"
        else:
            assert isinstance(result, ValueError), f"a done agent's action was accepted: {action!r}"
            _assert_named(result, [f"'{agent}'"])
