"""FusionRankingEnv (PettingZoo Parallel + AEC form), its Gymnasium view, the registries and
the Hydra config: API conformance, seeding, bad input, clipping, random-input robustness."""

from __future__ import annotations

import warnings
from dataclasses import fields

import gymnasium
import hydra
import numpy as np
import pettingzoo
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st
from hydra.errors import ConfigCompositionException
from hydra_config import compose_config
from omegaconf import OmegaConf
from pettingzoo.test import api_test, parallel_api_test, seed_test
from pettingzoo.utils.conversions import parallel_to_aec

import marl_rec.envs  # noqa: F401  (registers the environments)
from marl_rec.envs.fusion_env import AGENT, FusionRankingEnv, FusionRankingGymEnv, env as aec_env
from marl_rec.envs.simulator import SimulatorConfig

def episodes(env: FusionRankingEnv, seed: int, count: int, action_seed: int = 5) -> list[np.ndarray]:
    """Observations and rewards of ``count`` consecutive episodes after ``reset(seed=seed)``."""
    actions = np.random.default_rng(action_seed)
    out = []
    obs, _ = env.reset(seed=seed)
    for episode in range(count):
        if episode:
            obs, _ = env.reset()
        out.append(obs[AGENT])
        while env.agents:
            action = actions.uniform(-1, 1, 4).astype(np.float32)
            obs, reward, terminated, truncated, info = env.step({AGENT: action})
            out += [obs[AGENT], np.array([reward[AGENT], terminated[AGENT], truncated[AGENT]]),
                    info[AGENT]["components"]]
    return out


# ------------------------------------------------------------------------------ API conformance
def test_parallel_api():
    parallel_api_test(FusionRankingEnv(), num_cycles=200)


def test_aec_api_and_seed():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="We recommend agents to be named")  # "recommender" is fine
        api_test(aec_env(), num_cycles=200)
    seed_test(lambda: parallel_to_aec(FusionRankingEnv()), num_cycles=200)


def test_gymnasium_view_passes_check_env():
    check_env(FusionRankingGymEnv(), skip_render_check=True)


def test_spaces_are_built_once():
    env = FusionRankingEnv()
    assert env.observation_space(AGENT) is env.observation_space(AGENT)
    assert env.action_space(AGENT) is env.action_space(AGENT)
    assert env.observation_space(AGENT).shape == (SimulatorConfig().obs_dim,)
    assert env.observation_space(AGENT).dtype == np.float32
    assert env.metadata["is_parallelizable"] and env.possible_agents == [AGENT]


def test_registries_make_every_form():
    parallel = pettingzoo.make("parallel", "marl_rec/FusionRanking-v0", max_requests=7)
    assert isinstance(parallel, FusionRankingEnv) and parallel.config.max_requests == 7
    aec = pettingzoo.make("aec", "marl_rec/FusionRanking-v0")
    aec.reset(seed=0)
    assert aec.agent_selection == AGENT
    gym_env = gymnasium.make("marl_rec/FusionRankingGym-v0")
    obs, _ = gym_env.reset(seed=0)
    assert gym_env.observation_space.contains(obs)


# ------------------------------------------------------------------------------------ seeding
def test_same_seed_same_episodes_different_seed_differs():
    a = episodes(FusionRankingEnv(), seed=3, count=4)
    b = episodes(FusionRankingEnv(), seed=3, count=4)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    c = episodes(FusionRankingEnv(), seed=4, count=4)
    assert len(a) != len(c) or any(not np.array_equal(x, y) for x, y in zip(a, c))


def test_gymnasium_view_is_seeded():
    def run(seed: int) -> list[np.ndarray]:
        env, actions = FusionRankingGymEnv(), np.random.default_rng(1)
        obs, _ = env.reset(seed=seed)
        out, done = [obs], False
        for _ in range(3):
            while not done:
                obs, reward, terminated, truncated, _ = env.step(actions.uniform(-1, 1, 4))
                out += [obs, np.array([reward])]
                done = terminated or truncated
            obs, _ = env.reset()
            out.append(obs)
            done = False
        return out

    a, b, c = run(8), run(8), run(9)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert len(a) != len(c) or any(not np.array_equal(x, y) for x, y in zip(a, c))


# ---------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("actions,message", [
    ({AGENT: np.array([np.nan, 0, 0, 0], np.float32)}, "NaN"),
    ({AGENT: np.array([np.inf, 0, 0, 0])}, "infinite"),
    ({AGENT: np.zeros(3, np.float32)}, "shape"),
    ({AGENT: np.zeros((1, 4), np.float32)}, "shape"),
    ({AGENT: "fast"}, "not numeric"),
    ({"advertiser": np.zeros(4, np.float32)}, "unknown agent key"),
    ({AGENT: np.zeros(4), "advertiser": 1}, "unknown agent key"),
    ({}, "single key"),
    (np.zeros(4), "dict"),
])
def test_bad_actions_raise_value_errors_naming_the_problem(actions, message):
    env = FusionRankingEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(actions)


def test_stepping_after_the_episode_ended_raises():
    env = FusionRankingEnv(max_requests=3)
    with pytest.raises(ValueError, match="reset"):
        env.step({AGENT: np.zeros(4, np.float32)})  # before reset
    env.reset(seed=0)
    while env.agents:
        env.step({AGENT: np.zeros(4, np.float32)})
    with pytest.raises(ValueError, match="episode ended"):
        env.step({AGENT: np.zeros(4, np.float32)})
    gym_env = FusionRankingGymEnv(max_requests=3)
    gym_env.reset(seed=0)
    done = False
    while not done:
        _, _, terminated, truncated, _ = gym_env.step(np.zeros(4, np.float32))
        done = terminated or truncated
    with pytest.raises(ValueError, match="episode ended"):
        gym_env.step(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="episode ended"):
        FusionRankingGymEnv().step(np.zeros(4, np.float32))  # before reset


def test_constructor_rejects_conflicting_arguments():
    for cls in (FusionRankingEnv, FusionRankingGymEnv):
        with pytest.raises(ValueError, match="not both"):
            cls(SimulatorConfig(), max_requests=3)
        with pytest.raises(ValueError, match="render_mode 'bogus' is not supported"):
            cls(render_mode="bogus")
        with pytest.raises(ValueError, match="max_requests"):
            cls(max_requests=0)


def test_out_of_range_actions_are_clipped():
    """Actions outside [-1, 1] behave exactly like the clipped action (documented)."""
    wild = np.array([7.0, -3.0, 1.5, -1.0001])
    a, b = FusionRankingEnv(), FusionRankingEnv()
    a.reset(seed=2)
    b.reset(seed=2)
    while a.agents:
        out_a = a.step({AGENT: wild})
        out_b = b.step({AGENT: np.clip(wild, -1, 1)})
        np.testing.assert_array_equal(out_a[0][AGENT], out_b[0][AGENT])
        assert out_a[1] == out_b[1] and out_a[2] == out_b[2] and out_a[3] == out_b[3]
    assert not b.agents


# ------------------------------------------------------------------------- random-input robustness
ENV = FusionRankingEnv(max_requests=25)
GYM_ENV = FusionRankingGymEnv(max_requests=25)
wild_floats = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1),
       actions=st.lists(st.lists(wild_floats, min_size=4, max_size=4), min_size=1, max_size=30))
def test_random_actions_keep_observations_finite_and_in_space(seed, actions):
    space = ENV.observation_space(AGENT)
    obs, _ = ENV.reset(seed=seed)
    assert space.contains(obs[AGENT])
    for action in actions:
        if not ENV.agents:
            obs, _ = ENV.reset()
        obs, reward, *_ = ENV.step({AGENT: np.array(action, dtype=np.float32)})
        assert np.isfinite(obs[AGENT]).all() and space.contains(obs[AGENT])
        assert np.isfinite(reward[AGENT]) and reward[AGENT] >= 0


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), actions=st.lists(st.lists(wild_floats, min_size=4, max_size=4),
                                                        min_size=1, max_size=30))
def test_random_actions_gymnasium_view(seed, actions):
    obs, _ = GYM_ENV.reset(seed=seed)
    done = False
    for action in actions:
        if done:
            obs, _ = GYM_ENV.reset()
        obs, reward, terminated, truncated, _ = GYM_ENV.step(np.array(action))
        assert GYM_ENV.observation_space.contains(obs) and np.isfinite(reward)
        done = terminated or truncated


# --------------------------------------------------------------------------------------- Hydra
def test_hydra_config_builds_the_env_with_the_default_world():
    # conf/env/fusion.yaml lists no field: its schema is generated from SimulatorConfig (marl_rec.schema)
    cfg = compose_config([]).env
    listed = set(cfg.config) - {"_target_"}
    assert listed == {f.name for f in fields(SimulatorConfig)}  # every field overridable
    env = hydra.utils.instantiate(cfg)
    assert isinstance(env, FusionRankingEnv)
    assert env.config == SimulatorConfig()  # the node's defaults are the dataclass's
    assert compose_config(["env.config.max_requests=9"]).env.config.max_requests == 9
    for bad in ("env.config.max_request=9", "env.config.max_requests=many"):  # a typo, a wrong type
        with pytest.raises(ConfigCompositionException, match="max_request"):
            compose_config([bad])
    obs, _ = env.reset(seed=0)
    assert env.observation_space(AGENT).contains(obs[AGENT])
    overridden = OmegaConf.merge(cfg, OmegaConf.from_dotlist(["config.max_requests=9",
                                                              "config.fusion_priors=[0.1,0.1,0.1,0.1,0.1]"]))
    env = hydra.utils.instantiate(overridden)
    assert env.config.max_requests == 9 and env.config.fusion_priors == (0.1, 0.1, 0.1, 0.1, 0.1)
