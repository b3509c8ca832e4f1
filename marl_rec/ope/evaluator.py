"""OPE during training: an evaluation hook the trainer calls as ``evaluator(algorithm, step)``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from marl_rec.data.dataset import OfflineDataset
from marl_rec.ope.behaviour import BehaviourConfig, BehaviourModel
from marl_rec.ope.context import OPEContext
from marl_rec.ope.metrics import Estimator
from marl_rec.ope.policy import DeterministicView


class OPEEvaluator:
    """``(algorithm, step) -> {"ope/<estimator>": value, ...}`` for TensorBoard scalars.

    The dataset context (behaviour log-probabilities, layout) is built once; FQE models are
    refitted at every call, since the algorithm changed. By default the algorithm is
    evaluated as the deterministic policy it deploys (``deterministic=True``; it is never
    sampled from, so evaluation does not advance its random generator).
    ``with_ci`` adds ``ope/<estimator>_ci_low`` and ``_ci_high``.
    """

    def __init__(self, dataset: OfflineDataset, estimators: Sequence[Estimator] | Mapping[str, Estimator],
                 gamma: float = 0.99, behaviour: BehaviourModel | BehaviourConfig | None = None,
                 prefix: str = "ope", deterministic: bool = True, with_ci: bool = False) -> None:
        self.context = OPEContext(dataset, gamma, behaviour)
        self.estimators = dict(estimators) if isinstance(estimators, Mapping) else {e.name: e for e in estimators}
        if not self.estimators:
            raise ValueError("OPEEvaluator needs at least one estimator")
        self.prefix, self.deterministic, self.with_ci = prefix, deterministic, with_ci

    def __call__(self, algorithm: Any, step: int) -> dict[str, float]:
        policy = DeterministicView(algorithm) if self.deterministic else algorithm
        out: dict[str, float] = {}
        try:
            for name, estimator in self.estimators.items():
                estimate = estimator.estimate(self.context, policy)
                out[f"{self.prefix}/{name}"] = estimate.value
                if self.with_ci:
                    out[f"{self.prefix}/{name}_ci_low"] = estimate.ci_low
                    out[f"{self.prefix}/{name}_ci_high"] = estimate.ci_high
        finally:
            self.context.clear_policy_cache()
        return out


__all__ = ["OPEEvaluator"]
