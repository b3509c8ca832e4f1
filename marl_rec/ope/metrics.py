"""Compare estimators across policies: errors, rank correlation, regret — and the table.

:func:`evaluate_policies` runs every estimator on every policy over one dataset and
returns a table (one dict per policy × estimator); :func:`summarize` turns it into one row
per estimator with the figures the estimator benchmark reports.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from scipy.stats import spearmanr

from marl_rec.data.dataset import OfflineDataset
from marl_rec.ope.behaviour import BehaviourConfig, BehaviourModel
from marl_rec.ope.context import OPEContext
from marl_rec.ope.estimate import Estimate


class Estimator(Protocol):
    """Every OPE estimator: a ``name`` and ``estimate(context, policy) -> Estimate``."""

    name: str

    def estimate(self, context: OPEContext, policy: Any) -> Estimate: ...


def absolute_error(estimate: float, truth: float) -> float:
    return abs(float(estimate) - float(truth))


def relative_error(estimate: float, truth: float) -> float:
    """|estimate − truth| / |truth| (inf when the truth is 0 and the estimate is not)."""
    error = absolute_error(estimate, truth)
    if truth == 0:
        return 0.0 if error == 0 else math.inf
    return error / abs(float(truth))


def spearman_correlation(estimates: Sequence[float], truths: Sequence[float]) -> float:
    """Spearman rank correlation (ties get average ranks); NaN when either side is constant
    or has fewer than 2 policies."""
    estimates, truths = np.asarray(estimates, dtype=np.float64), np.asarray(truths, dtype=np.float64)
    if estimates.shape != truths.shape:
        raise ValueError(f"estimates and truths differ in length ({estimates.size} vs {truths.size})")
    if estimates.size < 2 or np.ptp(estimates) == 0 or np.ptp(truths) == 0 or not np.all(np.isfinite(estimates)):
        return math.nan
    return float(spearmanr(estimates, truths).statistic)


def regret_at_k(estimates: Sequence[float], truths: Sequence[float], k: int = 1) -> float:
    """True value of the best policy minus that of the best among the k the estimator ranks
    highest (0 = the estimator's top-k contains the best policy). NaN estimates rank last."""
    estimates, truths = np.asarray(estimates, dtype=np.float64), np.asarray(truths, dtype=np.float64)
    if estimates.shape != truths.shape or estimates.size == 0:
        raise ValueError(f"estimates and truths must be non-empty and equal in length "
                         f"({estimates.size} vs {truths.size})")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    ranked = np.argsort(-np.nan_to_num(estimates, nan=-np.inf), kind="stable")[:k]
    return float(truths.max() - truths[ranked].max())


def evaluate_policies(dataset: OfflineDataset | OPEContext, policies: Mapping[str, Any],
                      estimators: Sequence[Estimator] | Mapping[str, Estimator], gamma: float = 0.99,
                      truth: Mapping[str, float] | None = None,
                      behaviour: BehaviourModel | BehaviourConfig | None = None) -> list[dict[str, Any]]:
    """Estimate every policy with every estimator on one dataset.

    Returns one row per (policy, estimator): ``policy``, ``estimator``, ``value``, ``ci_low``,
    ``ci_high``, ``std_error``, ``seconds`` (wall time of the estimate, models shared with
    earlier estimators excluded) and the estimator's diagnostics (``diag_*``); with ``truth``
    also ``truth``, ``error`` (signed), ``abs_error``, ``rel_error`` and ``covered`` (truth
    inside the interval). ``gamma`` and ``behaviour`` are used when ``dataset`` is not
    already an :class:`OPEContext`; a context passed in keeps its FQE models (keyed by
    policy identity) for later calls.
    """
    context = dataset if isinstance(dataset, OPEContext) else OPEContext(dataset, gamma, behaviour)
    named = dict(estimators) if isinstance(estimators, Mapping) else {e.name: e for e in estimators}
    if not isinstance(estimators, Mapping) and len(named) != len(estimators):
        raise ValueError(f"estimator names must be unique, got {[e.name for e in estimators]}")
    if truth is not None and set(policies) - set(truth):
        raise ValueError(f"truth has no value for policies {sorted(set(policies) - set(truth))}")
    rows = []
    for policy_name, policy in policies.items():
        for estimator_name, estimator in named.items():
            start = time.perf_counter()
            estimate = estimator.estimate(context, policy)
            row = {"policy": policy_name, **estimate.to_dict(), "estimator": estimator_name,
                   "seconds": time.perf_counter() - start}
            if truth is not None:
                true_value = float(truth[policy_name])
                row.update(truth=true_value, error=estimate.value - true_value,
                           abs_error=absolute_error(estimate.value, true_value),
                           rel_error=relative_error(estimate.value, true_value),
                           covered=bool(estimate.ci_low <= true_value <= estimate.ci_high))
            rows.append(row)
    return rows


def collapse_point(truth: float, floor: float) -> float:
    """Where an estimate that carries no information about a policy lands below its ``truth``:
    0 when the truth is positive (importance weights that all vanish give 0, which lies above
    a negative a-priori floor), else the a-priori ``floor``."""
    return max(floor, 0.0) if truth > 0 else floor


def below_truth_off_floor(value: float, truth: float, floor: float) -> bool:
    """``value`` is below ``truth`` and keeps at least half of the truth's distance from the
    collapse point: a lower bound that says something about the policy. (A margin of 1% let
    WIS estimates of 1.5–3.1 against truths of 78–89 count as lower bounds in the OPE
    benchmark on uniform logs.)"""
    low = collapse_point(truth, floor)
    return low + 0.5 * (truth - low) < value < truth


def summarize(rows: Sequence[Mapping[str, Any]], k: int = 1, floor: float | None = None) -> list[dict[str, Any]]:
    """One row per estimator from an :func:`evaluate_policies` table that has ``truth``:
    Spearman correlation, regret@k, median/mean relative and absolute errors, the fraction of
    policies it underestimates (a lower bound should be near 1) and its CI coverage.

    With ``floor`` (the a-priori lowest value, ``min(0, r_min) / (1 - γ)``) also
    ``fraction_below_truth_off_floor``: the share of policies it puts below the truth *and*
    keeps at least half of the truth's distance from where an uninformative estimate
    collapses (see :func:`collapse_point`). An estimate at the floor (a conservative estimate
    pushed all the way down) or at 0 (an importance-sampling estimate whose weights all
    vanished) is below the truth without saying anything; a useful lower bound scores near 1
    here, not only in ``fraction_below_truth``. Half, as the conservative-FQE tests require."""
    out = []
    for name in dict.fromkeys(row["estimator"] for row in rows):
        mine = [row for row in rows if row["estimator"] == name]
        if any("truth" not in row for row in mine):
            raise ValueError("summarize needs rows with 'truth' (pass truth= to evaluate_policies)")
        values = [row["value"] for row in mine]
        truths = [row["truth"] for row in mine]
        rel = np.array([row["rel_error"] for row in mine])
        out.append({
            "estimator": name, "num_policies": len(mine),
            "spearman": spearman_correlation(values, truths),
            f"regret@{k}": regret_at_k(values, truths, k),
            "median_rel_error": float(np.median(rel)), "mean_rel_error": float(np.mean(rel)),
            "median_abs_error": float(np.median([row["abs_error"] for row in mine])),
            "fraction_below_truth": float(np.mean([row["value"] < row["truth"] for row in mine])),
            "ci_coverage": float(np.mean([row["covered"] for row in mine])),
            "seconds": float(sum(row["seconds"] for row in mine)),
        })
        if floor is not None:
            out[-1]["fraction_below_truth_off_floor"] = float(np.mean(
                [below_truth_off_floor(row["value"], row["truth"], floor) for row in mine]))
    return out


__all__ = ["Estimator", "absolute_error", "relative_error", "spearman_correlation", "regret_at_k",
           "evaluate_policies", "summarize", "collapse_point", "below_truth_off_floor"]
