"""Ground truth: a simulated A/B test of several policies on simulated users.

Each policy (an *arm*) serves one session to each user of its own group, on its own
simulator built by ``sim_factory()``; the groups are identically distributed, and no
simulator state is shared between arms. With ``common_random_numbers=True`` every arm
draws its users from the *same* seeds — the groups are statistical twins, so differences
between arms are measured with much less noise (a paired design); the streams diverge once
the arms act differently, so CRN is exact for the users and approximate afterwards. With
False every arm gets independent seeds, like a real A/B test.

``marl_rec`` does not import ``envs``: the simulator is duck-typed as the batched core of
``marl_rec.envs.simulator.UserSimulator`` — ``reset(batch_size, rng) -> obs``, ``step(action)``
returning an object with ``reward``, and the ``done`` mask. A policy is either an object
with ``act(obs, deterministic)`` (an algorithm; acted deterministically) or a callable
``policy(sim, obs)`` returning actions or an object with ``.action``
(``marl_rec.agents.policies``, which may read the simulator's state).

The value of an arm is the mean over its users of the session return Σ_t γ^t r_t
(``discounted``) and Σ_t r_t (``undiscounted``), t counting requests from the session's
start — the same quantity the OPE estimators estimate from episodes that start a session.
Intervals are normal-approximation intervals over users.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from marl_rec.ope.estimate import Estimate, check_confidence, normal_estimate
from marl_rec.parallel import check_num_workers, map_jobs


@dataclass
class ABArm:
    """One policy's results in the A/B test (per-user arrays in user order)."""

    name: str
    discounted: Estimate
    undiscounted: Estimate
    discounted_returns: np.ndarray
    returns: np.ndarray
    session_lengths: np.ndarray

    def value(self, discounted: bool = True) -> float:
        return (self.discounted if discounted else self.undiscounted).value

    def to_dict(self) -> dict[str, float | str]:
        return {"policy": self.name, "value": self.discounted.value, "ci_low": self.discounted.ci_low,
                "ci_high": self.discounted.ci_high, "undiscounted_value": self.undiscounted.value,
                "undiscounted_ci_low": self.undiscounted.ci_low,
                "undiscounted_ci_high": self.undiscounted.ci_high,
                "mean_session_length": float(self.session_lengths.mean()), "num_users": len(self.returns)}


def _as_session_policy(policy: Any) -> Callable[[Any, np.ndarray], np.ndarray]:
    if callable(getattr(policy, "act", None)):
        return lambda sim, obs: np.asarray(policy.act(obs, deterministic=True))
    if callable(policy):
        return lambda sim, obs: np.asarray(getattr(out := policy(sim, obs), "action", out))
    raise TypeError(f"a policy must have act(obs, deterministic) or be callable as policy(sim, obs); "
                    f"got {type(policy).__name__}")


def _run_group(sim: Any, act: Callable[[Any, np.ndarray], np.ndarray], num_users: int,
               rng: np.random.Generator, gamma: float, max_steps: int) -> tuple[np.ndarray, ...]:
    obs = sim.reset(num_users, rng)
    returns, discounted = np.zeros(num_users), np.zeros(num_users)
    discount = np.ones(num_users)
    lengths = np.zeros(num_users, dtype=np.int64)
    for _ in range(max_steps):
        active = ~np.asarray(sim.done, dtype=bool)
        if not active.any():
            return discounted, returns, lengths
        result = sim.step(act(sim, obs))
        reward = np.where(active, np.asarray(result.reward, dtype=np.float64), 0.0)
        returns += reward
        discounted += discount * reward
        discount = np.where(active, discount * gamma, discount)
        lengths += active
        obs = result.observation
    raise RuntimeError(f"sessions did not end within max_steps={max_steps} requests")


def simulated_ab_test(sim_factory: Callable[[], Any], policies: Mapping[str, Any], users_per_group: int,
                      seed: int, gamma: float = 0.99, confidence: float = 0.95,
                      common_random_numbers: bool = True, batch_size: int = 4096,
                      max_steps: int = 100_000, num_workers: int = 1) -> dict[str, ABArm]:
    """Run every policy on its own group of ``users_per_group`` simulated users (one session each).

    Users are simulated ``batch_size`` at a time, so memory stays bounded. Batch j of every
    arm is reset with ``np.random.default_rng(np.random.SeedSequence(seed).spawn(J)[j])``
    under CRN, and from ``SeedSequence([seed, arm_index + 1])`` children otherwise. Each arm
    runs its batches in order on a simulator of its own from ``sim_factory()``;
    ``num_workers > 1`` runs the arms on that many processes (:func:`marl_rec.parallel.map_jobs`)
    with the same results (a policy with its own generator included), provided no two arms
    share one stateful policy object (each arm's process starts from the policies' state at
    the call).
    """
    if users_per_group < 2:
        raise ValueError(f"users_per_group must be >= 2 (for an interval), got {users_per_group}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    if not policies:
        raise ValueError("policies is empty")
    check_confidence(confidence)
    check_num_workers(num_workers)
    sizes = [min(batch_size, users_per_group - start) for start in range(0, users_per_group, batch_size)]
    common = np.random.SeedSequence(seed).spawn(len(sizes))
    acts = [_as_session_policy(policy) for policy in policies.values()]
    seeds = [common if common_random_numbers else np.random.SeedSequence([seed, index + 1]).spawn(len(sizes))
             for index in range(len(acts))]

    def run_arm(arm: int) -> tuple[np.ndarray, ...]:
        sim = sim_factory()
        parts = [_run_group(sim, acts[arm], size, np.random.default_rng(s), gamma, max_steps)
                 for size, s in zip(sizes, seeds[arm])]
        return tuple(np.concatenate(column) for column in zip(*parts))

    arms = map_jobs(run_arm, len(acts), num_workers)
    results: dict[str, ABArm] = {}
    for name, (discounted, returns, lengths) in zip(policies, arms):
        results[name] = ABArm(name, normal_estimate(discounted, confidence, "ab_test"),
                              normal_estimate(returns, confidence, "ab_test_undiscounted"),
                              discounted, returns, lengths)
    return results


def paired_difference(arm: ABArm, baseline: ABArm, discounted: bool = True, confidence: float = 0.95) -> Estimate:
    """Mean per-user difference arm − baseline with its interval; meaningful for arms run
    with common random numbers (user i is the same simulated user in both)."""
    a = arm.discounted_returns if discounted else arm.returns
    b = baseline.discounted_returns if discounted else baseline.returns
    if a.shape != b.shape:
        raise ValueError(f"arms have different numbers of users ({a.size} vs {b.size})")
    return normal_estimate(a - b, confidence, f"{arm.name}-{baseline.name}")


def true_values(arms: Mapping[str, ABArm], discounted: bool = True) -> dict[str, float]:
    """{policy: true value} for :func:`marl_rec.ope.metrics.evaluate_policies`."""
    return {name: arm.value(discounted) for name, arm in arms.items()}


__all__ = ["ABArm", "paired_difference", "simulated_ab_test", "true_values"]
