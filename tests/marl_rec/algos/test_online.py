"""Online TD3/DDPG in the batched simulator: the replay buffer as a dataset, exact behaviour
log-probabilities, the concurrent-learner hook, determinism, bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from marl_rec.envs.simulator import UserSimulator
from marl_rec.algos import ActionSpec, make_algorithm
from marl_rec.algos.online import ExplorationPolicy, ReplayBuffer, train_online
from marl_rec.distributions import truncated_normal_log_prob, truncated_normal_sample
from marl_rec.data import collect

torch.set_num_threads(1)
SPEC = ActionSpec("continuous", dim=4)
SMALL = dict(actor_hidden=(32, 32), critic_hidden=(32, 32), batch_size=64)


@pytest.fixture(scope="module")
def sim() -> UserSimulator:
    return UserSimulator()


def agent(name: str = "td3", seed: int = 0, **overrides):
    return make_algorithm(name, UserSimulator().obs_dim, SPEC, "rec", seed=seed, **{**SMALL, **overrides})


# ------------------------------------------------------------------ truncated normal


@pytest.mark.parametrize("mean, sigma", [(0.0, 0.5), (0.9, 0.3), (-1.0, 0.1), (0.3, 2.0)])
def test_truncated_normal_density_is_scipys_and_samples_follow_it(mean, sigma):
    rng = np.random.default_rng(0)
    means = np.full((4000, 1), mean)
    samples = truncated_normal_sample(means, sigma, rng)
    assert samples.min() >= -1.0 and samples.max() <= 1.0
    a, b = (-1.0 - mean) / sigma, (1.0 - mean) / sigma
    reference = stats.truncnorm(a, b, loc=mean, scale=sigma)
    np.testing.assert_allclose(truncated_normal_log_prob(samples, means, sigma),
                               reference.logpdf(samples[:, 0]), rtol=1e-9, atol=1e-9)
    assert stats.kstest(samples[:, 0], reference.cdf).pvalue > 1e-3


def test_truncated_normal_log_prob_sums_over_action_dimensions():
    rng = np.random.default_rng(1)
    mean = rng.uniform(-1, 1, (50, 4))
    action = truncated_normal_sample(mean, 0.5, rng)
    per_dim = [truncated_normal_log_prob(action[:, [i]], mean[:, [i]], 0.5) for i in range(4)]
    np.testing.assert_allclose(truncated_normal_log_prob(action, mean, 0.5), np.sum(per_dim, 0))


# ------------------------------------------------------------------ the online loop


def test_final_buffer_is_a_valid_dataset_of_every_transition(sim):
    algo = agent()
    result = train_online(sim, algo, num_steps=60, rng=np.random.default_rng(0), batch_users=32,
                          exploration_sigma=0.5, start_steps=10)
    data = result.dataset  # OfflineDataset validates contiguous episodes on construction
    assert len(data) + data.metadata["incomplete_transitions"] == 60 * 32
    assert result.num_updates == algo.num_updates == 50
    assert data.metadata["exploration_sigma"] == 0.5 and data.metadata["algorithm"] == "td3"
    assert data.behaviour_log_probs is not None and np.all(np.isfinite(data.behaviour_log_probs))
    assert data.reward_components.shape == (len(data), 4) and data.component_names[0] == "click"
    # completed sessions: as many as the dataset holds, their returns equal the dataset's
    assert len(result.episode_returns) == data.episode_starts.sum()
    np.testing.assert_allclose(np.sort(result.episode_returns), np.sort(data.episode_returns()), rtol=1e-5)
    assert np.all(np.abs(data.actions) <= 1.0)


def test_behaviour_log_probs_are_the_exact_exploration_densities(sim):
    algo = agent()  # updates_per_step=0: a fixed policy, so the densities can be recomputed
    result = train_online(sim, algo, num_steps=40, rng=np.random.default_rng(1), batch_users=16,
                          exploration_sigma=0.3, start_steps=5, updates_per_step=0)
    data = result.dataset
    mean = algo.act(data.observations)
    expected = truncated_normal_log_prob(data.actions.astype(np.float64), mean, 0.3)
    uniform = np.isclose(data.behaviour_log_probs, -4 * np.log(2.0))
    assert 0 < uniform.sum() < len(data)  # the start steps acted uniformly
    np.testing.assert_allclose(data.behaviour_log_probs[~uniform], expected[~uniform], rtol=1e-6, atol=1e-5)
    assert result.num_updates == 0


def test_concurrent_learner_trains_on_the_same_growing_buffer(sim):
    behaviour, offline = agent("td3", seed=0), agent("bc", seed=1)
    sizes: list[int] = []

    def on_update(buffer: ReplayBuffer) -> None:
        sizes.append(len(buffer))
        offline.update(buffer.sample(64, offline.generator))

    # 60 steps: sessions on the default world last ~40 requests, and the dataset needs one to end
    result = train_online(sim, behaviour, num_steps=60, rng=np.random.default_rng(2), batch_users=16,
                          exploration_sigma=0.1, start_steps=4, updates_per_step=2, on_update=on_update)
    assert len(sizes) == result.num_updates == offline.num_updates == 2 * 56
    assert sizes == sorted(sizes) and sizes[0] == 5 * 16 and sizes[-1] == 60 * 16


def test_online_runs_are_reproducible(sim):
    def run(seed: int):
        algo = agent("ddpg", seed=0)
        result = train_online(sim, algo, 25, np.random.default_rng(seed), batch_users=16,
                              exploration_sigma=0.2, start_steps=3)
        return result.dataset, algo.act(np.full((2, sim.obs_dim), 0.5, np.float32))

    (d1, a1), (d2, a2), (d3, _) = run(0), run(0), run(1)
    assert np.array_equal(d1.actions, d2.actions) and np.array_equal(d1.rewards, d2.rewards)
    assert np.array_equal(a1, a2)
    assert len(d1) != len(d3) or not np.array_equal(d1.actions, d3.actions)


def test_greedy_run_records_no_log_probs_and_exploration_policy_works_with_collect(sim):
    algo = agent()
    result = train_online(sim, algo, 20, np.random.default_rng(3), batch_users=16, exploration_sigma=0.0)
    assert result.dataset.behaviour_log_probs is None
    data = collect(sim, ExplorationPolicy(algo, 0.2, np.random.default_rng(4)), 200, np.random.default_rng(5),
                   batch_size=16)
    expected = truncated_normal_log_prob(data.actions.astype(np.float64), algo.act(data.observations), 0.2)
    np.testing.assert_allclose(data.behaviour_log_probs, expected, rtol=1e-6, atol=1e-5)


def test_policy_exploration_acts_with_the_algorithms_own_stochastic_action(sim):
    """exploration="policy" (the calibration's SAC): each action is the algorithm's
    act(obs, deterministic=False) — reproduced with a twin agent on the same first observations —
    and the dataset carries no behaviour log-probabilities (none are known)."""
    def sac(seed: int = 0):
        return make_algorithm("cql", sim.obs_dim, SPEC, "rec", seed=seed, cql_alpha=0.0, bc_warmup_updates=0,
                              initial_entropy_alpha=1.0)

    algo, twin = sac(), sac()
    # no updates (the batch never fills), so the policy stays the twin's; 60 steps: every first session ends
    result = train_online(sim, algo, 60, np.random.default_rng(7), batch_users=8, batch_size=10**6,
                          exploration="policy")
    data = result.dataset
    assert data.behaviour_log_probs is None and data.metadata["exploration"] == "policy"
    first_obs = UserSimulator().reset(8, np.random.default_rng(7))
    expected = twin.act(first_obs, deterministic=False)
    first_rows = np.flatnonzero(data.episode_starts)[:8]  # episodes 0..7 began at step 0, in slot order
    np.testing.assert_array_equal(data.observations[first_rows], first_obs)
    np.testing.assert_array_equal(data.actions[first_rows], expected)
    assert not np.allclose(expected, twin.act(first_obs, deterministic=True))  # stochastic, not the mean


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_steps=0), "num_steps must be an integer >= 1"),
    (dict(batch_users=0), "batch_users must be an integer >= 1"),
    (dict(start_steps=-1), "start_steps must be an integer >= 0"),
    (dict(updates_per_step=1.5), "updates_per_step must be an integer >= 0"),
    (dict(exploration_sigma=-0.1), "exploration_sigma must be >= 0"),
    (dict(exploration="uniform"), "exploration must be 'gaussian' or 'policy', got 'uniform'"),
])
def test_bad_arguments_are_named(sim, kwargs, message):
    arguments = {**dict(num_steps=5, rng=np.random.default_rng(0), batch_users=4), **kwargs}
    with pytest.raises(ValueError, match=message):
        train_online(sim, agent(), **arguments)


def test_too_short_a_run_says_no_session_finished(sim):
    with pytest.raises(ValueError, match="no session finished"):
        train_online(sim, agent(), 2, np.random.default_rng(0), batch_users=4)


@pytest.mark.xfail(strict=True, reason=(
    "issue #16: with the fusion weights relative to a fixed click weight, online TD3 (rec preset, this "
    "budget) no longer beats random: 93.5 mean over seeds vs 99.0 on the default world (summary-only "
    "observation). Measured why (python bench/online_diagnosis.py -> bench/results/online_diagnosis.json): "
    "by 500 updates, while its critic is at half the true value (Q 24.1 vs 48.0), the actor saturates at "
    "the corner a = (-1, 1, -1, -1) (74% of entries at the bound, |pre-tanh| 3.6; by 1,500 updates all, "
    "one action for every state); dQ/da there points out of the box on every entry, while the same critic "
    "rates the production policy's action 1.4-4.2 higher: a better action across the box that the "
    "deterministic policy gradient through a saturated tanh does not reach; the greedy return stays 96.2 "
    "from 1,500 to 6,000 updates. strict: the test fails loudly once TD3 learns again"))
def test_online_td3_learns_to_beat_the_random_policy():
    """1,200 batched steps of 32 users (~38k transitions, ~1,150 updates) of the rec preset,
    three seeds: the greedy policies earn 95.2 / 107.2 / 108.1 (mean 103.5) against the
    uniform random policy's 98.1 on the same 2,000 users. One short run is noisy (seed 0
    alone is below random), so the test asserts on the mean over seeds."""
    from marl_rec.agents.policies import RandomPolicy
    from marl_rec.envs.rollout import run_sessions

    sim = UserSimulator()
    learned = []
    for seed in range(3):
        algo = make_algorithm("td3", sim.obs_dim, SPEC, "rec", seed=seed)
        train_online(sim, algo, 1200, np.random.default_rng(seed), batch_users=32, exploration_sigma=0.1,
                     start_steps=50)
        learned.append(run_sessions(lambda sim, obs: algo.act(obs), 2000, np.random.default_rng(11),
                                    sim=sim).returns.mean())
    random = run_sessions(RandomPolicy(np.random.default_rng(0)), 2000, np.random.default_rng(11), sim=sim)
    assert np.mean(learned) > random.returns.mean() + 3.0, (learned, random.returns.mean())


@pytest.mark.parametrize("bootstrap", [False, True])
def test_replay_buffer_dones_follow_the_truncation_convention(bootstrap: bool) -> None:
    """Sampled TD dones: 1 at terminals and, unless bootstrap_truncated, at truncations."""
    rows = np.arange(4, dtype=np.float32)
    buffer = ReplayBuffer(4, obs_dim=1, action_dim=1, num_components=1, bootstrap_truncated=bootstrap)
    buffer.add(observations=rows[:, None], actions=np.zeros((4, 1)), rewards=np.zeros(4),
               next_observations=rows[:, None], dones=np.array([0, 1, 0, 0]),
               truncations=np.array([False, False, True, False]), log_probs=np.zeros(4),
               components=np.zeros((4, 1)), episodes=np.arange(4))
    expected = np.array([0, 1, 0 if bootstrap else 1, 0], np.float32)
    batch = buffer.sample(64, torch.Generator().manual_seed(0))
    sampled_rows = batch.observations[:, 0].long().numpy()
    assert len(set(sampled_rows)) == 4
    np.testing.assert_array_equal(batch.dones.numpy(), expected[sampled_rows])
