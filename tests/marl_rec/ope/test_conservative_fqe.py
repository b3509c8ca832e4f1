"""Conservative FQE, two-sided, on the synthetic MDP with closed-form values (tests/helpers/ope_mdp.py).

A lower bound is only useful if it is tight where the data supports the policy and finite
where it does not: an estimator that returns 0 (or the floor) for every policy is "below the
truth" too. So:
* at the behaviour policy (the penalty's two terms cancel in expectation) conservative FQE is
  within 3% of plain FQE, and the same bar rejects a policy off the data (control);
* off the data it is below the exact value, above the a-priori floor (no estimate clipped to
  it), and its pessimism grows with the distance from the logged actions.
"""

from __future__ import annotations

import numpy as np
import pytest
from ope_mdp import (
    DeterministicContinuous,
    DeterministicTabular,
    GaussianBehaviour,
    TabularPolicy,
    rollout,
)

from marl_rec.data.dataset import OfflineDataset
from marl_rec.ope import FQEConfig, FQEEstimator, OPEContext, relative_error

GAMMA = 0.9
MU = [[0.5, 0.5], [0.6, 0.4], [0.3, 0.7]]
BEHAVIOUR_MEAN = [0.0, 0.2, -0.2]
FQE = FQEConfig(hidden=(32,), num_critics=2, learning_rate=3e-3, batch_size=256, num_updates=600, tau=0.05,
                num_bootstrap=200)
CONSERVATIVE = FQEConfig(**{**FQE.__dict__, "conservative_weight": 1.0})
GREEDY = DeterministicTabular(np.array([0, 1, 1]))  # exact value 3.81; behaviour 2.07


@pytest.fixture(scope="module")
def discrete_data() -> OfflineDataset:
    return rollout(TabularPolicy(MU, seed=1), 3000, np.random.default_rng(0), gamma=GAMMA).dataset


@pytest.fixture(scope="module")
def continuous_data() -> OfflineDataset:
    return rollout(GaussianBehaviour(BEHAVIOUR_MEAN, 0.5, seed=2), 3000, np.random.default_rng(1), continuous=True,
                   gamma=GAMMA).dataset


_FITS: dict = {}  # one fit per (dataset, policy, config) for the whole module


def estimate(data: OfflineDataset, policy, config: FQEConfig):
    key = (id(data), policy, config)  # the key keeps the policy alive: ids are not reused
    if key not in _FITS:
        _FITS[key] = FQEEstimator(config).estimate(OPEContext(data, GAMMA), policy)
    return _FITS[key]


def test_conservative_fqe_is_tight_at_the_behaviour_policy(discrete_data, continuous_data) -> None:
    behaviour = TabularPolicy(MU, seed=3)
    fqe, conservative = (estimate(discrete_data, behaviour, c).value for c in (FQE, CONSERVATIVE))
    assert relative_error(conservative, fqe) <= 0.03, (conservative, fqe)
    assert relative_error(conservative, behaviour.true_value(GAMMA)) <= 0.05
    # continuous: the behaviour's own truncated Gaussian as a stochastic target
    behaviour = GaussianBehaviour(BEHAVIOUR_MEAN, 0.5, seed=4)
    fqe, conservative = (estimate(continuous_data, behaviour, c).value for c in (FQE, CONSERVATIVE))
    assert relative_error(conservative, fqe) <= 0.03, (conservative, fqe)
    # control: the same bar rejects a policy the data supports less (its penalty does not cancel)
    fqe, conservative = (estimate(discrete_data, GREEDY, c).value for c in (FQE, CONSERVATIVE))
    assert relative_error(conservative, fqe) > 0.2, (conservative, fqe)


def test_conservative_fqe_is_below_the_truth_and_above_the_floor_off_the_data(discrete_data, continuous_data) -> None:
    result = estimate(discrete_data, GREEDY, CONSERVATIVE)
    conservative, at_floor = result.value, result.diagnostics["fraction_at_floor"]
    truth, floor = GREEDY.true_value(GAMMA), min(0.0, float(discrete_data.rewards.min())) / (1 - GAMMA)
    assert floor + 0.5 * (truth - floor) < conservative < truth and at_floor == 0.0, (conservative, truth, floor)
    # deterministic continuous targets ever further from the logged actions (behaviour σ = 0.5)
    floor = min(0.0, float(continuous_data.rewards.min())) / (1 - GAMMA)
    pessimism = []
    for b in (BEHAVIOUR_MEAN, [0.5, -0.3, 0.4], [0.9, -0.7, 0.8]):
        target = DeterministicContinuous(b)
        result = estimate(continuous_data, target, CONSERVATIVE)
        conservative, at_floor = result.value, result.diagnostics["fraction_at_floor"]
        truth = target.true_value(GAMMA)
        assert floor + 0.5 * (truth - floor) < conservative < truth and at_floor == 0.0, (b, conservative, truth)
        pessimism.append(truth - conservative)
    assert pessimism[0] < pessimism[1] < pessimism[2], pessimism
