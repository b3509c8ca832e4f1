"""collect() logs a fair sample of the behaviour policy's sessions: every session it starts
runs to its end, so the logged sessions' mean length and return are those of
``run_sessions`` (the simulator's ground truth) within sampling error."""

from __future__ import annotations

import numpy as np
import pytest
from marl_rec.agents.policies import GaussianNoisePolicy, HeuristicExpertPolicy
from marl_rec.envs.rollout import run_sessions
from marl_rec.envs.simulator import UserSimulator

from marl_rec.data import collect

TARGET, SLOTS = 15_000, 256
Z = 3.0  # a fixed-seed test: |difference| / standard error below 3


def behaviour(seed: int) -> GaussianNoisePolicy:
    return GaussianNoisePolicy(HeuristicExpertPolicy(), 0.3, np.random.default_rng(seed))


def stop_at_target_and_drop_running(sim: UserSimulator, target: int, rng: np.random.Generator,
                                    ) -> tuple[np.ndarray, np.ndarray]:
    """The biased rule collect() replaced (the control): stop once ``target`` transitions of
    finished sessions are logged and drop the sessions still running. Returns the kept
    sessions' (lengths, returns)."""
    policy = behaviour(10)
    obs = sim.reset(SLOTS, rng)
    length, ret = np.zeros(SLOTS, dtype=np.int64), np.zeros(SLOTS)
    lengths, returns = [], []
    while sum(lengths) < target:
        result = sim.step(policy(sim, obs).action)
        length += result.info["active"]
        ret += result.reward
        ended = result.terminated | result.truncated
        lengths.extend(length[ended]), returns.extend(ret[ended])
        length[ended], ret[ended] = 0, 0.0
        obs = sim.reset_users(ended) if ended.any() else result.observation
    return np.asarray(lengths, dtype=float), np.asarray(returns)


def z_score(sample: np.ndarray, truth: np.ndarray) -> float:
    se = np.sqrt(sample.var(ddof=1) / sample.size + truth.var(ddof=1) / truth.size)
    return float((sample.mean() - truth.mean()) / se)


@pytest.fixture(scope="module")
def truth() -> tuple[np.ndarray, np.ndarray]:
    stats = run_sessions(behaviour(0), 1000, np.random.default_rng(1), sim=UserSimulator())
    return stats.lengths.astype(float), stats.returns


def test_collected_sessions_match_run_sessions_within_sampling_error(truth) -> None:
    data = collect(UserSimulator(), behaviour(10), TARGET, np.random.default_rng(11), batch_size=SLOTS)
    bounds = data.episode_bounds()
    lengths, returns = (bounds[:, 1] - bounds[:, 0]).astype(float), data.episode_returns()
    true_lengths, true_returns = truth
    assert len(data) >= TARGET
    assert bounds.shape[0] > 2 * SLOTS  # several sessions per slot: the stopping rule matters
    # every logged session ends (terminal or truncated) and no session is cut
    ends = bounds[:, 1] - 1
    assert (data.terminals[ends] | data.truncations[ends]).all()
    assert abs(z_score(lengths, true_lengths)) < Z
    assert abs(z_score(returns, true_returns)) < Z

    # control: the same bar rejects the old stop-and-drop rule (length bias; inspection paradox)
    old_lengths, old_returns = stop_at_target_and_drop_running(UserSimulator(), TARGET, np.random.default_rng(11))
    assert z_score(old_lengths, true_lengths) < -Z
    assert z_score(old_returns, true_returns) < -Z


def test_no_session_starts_once_the_target_is_reached() -> None:
    # the first request of 64 users logs 64 transitions: the target is reached, so collect()
    # logs exactly the 64 first sessions, whole
    data = collect(UserSimulator(), behaviour(3), 64, np.random.default_rng(4), batch_size=64)
    assert data.episode_bounds().shape[0] == 64
    assert data.episode_starts.sum() == 64
