"""Preference-based reward learning: oracle noise models, Bradley–Terry recovery, query selection."""

import math

import numpy as np
import pytest
import torch

from marl_rec.irl.preferences import (BradleyTerryRewardModel, OracleConfig, PreferenceConfig, PreferenceOracle,
                             RewardModelConfig, SegmentPool, learn_from_preferences, standardisation,
                             uniform_pairs)

torch.set_num_threads(1)


def linear_pool(rng, segments=400, length=4, dim=6):
    w = rng.normal(size=dim)
    features = rng.normal(size=(segments, length, dim)).astype(np.float32)
    return SegmentPool(features, features.astype(np.float64) @ w), w


def effective_weight(model: BradleyTerryRewardModel) -> np.ndarray:
    """Weight on the raw features of a linear (hidden=()) model, averaged over members."""
    weights = [m[0].weight.detach().numpy().ravel() for m in model.members]
    return np.mean(weights, axis=0) / model.input_std.numpy()


def test_bradley_terry_recovers_linear_reward_direction_from_noiseless_preferences():
    rng = np.random.default_rng(0)
    pool, w = linear_pool(rng)
    mean, std = standardisation(pool.features)
    model = BradleyTerryRewardModel(6, RewardModelConfig(hidden=(), ensemble_size=1, bootstrap=False,
                                                         epochs_per_round=100, lr=0.01, weight_decay=0.0),
                                     mean, std, seed=0)
    oracle = PreferenceOracle(OracleConfig(), np.random.default_rng(1))
    run = learn_from_preferences(pool, oracle, model, PreferenceConfig(budget=400, queries_per_round=200,
                                                                       selection="uniform"), rng)
    learned = effective_weight(run.model)
    cosine = learned @ w / (np.linalg.norm(learned) * np.linalg.norm(w))
    assert cosine >= 0.95
    assert len(run.pairs) == 400 and len(run.history) == 2


def test_ensemble_mlp_learns_nonlinear_reward_and_disagreement_targets_uncertain_pairs():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(300, 3, 2)).astype(np.float32)
    true = np.sin(2 * features[..., 0]) + features[..., 1] ** 2
    pool = SegmentPool(features, true.astype(np.float64))
    mean, std = standardisation(features)
    model = BradleyTerryRewardModel(2, RewardModelConfig(hidden=(32, 32), ensemble_size=3, epochs_per_round=20),
                                    mean, std, seed=3)
    oracle = PreferenceOracle(OracleConfig(), np.random.default_rng(4))
    seen = []
    run = learn_from_preferences(pool, oracle, model, PreferenceConfig(budget=300, queries_per_round=100),
                                 rng, evaluate=lambda m: {"corr": float(np.corrcoef(
                                     m.predict(features.reshape(-1, 2)), true.ravel())[0, 1])},
                                 log=lambda entry, q: seen.append(q))
    assert seen == [100, 200, 300]
    assert run.history[-1]["corr"] > 0.8
    # the pairs disagreement asks about are the ones the members disagree on most
    candidates = uniform_pairs(len(pool), 2000, np.random.default_rng(5))
    scores = model.disagreement(pool, candidates)
    assert scores.shape == (2000,) and np.all(scores >= 0)
    assert np.sort(scores)[-100:].mean() > 3 * np.median(scores)


def deterministic_oracle(rng, **kw):
    return PreferenceOracle(OracleConfig(**kw), rng)


def test_oracle_rational_answers_by_return_and_equal_on_ties():
    oracle = deterministic_oracle(np.random.default_rng(0))
    a = np.array([[1.0, 1.0], [0.0, 0.0], [2.0, 0.0]])
    b = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    assert np.array_equal(oracle.label(a, b), [1.0, 0.0, 0.5])


def test_oracle_mistake_rate_within_tolerance():
    rng = np.random.default_rng(1)
    n = 20000
    a = rng.normal(size=(n, 3)) + 5.0  # always the better segment
    b = rng.normal(size=(n, 3))
    labels = deterministic_oracle(rng, mistake_rate=0.1).label(a, b)
    assert np.mean(labels == 0.0) == pytest.approx(0.1, abs=0.01)


def test_oracle_stochastic_follows_bradley_terry_with_beta():
    rng = np.random.default_rng(2)
    n = 20000
    for beta, gap in ((1.0, 0.5), (1.0, 2.0), (0.25, 2.0)):
        a = np.full((n, 2), gap / 2)  # return gap
        b = np.zeros((n, 2))
        labels = deterministic_oracle(rng, beta=beta).label(a, b)
        assert labels.mean() == pytest.approx(1.0 / (1.0 + math.exp(-beta * gap)), abs=0.015)


def test_oracle_myopia_discounts_early_steps():
    early = np.array([[3.0, 0.0, 0.0]])  # return 3, all of it early
    late = np.array([[0.0, 0.0, 2.0]])  # return 2, at the end
    assert deterministic_oracle(np.random.default_rng(0)).label(early, late)[0] == 1.0
    # gamma = 0.5: 3 * 0.25 = 0.75 < 2
    assert deterministic_oracle(np.random.default_rng(0), gamma=0.5).label(early, late)[0] == 0.0


def test_oracle_skip_and_equal_thresholds_and_no_mistakes_on_equal():
    rng = np.random.default_rng(3)
    a = np.array([[0.1, 0.1], [5.0, 0.0], [2.0, 2.0]])
    b = np.array([[0.0, 0.0], [0.0, 4.9], [0.0, 0.0]])
    labels = deterministic_oracle(rng, skip_threshold=1.0, equal_threshold=0.5, mistake_rate=1.0).label(a, b)
    assert np.isnan(labels[0])  # both below 1.0: skipped
    assert labels[1] == 0.5  # |5.0 - 4.9| < 0.5: equal, never flipped
    assert labels[2] == 0.0  # decided and flipped (mistake_rate 1)


def test_skipped_queries_spend_budget_but_are_not_trained_on():
    rng = np.random.default_rng(4)
    pool, _ = linear_pool(rng, segments=50)
    model = BradleyTerryRewardModel(6, RewardModelConfig(hidden=(), ensemble_size=2, epochs_per_round=2), seed=0)
    oracle = deterministic_oracle(rng, skip_threshold=1e9)  # skips everything
    run = learn_from_preferences(pool, oracle, model, PreferenceConfig(budget=30, queries_per_round=20), rng)
    assert len(run.labels) == 30 and np.isnan(run.labels).all()
    assert math.isnan(run.history[-1]["loss"]) and run.history[-1]["labelled"] == 0


def test_configs_reject_bad_values():
    with pytest.raises(ValueError, match="beta"):
        OracleConfig(beta=0.0)
    with pytest.raises(ValueError, match="mistake_rate"):
        OracleConfig(mistake_rate=1.5)
    with pytest.raises(ValueError, match="selection"):
        PreferenceConfig(selection="random")
    with pytest.raises(ValueError, match="ensemble_size"):
        RewardModelConfig(ensemble_size=0)
    with pytest.raises(ValueError, match=r"\(S, L\)|\(S, L, F\)"):
        SegmentPool(np.zeros((3, 4)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"\(Q, L\)"):
        PreferenceOracle(OracleConfig(), np.random.default_rng(0)).label(np.zeros(3), np.zeros(3))


def test_segment_pool_from_logged_dataset():
    from marl_rec.agents.policies import RandomPolicy
    from marl_rec.envs.simulator import SimulatorConfig, UserSimulator
    from marl_rec.irl.data import collect_with_utility, feature_dim

    sim = UserSimulator(SimulatorConfig(items_per_topic=40, ads_per_topic=2))
    rng = np.random.default_rng(0)
    data = collect_with_utility(sim, RandomPolicy(rng), 2000, rng, batch_size=64)
    pool = SegmentPool.from_dataset(data, 4)
    d = data.dataset
    assert pool.features.shape[1:] == (4, feature_dim(d.obs_dim, 4, 4))
    # windows never cross an episode boundary and their true rewards are the logged utility
    first = d.episode_bounds()[0]
    if first[1] - first[0] >= 4:
        assert np.allclose(pool.true_rewards[0], data.true_utility[first[0]:first[0] + 4])
        assert np.allclose(pool.features[0, :, :d.obs_dim], d.observations[first[0]:first[0] + 4])
