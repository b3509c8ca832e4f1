"""The result of every estimator, and the bootstrap that gives it a confidence interval."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy.stats import norm

_BOOTSTRAP_CELLS = 1 << 22  # replicates × samples per chunk of resampling counts (~32 MiB)


@dataclass
class Estimate:
    """A policy value with a two-sided ``confidence`` interval [ci_low, ci_high].

    ``num_samples`` counts the units the interval resamples: episodes (IS family, DR),
    initial states (FQE), users (A/B test). ``diagnostics`` holds estimator-specific
    figures (effective sample size, TD loss, ...).
    """

    value: float
    ci_low: float
    ci_high: float
    estimator: str = ""
    confidence: float = 0.95
    std_error: float = math.nan
    num_samples: int = 0
    diagnostics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, float | str | int]:
        """Flat dict (diagnostics prefixed ``diag_``) for tables and logs."""
        out: dict[str, float | str | int] = {
            "estimator": self.estimator, "value": self.value, "ci_low": self.ci_low,
            "ci_high": self.ci_high, "confidence": self.confidence, "std_error": self.std_error,
            "num_samples": self.num_samples}
        out.update({f"diag_{k}": v for k, v in self.diagnostics.items()})
        return out


def check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def bootstrap_replicates(statistic: Callable[[np.ndarray], np.ndarray], num_samples: int,
                         num_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """(num_bootstrap,) values of ``statistic(counts)`` under the nonparametric bootstrap.

    ``counts`` is a (b, num_samples) matrix of multinomial resampling counts (each row one
    resample of the units with replacement); ``statistic`` maps it to (b,) values. Counts
    instead of index lists keep every estimator a few matrix products per chunk.
    """
    if num_bootstrap < 1:
        raise ValueError(f"num_bootstrap must be >= 1, got {num_bootstrap}")
    if num_samples < 1:
        raise ValueError("cannot bootstrap zero samples")
    chunk = max(1, _BOOTSTRAP_CELLS // num_samples)
    probabilities = np.full(num_samples, 1.0 / num_samples)
    out = []
    for start in range(0, num_bootstrap, chunk):
        b = min(chunk, num_bootstrap - start)
        out.append(np.asarray(statistic(rng.multinomial(num_samples, probabilities, size=b).astype(np.float64))))
    return np.concatenate(out)


def percentile_estimate(value: float, replicates: np.ndarray, confidence: float, estimator: str,
                        num_samples: int, diagnostics: dict[str, float] | None = None) -> Estimate:
    """Point estimate plus the percentile interval and standard error of bootstrap replicates."""
    check_confidence(confidence)
    finite = replicates[np.isfinite(replicates)]
    alpha = (1.0 - confidence) / 2.0
    if finite.size:
        low, high = np.quantile(finite, [alpha, 1.0 - alpha])
        se = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
    else:
        low = high = se = math.nan
    return Estimate(float(value), float(low), float(high), estimator, confidence, se, num_samples,
                    dict(diagnostics or {}))


def normal_estimate(samples: np.ndarray, confidence: float, estimator: str,
                    diagnostics: dict[str, float] | None = None) -> Estimate:
    """Mean of i.i.d. samples with the normal-approximation interval mean ± z·s/√n."""
    check_confidence(confidence)
    samples = np.asarray(samples, dtype=np.float64)
    n = samples.size
    mean = float(samples.mean())
    se = float(samples.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    z = float(norm.ppf(0.5 + confidence / 2.0))
    return Estimate(mean, mean - z * se, mean + z * se, estimator, confidence, se, n, dict(diagnostics or {}))
