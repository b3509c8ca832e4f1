"""JointRecAdsEnv: PettingZoo API and seeding, the ad-load cap, rewards per mode, bad input, Hydra."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pettingzoo
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pettingzoo.test import api_test, parallel_api_test, seed_test
from pettingzoo.utils.conversions import parallel_to_aec

import marl_rec.envs  # noqa: F401  (registers the environments)
from marl_rec.envs.joint_rec_ads import (ADVERTISER, AD_FEATURES, RECOMMENDER, JointRecAdsConfig, JointRecAdsEnv,
                                ad_allowed)
from marl_rec.envs.simulator import SimulatorConfig

CONF_ENV = Path(__file__).resolve().parents[2] / "conf" / "env"
SMALL = dict(max_requests=12, items_per_topic=40, ads_per_topic=6)  # short sessions, fast world


@pytest.fixture(autouse=True)
def _quiet_pettingzoo_recommendations():
    with warnings.catch_warnings():  # naming / space-type recommendations of the API tests
        warnings.simplefilter("ignore", UserWarning)
        yield


def random_actions(env: JointRecAdsEnv, obs: dict, rng: np.random.Generator) -> dict:
    """A fusion action and an advertiser action drawn among the *allowed* ones."""
    allowed = np.flatnonzero(obs[ADVERTISER]["action_mask"])
    return {RECOMMENDER: rng.uniform(-1, 1, 4).astype(np.float32), ADVERTISER: int(rng.choice(allowed))}


def test_parallel_api_and_aec_api_tests_pass():
    parallel_api_test(JointRecAdsEnv(**SMALL), num_cycles=200)
    api_test(parallel_to_aec(JointRecAdsEnv(mode="cooperative", **SMALL)), num_cycles=200)
    api_test(parallel_to_aec(JointRecAdsEnv(mode="mixed", max_ads_per_session=2, **SMALL)), num_cycles=200)


def test_seed_test_on_the_aec_form():
    seed_test(lambda: parallel_to_aec(JointRecAdsEnv(**SMALL)), num_cycles=200)


def run_episodes(seed: int, episodes: int, **kwargs) -> list:
    env = JointRecAdsEnv(**SMALL, **kwargs)
    rng = np.random.default_rng(123)  # the agents' randomness, separate from the env's
    trace = []
    obs, _ = env.reset(seed=seed)
    for _ in range(episodes):  # later episodes: reset() without a seed continues the stream
        while env.agents:
            obs, rewards, terms, truncs, infos = env.step(random_actions(env, obs, rng))
            trace.append((obs[RECOMMENDER].copy(), obs[ADVERTISER]["action_mask"].copy(),
                          rewards[RECOMMENDER], rewards[ADVERTISER], terms[RECOMMENDER],
                          truncs[RECOMMENDER], infos[ADVERTISER]["revenue"], env.state().copy()))
        obs, _ = env.reset()
    return trace


def test_same_seed_same_trajectories_over_several_episodes():
    a, b = run_episodes(7, 4), run_episodes(7, 4)
    assert len(a) == len(b) and len(a) > 4
    for step_a, step_b in zip(a, b):
        for x, y in zip(step_a, step_b):
            np.testing.assert_array_equal(x, y)
    c = run_episodes(8, 4)
    assert len(c) != len(a) or any(not np.array_equal(x[0], y[0]) for x, y in zip(a, c))


def test_spaces_are_cached_and_state_lies_in_state_space():
    env = JointRecAdsEnv(**SMALL)
    for agent in env.possible_agents:
        assert env.observation_space(agent) is env.observation_space(agent)
        assert env.action_space(agent) is env.action_space(agent)
    k = env.sim_config.slate_size
    assert env.action_space(ADVERTISER).n == k + 1
    obs, _ = env.reset(seed=0)
    d, ads = env.sim_config.obs_dim, env.sim_config.num_ad_candidates
    assert env.state_space.shape == (d + len(AD_FEATURES) + ads + k + 1,)
    rng = np.random.default_rng(0)
    for _ in range(30):
        state = env.state()
        assert state.dtype == np.float32 and env.state_space.contains(state)
        assert env.observation_space(RECOMMENDER).contains(obs[RECOMMENDER])
        assert env.observation_space(ADVERTISER).contains(obs[ADVERTISER])
        assert obs[ADVERTISER]["action_mask"].dtype == np.int8
        # the state holds both observations (the shared part once) and the ad mask
        np.testing.assert_array_equal(state[:d], obs[RECOMMENDER])
        np.testing.assert_array_equal(state[:d + len(AD_FEATURES) + ads], obs[ADVERTISER]["observation"])
        np.testing.assert_array_equal(state[-(k + 1):], obs[ADVERTISER]["action_mask"])
        # the advertiser sees the request's ad candidates as the auction ranks them: bid × p̂(ad click)
        values = obs[ADVERTISER]["observation"][d + len(AD_FEATURES):]
        sim = env.sim
        expected = np.sort(sim.world.ad_bid[sim._cand["ads"][0]] * sim._cand["ad_pred"][0])[::-1] / sim.world.ad_bid.max()
        np.testing.assert_allclose(values, expected, rtol=1e-6)
        if not env.agents:
            obs, _ = env.reset()
        obs, *_ = env.step(random_actions(env, obs, rng))


@settings(max_examples=60, deadline=None)
@given(share=st.sampled_from([0.0, 0.1, 0.2, 0.25, 1 / 3, 0.5, 1.0]),
       per_session=st.one_of(st.none(), st.integers(0, 4)),
       invalid_action=st.sampled_from(["noop", "raise"]),
       ad_actions=st.lists(st.integers(0, 5), min_size=1, max_size=40),
       seed=st.integers(0, 2**16))
def test_ad_load_cap_is_never_exceeded(share, per_session, invalid_action, ad_actions, seed):
    env = JointRecAdsEnv(max_ad_share=share, max_ads_per_session=per_session,
                         invalid_action=invalid_action, **SMALL)
    obs, _ = env.reset(seed=seed)
    ads = requests = 0
    for requested in ad_actions:  # whatever the advertiser asks for
        if not env.agents:
            obs, _ = env.reset()
            ads = requests = 0
        mask = obs[ADVERTISER]["action_mask"]
        assert mask[0] == 1
        actions = {RECOMMENDER: np.zeros(4, np.float32), ADVERTISER: requested}
        if not mask[requested] and invalid_action == "raise":
            before = (env._ads_shown, env._requests, env.state().copy())
            with pytest.raises(ValueError, match="ad-load cap"):
                env.step(actions)
            assert (env._ads_shown, env._requests) == before[:2]  # nothing happened
            np.testing.assert_array_equal(env.state(), before[2])
            actions[ADVERTISER] = 0
        obs, _, _, _, infos = env.step(actions)
        info = infos[ADVERTISER]
        requests += 1
        ads += info["ad_shown"]
        assert info["invalid_action"] == (not mask[actions[ADVERTISER]])
        assert info["ad_shown"] == (info["ad_slot"] > 0)  # an ad is served exactly when allowed
        if mask[actions[ADVERTISER]]:
            assert info["ad_slot"] == actions[ADVERTISER]
        assert ads <= share * requests + 1e-9
        if per_session is not None:
            assert ads <= per_session
        assert info["ad_share"] == pytest.approx(ads / requests)


def test_mask_opens_exactly_when_one_more_ad_fits():
    assert not ad_allowed(0, 0, 0.25, None)  # request 1: 1 ad > 0.25
    assert ad_allowed(0, 3, 0.25, None)  # request 4: 1 ad <= 1
    assert not ad_allowed(1, 4, 0.25, None)  # request 5: 2 ads > 1.25
    assert ad_allowed(28, 99, 0.29, None)  # 29 ads in 100 requests: 0.29 * 100 = 28.999999999999996
    assert not ad_allowed(2, 40, 1.0, 2)  # per-session cap binds
    np.testing.assert_array_equal(ad_allowed(np.array([0, 0, 3]), np.array([0, 1, 5]), 0.5, None),
                                  [False, True, False])


def collect(mode: str, revenue_weight: float = 1.0, episodes: int = 6, ad_slot: int = 1) -> list[dict]:
    env = JointRecAdsEnv(mode=mode, revenue_weight=revenue_weight, max_ad_share=1.0, **SMALL)
    steps = []
    obs, _ = env.reset(seed=3)
    for _ in range(episodes):
        while env.agents:
            obs, rewards, _, _, infos = env.step({RECOMMENDER: np.zeros(4, np.float32), ADVERTISER: ad_slot})
            steps.append({"rewards": rewards, "info": infos[RECOMMENDER]})
            assert infos[RECOMMENDER]["revenue"] == infos[ADVERTISER]["revenue"]
        obs, _ = env.reset()
    return steps


def test_cooperative_team_reward_and_mixed_own_rewards():
    coop = collect("cooperative", revenue_weight=2.5)
    assert sum(s["info"]["ad_shown"] for s in coop) == len(coop)  # cap 1.0: every request carries an ad
    assert sum(s["info"]["revenue"] > 0 for s in coop) > 0  # ads get clicked and earn
    for s in coop:
        team = s["info"]["engagement"] + 2.5 * s["info"]["revenue"]
        assert s["rewards"][RECOMMENDER] == pytest.approx(team)
        assert s["rewards"][ADVERTISER] == pytest.approx(team)
        assert set(s["info"]) >= {"engagement", "revenue", "components", "ad_shown", "invalid_action"}
    mixed = collect("mixed")
    for s in mixed:
        assert s["rewards"][RECOMMENDER] == s["info"]["engagement"]
        assert s["rewards"][ADVERTISER] == s["info"]["revenue"]
        assert s["info"]["engagement"] == pytest.approx(
            float(s["info"]["components"] @ np.asarray(SimulatorConfig().reward_weights)))


def test_ads_earn_revenue_and_cost_engagement():
    with_ads, without = collect("mixed", episodes=25, ad_slot=1), collect("mixed", episodes=25, ad_slot=0)
    revenue = sum(s["info"]["revenue"] for s in with_ads)
    assert revenue > 0 and sum(s["info"]["revenue"] for s in without) == 0
    engagement_per_request = np.mean([s["info"]["engagement"] for s in with_ads])
    assert engagement_per_request < np.mean([s["info"]["engagement"] for s in without])


def test_bad_input_raises_clear_errors():
    env = JointRecAdsEnv(**SMALL)
    obs, _ = env.reset(seed=0)
    zero = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="keys"):
        env.step({RECOMMENDER: zero})
    for bad in (6, -1, 1.5, True, np.array([1, 2]), "1"):
        with pytest.raises(ValueError, match="advertiser"):
            env.step({RECOMMENDER: zero, ADVERTISER: bad})
    with pytest.raises(ValueError, match="recommender"):
        env.step({RECOMMENDER: np.full(4, np.nan), ADVERTISER: 0})
    env.step({RECOMMENDER: zero, ADVERTISER: np.int32(0)})  # numpy integers are fine
    with pytest.raises(ValueError, match="mode"):
        JointRecAdsConfig(mode="competitive")
    with pytest.raises(ValueError, match="max_ad_share"):
        JointRecAdsEnv(max_ad_share=1.5)
    with pytest.raises(ValueError, match="max_ads_per_session"):
        JointRecAdsEnv(max_ads_per_session=-1)
    with pytest.raises(ValueError, match="invalid_action"):
        JointRecAdsEnv(invalid_action="ignore")
    with pytest.raises(ValueError, match="max_ad_shar"):
        JointRecAdsEnv(max_ad_shar=0.3)  # a typo is not silently ignored
    with pytest.raises(ValueError, match="max_requests"):
        JointRecAdsEnv(max_requests=0)


def test_registered_in_parallel_and_aec_registries():
    par = pettingzoo.make("parallel", "marl_rec/JointRecAds-v0", max_ad_share=0.5, **SMALL)
    assert isinstance(par, JointRecAdsEnv) and par.config.max_ad_share == 0.5
    aec = pettingzoo.make("aec", "marl_rec/JointRecAds-v0", **SMALL)
    aec.reset(seed=0)
    assert aec.agents == [RECOMMENDER, ADVERTISER] and aec.state().shape == par.state_space.shape


def test_hydra_config_instantiates_the_env():
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    with initialize_config_dir(config_dir=str(CONF_ENV), version_base="1.3"):
        cfg = compose(config_name="joint_rec_ads", overrides=["mode=mixed", "revenue_weight=0.5",
                                                                "+max_requests=20"])
    env = instantiate(cfg)
    assert isinstance(env, JointRecAdsEnv)
    assert env.config == JointRecAdsConfig(mode="mixed", revenue_weight=0.5,
                                           max_ad_share=cfg.max_ad_share,
                                           max_ads_per_session=cfg.max_ads_per_session,
                                           invalid_action=cfg.invalid_action)
    assert env.sim_config.max_requests == 20
    obs, _ = env.reset(seed=0)
    assert env.observation_space(ADVERTISER).contains(obs[ADVERTISER])
