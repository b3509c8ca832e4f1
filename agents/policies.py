"""Reference and behaviour policies for the fusion-ranking simulator (numpy, no torch).

A policy maps the simulator's current batch to fusion actions in [-1, 1]^4:
``policy(sim, obs) -> PolicyOutput(action, log_prob)``. Policies may read the
simulator because the ranking system they model does. What each reads:

- :class:`MyopicGreedyPolicy`: the multi-task model's predictions of the candidates;
- :class:`ProductionPolicy` (the default ``expert`` pipeline): the predictions (incl.
  negative feedback, inverted to a utility estimate) and the observation (satisfaction
  signal, request index) — what a platform has, no hidden input;
- :class:`HeuristicExpertPolicy` (the ``oracle`` pipeline): the *true* responses, the true
  utility of every candidate and the true latent user state (satisfaction, patience) —
  which a learned policy never sees: logs it writes are confounded.

``log_prob`` is the exact log-density of the returned action under the policy (None for
a deterministic policy); the data pipelines store it as the behaviour log-probability.
"""

from __future__ import annotations

import itertools
from typing import Protocol

import numpy as np
from marl_rec.envs.simulator import ACTION_DIM, UserSimulator
from marl_rec.contracts import PolicyOutput
from marl_rec.distributions import truncated_normal_log_prob, truncated_normal_sample



class Policy(Protocol):
    def __call__(self, sim: UserSimulator, obs: np.ndarray) -> PolicyOutput: ...


def action_grid(values: tuple[float, ...] = (-1.0, 0.0, 1.0)) -> np.ndarray:
    """All fusion actions with every task weight taken from ``values``: 3 values -> 81 actions.
    The click weight is fixed (``UserSimulator.fusion_weights``), so distinct actions rank
    differently: there is no redundant direction to remove."""
    return np.array(list(itertools.product(values, repeat=ACTION_DIM)), dtype=np.float64)


class RandomPolicy:
    """Uniform actions on [-1, 1]^4; log-density -4·log 2."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def __call__(self, sim: UserSimulator, obs: np.ndarray) -> PolicyOutput:
        b = obs.shape[0]
        return PolicyOutput(self.rng.uniform(-1.0, 1.0, (b, ACTION_DIM)),
                            np.full(b, -ACTION_DIM * np.log(2.0)))


class ConstantPolicy:
    """The same fusion action for every request (the industry default of hand-tuned weights)."""

    def __init__(self, action: np.ndarray | list[float]) -> None:
        self.action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        if self.action.shape != (ACTION_DIM,):
            raise ValueError(f"ConstantPolicy action must have {ACTION_DIM} entries, got {self.action.shape}")

    def __call__(self, sim: UserSimulator, obs: np.ndarray) -> PolicyOutput:
        return PolicyOutput(np.broadcast_to(self.action, (obs.shape[0], ACTION_DIM)).copy(), None)


def grid_slates(sim: UserSimulator, grid: np.ndarray) -> np.ndarray:
    """(B, G, K) slates that each of the G grid actions would show each user (as ``sim.rank``)."""
    k = sim.config.slate_size
    negative_weights = -sim.fusion_weights(grid).astype(np.float32)  # (G, 5)
    scores = np.matmul(negative_weights, sim.cand_log_pred.transpose(0, 2, 1))  # (B, G, C)
    return np.argsort(scores, axis=2)[..., :k]


class MyopicGreedyPolicy:
    """Per request, the grid action whose slate maximises the *predicted* immediate reward."""

    def __init__(self, grid: np.ndarray | None = None) -> None:
        self.grid = action_grid() if grid is None else np.asarray(grid, dtype=np.float64)

    def __call__(self, sim: UserSimulator, obs: np.ndarray) -> PolicyOutput:
        expected = sim.slate_expectations(grid_slates(sim, self.grid), use_true=False)
        return PolicyOutput(self.grid[np.argmax(expected["reward"], axis=1)], None)


def _lookahead_action(sim: UserSimulator, grid: np.ndarray, expected: dict[str, np.ndarray],
                      satisfaction: np.ndarray, patience: np.ndarray, request: np.ndarray,
                      foresight: float) -> np.ndarray:
    """The grid action maximising ``E[r | a] + foresight · (V(s + E[Δs | a]) - V(s))``.

    Satisfaction is valued by the expected number of remaining requests it buys: with leave
    probability p(s) per request and R requests left, a user stays ``(1 - (1 - p)^R) / p`` more
    requests, each worth about the mean expected reward ``r̄`` of the grid."""
    c = sim.config

    def remaining_value(s: np.ndarray, remaining: np.ndarray) -> np.ndarray:
        hazard = 1.0 / (1.0 + np.exp(-c.leave_slope * (c.leave_threshold - s)))
        p = np.clip((c.base_leave + (1 - c.base_leave) * hazard) * (1.5 - patience[:, None]), 1e-6, 1.0)
        return (1.0 - (1.0 - p) ** remaining) / p

    delta = (c.satisfaction_gain * expected["utility"] - c.no_click_penalty * expected["no_click"]
             - c.satisfaction_decay)
    sat = satisfaction[:, None]
    remaining = (c.max_requests - request - 1)[:, None].astype(np.float64)
    mean_reward = expected["reward"].mean(1, keepdims=True)
    gain = mean_reward * (remaining_value(np.clip(sat + delta, 0, 1), remaining) - remaining_value(sat, remaining))
    return grid[np.argmax(expected["reward"] + foresight * gain, axis=1)]


class HeuristicExpertPolicy:
    """The oracle: a one-step lookahead on the *true* responses, the true utility of every
    candidate and the true latent user state (satisfaction, patience) — see
    :func:`_lookahead_action`. No platform has these inputs; logs it writes are confounded
    (the ``oracle`` pipeline)."""

    def __init__(self, grid: np.ndarray | None = None, foresight: float = 1.0) -> None:
        self.grid = action_grid() if grid is None else np.asarray(grid, dtype=np.float64)
        self.foresight = foresight

    def __call__(self, sim: UserSimulator, obs: np.ndarray) -> PolicyOutput:
        s = sim.state
        expected = sim.slate_expectations(grid_slates(sim, self.grid), use_true=True)
        action = _lookahead_action(sim, self.grid, expected, s["satisfaction"], s["patience"], s["request"],
                                   self.foresight)
        return PolicyOutput(action, None)


class ProductionPolicy:
    """The production lookahead: the same rule as the oracle on what the platform has — the
    multi-task model's predictions (the utility of each candidate estimated from its
    negative-feedback prediction, :meth:`UserSimulator.predicted_utility`), the observed
    satisfaction signal (last observation entry) in place of satisfaction, the request index,
    and the population's mean patience. No hidden input."""

    def __init__(self, grid: np.ndarray | None = None, foresight: float = 1.0) -> None:
        self.grid = action_grid() if grid is None else np.asarray(grid, dtype=np.float64)
        self.foresight = foresight

    def __call__(self, sim: UserSimulator, obs: np.ndarray) -> PolicyOutput:
        c = sim.config
        obs = np.asarray(obs)
        expected = sim.slate_expectations(grid_slates(sim, self.grid), use_true=False,
                                          utility=sim.predicted_utility())
        satisfaction = obs[:, -1].astype(np.float64)
        request = np.rint(obs[:, -5].astype(np.float64) * c.max_requests)
        patience = np.full(obs.shape[0], 0.75)  # the population mean (uniform on [0.5, 1])
        return PolicyOutput(_lookahead_action(sim, self.grid, expected, satisfaction, patience, request,
                                              self.foresight), None)


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


__all__ = ["PolicyOutput", "Policy", "action_grid", "grid_slates", "RandomPolicy",
           "ConstantPolicy", "MyopicGreedyPolicy", "HeuristicExpertPolicy", "ProductionPolicy", "GaussianNoisePolicy"]
