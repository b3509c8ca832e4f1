"""FQE with ``episode_bootstrap``: each critic is refit on its own Poisson bootstrap of the
episodes, so the interval includes the model's own uncertainty (coverage measured by
bench/ope_coverage.py) instead of only the start states' spread."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ope_mdp import TabularPolicy, rollout

from marl_rec.ope import DoublyRobustConfig, DoublyRobustEstimator, FQEConfig, FQEEstimator, OPEContext

GAMMA = 0.9
MU = [[0.5, 0.5], [0.6, 0.4], [0.3, 0.7]]
TARGET = TabularPolicy([[0.7, 0.3], [0.35, 0.65], [0.2, 0.8]])
FQE = FQEConfig(hidden=(32,), num_critics=4, learning_rate=3e-3, batch_size=256, num_updates=400, tau=0.05,
                num_bootstrap=300)


def test_bootstrap_refits_widen_the_interval_to_the_sampling_spread() -> None:
    torch.set_num_threads(1)
    data = rollout(TabularPolicy(MU, seed=1), 300, np.random.default_rng(0), gamma=GAMMA).dataset
    context = OPEContext(data, GAMMA)
    plain = FQEEstimator(FQE).estimate(context, TARGET)
    refit = FQEEstimator(FQEConfig(**{**FQE.__dict__, "episode_bootstrap": True})).estimate(context, TARGET)
    # the critics now disagree as much as refits on resampled episodes do
    assert refit.diagnostics["critic_spread"] > 3 * plain.diagnostics["critic_spread"]
    assert refit.ci_high - refit.ci_low > 3 * (plain.ci_high - plain.ci_low)
    # ... around the same estimate (within the refit interval's half-width)
    assert abs(refit.value - plain.value) < (refit.ci_high - refit.ci_low) / 2
    # DR over the refits: its replicates take each refit's Q̂ in turn, so its interval widens too
    bagged = FQEConfig(**{**FQE.__dict__, "episode_bootstrap": True})
    dr_plain = DoublyRobustEstimator(DoublyRobustConfig(fqe=FQE, num_bootstrap=300)).estimate(context, TARGET)
    dr_refit = DoublyRobustEstimator(DoublyRobustConfig(fqe=bagged, num_bootstrap=300)).estimate(context, TARGET)
    assert dr_refit.ci_high - dr_refit.ci_low > dr_plain.ci_high - dr_plain.ci_low


def test_episode_bootstrap_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match="episode_bootstrap"):
        FQEConfig(episode_bootstrap="yes")
