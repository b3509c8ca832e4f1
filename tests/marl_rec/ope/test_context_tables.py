"""The OPE context computes the tables DR and WDR share once (Q̂(s_t, a_t), V̂(s_t), the log
importance ratios) for a policy, model and smoothing, and the estimates are bit for bit the ones
each estimator gives on a context of its own."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from ope_mdp import (
    DeterministicContinuous,
    DeterministicTabular,
    GaussianBehaviour,
    TabularPolicy,
    rollout,
)

from marl_rec.ope import (
    DoublyRobustConfig,
    DoublyRobustEstimator,
    FQEConfig,
    FQEEstimator,
    ImportanceConfig,
    ImportanceSamplingEstimator,
    OPEContext,
)
from marl_rec.ope.fqe import FittedQ
from marl_rec.ope.policy import (
    ActionMemo,
    EpsilonGreedyPolicy,
    GaussianSmoothedPolicy,
    NativeStochasticPolicy,
)

torch.set_num_threads(1)
GAMMA = 0.9
TINY_FQE = FQEConfig(hidden=(16,), num_critics=2, learning_rate=3e-3, batch_size=64, num_updates=50,
                     num_bootstrap=50)


def _data(continuous: bool):
    behaviour = (GaussianBehaviour([0.0, 0.2, -0.2], 0.5, seed=2) if continuous
                 else TabularPolicy([[0.5, 0.5], [0.6, 0.4], [0.3, 0.7]], seed=1))
    return rollout(behaviour, 200, np.random.default_rng(0), continuous=continuous, gamma=GAMMA).dataset


def _estimators(fqe: FQEConfig) -> dict:
    return {"fqe": FQEEstimator(fqe),
            # its own fit, which acts at the logged states and next states too
            "cfqe": FQEEstimator(FQEConfig(**{**fqe.__dict__, "conservative_weight": 0.03})),
            "dr": DoublyRobustEstimator(DoublyRobustConfig(fqe=fqe, num_bootstrap=50)),
            # other interval settings, the same model: shares the tables
            "wdr": DoublyRobustEstimator(DoublyRobustConfig(weighted=True, fqe=fqe, num_bootstrap=70,
                                                            confidence=0.9)),
            "wpdis": ImportanceSamplingEstimator(ImportanceConfig(num_bootstrap=50))}


@pytest.mark.parametrize("continuous, episode_bootstrap", [(True, False), (False, False), (True, True)],
                         ids=["continuous", "discrete", "bootstrap-refits"])
def test_estimates_on_a_shared_context_are_those_of_a_context_each(continuous, episode_bootstrap):
    data = _data(continuous)
    policy = DeterministicContinuous([0.4, -0.2, 0.1]) if continuous else DeterministicTabular(np.array([0, 1, 1]))
    fqe = FQEConfig(**{**TINY_FQE.__dict__, "episode_bootstrap": episode_bootstrap,
                       "num_critics": 3 if episode_bootstrap else 2})
    shared = OPEContext(data, GAMMA)
    together = {name: e.estimate(shared, policy).to_dict() for name, e in _estimators(fqe).items()}
    alone = {name: e.estimate(OPEContext(data, GAMMA), policy).to_dict() for name, e in _estimators(fqe).items()}
    np.testing.assert_equal(together, alone)  # every figure bit for bit (NaN equal to NaN)
    kinds = Counter(key[1][0] for key in shared._tables)
    # Q̂, V̂, the log-ratios once each; the policy's actions at the states, next states, start states
    assert kinds == {"q_logged": 1, "v_target": 1, "log_ratios": 1, "actions": 3}


def _counting(monkeypatch, counts: Counter, cls, method: str, rows_of) -> None:
    original = getattr(cls, method)

    def counted(self, *args, **kwargs):
        counts[(method, rows_of(*args))] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, method, counted)


@pytest.mark.parametrize("continuous", [True, False], ids=["continuous", "discrete"])
def test_the_second_doubly_robust_estimator_does_not_recompute_the_tables(monkeypatch, continuous):
    data = _data(continuous)
    n = len(data)
    policy = DeterministicContinuous([0.4, -0.2, 0.1]) if continuous else DeterministicTabular(np.array([0, 1, 1]))
    target = GaussianSmoothedPolicy if continuous else EpsilonGreedyPolicy
    counts: Counter = Counter()
    _counting(monkeypatch, counts, FittedQ, "q_values", lambda obs, actions: len(obs))
    _counting(monkeypatch, counts, FittedQ, "state_values", lambda obs, table: len(obs))
    _counting(monkeypatch, counts, target, "log_prob", lambda obs, actions: len(obs))
    context = OPEContext(data, GAMMA)
    estimators = _estimators(TINY_FQE)
    estimators["dr"].estimate(context, policy)
    estimators["wdr"].estimate(context, policy)
    estimators["wpdis"].estimate(context, policy)  # the same smoothing: the same log-ratios
    dataset_calls = {key: count for key, count in counts.items() if key[1] == n}
    assert dataset_calls == {("q_values", n): 1, ("state_values", n): 1, ("log_prob", n): 1}
    assert counts[("state_values", context.initial_observations.shape[0])] == 2  # model_value: each its own
    context.clear_policy_cache()  # the policy may have changed: computed again
    estimators["wdr"].estimate(context, policy)
    assert counts[("q_values", n)] == 2 and counts[("state_values", n)] == 2


def test_a_natively_stochastic_policys_tables_are_not_cached(monkeypatch):
    """Its samples come from its own random stream, which each estimate advances: computing V̂
    again gives other values, as it did before the cache."""
    data = _data(continuous=True)
    policy = GaussianBehaviour([0.3, 0.0, -0.1], 0.3, seed=5)
    counts: Counter = Counter()
    _counting(monkeypatch, counts, FittedQ, "state_values", lambda obs, table: len(obs))
    _counting(monkeypatch, counts, NativeStochasticPolicy, "log_prob", lambda obs, actions: len(obs))
    context = OPEContext(data, GAMMA)
    estimators = _estimators(TINY_FQE)
    estimators["dr"].estimate(context, policy)
    estimators["wdr"].estimate(context, policy)
    assert counts[("state_values", len(data))] == 2 and counts[("log_prob", len(data))] == 2
    assert [key[1][0] for key in context._tables] == ["q_logged"]  # Q̂ at the logged actions: no sampling


class CountingPolicy(DeterministicContinuous):
    def __init__(self, b) -> None:
        super().__init__(b)
        self.rows = 0

    def act(self, obs, deterministic=True):
        self.rows += len(obs)
        return super().act(obs, deterministic)


def test_a_pass_asks_a_deterministic_policy_for_its_action_at_each_state_once():
    """FQE's and conservative FQE's fits (next states; states for the penalty), WDR's smoothing
    (states, twice: density and samples) and the values at the start states: once each."""
    data = _data(continuous=True)
    policy = CountingPolicy([0.4, -0.2, 0.1])
    context = OPEContext(data, GAMMA)
    for name in ("fqe", "cfqe", "wdr"):
        _estimators(TINY_FQE)[name].estimate(context, policy)
    assert policy.rows == 2 * len(data) + len(context.initial_observations)
    with pytest.raises(ValueError, match="ActionMemo is for deterministic policies"):
        ActionMemo(GaussianBehaviour([0.0, 0.0, 0.0], 0.3), {}, lambda key, compute: compute())
