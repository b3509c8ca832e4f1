"""A small synthetic MDP whose policy values are known in closed form (shared by the OPE tests).

Three states (observed one-hot), an initial distribution ``d0``, a per-state termination
probability, and either
* two discrete actions: mean reward R[s, a], continuation kernel P[s, a, s'], or
* one continuous action a ∈ [-1, 1]: mean reward c_s - k·(a - m_s)² and continuation
  kernel base[s, s'] + a·delta[s, s'] (rows of delta sum to 0, so leaving does not depend
  on a and P stays non-negative on the box).
Rewards carry Gaussian noise of std ``noise``. The value of a policy is d0ᵀ(I - γ P_π)⁻¹ r_π.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import truncnorm

from marl_rec.contracts import ActionSpec
from marl_rec.data.dataset import OfflineDataset
from marl_rec.distributions import truncated_normal_log_prob, truncated_normal_sample

S = 3
D0 = np.array([0.5, 0.3, 0.2])
STOP = np.array([0.25, 0.3, 0.3])  # termination probability per state
# discrete
R = np.array([[1.0, 0.2], [0.0, 2.0], [0.5, 1.0]])
MOVE = np.array([  # where the user goes (given continuing), per (s, a)
    [[0.1, 0.6, 0.3], [0.7, 0.2, 0.1]],
    [[0.3, 0.3, 0.4], [0.5, 0.1, 0.4]],
    [[0.2, 0.2, 0.6], [0.6, 0.3, 0.1]],
])
P = MOVE * (1.0 - STOP)[:, None, None]
# continuous
C, M, K = np.array([1.0, 2.0, 0.5]), np.array([0.5, -0.3, 0.0]), 1.5
BASE = np.array([[0.3, 0.4, 0.3], [0.3, 0.3, 0.4], [0.4, 0.3, 0.3]])
DELTA = np.array([[-0.2, 0.1, 0.1], [0.1, -0.25, 0.15], [0.2, -0.1, -0.1]])


def one_hot(states: np.ndarray) -> np.ndarray:
    return np.eye(S, dtype=np.float32)[states]


def state_of(obs: np.ndarray) -> np.ndarray:
    return np.asarray(obs).argmax(1)


def value(r_pi: np.ndarray, p_pi: np.ndarray, gamma: float) -> float:
    return float(D0 @ np.linalg.solve(np.eye(S) - gamma * p_pi, r_pi))


class TabularPolicy:
    """π(a|s) from a (S, 2) table; stochastic (has log_prob) — or deterministic = argmax."""

    def __init__(self, probs: np.ndarray, seed: int = 0) -> None:
        self.probs, self.rng = np.asarray(probs, dtype=np.float64), np.random.default_rng(seed)

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        p = self.probs[state_of(obs)]
        if deterministic:
            return p.argmax(1)
        return (self.rng.random((len(p), 1)) > np.cumsum(p, 1)).sum(1).clip(max=1)

    def log_prob(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return np.log(self.probs[state_of(obs), np.asarray(actions, dtype=np.int64)])

    def true_value(self, gamma: float) -> float:
        return value((self.probs * R).sum(1), np.einsum("sa,sat->st", self.probs, P), gamma)


class DeterministicTabular:
    """a = table[s] (no log_prob: OPE smooths it)."""

    def __init__(self, actions: np.ndarray) -> None:
        self.actions = np.asarray(actions)

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return self.actions[state_of(obs)].copy()

    def true_value(self, gamma: float, epsilon: float = 0.0) -> float:
        probs = np.full((S, 2), epsilon / 2)
        probs[np.arange(S), self.actions.astype(int)] += 1 - epsilon
        return TabularPolicy(probs).true_value(gamma)


class GaussianBehaviour:
    """Continuous behaviour: a ~ TN(mean[s], sigma², [-1, 1]) with exact log-densities."""

    def __init__(self, mean: np.ndarray, sigma: float, seed: int = 0) -> None:
        self.mean, self.sigma, self.rng = np.asarray(mean, dtype=np.float64), sigma, np.random.default_rng(seed)

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        mean = self.mean[state_of(obs)][:, None]
        if deterministic:
            return mean
        return truncated_normal_sample(mean, self.sigma, self.rng)

    def log_prob(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return truncated_normal_log_prob(np.asarray(actions, np.float64).reshape(-1, 1),
                                         self.mean[state_of(obs)][:, None], self.sigma)


class DeterministicContinuous:
    """a = b[s]."""

    def __init__(self, b: np.ndarray) -> None:
        self.b = np.asarray(b, dtype=np.float64)

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return self.b[state_of(obs)][:, None]

    def true_value(self, gamma: float, bandwidth: float = 0.0) -> float:
        """Value of a = b[s], or of its truncated-Gaussian smoothing of std ``bandwidth``."""
        mean, var = self.b, np.zeros(S)
        if bandwidth > 0:
            lo, hi = (-1.0 - self.b) / bandwidth, (1.0 - self.b) / bandwidth
            mean = truncnorm.mean(lo, hi, loc=self.b, scale=bandwidth)
            var = truncnorm.var(lo, hi, loc=self.b, scale=bandwidth)
        r_pi = C - K * (var + (mean - M) ** 2)
        p_pi = (BASE + mean[:, None] * DELTA) * (1.0 - STOP)[:, None]
        return value(r_pi, p_pi, gamma)


@dataclass
class Rollout:
    dataset: OfflineDataset
    returns: np.ndarray  # (E,) discounted returns of the logged episodes


def rollout(behaviour, num_episodes: int, rng: np.random.Generator, continuous: bool = False,
            gamma: float = 0.9, noise: float = 0.5, log_probs: bool = True) -> Rollout:
    """Run ``behaviour`` (stochastic: act(obs, deterministic=False)) for ``num_episodes``."""
    state = rng.choice(S, size=num_episodes, p=D0)
    alive = np.ones(num_episodes, dtype=bool)
    rows: dict[str, list] = {k: [] for k in ("episode", "obs", "action", "reward", "next", "terminal", "logp")}
    returns = np.zeros(num_episodes)
    discount = np.ones(num_episodes)
    while alive.any():
        index = np.flatnonzero(alive)
        s = state[index]
        obs = one_hot(s)
        action = behaviour.act(obs, deterministic=False)
        if continuous:
            a = action[:, 0]
            mean_reward = C[s] - K * (a - M[s]) ** 2
            move = BASE[s] + a[:, None] * DELTA[s]
        else:
            mean_reward = R[s, action]
            move = MOVE[s, action]
        reward = mean_reward + noise * rng.standard_normal(len(s))
        stop = rng.random(len(s)) < STOP[s]
        nxt = (rng.random((len(s), 1)) > np.cumsum(move, 1)).sum(1).clip(max=S - 1)
        returns[index] += discount[index] * reward
        discount[index] *= gamma
        rows["episode"].append(index)
        rows["obs"].append(obs)
        rows["action"].append(action)
        rows["reward"].append(reward)
        rows["next"].append(one_hot(nxt))
        rows["terminal"].append(stop)
        rows["logp"].append(behaviour.log_prob(obs, action))
        state[index] = nxt
        alive[index[stop]] = False
    episode = np.concatenate(rows["episode"])
    order = np.argsort(episode, kind="stable")

    def col(name: str) -> np.ndarray:
        return np.concatenate(rows[name])[order]

    starts = np.ones(len(order), dtype=bool)
    starts[1:] = episode[order][1:] != episode[order][:-1]
    spec = ActionSpec("continuous", dim=1) if continuous else ActionSpec("discrete", num_actions=2)
    dataset = OfflineDataset(
        observations=col("obs"), actions=col("action").astype(np.float32 if continuous else np.int64),
        rewards=col("reward").astype(np.float32), next_observations=col("next"),
        terminals=col("terminal"), truncations=np.zeros(len(order), dtype=bool), episode_starts=starts,
        action_spec=spec, behaviour_log_probs=col("logp").astype(np.float32) if log_probs else None)
    return Rollout(dataset, returns)
