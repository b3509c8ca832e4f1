"""Reference and behaviour policies for the fusion-ranking simulator (numpy, no torch).

A policy maps the simulator's current batch to fusion actions in [-1, 1]^4:
``policy(sim, obs) -> PolicyOutput(action, log_prob)``. Policies may read the
simulator because the ranking system they model does: the myopic policy reads the
multi-task model's predictions of the candidates, the heuristic expert additionally
reads the *true* latent user state (which a learned policy never sees).

``log_prob`` is the exact log-density of the returned action under the policy (None for
a deterministic policy); the data pipelines store it as the behaviour log-probability.
"""

from __future__ import annotations

import itertools
from typing import Protocol

import numpy as np
from marl_rec.envs.simulator import NUM_TASKS, UserSimulator
from marl_rec.contracts import PolicyOutput
from marl_rec.distributions import truncated_normal_log_prob, truncated_normal_sample



class Policy(Protocol):
    def __call__(self, sim: UserSimulator, obs: np.ndarray) -> PolicyOutput: ...


def action_grid(values: tuple[float, ...] = (-1.0, 0.0, 1.0)) -> np.ndarray:
    """All fusion actions with every task weight taken from ``values``: 3 values -> 81 actions."""
    return np.array(list(itertools.product(values, repeat=NUM_TASKS)), dtype=np.float64)


def distinct_action_grid(values: tuple[float, ...] = (-1.0, 0.0, 1.0)) -> np.ndarray:
    """``action_grid`` without actions that rank identically. The weights ``w = 10 ** a`` only
    matter up to scale, so ``a`` and ``a + c·1`` rank every slate alike; each class is kept
    once, shifted so that its largest entry is 1 (3 values -> 65 actions)."""
    grid = action_grid(values)
    shifted = np.round(grid - grid.max(1, keepdims=True) + 1.0, 12)
    return np.unique(shifted[(shifted >= -1.0).all(1)], axis=0)


class RandomPolicy:
    """Uniform actions on [-1, 1]^4; log-density -4·log 2."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def __call__(self, sim: UserSimulator, obs: np.ndarray) -> PolicyOutput:
        b = obs.shape[0]
        return PolicyOutput(self.rng.uniform(-1.0, 1.0, (b, NUM_TASKS)),
                            np.full(b, -NUM_TASKS * np.log(2.0)))


class ConstantPolicy:
    """The same fusion action for every request (the industry default of hand-tuned weights)."""

    def __init__(self, action: np.ndarray | list[float]) -> None:
        self.action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        if self.action.shape != (NUM_TASKS,):
            raise ValueError(f"ConstantPolicy action must have {NUM_TASKS} entries, got {self.action.shape}")

    def __call__(self, sim: UserSimulator, obs: np.ndarray) -> PolicyOutput:
        return PolicyOutput(np.broadcast_to(self.action, (obs.shape[0], NUM_TASKS)).copy(), None)


def grid_slates(sim: UserSimulator, grid: np.ndarray) -> np.ndarray:
    """(B, G, K) slates that each of the G grid actions would show each user (as ``sim.rank``)."""
    k = sim.config.slate_size
    negative_weights = -sim.fusion_weights(grid).astype(np.float32)  # (G, 4)
    scores = np.matmul(negative_weights, sim.cand_log_pred.transpose(0, 2, 1))  # (B, G, C)
    return np.argsort(scores, axis=2)[..., :k]


class MyopicGreedyPolicy:
    """Per request, the grid action whose slate maximises the *predicted* immediate reward."""

    def __init__(self, grid: np.ndarray | None = None) -> None:
        self.grid = action_grid() if grid is None else np.asarray(grid, dtype=np.float64)

    def __call__(self, sim: UserSimulator, obs: np.ndarray) -> PolicyOutput:
        expected = sim.slate_expectations(grid_slates(sim, self.grid), use_true=False)
        return PolicyOutput(self.grid[np.argmax(expected["reward"], axis=1)], None)


class HeuristicExpertPolicy:
    """One-step lookahead on the *true* user state.

    For each grid action it computes the true expected reward of its slate and the
    expected change of satisfaction, and values satisfaction by the expected number of
    remaining requests it buys: with leave probability p(s) per request and R requests
    left, a user stays ``(1 - (1 - p)^R) / p`` more requests, each worth about the mean
    expected reward ``r̄`` of the grid. It picks ``argmax_a E[r | a] + V(s + E[Δs | a]) - V(s)``.
    """

    def __init__(self, grid: np.ndarray | None = None, foresight: float = 1.0) -> None:
        self.grid = action_grid() if grid is None else np.asarray(grid, dtype=np.float64)
        self.foresight = foresight

    def _remaining_value(self, sim: UserSimulator, satisfaction: np.ndarray,
                         remaining: np.ndarray) -> np.ndarray:
        c = sim.config
        hazard = 1.0 / (1.0 + np.exp(-c.leave_slope * (c.leave_threshold - satisfaction)))
        patience = sim.state["patience"][:, None]
        p = np.clip((c.base_leave + (1 - c.base_leave) * hazard) * (1.5 - patience), 1e-6, 1.0)
        return (1.0 - (1.0 - p) ** remaining) / p

    def __call__(self, sim: UserSimulator, obs: np.ndarray) -> PolicyOutput:
        c, s = sim.config, sim.state
        expected = sim.slate_expectations(grid_slates(sim, self.grid), use_true=True)
        delta = (c.satisfaction_gain * expected["utility"] - c.no_click_penalty * expected["no_click"]
                 - c.satisfaction_decay)
        sat = s["satisfaction"][:, None]
        remaining = (c.max_requests - s["request"] - 1)[:, None].astype(np.float64)
        mean_reward = expected["reward"].mean(1, keepdims=True)
        gain = mean_reward * (self._remaining_value(sim, np.clip(sat + delta, 0, 1), remaining)
                              - self._remaining_value(sim, sat, remaining))
        score = expected["reward"] + self.foresight * gain
        return PolicyOutput(self.grid[np.argmax(score, axis=1)], None)


class GaussianNoisePolicy:
    """A base policy plus truncated-Gaussian noise on [-1, 1]^4 with std ``sigma``.

    Truncation (rather than clipping) keeps the density exact, so the recorded behaviour
    log-probabilities are correct importance-sampling denominators.
    """

    def __init__(self, base: Policy, sigma: float, rng: np.random.Generator) -> None:
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.base, self.sigma, self.rng = base, sigma, rng

    def __call__(self, sim: UserSimulator, obs: np.ndarray) -> PolicyOutput:
        mean = self.base(sim, obs).action
        action = truncated_normal_sample(mean, self.sigma, self.rng)
        return PolicyOutput(action, truncated_normal_log_prob(action, mean, self.sigma))


__all__ = ["PolicyOutput", "Policy", "action_grid", "distinct_action_grid", "grid_slates", "RandomPolicy",
           "ConstantPolicy", "MyopicGreedyPolicy", "HeuristicExpertPolicy", "GaussianNoisePolicy"]
