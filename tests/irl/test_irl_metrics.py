"""Reward-recovery metrics: correlations, EPIC distance, held-out preference accuracy."""

import numpy as np
import pytest
from scipy import stats

from marl_rec.irl.metrics import (canonicalize, epic_distance, epic_distance_myopic, pearson, preference_accuracy,
                                  spearman)


def test_correlations_match_scipy_and_handle_constants():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    y = x**3 + rng.normal(size=200)
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0])
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])
    ties = np.array([1, 1, 2, 3, 3, 3.0])
    assert spearman(ties, ties[::-1]) == pytest.approx(stats.spearmanr(ties, ties[::-1])[0])
    assert pearson(np.ones(5), np.arange(5)) == 0.0
    with pytest.raises(ValueError, match="same number"):
        pearson(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="finite"):
        spearman(np.array([1.0, np.nan]), np.array([1.0, 2.0]))


def _linear(w):
    return lambda s, a, s2: np.asarray(s) @ w[:3] + np.asarray(a) @ w[3:]


def test_epic_ignores_shaping_and_scale_and_sees_sign():
    rng = np.random.default_rng(1)
    w = rng.normal(size=5)
    base = _linear(w)
    potential_w = rng.normal(size=3)
    gamma = 0.9

    def shaped(s, a, s2):  # 3·R + γΦ(s') − Φ(s) with a nonlinear potential
        return 3.0 * base(s, a, s2) + gamma * np.tanh(s2 @ potential_w) - np.tanh(s @ potential_w)

    obs, act, nxt = rng.normal(size=(300, 3)), rng.normal(size=(300, 2)), rng.normal(size=(300, 3))
    states, actions = rng.normal(size=(128, 3)), rng.normal(size=(128, 2))
    assert epic_distance(base, shaped, obs, act, nxt, states, actions, gamma) < 1e-6
    negated = lambda s, a, s2: -base(s, a, s2)  # noqa: E731
    assert epic_distance(base, negated, obs, act, nxt, states, actions, gamma) == pytest.approx(1.0, abs=1e-6)
    other = _linear(rng.normal(size=5))
    d = epic_distance(base, other, obs, act, nxt, states, actions, gamma)
    assert 0.05 < d < 0.95
    # a shaped reward alone (no real reward) canonicalises to a constant: nothing left to correlate
    pure = lambda s, a, s2: gamma * np.tanh(s2 @ potential_w) - np.tanh(s @ potential_w)  # noqa: E731
    assert np.ptp(canonicalize(pure, obs, act, nxt, states, actions, gamma)) < 1e-9
    with pytest.raises(ValueError, match="same length"):
        canonicalize(base, obs, act, nxt, states, actions[:5], gamma)


def test_preference_accuracy_skips_equal_and_skipped():
    returns = np.array([[2.0, 1.0], [0.0, 1.0], [5.0, 4.0], [1.0, 2.0], [3.0, 3.5]])
    labels = np.array([1.0, 0.0, 0.0, 0.5, np.nan])
    assert preference_accuracy(returns, labels) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="no decided"):
        preference_accuracy(returns[3:], labels[3:])
    with pytest.raises(ValueError, match=r"\(Q, 2\)"):
        preference_accuracy(np.ones(3), np.ones(3))


def test_epic_myopic_cancels_state_offsets_and_matches_epic_at_gamma_zero():
    rng = np.random.default_rng(0)
    n, m = 300, 40
    obs, act = rng.normal(size=(n, 2)), rng.uniform(-1, 1, (n, 1))
    probes = rng.uniform(-1, 1, (n, m, 1))

    def reward(o, a):
        return np.sin(3 * a[..., 0]) * (1 + o[..., 0] ** 2)

    r, r_probes = reward(obs, act), reward(obs[:, None], probes)
    offset = 5 * obs[:, 1] ** 3  # a state-only term: potential shaping at discount 0
    assert epic_distance_myopic(r + offset, r_probes + offset[:, None], r, r_probes) < 1e-9
    assert epic_distance_myopic(-r, -r_probes, r, r_probes) == pytest.approx(1.0)
    # the same number as epic_distance at gamma 0 when the probes are the coverage actions of every state
    shared = rng.uniform(-1, 1, (m, 1))
    tab = reward(obs[:, None], np.broadcast_to(shared, (n, m, 1)))
    other = lambda o, a: np.cos(2 * a[..., 0]) + o[..., 0]  # noqa: E731
    tab_other = other(obs[:, None], np.broadcast_to(shared, (n, m, 1)))
    wrap = lambda f: (lambda o, a, nxt: f(o, a))  # noqa: E731
    expected = epic_distance(wrap(reward), wrap(other), obs, act, obs, obs[:m], shared, gamma=0.0)
    assert epic_distance_myopic(r, tab, other(obs, act), tab_other) == pytest.approx(expected, abs=1e-9)
    with pytest.raises(ValueError, match="probes"):
        epic_distance_myopic(r, r_probes[:-1], r, r_probes)
