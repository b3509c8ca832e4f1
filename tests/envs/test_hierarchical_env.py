"""HierarchicalInterestEnv: PettingZoo API and seeding, the two time scales, semi-MDP rewards,
churn / truncation, the goal's effect and the simulator's retention effect, Hydra."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pettingzoo
import pytest
from pettingzoo.test import api_test, seed_test

import marl_rec.envs  # noqa: F401  (registers the environments)
from marl_rec.envs.hierarchical import (GOAL_DIM, LIFETIME_FEATURES, LONG_TERM, SHORT_TERM, HierarchicalConfig,
                               HierarchicalInterestEnv, env as make_env, goal_from_action, goal_reward,
                               run_lifetimes, slate_goal_statistics)
from marl_rec.envs.simulator import SimulatorConfig, UserSimulator

CONF_ENV = Path(__file__).resolve().parents[2] / "conf" / "env"
SMALL = dict(max_requests=10, items_per_topic=40, ads_per_topic=6)


@pytest.fixture(autouse=True)
def _quiet_pettingzoo_recommendations():
    with warnings.catch_warnings():  # naming / space-type recommendations of the API tests
        warnings.simplefilter("ignore", UserWarning)
        yield


def test_api_test_and_seed_test_pass():
    api_test(make_env(max_sessions=4, return_bonus=3.0, **SMALL), num_cycles=300)
    api_test(HierarchicalInterestEnv(max_sessions=2, **SMALL), num_cycles=300)
    seed_test(lambda: make_env(max_sessions=4, return_bonus=3.0, **SMALL), num_cycles=300)


def play_lifetime(env, rng: np.random.Generator, seed: int | None = None) -> list[dict]:
    """One lifetime with uniform random actions. Per turn: the agent, what ``last()`` showed,
    the action, the agent's info after its step, and long_term's rewards summed by hand since
    it last acted (what its ``last()`` must show)."""
    env.reset(seed=seed)
    log, since_long_term_acted = [], 0.0
    for agent in env.agent_iter():
        obs, reward, term, trunc, info = env.last()
        action = None if term or trunc else rng.uniform(-1, 1, env.action_space(agent).shape).astype(np.float32)
        entry = dict(agent=agent, obs=obs, reward=reward, term=term, trunc=trunc, info=info,
                     long_term_since=since_long_term_acted, action=action)
        if agent == LONG_TERM:
            since_long_term_acted = 0.0
        env.step(action)
        since_long_term_acted += env.rewards.get(LONG_TERM, 0.0)
        entry["info_after"] = dict(env.infos.get(agent, {}))
        log.append(entry)
    return log


def test_same_seed_same_lifetimes_over_several_episodes():
    def trace(seed):
        env, rng = make_env(max_sessions=5, **SMALL), np.random.default_rng(0)
        out = play_lifetime(env, rng, seed)
        for _ in range(3):  # reset() without a seed continues the env's stream
            out += play_lifetime(env, rng)
        return out

    a, b = trace(11), trace(11)
    assert len(a) == len(b) and len(a) > 20
    for x, y in zip(a, b):
        assert (x["agent"], x["reward"], x["term"], x["trunc"]) == (y["agent"], y["reward"], y["term"], y["trunc"])
        np.testing.assert_array_equal(x["obs"], y["obs"])
    c = trace(12)
    assert len(c) != len(a) or any(not np.array_equal(x["obs"], y["obs"]) for x, y in zip(a, c))


def test_long_term_acts_once_per_session_and_last_is_its_semi_mdp_return():
    bonus = 7.0
    env = HierarchicalInterestEnv(max_sessions=6, return_bonus=bonus, **SMALL)
    rng = np.random.default_rng(1)
    total_sessions = 0
    for seed in range(6):
        log = play_lifetime(env, rng, seed)
        acting = [entry for entry in log if entry["action"] is not None]
        # long_term acts first, then exactly once before the first request of every session:
        # each short_term step belongs to the session opened by the latest long_term action
        assert acting[0]["agent"] == LONG_TERM
        long_term_acts = 0
        for previous, entry in zip([None] + acting, acting):
            if entry["agent"] == LONG_TERM:
                long_term_acts += 1
                assert previous is None or previous["info_after"]["session_end"]
            else:
                assert entry["info_after"]["session_index"] == long_term_acts - 1
        sessions = sum(e["info_after"]["session_end"] for e in acting if e["agent"] == SHORT_TERM)
        assert long_term_acts == sessions
        # long_term's last(): exactly its rewards since it acted = the session's engagement
        # (+ the bonus when the user came back)
        shown = [e for e in log if e["agent"] == LONG_TERM and e["info"]]
        assert len(shown) == sessions
        for entry in shown:
            assert entry["reward"] == entry["long_term_since"]
            info = entry["info"]
            assert entry["reward"] == pytest.approx(info["session_engagement"] + bonus * info["returned"])
            assert entry["term"] == (not info["returned"])
        total_sessions += sessions
    assert total_sessions > 6  # some users came back


def test_short_term_reward_is_engagement_plus_goal_following():
    weight = 3.0
    env = HierarchicalInterestEnv(max_sessions=3, goal_reward_weight=weight, **SMALL)
    env.reset(seed=4)
    env.step(np.array([-0.4, 0.6], np.float32))  # long_term: goal (0.3, 0.8)
    goal = goal_from_action(np.array([-0.4, 0.6], np.float32))
    obs = env.observe(SHORT_TERM)
    np.testing.assert_allclose(obs[-GOAL_DIM:], goal, rtol=1e-6)  # the goal is in its observation
    for _ in range(5):
        if env.agent_selection != SHORT_TERM:
            break
        action = np.array([0.5, -0.2, 0.1, 0.3], np.float32)
        expected_achieved = slate_goal_statistics(env.sim, env.sim.rank(action[None].astype(np.float64)))[0]
        env.step(action)
        info = env.infos[SHORT_TERM]
        np.testing.assert_allclose(info["achieved_goal"], expected_achieved)
        # abs: the test's goal is float32, the env's float64 (goal rewards near 0 under ceilings)
        assert info["goal_reward"] == pytest.approx(float(goal_reward(expected_achieved, goal)), abs=1e-6)
        assert env.rewards[SHORT_TERM] == pytest.approx(info["engagement"] + weight * info["goal_reward"])
        assert env.rewards[LONG_TERM] == info["engagement"] or info["session_end"]


def test_churn_terminates_and_the_lifetime_cap_truncates():
    def final_flags(**sim):
        env = HierarchicalInterestEnv(max_sessions=3, **sim)
        log = play_lifetime(env, np.random.default_rng(0), seed=0)
        dead = [entry for entry in log if entry["action"] is None]
        assert [entry["agent"] for entry in dead] == [LONG_TERM, SHORT_TERM]  # long_term sees its return first
        sessions = sum(entry["agent"] == LONG_TERM for entry in log) - 1
        return dead[0]["term"], dead[0]["trunc"], sessions

    never_back = dict(SMALL, return_threshold=50.0)  # return probability ~ 0
    always_back = dict(SMALL, return_threshold=-50.0)  # return probability ~ 1
    assert final_flags(**never_back) == (True, False, 1)
    assert final_flags(**always_back) == (False, True, 3)


def test_observations_are_in_their_spaces():
    env = HierarchicalInterestEnv(max_sessions=4, **SMALL)
    d = env.sim_config.obs_dim
    assert env.observation_space(LONG_TERM).shape == (d + len(LIFETIME_FEATURES),)
    assert env.observation_space(SHORT_TERM).shape == (d + GOAL_DIM,)
    log = play_lifetime(env, np.random.default_rng(2), seed=2)
    for entry in log:
        agent, obs = entry["agent"], entry["obs"]
        assert obs.dtype == np.float32 and env.observation_space(agent).contains(obs)


def test_bad_input_raises_clear_errors():
    env = HierarchicalInterestEnv(max_sessions=2, **SMALL)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="long_term"):
        env.step(np.zeros(4, np.float32))  # long_term's action has 2 entries
    env.step(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="short_term"):
        env.step(np.array([np.nan, 0, 0, 0], np.float32))
    with pytest.raises(ValueError, match="max_sessions"):
        HierarchicalConfig(max_sessions=0)
    with pytest.raises(ValueError, match="goal_reward_weight"):
        HierarchicalInterestEnv(goal_reward_weight=-1.0)
    with pytest.raises(ValueError, match="max_sesions"):
        HierarchicalInterestEnv(max_sesions=3)  # a typo is not silently ignored
    with pytest.raises(ValueError, match="unknown agent"):
        env.observe("mid_term")


# --------------------------------------------------------- lifetimes: the effects that matter
class GoalFollower:
    """Per request, the grid action maximising predicted engagement + w · goal-following."""

    def __init__(self, weight: float, values=(-1.0, 1.0), goal_space: str = "ceilings") -> None:
        self.weight, self.goal_space = weight, goal_space
        self.grid = np.array(np.meshgrid(*[values] * 4)).reshape(4, -1).T

    def __call__(self, sim: UserSimulator, obs: np.ndarray) -> np.ndarray:
        b = obs.shape[0]
        slates = np.stack([sim.rank(np.broadcast_to(a, (b, 4))) for a in self.grid], axis=1)  # (B, G, K)
        score = sim.slate_expectations(slates, use_true=False)["reward"] + self.weight * goal_reward(
            slate_goal_statistics(sim, slates, self.goal_space), obs[:, None, -GOAL_DIM:], self.goal_space)
        return self.grid[np.argmax(score, axis=1)]


def fixed_goal(goal):
    action = np.asarray(goal, dtype=np.float64) * 2.0 - 1.0
    return lambda sim, obs: np.broadcast_to(action, (obs.shape[0], GOAL_DIM))


def test_the_goal_steers_the_short_term_controller_and_retention():
    # the (click, quality) targets of before issue #17
    config = HierarchicalConfig(max_sessions=8, goal_reward_weight=5.0, goal_space="click_quality")
    sim_config = SimulatorConfig(items_per_topic=60, max_requests=25)
    follower = GoalFollower(config.goal_reward_weight, goal_space="click_quality")
    # 200 users: with weights relative to a fixed click weight (issue #16) the reachable goals
    # are closer together than under the former w = 10 ** a on every task
    quality = run_lifetimes(follower, 200, np.random.default_rng(0), fixed_goal((0.3, 0.9)), config,
                            sim_config=sim_config).summary()
    clicks = run_lifetimes(follower, 200, np.random.default_rng(0), fixed_goal((0.95, 0.1)), config,
                           sim_config=sim_config).summary()
    spread = 3 * np.hypot(quality["sessions_se"], clicks["sessions_se"])
    assert quality["sessions_per_user"] - clicks["sessions_per_user"] > spread
    assert quality["true_utility"] > clicks["true_utility"]
    # the follower tracks the goal better than a goal-blind myopic policy does
    blind = run_lifetimes(GoalFollower(0.0, goal_space="click_quality"), 200, np.random.default_rng(0),
                          fixed_goal((0.3, 0.9)), config, sim_config=sim_config).summary()
    assert quality["goal_error"] < blind["goal_error"]


def test_a_negative_feedback_ceiling_keeps_users_coming_back():
    # the default goal space: ceilings on (p̂(click), p̂(negative) / NEGATIVE_LEVEL_SCALE); a tight
    # negative-feedback ceiling makes the engagement-seeking follower serve what users value,
    # which raises their satisfaction at the session's end and so their return probability
    config = HierarchicalConfig(max_sessions=8, goal_reward_weight=20.0)
    assert config.goal_space == "ceilings"
    sim_config = SimulatorConfig(items_per_topic=60, max_requests=25)
    follower = GoalFollower(config.goal_reward_weight)
    tight = run_lifetimes(follower, 200, np.random.default_rng(0), fixed_goal((1.0, 0.1)), config,
                          sim_config=sim_config).summary()
    free = run_lifetimes(follower, 200, np.random.default_rng(0), fixed_goal((1.0, 1.0)), config,
                         sim_config=sim_config).summary()
    assert tight["sessions_per_user"] - free["sessions_per_user"] > 3 * np.hypot(tight["sessions_se"],
                                                                                 free["sessions_se"])
    assert tight["true_utility"] > free["true_utility"]
    assert free["goal_error"] == 0.0  # nothing goes over a ceiling of 1
    blind = run_lifetimes(GoalFollower(0.0), 200, np.random.default_rng(0), fixed_goal((1.0, 0.1)), config,
                          sim_config=sim_config).summary()
    assert tight["goal_error"] < blind["goal_error"]


def test_ceilings_cost_only_when_exceeded_and_targets_cost_both_ways():
    achieved = np.array([[0.5, 0.2], [0.5, 0.2]])
    goal = np.array([[0.7, 0.1], [0.3, 0.3]])
    np.testing.assert_allclose(goal_reward(achieved, goal, "ceilings"), [-0.05, -0.1])
    np.testing.assert_allclose(goal_reward(achieved, goal, "click_quality"), [-0.15, -0.15])
    with pytest.raises(ValueError, match="goal_space"):
        goal_reward(achieved, goal, "quality")
    with pytest.raises(ValueError, match="goal_space"):
        HierarchicalConfig(goal_space="quality")


def test_retention_separates_policies_that_burn_satisfaction():
    config = HierarchicalConfig(max_sessions=8)

    def constant(action):
        return lambda sim, obs: np.broadcast_to(np.asarray(action, float), (obs.shape[0], 4))

    # click only (every other weight 1/10 of the click weight) vs quality signals and negative feedback
    harvest = run_lifetimes(constant([-1, -1, -1, -1]), 150, np.random.default_rng(5), config=config)
    protect = run_lifetimes(constant([1, 1, 1, 1]), 150, np.random.default_rng(5), config=config)
    h, p = harvest.summary(), protect.summary()
    assert p["sessions_per_user"] - h["sessions_per_user"] > 3 * np.hypot(p["sessions_se"], h["sessions_se"])
    assert p["lifetime_engagement"] > h["lifetime_engagement"]
    for stats in (harvest, protect):
        assert np.all((stats.sessions >= 1) & (stats.sessions <= config.max_sessions))
        assert np.all(stats.churned | (stats.sessions == config.max_sessions))
        assert np.all(stats.requests >= stats.sessions)
    assert np.isnan(h["goal_error"])  # no goal policy: no goal


def test_registered_and_hydra_config_instantiates_the_env():
    registered = pettingzoo.make("aec", "marl_rec/HierarchicalInterest-v0", max_sessions=4, **SMALL)
    assert isinstance(registered.unwrapped, HierarchicalInterestEnv)
    assert registered.unwrapped.config.max_sessions == 4

    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    with initialize_config_dir(config_dir=str(CONF_ENV), version_base="1.3"):
        cfg = compose(config_name="hierarchical", overrides=["max_sessions=7", "return_bonus=2.5",
                                                               "+max_requests=15", "goal_space=click_quality"])
    env = instantiate(cfg)
    assert isinstance(env, HierarchicalInterestEnv)
    assert env.config == HierarchicalConfig(max_sessions=7, return_bonus=2.5, goal_space="click_quality",
                                            goal_reward_weight=cfg.goal_reward_weight)
    assert env.sim_config.max_requests == 15
    env.reset(seed=0)
    assert env.agent_selection == LONG_TERM
