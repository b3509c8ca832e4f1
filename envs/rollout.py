"""Run whole sessions of a batch of simulated users under a policy: the simulator's ground truth."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from marl_rec.envs.simulator import SimulatorConfig, UserSimulator

# A policy here is anything callable as policy(sim, obs) returning an object with an
# ``action`` attribute (B, 4) — marl_rec.agents.policies.PolicyOutput — or a bare (B, 4) array.
SessionPolicy = Callable[[UserSimulator, np.ndarray], object]


@dataclass
class SessionStats:
    """Per-user results of one session each."""

    returns: np.ndarray  # (N,) undiscounted engagement
    discounted_returns: np.ndarray  # (N,)
    lengths: np.ndarray  # (N,) requests served
    first_rewards: np.ndarray  # (N,) engagement on the first request
    true_utility: np.ndarray  # (N,) summed true utility of consumed items
    ad_revenue: np.ndarray  # (N,)
    ads_shown: np.ndarray  # (N,)
    terminated: np.ndarray  # (N,) bool: the user left (vs truncated)

    def summary(self) -> dict[str, float]:
        return {
            "mean_return": float(self.returns.mean()),
            "return_se": float(self.returns.std(ddof=1) / np.sqrt(self.returns.size)) if self.returns.size > 1 else 0.0,
            "mean_length": float(self.lengths.mean()),
            "first_reward": float(self.first_rewards.mean()),
            "true_utility": float(self.true_utility.mean()),
            "ad_revenue": float(self.ad_revenue.mean()),
        }


def _action_of(output: object) -> np.ndarray:
    return np.asarray(getattr(output, "action", output))


def run_sessions(policy: SessionPolicy, num_users: int, rng: np.random.Generator,
                 config: SimulatorConfig | None = None, sim: UserSimulator | None = None,
                 gamma: float = 0.99, ad_policy: Callable[[UserSimulator, np.ndarray], np.ndarray] | None = None,
                 ) -> SessionStats:
    """Simulate one session for each of ``num_users`` users, all stepped as one batch.

    ``policy`` acts for every user at every request (its actions for users whose session
    already ended are ignored); ``ad_policy`` optionally returns (B,) ad slots. Pass a
    ``sim`` to reuse its world, else one is built from ``config``."""
    if num_users < 1:
        raise ValueError(f"num_users must be >= 1, got {num_users}")
    if sim is not None and config is not None and sim.config != config:
        raise ValueError("pass either a simulator or a config (they disagree), not both")
    sim = sim or UserSimulator(config)
    obs = sim.reset(num_users, rng)
    n = num_users
    returns, disc, utility, revenue, ads = (np.zeros(n) for _ in range(5))
    lengths = np.zeros(n, dtype=np.int64)
    first = np.zeros(n)
    terminated = np.zeros(n, dtype=bool)
    discount = np.ones(n)
    t = 0
    while not sim.done.all():
        action = _action_of(policy(sim, obs))
        ad_slot = ad_policy(sim, obs) if ad_policy is not None else None
        result = sim.step(action, ad_slot)
        active = result.info["active"]
        if t == 0:
            first = result.reward.copy()
        returns += result.reward
        disc += discount * result.reward
        discount = np.where(active, discount * gamma, discount)
        utility += result.info["true_utility"]
        revenue += result.info["ad_revenue"]
        ads += result.info["ad_shown"]
        lengths += active
        terminated |= result.terminated
        obs = result.observation
        t += 1
    return SessionStats(returns, disc, lengths, first, utility, revenue, ads, terminated)
