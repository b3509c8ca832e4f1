"""Learning bars a broken learner fails: each offline learner beats the data's deterministic
clone (and, continuous, behaviour cloning trained on the same data with the same budget),
over two seeds, on MDPs whose policy values are exact (tests/helpers/ope_mdp.py).

The bar is the clone, not the behaviour policy: cloning the most likely logged action already
beats a noisy behaviour, so "beats the behaviour" is passed by a learner that only imitates.
Controls show the bar discriminates: the same learner with its policy-improvement step
switched off (discrete BCQ with threshold 1 may only take the imitation network's argmax;
discrete CQL with an overwhelming penalty) lands on the clone and fails it.

Discrete data: in state 0 the behaviour never takes action 1; in states 1 and 2 it prefers
action 0 (0.6 vs 0.4), though action 1 pays more there. The clone (0, 0, 0) is worth 1.36,
the best policy (0, 1, 1) 3.81.

Continuous data: a ~ N(b_s, 0.5²) truncated to [-1, 1] around b = (0, 0.2, -0.2), worth 2.52
as a deterministic policy; the reward peaks elsewhere (the best constant-per-state policy is
worth about 3.4). BCQ, UWAC and CQL must clear the clone and BC by 0.1. CQL runs at α = 1 here: at
the rec preset's α = 5 it stays at the clone on this wide-coverage data (2.40 / 2.54 measured, with
the greedy action tanh(μ)). Its control is CQL without its penalty (α = 0), paired by seed: it must
earn less than CQL with the penalty by more than 0.1 on each seed. Measured: 2.70 / 2.76 without the
penalty against 2.89 / 3.04 with it — acting with the squashed mean (the rec preset's greedy action)
lifts the unpenalised learner above the clone's bar, which it failed at 2.57 / 2.60 acting with tanh(μ).
"""

from __future__ import annotations

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

from marl_rec.algos.registry import make_algorithm
from marl_rec.data import TensorSampler

GAMMA = 0.9
MU = [[1.0, 0.0], [0.6, 0.4], [0.6, 0.4]]
CLONE = DeterministicTabular(np.array([0, 0, 0]))  # argmax of MU in every state
UPDATES = 600
SEEDS = (0, 1)
MARGIN = 0.2  # the bar: the clone's exact value + 0.2 (the best policy is 2.4 above it)
# the rec presets with 32-32 networks: three one-hot states need no more, and the test stays fast
SMALL = {"discrete_bcq": {"q_hidden": (32, 32), "imitation_hidden": (32, 32)}, "discrete_cql": {"hidden": (32, 32)},
         "bc": {"actor_hidden": (32, 32), "critic_hidden": (32, 32), "batch_size": 128},
         "bcq": {"vae_hidden": (32, 32), "actor_hidden": (32, 32), "critic_hidden": (32, 32), "batch_size": 128},
         "uwac": {"vae_hidden": (32, 32), "actor_hidden": (32, 32), "critic_hidden": (32, 32), "batch_size": 128,
                  "num_dropout_samples": 5},
         "cql": {"actor_hidden": (32, 32), "critic_hidden": (32, 32), "batch_size": 128, "bc_warmup_updates": 200,
                 "cql_alpha": 1.0, "actor_average_tau": 0.0}}  # the live actor: 600 updates are
# shorter than the rec preset's averaging window (~1/τ = 1,000 iterates; averaged, CQL with and without
# its penalty both earn 2.73–2.90, the early iterates dominating)
BEHAVIOUR_MEAN = [0.0, 0.2, -0.2]
CONTINUOUS_CLONE = DeterministicContinuous(BEHAVIOUR_MEAN)


@pytest.fixture(scope="module")
def continuous_data():
    return rollout(GaussianBehaviour(BEHAVIOUR_MEAN, 0.5, seed=1), 2000, np.random.default_rng(1), continuous=True,
                   gamma=GAMMA).dataset


@pytest.fixture(scope="module")
def discrete_data():
    return rollout(TabularPolicy(MU, seed=1), 2000, np.random.default_rng(0), gamma=GAMMA).dataset


def true_value(name: str, data, seed: int, **overrides) -> float:
    """Train the (small) rec preset of ``name`` for UPDATES updates; the exact value of its greedy policy."""
    algo = make_algorithm(name, data.obs_dim, data.action_spec, "rec", seed=seed, gamma=GAMMA,
                          **{**SMALL.get(name, {}), **overrides})
    sampler, generator = TensorSampler(data), torch.Generator().manual_seed(seed)
    for _ in range(UPDATES):
        algo.update(sampler.sample(algo.config.batch_size, generator))
    greedy = algo.act(np.eye(3, dtype=np.float32))  # the three (one-hot) states
    if data.action_spec.discrete:
        return DeterministicTabular(greedy).true_value(GAMMA)
    return DeterministicContinuous(greedy[:, 0]).true_value(GAMMA)


@pytest.mark.parametrize("name", ["discrete_bcq", "discrete_cql"])
def test_discrete_learner_beats_the_data_clone_over_two_seeds(name: str, discrete_data) -> None:
    bar = CLONE.true_value(GAMMA) + MARGIN
    values = [true_value(name, discrete_data, seed) for seed in SEEDS]
    assert min(values) > bar, (values, bar)


@pytest.mark.parametrize("name, broken", [("discrete_bcq", {"threshold": 1.0}),
                                          ("discrete_cql", {"cql_alpha": 100.0})])
def test_a_learner_that_only_imitates_fails_the_bar(name: str, broken: dict, discrete_data) -> None:
    value = true_value(name, discrete_data, SEEDS[0], **broken)
    assert value < CLONE.true_value(GAMMA) + MARGIN, value


@pytest.fixture(scope="module")
def continuous_bars(continuous_data) -> dict[int, float]:
    """Per seed: the better of the clone's exact value and BC's (same data, same budget), + margin."""
    clone = CONTINUOUS_CLONE.true_value(GAMMA)
    return {seed: max(clone, true_value("bc", continuous_data, seed)) + 0.1 for seed in SEEDS}


@pytest.mark.parametrize("name", ["bcq", "uwac", "cql"])
def test_continuous_learner_beats_behaviour_cloning_over_two_seeds(name: str, continuous_data, continuous_bars) -> None:
    values = {seed: true_value(name, continuous_data, seed) for seed in SEEDS}
    assert all(values[seed] > continuous_bars[seed] for seed in SEEDS), (values, continuous_bars)


def test_cql_without_its_penalty_earns_less_on_every_seed(continuous_data) -> None:
    with_penalty = {seed: true_value("cql", continuous_data, seed) for seed in SEEDS}
    without = {seed: true_value("cql", continuous_data, seed, cql_alpha=0.0) for seed in SEEDS}
    assert all(without[seed] < with_penalty[seed] - 0.1 for seed in SEEDS), (without, with_penalty)
