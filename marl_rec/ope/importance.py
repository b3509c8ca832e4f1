"""Importance sampling over whole trajectories, and doubly robust estimators.

With per-step ratios ρ_t = π(a_t|s_t) / μ(a_t|s_t) and cumulative weights
w_t = Π_{u≤t} ρ_u (w_{-1} = 1) of each of n logged episodes (Precup et al. 2000;
Jiang & Li 2016; Thomas & Brunskill 2016):

===========  ===========================================================================
``is``       (1/n) Σ_i w^i_{T-1} Σ_t γ^t r^i_t                      (trajectory-wise)
``wis``      Σ_i w^i_{T-1} G^i / Σ_i w^i_{T-1}                     (self-normalised)
``pdis``     (1/n) Σ_i Σ_t γ^t w^i_t r^i_t                           (per-decision)
``wpdis``    Σ_t γ^t Σ_i w^i_t r^i_t / Σ_i w^i_t
``dr``       (1/n) Σ_i Σ_t γ^t [w^i_t (r^i_t - Q̂(s^i_t, a^i_t)) + w^i_{t-1} V̂(s^i_t)]
``wdr``      ``dr`` with w_t / n replaced by w^i_t / Σ_j w^j_t (and likewise w_{t-1})
===========  ===========================================================================

V̂(s) = E_{a~π}[Q̂(s, a)] and Q̂ comes from FQE. Episodes of different lengths are padded
after their end with ρ = 1 and zero reward (an absorbing state), the usual convention.
At horizon 1 (bandit feedback) ``is`` is IPS, ``wis`` is SNIPS and ``dr`` is the
doubly robust bandit estimator; FQE there is the direct method (reward regression).

A deterministic target has no density: the target is smoothed (see
:mod:`marl_rec.ope.policy`), and these estimators report the smoothed policy's value.
The DR model Q̂ is FQE of the policy itself (shared with the FQE estimator), while V̂
averages Q̂ under the smoothed target (``num_value_samples`` draws, continuous), which keeps
DR unbiased for the smoothed target whatever Q̂ is.

Confidence intervals: percentile bootstrap over episodes (weights renormalised within each
resample for the weighted estimators); for DR it is conditional on the fitted Q̂, unless the
FQE model is a bootstrap ensemble (``FQEConfig(episode_bootstrap=True)``): each critic is then a
refit on resampled episodes and the replicates are shared out over the critics, so the interval
also carries Q̂'s own uncertainty (coverage: bench/ope_coverage.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from marl_rec.ope.estimate import Estimate, bootstrap_replicates, check_confidence, percentile_estimate
from marl_rec.ope.fqe import FQEConfig
from marl_rec.ope.policy import (EpsilonGreedyPolicy, GaussianSmoothedPolicy, StochasticTarget,
                                 as_stochastic_target)

if TYPE_CHECKING:
    from marl_rec.ope.context import OPEContext

IS_KINDS = ("is", "wis", "pdis", "wpdis")
DR_KINDS = ("dr", "wdr")


@dataclass
class EpisodeArrays:
    """Per-episode (E, T) matrices, zero-padded after each episode's end.

    ``log_ratios`` are log ρ_t (0 in the padding); ``q_logged`` = Q̂(s_t, a_t) and
    ``v_target`` = V̂(s_t) (0 in the padding) are needed by DR only.
    """

    rewards: np.ndarray
    log_ratios: np.ndarray
    q_logged: np.ndarray | None = None
    v_target: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("rewards", "log_ratios", "q_logged", "v_target"):
            value = getattr(self, name)
            if value is None:
                continue
            value = np.asarray(value, dtype=np.float64)
            setattr(self, name, value)
            if value.ndim != 2 or value.shape != np.shape(self.rewards):
                raise ValueError(f"EpisodeArrays.{name} must have the shape of 'rewards' "
                                 f"{np.shape(self.rewards)} (E episodes, T steps), got {value.shape}")
            if name == "log_ratios":
                if np.any(np.isnan(value)) or np.any(value == np.inf):
                    bad = np.argwhere(np.isnan(value) | (value == np.inf))[0]
                    raise ValueError(f"log importance ratios must not be NaN or +inf "
                                     f"(episode {bad[0]}, step {bad[1]}: {value[tuple(bad)]})")
            elif not np.all(np.isfinite(value)):
                bad = np.argwhere(~np.isfinite(value))[0]
                raise ValueError(f"EpisodeArrays.{name} contains NaN or infinite values (episode {bad[0]}, "
                                 f"step {bad[1]})")


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (no weight on that step)."""
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


@dataclass
class _Prepared:
    """What the estimators need, computed once per dataset and reused by every resample."""

    discount: np.ndarray  # (T,) γ^t
    weights: np.ndarray  # (E, T) w_t, unnormalised
    scaled: np.ndarray  # (E, T) w_t / max_i w^i_t (overflow-safe; ratios within a column unchanged)
    scaled_prev: np.ndarray  # (E, T) the same for w_{t-1}
    returns: np.ndarray  # (E,) Σ γ^t r_t
    log_weights: np.ndarray  # (E, T) log w_t


def _prepare(arrays: EpisodeArrays, gamma: float) -> _Prepared:
    e, t = arrays.rewards.shape
    discount = gamma ** np.arange(t, dtype=np.float64)
    log_w = np.cumsum(arrays.log_ratios, axis=1)
    log_w_prev = np.concatenate([np.zeros((e, 1)), log_w[:, :-1]], axis=1)

    def scaled(log: np.ndarray) -> np.ndarray:
        top = log.max(0, keepdims=True)
        return np.exp(log - np.where(np.isfinite(top), top, 0.0))

    with np.errstate(over="ignore"):
        weights = np.exp(log_w)
    return _Prepared(discount, weights, scaled(log_w), scaled(log_w_prev), arrays.rewards @ discount, log_w)


def _replicates(kind: str, p: _Prepared, arrays: EpisodeArrays, counts: np.ndarray) -> np.ndarray:
    """(b,) estimates of ``kind`` for each row of resampling counts (b, E); ones = the estimate."""
    n = counts.sum(1)
    g, r = p.discount, arrays.rewards
    if kind == "is":
        return counts @ (p.weights[:, -1] * p.returns) / n
    if kind == "wis":
        w = p.scaled[:, -1]
        return _safe_ratio(counts @ (w * p.returns), counts @ w)
    if kind == "pdis":
        return counts @ ((p.weights * r) @ g) / n
    if kind == "wpdis":
        return _safe_ratio(counts @ (p.scaled * r), counts @ p.scaled) @ g
    q, v = arrays.q_logged, arrays.v_target
    if q is None or v is None:
        raise ValueError(f"{kind!r} needs q_logged and v_target (the model's Q̂ and V̂)")
    if kind == "dr":
        w_prev = np.concatenate([np.ones((len(r), 1)), p.weights[:, :-1]], axis=1)
        return counts @ ((p.weights * (r - q) + w_prev * v) @ g) / n
    if kind == "wdr":
        return (_safe_ratio(counts @ (p.scaled * (r - q)), counts @ p.scaled)
                + _safe_ratio(counts @ (p.scaled_prev * v), counts @ p.scaled_prev)) @ g
    raise ValueError(f"unknown estimator kind {kind!r}; expected one of {IS_KINDS + DR_KINDS}")


def importance_estimate(kind: str, arrays: EpisodeArrays, gamma: float, num_bootstrap: int = 1000,
                        confidence: float = 0.95, rng: np.random.Generator | None = None,
                        model_replicates: list[EpisodeArrays] | None = None) -> Estimate:
    """IS / WIS / PDIS / WPDIS / DR / WDR from per-episode arrays, with a bootstrap CI.

    The array-level entry point: tests and custom pipelines can pass ratios and model
    values directly; the estimator classes build them from a dataset and a policy.
    ``model_replicates`` (DR/WDR): the same arrays with the Q̂/V̂ of each bootstrap refit of
    the model; the bootstrap replicates are shared out over them equally, so the interval
    includes the model's uncertainty (the point estimate stays the one of ``arrays``).
    """
    if kind not in IS_KINDS + DR_KINDS:
        raise ValueError(f"unknown estimator kind {kind!r}; expected one of {IS_KINDS + DR_KINDS}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    rng = rng if rng is not None else np.random.default_rng(0)
    p = _prepare(arrays, gamma)
    e = arrays.rewards.shape[0]
    value = float(_replicates(kind, p, arrays, np.ones((1, e)))[0])
    if model_replicates:
        share = -(-num_bootstrap // len(model_replicates))  # ceil: every model gets the same count
        replicates = np.concatenate([
            bootstrap_replicates(lambda c, m=model: _replicates(kind, p, m, c), e, share, rng)
            for model in model_replicates])
    else:
        replicates = bootstrap_replicates(lambda c: _replicates(kind, p, arrays, c), e, num_bootstrap, rng)
    w = p.scaled[:, -1]
    diagnostics = {
        # effective sample size of the trajectory weights, Kish: (Σw)² / Σw²
        "ess": float(w.sum() ** 2 / (w**2).sum()) if (w**2).sum() > 0 else 0.0,
        "max_log_weight": float(p.log_weights[:, -1].max()),
    }
    return percentile_estimate(value, replicates, confidence, kind, e, diagnostics)


@dataclass(frozen=True)
class ImportanceConfig:
    """Trajectory IS estimators. ``bandwidth``/``epsilon`` smooth deterministic targets
    (continuous/discrete, see :mod:`marl_rec.ope.policy`)."""

    kind: str = "wpdis"  # is | wis | pdis | wpdis
    bandwidth: float = 0.1
    epsilon: float = 0.05
    num_bootstrap: int = 1000
    confidence: float = 0.95
    seed: int = 0
    name: str = ""  # "" = kind

    def __post_init__(self) -> None:
        if self.kind not in IS_KINDS:
            raise ValueError(f"ImportanceConfig.kind must be one of {IS_KINDS}, got {self.kind!r}")
        _check_smoothing(self)


@dataclass(frozen=True)
class DoublyRobustConfig:
    """DR (``weighted=False``) or WDR with an FQE model (``fqe``) as the baseline."""

    weighted: bool = False
    fqe: FQEConfig = field(default_factory=FQEConfig)
    bandwidth: float = 0.1
    epsilon: float = 0.05
    num_value_samples: int = 16  # a ~ π_h(s) per state for V̂ (continuous targets)
    num_bootstrap: int = 1000
    confidence: float = 0.95
    seed: int = 0
    name: str = ""  # "" = "dr" / "wdr"

    def __post_init__(self) -> None:
        if isinstance(self.fqe, dict) or not isinstance(self.fqe, FQEConfig):
            object.__setattr__(self, "fqe", FQEConfig(**dict(self.fqe)))
        if self.num_value_samples < 1:
            raise ValueError(f"DoublyRobustConfig.num_value_samples must be >= 1, got {self.num_value_samples}")
        _check_smoothing(self)


def _check_smoothing(config: Any) -> None:
    name = type(config).__name__
    if not config.bandwidth > 0:
        raise ValueError(f"{name}.bandwidth must be > 0, got {config.bandwidth}")
    if not 0.0 < config.epsilon <= 1.0:
        raise ValueError(f"{name}.epsilon must be in (0, 1], got {config.epsilon}")
    if config.num_bootstrap < 1:
        raise ValueError(f"{name}.num_bootstrap must be >= 1, got {config.num_bootstrap}")
    check_confidence(config.confidence)


def _reproducible(target: StochasticTarget) -> bool:
    """Whether ``target``'s densities and samples depend only on its policy's deterministic
    action and the generator passed in (the smoothings), not on the policy's own random stream
    (a natively stochastic policy): only such tables may be cached in the context, since
    computing one again would otherwise give other values."""
    return isinstance(target, (GaussianSmoothedPolicy, EpsilonGreedyPolicy))


def _log_ratios(context: OPEContext, policy: Any, target: StochasticTarget, config: Any) -> np.ndarray:
    """(N,) log π(a_t|s_t) - log μ(a_t|s_t) over the dataset; computed once per context for a
    smoothed target (the IS family and DR/WDR with the same smoothing share it)."""
    data = context.dataset
    behaviour = context.behaviour_log_probs  # raises a clear error when unavailable

    def compute() -> np.ndarray:
        return target.log_prob(data.observations, data.actions) - behaviour

    if not _reproducible(target):
        return compute()
    return context.policy_table(policy, ("log_ratios", config.bandwidth, config.epsilon), compute)


class ImportanceSamplingEstimator:
    """``estimate(context, policy)`` with IS, WIS, PDIS or WPDIS (``config.kind``)."""

    def __init__(self, config: ImportanceConfig | None = None) -> None:
        self.config = config or ImportanceConfig()
        self.name = self.config.name or self.config.kind

    def estimate(self, context: OPEContext, policy: Any) -> Estimate:
        c = self.config
        target = as_stochastic_target(context.acting(policy), context.dataset.action_spec, c.bandwidth, c.epsilon)
        arrays = EpisodeArrays(context.pad(context.dataset.rewards), context.pad(_log_ratios(context, policy, target, c)))
        out = importance_estimate(c.kind, arrays, context.gamma, c.num_bootstrap, c.confidence,
                                  np.random.default_rng(c.seed))
        out.estimator = self.name
        return out

    def __repr__(self) -> str:
        return f"ImportanceSamplingEstimator({self.config})"


class DoublyRobustEstimator:
    """``estimate(context, policy)`` with DR or WDR; Q̂ is the context's FQE model of the policy."""

    def __init__(self, config: DoublyRobustConfig | None = None) -> None:
        self.config = config or DoublyRobustConfig()
        self.name = self.config.name or ("wdr" if self.config.weighted else "dr")

    def estimate(self, context: OPEContext, policy: Any) -> Estimate:
        c, data = self.config, context.dataset
        spec = data.action_spec
        target = as_stochastic_target(context.acting(policy), spec, c.bandwidth, c.epsilon)
        log_ratios = _log_ratios(context, policy, target, c)
        fitted = context.fitted_q(policy, c.fqe)
        # Q̂(s_t, a_t) and V̂(s_t) over the dataset are the same for DR and WDR of one FQE model
        # and smoothing: the context computes each once (an OPE pass with both computed them twice)
        fit = context.fit_key(c.fqe)
        q_logged = context.policy_table(  # (K, N), one row per critic
            policy, ("q_logged", fit), lambda: fitted.q_values(data.observations, data.actions))
        rng = np.random.default_rng(c.seed)

        def state_values() -> tuple[np.ndarray, dict[str, Any]]:
            """(K, N) V̂, and the generator's state after its draws (the bootstrap draws next)."""
            table = target.probs(data.observations) if spec.discrete else target.sample(
                data.observations, c.num_value_samples, rng)
            return fitted.state_values(data.observations, table), rng.bit_generator.state

        if _reproducible(target):
            v_target, after = context.policy_table(
                policy, ("v_target", fit, c.bandwidth, c.epsilon, c.num_value_samples, c.seed), state_values)
            rng.bit_generator.state = after  # as if this call had drawn the samples: the same bootstrap
        else:
            v_target, _ = state_values()
        rewards, ratios = context.pad(data.rewards), context.pad(log_ratios)
        arrays = EpisodeArrays(rewards, ratios, context.pad(q_logged.mean(0)), context.pad(v_target.mean(0)))
        refits = ([EpisodeArrays(rewards, ratios, context.pad(q), context.pad(v)) for q, v in zip(q_logged, v_target)]
                  if c.fqe.episode_bootstrap else None)  # each critic a bootstrap refit of Q̂
        out = importance_estimate("wdr" if c.weighted else "dr", arrays, context.gamma, c.num_bootstrap,
                                  c.confidence, rng, model_replicates=refits)
        out.estimator = self.name
        out.diagnostics.update({f"fqe_{k}": v for k, v in fitted.diagnostics.items()})
        out.diagnostics["model_value"] = float(fitted.state_values(
            context.initial_observations,
            target.probs(context.initial_observations) if spec.discrete
            else target.sample(context.initial_observations, c.num_value_samples, rng)).mean())
        return out

    def __repr__(self) -> str:
        return f"DoublyRobustEstimator({self.config})"


__all__ = ["EpisodeArrays", "importance_estimate", "ImportanceConfig", "DoublyRobustConfig",
           "ImportanceSamplingEstimator", "DoublyRobustEstimator", "IS_KINDS", "DR_KINDS"]
