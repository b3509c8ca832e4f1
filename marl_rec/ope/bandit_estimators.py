"""Closed-form bandit estimators (IPS, SNIPS, DM, DR, SNDR) with a reward model you bring.

The project's own DM and DR (:class:`~marl_rec.ope.FQEEstimator`,
:class:`~marl_rec.ope.DoublyRobustEstimator`) fit their reward model themselves. Here the
reward model is an input, as in the Open Bandit Pipeline: ``reward_model[i, a]`` (or
``[i, a, k]`` with positions) is the expected reward of action ``a`` for logged row ``i``
(at slot ``k``) — obp's ``estimated_rewards_by_reg_model``. The target policy is given the
same way: ``action_dist[i, a]`` (or ``[i, a, k]``) = π(a | x_i, k), obp's ``action_dist``.
With a third axis, row ``i`` reads slot ``positions[i]`` (the log's positions).

With w_i = π(a_i | x_i) / μ(a_i | x_i), q̂_i = reward_model[i, a_i] and
q̂_π(x_i) = Σ_a π(a | x_i) reward_model[i, a]:

- IPS   = mean(w_i r_i)
- SNIPS = Σ w_i r_i / Σ w_i
- DM    = mean(q̂_π(x_i))
- DR    = mean(q̂_π(x_i) + w_i (r_i - q̂_i))
- SNDR  = mean(q̂_π(x_i) + w_i / mean(w) · (r_i - q̂_i))

Each :class:`~marl_rec.ope.Estimate` has a normal-approximation interval over the per-row
terms (for SNIPS / SNDR the terms with mean(w) fixed, the usual linearisation).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from marl_rec.ope.bandit import BanditLog
from marl_rec.ope.estimate import Estimate, normal_estimate

ESTIMATORS = ("ips", "snips", "dm", "dr", "sndr")
_NEEDS_MODEL = ("dm", "dr", "sndr")


def _at_positions(array: np.ndarray, name: str, n: int, num_actions: int, positions: np.ndarray | None) -> np.ndarray:
    """(n, num_actions) view of a (n, num_actions) or (n, num_actions, slots) array."""
    array = np.asarray(array, dtype=np.float64)
    if array.ndim not in (2, 3) or array.shape[:2] != (n, num_actions):
        raise ValueError(f"{name} must have shape (n_rows, n_actions) = ({n}, {num_actions}) or "
                         f"(n_rows, n_actions, n_positions), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if array.ndim == 2:
        return array
    if positions is None:
        raise ValueError(f"{name} has a positions axis but the log has no positions")
    if positions.max() >= array.shape[2]:
        raise ValueError(f"{name} has {array.shape[2]} positions; the log has position {int(positions.max())}")
    return array[np.arange(n), :, positions]


def bandit_estimates(log: BanditLog, action_dist: np.ndarray, reward_model: np.ndarray | None = None,
                     estimators: Sequence[str] = ESTIMATORS, confidence: float = 0.95) -> dict[str, Estimate]:
    """The ``estimators`` of the target policy ``action_dist`` on a discrete-action bandit ``log``
    (module docstring); DM / DR / SNDR need ``reward_model``."""
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown:
        raise ValueError(f"unknown estimator(s) {unknown}; available: {list(ESTIMATORS)}")
    data = log.dataset
    if data.action_spec.kind != "discrete":
        raise ValueError("bandit_estimates needs discrete actions (the log's are continuous)")
    if data.behaviour_log_probs is None:
        raise ValueError("the log has no propensities (BanditSchema.propensity_column); IPS-type estimators need them")
    n, num_actions = len(data.rewards), int(data.action_spec.num_actions)
    rows, actions = np.arange(n), np.asarray(data.actions, dtype=np.int64)
    rewards = data.rewards.astype(np.float64)
    positions = log.positions
    pi = _at_positions(action_dist, "action_dist", n, num_actions, positions)
    if (pi < 0).any() or not np.allclose(pi.sum(1), 1.0, atol=1e-6):
        raise ValueError("action_dist must hold probabilities that sum to 1 over the actions of each row")
    w = pi[rows, actions] / np.exp(data.behaviour_log_probs.astype(np.float64))
    diagnostics = {"mean_weight": float(w.mean()), "effective_sample_size": float(w.sum() ** 2 / (w ** 2).sum())
                   if (w > 0).any() else 0.0}
    if reward_model is None and any(e in _NEEDS_MODEL for e in estimators):
        raise ValueError(f"{[e for e in estimators if e in _NEEDS_MODEL]} need a reward_model "
                         "(per-row, per-action expected rewards)")
    terms: dict[str, np.ndarray] = {}
    if reward_model is not None:
        q = _at_positions(reward_model, "reward_model", n, num_actions, positions)
        q_pi, q_logged = (pi * q).sum(1), q[rows, actions]
        terms.update(dm=q_pi, dr=q_pi + w * (rewards - q_logged))
        if w.sum() > 0:
            terms["sndr"] = q_pi + w / w.mean() * (rewards - q_logged)
    terms["ips"] = w * rewards
    if w.sum() > 0:
        terms["snips"] = w * rewards / w.mean()
    out = {}
    for name in estimators:
        if name not in terms:  # self-normalised with every weight 0: undefined
            out[name] = Estimate(float("nan"), float("nan"), float("nan"), name, confidence, num_samples=n,
                                 diagnostics=dict(diagnostics))
            continue
        out[name] = normal_estimate(terms[name], confidence, name, diagnostics)
    return out


__all__ = ["ESTIMATORS", "bandit_estimates"]
