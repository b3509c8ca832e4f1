"""OPE estimators on a synthetic MDP with closed-form policy values (tests/helpers/ope_mdp.py).

Tolerances (stated, checked): on 3000 logged episodes, FQE, DR and WDR are within 5% of
the exact value, the IS family within 10%, conservative FQE is below the exact value;
over 200 independent datasets the mean of IS, PDIS and DR is within 3.5 standard errors
of the exact value (unbiasedness).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import truncnorm

from marl_rec.contracts import ActionSpec
from marl_rec.data.dataset import OfflineDataset
from marl_rec.ope import (BehaviourConfig, DoublyRobustConfig, DoublyRobustEstimator, EpisodeArrays, FQEConfig,
                          FQEEstimator, ImportanceConfig, ImportanceSamplingEstimator, OPEContext, OPEEvaluator,
                          evaluate_policies, fit_behaviour_policy, importance_estimate, regret_at_k,
                          relative_error, spearman_correlation, summarize)
from marl_rec.ope.policy import GaussianSmoothedPolicy, as_stochastic_target
from ope_mdp import (DeterministicContinuous, DeterministicTabular, GaussianBehaviour, TabularPolicy, rollout)

torch.set_num_threads(1)
GAMMA = 0.9
MU = [[0.5, 0.5], [0.6, 0.4], [0.3, 0.7]]
PI_GOOD = [[0.7, 0.3], [0.35, 0.65], [0.2, 0.8]]  # exact value 2.76 (behaviour: 2.07)
PI_BAD = [[0.3, 0.7], [0.8, 0.2], [0.5, 0.5]]  # exact value 1.45
SMALL_FQE = FQEConfig(hidden=(32,), num_critics=2, learning_rate=3e-3, batch_size=256, num_updates=600,
                      tau=0.05, num_bootstrap=200)
IS_KINDS = ("is", "wis", "pdis", "wpdis")
# module-level policies: the shared contexts cache one FQE fit per (policy, config) across tests
GOOD, BAD, BEHAVIOUR = TabularPolicy(PI_GOOD), TabularPolicy(PI_BAD), TabularPolicy(MU)
GREEDY = DeterministicTabular(np.array([0, 1, 1]))  # exact value 3.81
CONTINUOUS_TARGET = DeterministicContinuous([0.4, -0.2, 0.1])


@pytest.fixture(scope="module")
def discrete_data() -> OfflineDataset:
    return rollout(TabularPolicy(MU, seed=1), 3000, np.random.default_rng(0), gamma=GAMMA).dataset


@pytest.fixture(scope="module")
def continuous_data() -> OfflineDataset:
    behaviour = GaussianBehaviour([0.0, 0.2, -0.2], 0.5, seed=2)
    return rollout(behaviour, 3000, np.random.default_rng(1), continuous=True, gamma=GAMMA).dataset


@pytest.fixture(scope="module")
def discrete_context(discrete_data) -> OPEContext:
    return OPEContext(discrete_data, GAMMA)


@pytest.fixture(scope="module")
def continuous_context(continuous_data) -> OPEContext:
    return OPEContext(continuous_data, GAMMA)


def close(estimate: float, truth: float, tolerance: float) -> bool:
    return relative_error(estimate, truth) <= tolerance


# ------------------------------------------------------------------ accuracy
def test_every_estimator_within_tolerance_discrete(discrete_context):
    context, pi = discrete_context, GOOD
    truth = pi.true_value(GAMMA)
    for kind in IS_KINDS:
        estimate = ImportanceSamplingEstimator(ImportanceConfig(kind=kind, num_bootstrap=200)).estimate(context, pi)
        assert close(estimate.value, truth, 0.10), (kind, estimate.value, truth)
        assert estimate.ci_low <= estimate.value <= estimate.ci_high
    for estimator in (FQEEstimator(SMALL_FQE), DoublyRobustEstimator(DoublyRobustConfig(fqe=SMALL_FQE)),
                      DoublyRobustEstimator(DoublyRobustConfig(weighted=True, fqe=SMALL_FQE))):
        estimate = estimator.estimate(context, pi)
        assert close(estimate.value, truth, 0.05), (estimator.name, estimate.value, truth)
    # a deterministic target: FQE evaluates it as is, DR its ε-greedy smoothing
    assert close(FQEEstimator(SMALL_FQE).estimate(context, GREEDY).value, GREEDY.true_value(GAMMA), 0.05)
    dr = DoublyRobustEstimator(DoublyRobustConfig(weighted=True, fqe=SMALL_FQE, epsilon=0.1))
    assert close(dr.estimate(context, GREEDY).value, GREEDY.true_value(GAMMA, epsilon=0.1), 0.05)


def test_every_estimator_within_tolerance_continuous(continuous_context):
    """1-D actions, deterministic target a = b[s]: FQE estimates its value; the IS family and
    DR estimate the value of its truncated-Gaussian smoothing (bandwidth 0.4), known exactly."""
    context, target = continuous_context, CONTINUOUS_TARGET
    fqe = FQEEstimator(SMALL_FQE).estimate(context, target)
    assert close(fqe.value, target.true_value(GAMMA), 0.05), (fqe.value, target.true_value(GAMMA))
    smoothed_truth = target.true_value(GAMMA, bandwidth=0.4)
    for kind in IS_KINDS:
        estimate = ImportanceSamplingEstimator(ImportanceConfig(kind=kind, bandwidth=0.4, num_bootstrap=200)
                                               ).estimate(context, target)
        assert close(estimate.value, smoothed_truth, 0.10), (kind, estimate.value, smoothed_truth)
    for weighted in (False, True):
        config = DoublyRobustConfig(weighted=weighted, fqe=SMALL_FQE, bandwidth=0.4, num_bootstrap=200)
        estimate = DoublyRobustEstimator(config).estimate(context, target)
        assert close(estimate.value, smoothed_truth, 0.05), (weighted, estimate.value, smoothed_truth)


def test_conservative_fqe_is_a_lower_bound(discrete_context, continuous_context):
    """Below the exact value, and below plain FQE of the same policy."""
    for context, policies in ((discrete_context, [GOOD, BAD, GREEDY]), (continuous_context, [CONTINUOUS_TARGET])):
        estimator = FQEEstimator(FQEConfig(**{**SMALL_FQE.__dict__, "conservative_weight": 1.0}))
        assert estimator.name == "conservative_fqe"
        for policy in policies:
            estimate = estimator.estimate(context, policy)
            assert estimate.value < policy.true_value(GAMMA), (estimate.value, policy.true_value(GAMMA))
            assert estimate.value < FQEEstimator(SMALL_FQE).estimate(context, policy).value
    # CQL(H)'s logsumexp penalty is pessimistic about the greedy policy of Q (not every π)
    config = FQEConfig(**{**SMALL_FQE.__dict__, "conservative_weight": 1.0, "penalty": "logsumexp"})
    assert FQEEstimator(config).estimate(discrete_context, GREEDY).value < GREEDY.true_value(GAMMA)


def test_conservative_fqe_is_bounded_where_the_policy_leaves_the_data():
    """Narrow behaviour (σ = 0.05), target far away: the penalty alone would drive Q(s, π(s)) to
    -∞; it stops at the floor min(0, r_min) / (1 - γ), and the estimate stays a finite lower bound."""
    narrow = rollout(GaussianBehaviour([0.0, 0.2, -0.2], 0.05, seed=4), 500, np.random.default_rng(2),
                     continuous=True, gamma=GAMMA).dataset
    far = DeterministicContinuous([-0.9, 0.9, -0.9])
    config = FQEConfig(**{**SMALL_FQE.__dict__, "conservative_weight": 1.0})
    estimate = FQEEstimator(config).estimate(OPEContext(narrow, GAMMA), far)
    floor = min(0.0, float(narrow.rewards.min())) / (1 - GAMMA)
    assert floor <= estimate.value < far.true_value(GAMMA), (estimate.value, floor)
    assert estimate.value < floor + 0.25 * abs(floor)  # no data support: pushed (almost) down to the floor
    assert estimate.diagnostics["fraction_at_floor"] > 0


# ---------------------------------------------------------------- unbiasedness
def test_is_estimators_are_unbiased_over_repeated_datasets():
    """IS, PDIS and DR (with a deliberately wrong model) average to the exact value."""
    WRONG_Q = np.array([[0.0, 3.0], [1.0, -1.0], [2.5, 0.5]])
    rng = np.random.default_rng(7)
    behaviour = TabularPolicy(MU, seed=3)
    targets = {"good": TabularPolicy(PI_GOOD), "bad": TabularPolicy(PI_BAD)}
    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(200):
        data = rollout(behaviour, 100, rng, gamma=GAMMA).dataset
        context = OPEContext(data, GAMMA)
        for name, target in targets.items():
            log_ratios = context.pad(target.log_prob(data.observations, data.actions) - context.behaviour_log_probs)
            # a wrong model (far from Q^π) whose V̂ is E_π Q̂ — all DR needs to stay unbiased
            states = data.observations.argmax(1)
            wrong_q = context.pad(WRONG_Q[states, data.actions])
            wrong_v = context.pad((target.probs * WRONG_Q).sum(1)[states])
            arrays = EpisodeArrays(context.pad(data.rewards), log_ratios, wrong_q, wrong_v)
            for kind in ("is", "pdis", "dr"):
                value = importance_estimate(kind, arrays, GAMMA, num_bootstrap=1).value
                results.setdefault((name, kind), []).append(value)
    for (name, kind), values in results.items():
        values = np.asarray(values)
        truth = targets[name].true_value(GAMMA)
        standard_error = values.std(ddof=1) / np.sqrt(len(values))
        assert abs(values.mean() - truth) < 3.5 * standard_error, (name, kind, values.mean(), truth, standard_error)


# ------------------------------------------------------------------ identities
def test_weighted_is_is_the_on_policy_average_when_target_is_behaviour(discrete_context):
    context = discrete_context
    on_policy = context.dataset.episode_returns(GAMMA).mean()
    for kind in ("wis", "wpdis", "is", "pdis"):
        estimate = ImportanceSamplingEstimator(ImportanceConfig(kind=kind, num_bootstrap=50)).estimate(
            context, BEHAVIOUR)
        assert estimate.value == pytest.approx(on_policy, rel=1e-6)
    assert estimate.diagnostics["ess"] == pytest.approx(context.num_episodes)


def _model_consistent_arrays(rng: np.random.Generator, log_ratio: float) -> tuple[EpisodeArrays, float, np.ndarray]:
    """Random episodes and a model V̂ with Q̂(s_t, a_t) = r_t + γ V̂(s_{t+1}) on every logged step."""
    lengths = rng.integers(1, 8, size=40)
    mask = np.arange(lengths.max())[None] < lengths[:, None]
    rewards = np.where(mask, rng.normal(size=mask.shape), 0.0)
    v = np.where(mask, rng.normal(size=mask.shape), 0.0)
    v_next = np.concatenate([v[:, 1:], np.zeros((len(v), 1))], axis=1)
    q = np.where(mask, rewards + GAMMA * v_next, 0.0)
    return EpisodeArrays(rewards, np.where(mask, log_ratio, 0.0), q, v), float(v[:, 0].mean()), mask


def test_doubly_robust_identities():
    rng = np.random.default_rng(3)
    arrays, model_value, mask = _model_consistent_arrays(rng, log_ratio=0.0)
    discount = GAMMA ** np.arange(mask.shape[1])
    v_next = np.concatenate([arrays.v_target[:, 1:], np.zeros((len(mask), 1))], axis=1)
    for kind in ("dr", "wdr"):
        # weights all one and a model that is Bellman-consistent on the data: DR = model estimate
        assert importance_estimate(kind, arrays, GAMMA, num_bootstrap=1).value == pytest.approx(model_value)
        # weights all one, any model: DR = model estimate + mean discounted TD error of the model
        q_other = np.where(mask, arrays.q_logged + rng.normal(size=mask.shape), 0.0)
        td_errors = np.where(mask, arrays.rewards + GAMMA * v_next - q_other, 0.0)
        other = EpisodeArrays(arrays.rewards, arrays.log_ratios, q_other, arrays.v_target)
        assert importance_estimate(kind, other, GAMMA, num_bootstrap=1).value == pytest.approx(
            model_value + (td_errors @ discount).mean())
    # weights all zero (the target never takes a logged action): DR = the model estimate
    zero = EpisodeArrays(arrays.rewards, np.where(mask, -np.inf, 0.0), arrays.q_logged, arrays.v_target)
    assert importance_estimate("dr", zero, GAMMA, num_bootstrap=1).value == pytest.approx(model_value)


# ------------------------------------------------------------ behaviour models
def test_behaviour_model_recovers_logged_log_probs(discrete_data, continuous_data):
    for data, tolerance in ((discrete_data, 0.02), (continuous_data, 0.05)):
        config = BehaviourConfig(hidden=(32,), num_components=2, num_updates=800, eval_interval=200,
                                 learning_rate=3e-3)
        model = fit_behaviour_policy(data, config)
        true_mean = float(np.mean(data.behaviour_log_probs))
        assert abs(model.held_out_log_likelihood - true_mean) < tolerance, (model.held_out_log_likelihood, true_mean)
        assert np.isfinite(model.train_log_likelihood)


def test_is_with_fitted_behaviour_when_log_probs_are_missing():
    data = rollout(TabularPolicy(MU, seed=1), 3000, np.random.default_rng(0), gamma=GAMMA, log_probs=False).dataset
    pi = TabularPolicy(PI_GOOD)
    wis = ImportanceSamplingEstimator(ImportanceConfig(kind="wpdis", num_bootstrap=100))
    with pytest.raises(ValueError, match="behaviour_log_probs"):
        wis.estimate(OPEContext(data, GAMMA), pi)
    context = OPEContext(data, GAMMA, behaviour=BehaviourConfig(hidden=(32,), num_updates=1000, learning_rate=3e-3))
    assert close(wis.estimate(context, pi).value, pi.true_value(GAMMA), 0.10)
    assert np.isfinite(context.behaviour.held_out_log_likelihood)


# ------------------------------------------------------------------ bad input
def test_bad_input_is_rejected(discrete_data):
    rewards = np.zeros((3, 4))
    with pytest.raises(ValueError, match="log_ratios"):
        EpisodeArrays(rewards, np.zeros((3, 5)))  # mismatched lengths
    with pytest.raises(ValueError, match="NaN"):
        EpisodeArrays(rewards, np.full((3, 4), np.nan))
    with pytest.raises(ValueError, match="q_logged"):
        EpisodeArrays(rewards, np.zeros((3, 4)), np.full((3, 4), np.inf), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="needs q_logged"):
        importance_estimate("dr", EpisodeArrays(rewards, np.zeros((3, 4))), GAMMA)
    with pytest.raises(ValueError, match="unknown estimator"):
        importance_estimate("snips", EpisodeArrays(rewards, np.zeros((3, 4))), GAMMA)
    with pytest.raises(ValueError, match="rewards"):  # the dataset rejects mismatched columns
        OfflineDataset(observations=np.zeros((3, 2), np.float32), actions=np.zeros(3, np.int64),
                       rewards=np.zeros(2, np.float32), next_observations=np.zeros((3, 2), np.float32),
                       terminals=np.ones(3, bool), truncations=np.zeros(3, bool), episode_starts=np.ones(3, bool),
                       action_spec=ActionSpec("discrete", num_actions=2))
    with pytest.raises(ValueError, match="gamma"):
        OPEContext(discrete_data, gamma=1.5)
    with pytest.raises(ValueError, match="initial_observations"):
        OPEContext(discrete_data, initial_observations=np.full((2, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="ImportanceConfig.kind"):
        ImportanceConfig(kind="dr")
    with pytest.raises(ValueError, match="bandwidth"):
        ImportanceConfig(bandwidth=0.0)
    with pytest.raises(ValueError, match="FQEConfig.penalty"):
        FQEConfig(penalty="max")
    with pytest.raises(ValueError, match="conservative_weight"):
        FQEConfig(conservative_weight=-1.0)

    class NaNPolicy(TabularPolicy):
        def log_prob(self, obs, actions):
            return np.full(len(obs), np.nan)

    with pytest.raises(ValueError, match="NaN"):
        ImportanceSamplingEstimator().estimate(OPEContext(discrete_data, GAMMA), NaNPolicy(MU))

    class WrongShape:
        def act(self, obs, deterministic=True):
            return np.zeros((len(obs), 2))

    with pytest.raises(ValueError, match="integer actions"):
        FQEEstimator(SMALL_FQE).estimate(OPEContext(discrete_data, GAMMA), WrongShape())


# ------------------------------------------------------------- smoothing, CIs
def test_gaussian_smoothing_density_is_exact():
    """The truncated-Gaussian smoothing integrates to one on the box (1-D, midpoint rule)."""
    spec = ActionSpec("continuous", dim=1)
    smoothed = GaussianSmoothedPolicy(DeterministicContinuous([0.95, -0.3, 0.0]), spec, 0.2)
    grid = np.linspace(-1, 1, 20001)
    mid = (grid[1:] + grid[:-1]) / 2
    for state in range(3):
        obs = np.repeat(np.eye(3, dtype=np.float32)[[state]], len(mid), axis=0)
        density = np.exp(smoothed.log_prob(obs, mid[:, None]))
        assert density.sum() * (grid[1] - grid[0]) == pytest.approx(1.0, abs=1e-4)
    obs = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    actions = np.array([[0.5], [-0.9], [1.0], [1.0 + 1e-9]])  # the last is just outside the box
    means = np.array([0.95, -0.3, 0.0, 0.95])
    reference = truncnorm.logpdf(actions[:, 0], (-1 - means) / 0.2, (1 - means) / 0.2, loc=means, scale=0.2)
    np.testing.assert_allclose(smoothed.log_prob(obs, actions)[:3], reference[:3], rtol=1e-10)
    assert smoothed.log_prob(obs, actions)[3] == -np.inf  # no density outside the box: IS weight 0
    samples = smoothed.sample(np.eye(3, dtype=np.float32), 4000, np.random.default_rng(0))
    assert samples.shape == (4000, 3, 1) and samples.min() >= -1 and samples.max() <= 1
    truncated_mean = truncnorm.mean(-1.95 / 0.2, 0.05 / 0.2, loc=0.95, scale=0.2)  # ≈ 0.82: pulled inside
    assert samples[:, 0, 0].mean() == pytest.approx(truncated_mean, abs=0.01)
    probs = as_stochastic_target(DeterministicTabular(np.array([0, 1, 1])), ActionSpec("discrete", num_actions=2),
                                 epsilon=0.2).probs(np.eye(3, dtype=np.float32))
    np.testing.assert_allclose(probs, [[0.9, 0.1], [0.1, 0.9], [0.1, 0.9]])


def test_bootstrap_interval_covers_truth_for_is(discrete_context):
    context, pi = discrete_context, GOOD
    estimate = ImportanceSamplingEstimator(ImportanceConfig(kind="pdis", num_bootstrap=500)).estimate(context, pi)
    assert estimate.ci_low < pi.true_value(GAMMA) < estimate.ci_high
    assert estimate.ci_high - estimate.ci_low < 0.5 * pi.true_value(GAMMA)
    assert estimate.num_samples == context.num_episodes and estimate.std_error > 0


# ------------------------------------------------------------ table, metrics
def test_metrics():
    assert relative_error(1.1, 1.0) == pytest.approx(0.1)
    assert spearman_correlation([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman_correlation([3, 2, 1], [10, 20, 30]) == pytest.approx(-1.0)
    assert np.isnan(spearman_correlation([1, 1, 1], [1, 2, 3]))
    assert regret_at_k([3, 2, 1], [1, 2, 5], k=1) == pytest.approx(4.0)
    assert regret_at_k([3, 2, 1], [1, 2, 5], k=3) == 0.0
    assert regret_at_k([np.nan, 0, 1], [5, 1, 2], k=1) == pytest.approx(3.0)


def test_evaluate_policies_table_and_summary(discrete_context):
    policies = {"good": GOOD, "behaviour": BEHAVIOUR, "bad": BAD, "greedy": GREEDY}
    truth = {name: policy.true_value(GAMMA) for name, policy in policies.items()}
    estimators = [FQEEstimator(SMALL_FQE), DoublyRobustEstimator(DoublyRobustConfig(weighted=True, fqe=SMALL_FQE,
                                                                                    num_bootstrap=100))]
    rows = evaluate_policies(discrete_context, policies, estimators, truth=truth)
    assert len(rows) == 8 and {r["estimator"] for r in rows} == {"fqe", "wdr"}
    assert all(abs(r["rel_error"]) < 0.1 for r in rows if r["estimator"] == "fqe")
    summary = {row["estimator"]: row for row in summarize(rows)}
    assert summary["fqe"]["spearman"] == pytest.approx(1.0)
    assert summary["fqe"]["regret@1"] == 0.0
    with pytest.raises(ValueError, match="no value for policies"):
        evaluate_policies(discrete_context, policies, estimators, truth={"good": 1.0})


def test_ope_evaluator_for_the_trainer(discrete_data):
    """The trainer's hook: (algorithm, step) -> {"ope/<name>": value}; the algorithm is
    evaluated deterministically (never sampled from) and refitted on every call."""

    class Algorithm(TabularPolicy):
        def act(self, obs, deterministic=True):
            assert deterministic, "OPEEvaluator must not sample from the algorithm"
            return super().act(obs, deterministic)

    algorithm = Algorithm(PI_GOOD)
    evaluator = OPEEvaluator(discrete_data, [FQEEstimator(SMALL_FQE),
                                             ImportanceSamplingEstimator(ImportanceConfig(epsilon=0.1))],
                             gamma=GAMMA, with_ci=True)
    first = evaluator(algorithm, step=0)
    assert set(first) == {"ope/fqe", "ope/fqe_ci_low", "ope/fqe_ci_high", "ope/wpdis", "ope/wpdis_ci_low",
                          "ope/wpdis_ci_high"}
    greedy_value = DeterministicTabular(np.array([0, 1, 1])).true_value(GAMMA)
    assert close(first["ope/fqe"], greedy_value, 0.05)
    algorithm.probs = np.array(PI_BAD)  # the algorithm trained on: its new greedy policy is [1, 0, 0]
    second = evaluator(algorithm, step=1)
    assert close(second["ope/fqe"], DeterministicTabular(np.array([1, 0, 0])).true_value(GAMMA), 0.10)


def test_below_truth_off_floor_needs_half_the_distance_from_the_collapse_point() -> None:
    from marl_rec.ope.metrics import below_truth_off_floor, collapse_point
    # positive truth: an estimate near 0 (vanished importance weights) is no lower bound,
    # whatever the a-priori floor
    assert collapse_point(80.0, -1000.0) == 0.0 and collapse_point(80.0, 0.0) == 0.0
    assert not below_truth_off_floor(3.0, 80.0, -1000.0)
    assert not below_truth_off_floor(39.0, 80.0, 0.0)
    assert below_truth_off_floor(41.0, 80.0, 0.0)
    assert not below_truth_off_floor(80.0, 80.0, 0.0)  # not below the truth
    # negative truth: the a-priori floor is where a conservative estimate collapses
    assert collapse_point(-10.0, -100.0) == -100.0
    assert below_truth_off_floor(-50.0, -10.0, -100.0)
    assert not below_truth_off_floor(-60.0, -10.0, -100.0)
