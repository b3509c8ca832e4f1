"""The truncated normal: the one noise model behind every logged continuous action with an
exact density (behaviour policies, online exploration, the batch loop, OPE's smoothed
targets). A leaf module (numpy and scipy only).

``low``/``high`` are keyword-only with the fusion action box [-1, 1] as default, so a call
either names its box or uses the action box, and no argument order can be mixed up.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_ndtr, ndtr, ndtri


def truncated_normal_sample(mean: np.ndarray, sigma: float | np.ndarray, rng: np.random.Generator, *,
                            low: float = -1.0, high: float = 1.0) -> np.ndarray:
    """Samples of N(mean, σ²) truncated to [low, high] (elementwise), by inverse CDF."""
    mean = np.clip(mean, low, high)
    cdf_low, cdf_high = ndtr((low - mean) / sigma), ndtr((high - mean) / sigma)
    u = cdf_low + rng.random(np.shape(mean)) * (cdf_high - cdf_low)
    return np.clip(mean + sigma * ndtri(np.clip(u, 1e-15, 1.0 - 1e-15)), low, high)


def truncated_normal_log_prob(action: np.ndarray, mean: np.ndarray, sigma: float | np.ndarray, *,
                              low: float = -1.0, high: float = 1.0) -> np.ndarray:
    """log-density of ``action`` under N(mean, σ²) truncated to [low, high], summed over the
    last axis. ``mean`` is clipped into the box first, as :func:`truncated_normal_sample` does."""
    mean = np.clip(mean, low, high)
    z = (action - mean) / sigma
    # log(Φ(b) - Φ(a)) = log Φ(b) + log(1 - Φ(a)/Φ(b)); with the mean inside the box Φ(b) >= 1/2
    log_mass = log_ndtr((high - mean) / sigma) + np.log1p(
        -np.exp(log_ndtr((low - mean) / sigma) - log_ndtr((high - mean) / sigma)))
    log_density = -0.5 * z**2 - np.log(sigma) - 0.5 * np.log(2.0 * np.pi) - log_mass
    return log_density.sum(-1)
