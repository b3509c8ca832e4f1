"""How well a learned reward recovers the true one.

- :func:`pearson`, :func:`spearman`: correlation with the true reward on held-out
  state-action pairs (invariant to the positive affine rescaling every reward-learning
  method leaves unidentified).
- :func:`epic_distance`: the EPIC pseudometric of Gleave et al. (2021), "Quantifying
  differences in reward functions": canonicalise each reward so that potential shaping
  does not matter, then take the Pearson distance ``sqrt((1 - rho) / 2)`` (0 = same
  reward up to shaping and positive scale, 1 = opposite) over a coverage distribution.
- :func:`preference_accuracy`: how often a reward ranks held-out segment pairs the way
  the (true) preference does.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.stats import rankdata

# reward(obs, action, next_obs) -> (N,). "action" may be any per-transition array (for
# example the action concatenated with the logged behaviours).
TransitionReward = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same number of entries, got {x.size} and {y.size}")
    if x.size < 2:
        raise ValueError(f"need at least 2 entries to correlate, got {x.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x and y must be finite")
    return x, y


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; 0.0 when either input is constant (no linear relation to find)."""
    x, y = _pair(x, y)
    x = x - x.mean()
    y = y - y.mean()
    denom = np.sqrt((x @ x) * (y @ y))
    return float(x @ y / denom) if denom > 0 else 0.0


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    x, y = _pair(x, y)
    return pearson(rankdata(x), rankdata(y))


def pearson_distance(x: np.ndarray, y: np.ndarray) -> float:
    """``sqrt((1 - rho) / 2)`` in [0, 1]."""
    return float(np.sqrt(max(0.0, 1.0 - pearson(x, y)) / 2.0))


def canonicalize(reward: TransitionReward, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray,
                 state_samples: np.ndarray, action_samples: np.ndarray, gamma: float) -> np.ndarray:
    """EPIC canonical reward on the given transitions (Gleave et al., eq. 3):

    ``C(R)(s, a, s') = R(s, a, s') + E[γ R(s', A, S') − R(s, A, S') − γ R(S, A, S')]``

    with S, S' drawn from ``state_samples`` and A from ``action_samples`` (independently:
    the expectation runs over the product of the two sample sets). Potential shaping
    ``γ Φ(s') − Φ(s)`` cancels exactly, so rewards that differ only by shaping canonicalise
    to the same function (up to the sampling of the expectations).
    """
    n, m = len(obs), len(state_samples)
    if len(action_samples) != m:
        raise ValueError(f"state_samples and action_samples must have the same length, got {m} and "
                         f"{len(action_samples)}")
    # pair the sample sets once: (S_j, A_j, S'_j) with S' an independent permutation of S
    shuffled = state_samples[np.roll(np.arange(m), 1)]

    def mean_from(states: np.ndarray) -> np.ndarray:
        """E_{A, S'} R(s, A, S') for every s in ``states`` (one reward call per state block)."""
        repeated = np.repeat(states, m, axis=0)
        tiled_actions = np.tile(action_samples, (len(states), 1))
        tiled_next = np.tile(shuffled, (len(states), 1))
        return np.asarray(reward(repeated, tiled_actions, tiled_next), np.float64).reshape(len(states), m).mean(1)

    raw = np.asarray(reward(obs, action, next_obs), dtype=np.float64).reshape(n)
    mean_all = float(np.asarray(reward(state_samples, action_samples, shuffled), np.float64).mean())
    return raw + gamma * mean_from(next_obs) - mean_from(obs) - gamma * mean_all


def epic_distance(reward_a: TransitionReward, reward_b: TransitionReward, obs: np.ndarray,
                  action: np.ndarray, next_obs: np.ndarray, state_samples: np.ndarray,
                  action_samples: np.ndarray, gamma: float = 0.99) -> float:
    """EPIC distance between two rewards: Pearson distance of their canonical forms on the
    coverage transitions ``(obs, action, next_obs)``. Evaluates each reward on
    ``len(obs) · len(state_samples)`` inputs, so keep both in the hundreds."""
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    ca = canonicalize(reward_a, obs, action, next_obs, state_samples, action_samples, gamma)
    cb = canonicalize(reward_b, obs, action, next_obs, state_samples, action_samples, gamma)
    return pearson_distance(ca, cb)


def epic_distance_myopic(reward_a: np.ndarray, reward_a_probes: np.ndarray, reward_b: np.ndarray,
                         reward_b_probes: np.ndarray) -> float:
    """EPIC distance at discount 0, from tabulated rewards: ``reward_*`` (N,) on the coverage
    transitions, ``reward_*_probes`` (N, M) on M actions drawn from the coverage action
    distribution in the *same* state. At γ = 0 the canonical reward (:func:`canonicalize`)
    is ``R(s, a) − E_A R(s, A)`` (up to a constant): potential shaping is then a state-only
    offset, and it cancels. For rewards that need the simulator's hidden state to evaluate
    (the expected true utility), which :func:`epic_distance`'s callables cannot."""
    canonical = []
    for r, probes in ((reward_a, reward_a_probes), (reward_b, reward_b_probes)):
        r, probes = np.asarray(r, np.float64), np.asarray(probes, np.float64)
        if probes.ndim != 2 or probes.shape[0] != r.shape[0] or r.ndim != 1:
            raise ValueError(f"rewards must be (N,) with probes (N, M), got {r.shape} and {probes.shape}")
        canonical.append(r - probes.mean(1))
    return pearson_distance(*canonical)


def preference_accuracy(predicted_returns: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of a reward on preference pairs.

    ``predicted_returns``: (Q, 2) returns of the two segments of each pair under the learned
    reward; ``labels``: (Q,) probability that segment 0 is preferred (1.0, 0.0, or 0.5 for
    "equal", NaN for skipped). Pairs labelled equal or skipped are left out.
    """
    predicted_returns = np.asarray(predicted_returns, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if predicted_returns.ndim != 2 or predicted_returns.shape[1] != 2:
        raise ValueError(f"predicted_returns must have shape (Q, 2), got {predicted_returns.shape}")
    if labels.shape != (len(predicted_returns),):
        raise ValueError(f"labels must have shape ({len(predicted_returns)},), got {labels.shape}")
    decided = np.isfinite(labels) & (labels != 0.5)
    if not decided.any():
        raise ValueError("no decided (non-equal, non-skipped) pairs to score")
    prefers_first = predicted_returns[decided, 0] > predicted_returns[decided, 1]
    return float(np.mean(prefers_first == (labels[decided] > 0.5)))


__all__ = ["TransitionReward", "pearson", "spearman", "pearson_distance", "canonicalize",
           "epic_distance", "epic_distance_myopic", "preference_accuracy"]
