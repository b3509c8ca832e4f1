"""The two learned controllers together, and their evaluation over whole simulated lifetimes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from marl_rec.envs.hierarchical import (HierarchicalConfig, LifetimeStats,
                                        run_lifetimes)
from marl_rec.envs.simulator import UserSimulator
from marl_rec.algos.base import OfflineAlgorithm


class HierarchicalAgent:
    """The learned pair as :func:`run_lifetimes` policies: ``goal_policy`` (long-term
    observation → goal action) and ``short_term_policy`` (observation + goal → fusion action),
    both greedy."""

    def __init__(self, long_term: OfflineAlgorithm, short_term: OfflineAlgorithm) -> None:
        self.long_term, self.short_term = long_term, short_term

    def goal_policy(self, sim: UserSimulator, obs: np.ndarray) -> np.ndarray:
        return self.long_term.act(obs, deterministic=True)

    def short_term_policy(self, sim: UserSimulator, obs: np.ndarray) -> np.ndarray:
        return self.short_term.act(obs, deterministic=True)


def greedy(algorithm: OfflineAlgorithm) -> Callable[[UserSimulator, np.ndarray], np.ndarray]:
    """``algorithm``'s greedy policy as a ``policy(sim, obs)`` callable."""
    return lambda sim, obs: algorithm.act(obs, deterministic=True)


PolicyPair = tuple[Callable | None, Callable]


class LifetimeEvaluator:
    """A :class:`marl_rec.trainer.Trainer` hook: whole lifetimes of the same ``num_users``
    users (``numpy.random.default_rng(seed)`` at every call) under ``policies(algorithm)`` →
    ``(goal_policy or None, short_term_policy)``. Returns ``retention`` (sessions per user),
    ``lifetime_engagement``, ``session_length`` and, with a goal policy, ``goal_error``."""

    def __init__(self, sim: UserSimulator, config: HierarchicalConfig, num_users: int, seed: int,
                 policies: Callable[[OfflineAlgorithm], PolicyPair]) -> None:
        if num_users < 1:
            raise ValueError(f"LifetimeEvaluator.num_users must be >= 1, got {num_users}")
        self.sim, self.config, self.num_users, self.seed, self.policies = sim, config, num_users, seed, policies

    def __call__(self, algorithm: OfflineAlgorithm, step: int) -> dict[str, float]:
        goal_policy, short_term_policy = self.policies(algorithm)
        stats = run_lifetimes(short_term_policy, self.num_users, np.random.default_rng(self.seed), goal_policy,
                              self.config, sim=self.sim)
        return lifetime_metrics(stats)


def lifetime_metrics(stats: LifetimeStats) -> dict[str, float]:
    """The experiment's three figures (plus goal error when a goal policy ran)."""
    summary = stats.summary()
    out = {"retention": summary["sessions_per_user"], "lifetime_engagement": summary["lifetime_engagement"],
           "session_length": summary["mean_session_length"]}
    if np.isfinite(summary["goal_error"]):
        out["goal_error"] = summary["goal_error"]
    return out
