"""Off-policy evaluation: how good is a policy, from logged data alone, and how sure are we.

Estimators (``estimate(context, policy) -> Estimate`` with a bootstrap interval):
:class:`FQEEstimator` (FQE, and conservative FQE with a CQL-style penalty),
:class:`ImportanceSamplingEstimator` (IS, WIS, PDIS, WPDIS) and
:class:`DoublyRobustEstimator` (DR, WDR). An :class:`OPEContext` wraps the logged
:class:`~marl_rec.data.dataset.OfflineDataset` and is shared by the estimators; behaviour
log-probabilities come from the dataset or :func:`fit_behaviour_policy`. Bandit logs load
with :func:`load_bandit_log` (or :func:`from_obp_feedback` for obp's dicts);
:func:`bandit_estimates` gives IPS / SNIPS / DM / DR / SNDR with a reward model you bring. Ground truth: :func:`simulated_ab_test`. Comparison:
:func:`evaluate_policies`, :func:`summarize` and the metrics. Training hook:
:class:`OPEEvaluator`.

Typical use::

    context = OPEContext(dataset, gamma=0.99)
    estimators = [FQEEstimator(), FQEEstimator(FQEConfig(conservative_weight=1.0)),
                  ImportanceSamplingEstimator(ImportanceConfig(kind="wpdis")),
                  DoublyRobustEstimator(DoublyRobustConfig(weighted=True))]
    truth = true_values(simulated_ab_test(make_sim, policies, 5000, seed=0, gamma=0.99))
    rows = evaluate_policies(context, policies, estimators, truth=truth)
    print(summarize(rows))
"""

from marl_rec.ope.ab_test import ABArm, paired_difference, simulated_ab_test, true_values
from marl_rec.ope.bandit import BanditLog, BanditSchema, bandit_log_from_columns, from_obp_feedback, load_bandit_log
from marl_rec.ope.bandit_estimators import bandit_estimates
from marl_rec.ope.behaviour import BehaviourConfig, BehaviourModel, fit_behaviour_policy
from marl_rec.ope.context import MissingBehaviourLogProbs, OPEContext
from marl_rec.ope.estimate import Estimate
from marl_rec.ope.evaluator import OPEEvaluator
from marl_rec.ope.fqe import FittedQ, FQEConfig, FQEEstimator, fit_fqe
from marl_rec.ope.importance import (DoublyRobustConfig, DoublyRobustEstimator, EpisodeArrays, ImportanceConfig,
                                     ImportanceSamplingEstimator, importance_estimate)
from marl_rec.ope.metrics import (Estimator, absolute_error, evaluate_policies, regret_at_k, relative_error,
                                  spearman_correlation, summarize)
from marl_rec.ope.policy import (DeterministicView, EpsilonGreedyPolicy, GaussianSmoothedPolicy,
                                 NativeStochasticPolicy, StochasticTarget, as_stochastic_target)

__all__ = [
    "ABArm", "paired_difference", "simulated_ab_test", "true_values",
    "BanditLog", "BanditSchema", "bandit_estimates", "bandit_log_from_columns", "from_obp_feedback",
    "load_bandit_log",
    "BehaviourConfig", "BehaviourModel", "fit_behaviour_policy",
    "MissingBehaviourLogProbs", "OPEContext", "Estimate", "OPEEvaluator",
    "FittedQ", "FQEConfig", "FQEEstimator", "fit_fqe",
    "DoublyRobustConfig", "DoublyRobustEstimator", "EpisodeArrays", "ImportanceConfig",
    "ImportanceSamplingEstimator", "importance_estimate",
    "Estimator", "absolute_error", "evaluate_policies", "regret_at_k", "relative_error",
    "spearman_correlation", "summarize",
    "DeterministicView", "EpsilonGreedyPolicy", "GaussianSmoothedPolicy", "NativeStochasticPolicy",
    "StochasticTarget", "as_stochastic_target",
]
