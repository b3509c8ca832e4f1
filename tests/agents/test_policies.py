"""Reference policies (agents/policies.py): exact behaviour log-probabilities, seeding, and the
trade-offs the simulator must have by construction (measured over 2,000 sessions, fixed seeds)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from marl_rec.agents.policies import (ConstantPolicy, GaussianNoisePolicy, HeuristicExpertPolicy, MyopicGreedyPolicy,
                                      ProductionPolicy, RandomPolicy, action_grid)
from marl_rec.distributions import truncated_normal_log_prob, truncated_normal_sample
from marl_rec.envs.rollout import run_sessions
from marl_rec.envs.simulator import NUM_TASKS, SimulatorConfig, UserSimulator

SESSIONS = 2000
EVAL_SEED = 2024


@pytest.fixture(scope="module")
def sim() -> UserSimulator:
    return UserSimulator(SimulatorConfig())


# ------------------------------------------------------------------- truncated Gaussian noise
@pytest.mark.parametrize("mean,sigma", [(0.0, 0.3), (0.95, 0.3), (-1.0, 0.1), (0.5, 2.0), (0.2, 0.05)])
def test_truncated_normal_density_integrates_to_one(mean, sigma):
    density = lambda a: np.exp(truncated_normal_log_prob(np.array([[a]]), np.array([[mean]]), sigma))[0]  # noqa: E731
    total, error = integrate.quad(density, -1.0, 1.0, points=[mean] if -1 < mean < 1 else None, limit=200)
    assert abs(total - 1.0) < 1e-7


def test_truncated_normal_log_prob_matches_scipy():
    rng = np.random.default_rng(0)
    mean = rng.uniform(-1, 1, (50, NUM_TASKS))
    action = rng.uniform(-1, 1, (50, NUM_TASKS))
    sigma = 0.4
    reference = stats.truncnorm.logpdf(action, (-1 - mean) / sigma, (1 - mean) / sigma, loc=mean,
                                       scale=sigma).sum(-1)
    np.testing.assert_allclose(truncated_normal_log_prob(action, mean, sigma), reference, rtol=1e-10)


@pytest.mark.parametrize("mean,sigma", [(0.0, 0.5), (0.9, 0.3), (-1.0, 0.2)])
def test_truncated_normal_samples_follow_the_density(mean, sigma):
    """Monte Carlo: the samples' CDF is the truncated normal's (Kolmogorov–Smirnov)."""
    samples = truncated_normal_sample(np.full((20_000, 1), mean), sigma, np.random.default_rng(1))[:, 0]
    assert samples.min() >= -1.0 and samples.max() <= 1.0
    dist = stats.truncnorm((-1 - mean) / sigma, (1 - mean) / sigma, loc=mean, scale=sigma)
    assert stats.kstest(samples, dist.cdf).pvalue > 1e-3


def test_importance_weights_have_mean_one():
    """E_b[π(a) / b(a)] = 1 over the 4-D action cube: the log-probs are normalised jointly."""
    rng = np.random.default_rng(2)
    behaviour_mean, target_mean = np.array([0.2, -0.5, 0.9, 0.0]), np.array([0.0, -0.3, 0.7, 0.4])
    mean = np.broadcast_to(behaviour_mean, (200_000, NUM_TASKS))
    action = truncated_normal_sample(mean, 0.5, rng)
    weights = np.exp(truncated_normal_log_prob(action, np.broadcast_to(target_mean, mean.shape), 0.5)
                     - truncated_normal_log_prob(action, mean, 0.5))
    assert abs(weights.mean() - 1.0) < 4 * weights.std() / np.sqrt(weights.size)


def test_gaussian_noise_policy_actions_log_probs_and_seeds(sim):
    obs = sim.reset(500, np.random.default_rng(3))
    base = ConstantPolicy([0.9, -0.9, 0.0, 1.0])

    def draw(seed):
        return GaussianNoisePolicy(base, 0.3, np.random.default_rng(seed))(sim, obs)

    out = draw(7)
    assert out.action.shape == (500, NUM_TASKS) and out.log_prob.shape == (500,)
    assert (np.abs(out.action) <= 1.0).all() and np.isfinite(out.log_prob).all()
    np.testing.assert_allclose(out.log_prob, truncated_normal_log_prob(out.action, base(sim, obs).action, 0.3))
    np.testing.assert_array_equal(out.action, draw(7).action)
    assert not np.array_equal(out.action, draw(8).action)
    with pytest.raises(ValueError, match="sigma"):
        GaussianNoisePolicy(base, 0.0, np.random.default_rng(0))


def test_random_and_constant_policies(sim):
    obs = sim.reset(1000, np.random.default_rng(4))
    out = RandomPolicy(np.random.default_rng(0))(sim, obs)
    assert (np.abs(out.action) <= 1).all() and abs(out.action.mean()) < 0.05
    np.testing.assert_allclose(out.log_prob, -NUM_TASKS * np.log(2.0))
    constant = ConstantPolicy([2.0, 0.0, -0.5, 0.0])(sim, obs)
    assert constant.log_prob is None
    np.testing.assert_array_equal(constant.action, np.broadcast_to([1.0, 0.0, -0.5, 0.0], (1000, NUM_TASKS)))
    with pytest.raises(ValueError, match="4 entries"):
        ConstantPolicy([0.0, 0.0])


def test_every_grid_action_ranks_differently(sim):
    """No redundant action direction: the 81 grid actions give 81 different rankings."""
    grid = action_grid()
    assert grid.shape == (81, NUM_TASKS) and (np.abs(grid) <= 1).all()
    sim.reset(400, np.random.default_rng(5))
    slates = {tuple(sim.rank(np.broadcast_to(a, (400, NUM_TASKS))).ravel()) for a in grid}
    assert len(slates) == 81


def test_production_policy_reads_no_hidden_input(sim):
    """The production policy's action does not change when the hidden state and the true
    responses change; the oracle's does."""
    obs = sim.reset(300, np.random.default_rng(6))
    production, oracle = ProductionPolicy()(sim, obs).action, HeuristicExpertPolicy()(sim, obs).action
    saved = {key: sim.state[key].copy() for key in ("satisfaction", "patience", "clickbait_sensitivity")}
    logits, utility = sim._cand["logits"].copy(), sim._cand["utility"].copy()
    rng = np.random.default_rng(7)
    sim.state["satisfaction"][:] = rng.uniform(0.2, 1.0, 300)
    sim.state["patience"][:] = rng.uniform(0.5, 1.0, 300)
    sim._cand["logits"] += rng.normal(0, 1, logits.shape).astype(np.float32)
    sim._cand["utility"][:] = rng.normal(0, 1, utility.shape)
    sim._cand_true = None
    try:
        np.testing.assert_array_equal(ProductionPolicy()(sim, obs).action, production)
        assert (HeuristicExpertPolicy()(sim, obs).action != oracle).any()
    finally:
        for key, value in saved.items():
            sim.state[key][:] = value
        sim._cand["logits"][:], sim._cand["utility"][:] = logits, utility
        sim._cand_true = None


def test_state_dependent_policies_pick_grid_actions(sim):
    obs = sim.reset(100, np.random.default_rng(6))
    for policy in (MyopicGreedyPolicy(), HeuristicExpertPolicy(), ProductionPolicy()):
        out = policy(sim, obs)
        assert out.log_prob is None
        assert {tuple(a) for a in out.action} <= {tuple(a) for a in action_grid()}
        assert len({tuple(a) for a in out.action}) > 1  # the choice depends on the user


# ----------------------------------------------------------------------------- the trade-offs
@pytest.fixture(scope="module")
def production(sim):
    return run_sessions(ProductionPolicy(), SESSIONS, np.random.default_rng(EVAL_SEED), sim=sim)


@pytest.fixture(scope="module")
def best_constant(sim):
    """All 81 constant actions (each ranks differently) screened in one batch (300 users each);
    the best three then evaluated on the same 2,000 users (seed) as the other policies.
    Returns (best mean return over the finalists, best screening mean)."""
    grid = action_grid()
    per_action = 300
    screen_actions = np.repeat(grid, per_action, axis=0)
    screen = run_sessions(lambda s, obs: screen_actions, len(screen_actions), np.random.default_rng(1), sim=sim)
    screened = screen.returns.reshape(len(grid), per_action).mean(1)
    finalists = grid[np.argsort(-screened)[:3]]
    best = max(run_sessions(ConstantPolicy(a), SESSIONS, np.random.default_rng(EVAL_SEED), sim=sim).returns.mean()
               for a in finalists)
    return best, screened.max()


def test_best_constant_weights_lose_to_the_production_policy(production, best_constant):
    """Trade-off (1), on what the platform sees: the production lookahead (predictions and
    observations only) beats the best constant weights. Measured on this seed: 125.7 vs 115.7,
    1.087x the best finalist (1.09-1.11x over seeds 7, 123, 2024; bench/results/calibration.json);
    asserted >= 1.05x. (The screening maximum, a max over 81 means of 300 users, is biased
    upwards, so it is not the comparison.)"""
    best, _ = best_constant
    assert production.returns.mean() >= 1.05 * best


def test_myopic_greedy_wins_the_first_request_but_loses_the_session(sim, production, best_constant):
    """Trade-off (2): same 2,000 users (seed) for all policies; asserted: myopic <= 0.90x the
    best constant (bench/results/calibration.json has the measured ratio)."""
    myopic = run_sessions(MyopicGreedyPolicy(), SESSIONS, np.random.default_rng(EVAL_SEED), sim=sim)
    assert myopic.first_rewards.mean() > production.first_rewards.mean()
    assert myopic.returns.mean() <= 0.90 * best_constant[0]
    assert myopic.lengths.mean() < production.lengths.mean()  # it burns satisfaction: users leave
