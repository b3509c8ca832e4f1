"""Target policies as OPE sees them: actions on logged states, and exact densities for IS.

A *policy* is any object with ``act(obs, deterministic=True) -> actions`` (every
:class:`~marl_rec.algos.base.OfflineAlgorithm` is one). Continuous actions come back as
(N, dim) floats, discrete ones as (N,) integers. A policy that also has
``log_prob(obs, actions) -> (N,)`` is *stochastic*: OPE then evaluates the distribution it
samples from with ``act(obs, deterministic=False)``.

Importance sampling needs a density ratio π(a|s)/μ(a|s), which a deterministic target does
not have (π is a point mass, μ a density). We handle it honestly by *smoothing* the target
and estimating the smoothed policy's value, which is what the IS family and DR report:

* continuous: :class:`GaussianSmoothedPolicy`, π_h(a|s) = Π_i TN(a_i; π(s)_i, h², [low, high]),
  a Gaussian of bandwidth ``h`` around the deterministic action, *truncated* (not clipped)
  to the action box so the density is exact. Its value differs from π's by O(h²) where the
  Q-function is smooth; smaller h means less bias and heavier importance weights
  (the weights scale like (σ_μ / h)^dim).
* discrete: :class:`EpsilonGreedyPolicy`, π_ε(a|s) = (1 - ε)·1[a = π(s)] + ε / n.

FQE evaluates the policy itself (deterministic targets stay deterministic there).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from marl_rec.contracts import ActionSpec
from marl_rec.distributions import truncated_normal_log_prob, truncated_normal_sample

_ACT_CHUNK = 16384  # rows per act() call: keeps a policy's forward pass small in memory


@runtime_checkable
class Policy(Protocol):
    """What OPE needs of a policy (an OfflineAlgorithm qualifies)."""

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray: ...


def act_batched(policy: Any, obs: np.ndarray, action_spec: ActionSpec, deterministic: bool = True) -> np.ndarray:
    """``policy.act`` on many states in chunks, checked against the action space.

    Returns (N, dim) float64 for continuous actions, (N,) int64 for discrete ones.
    """
    if not hasattr(policy, "act"):
        raise TypeError(f"a target policy needs an act(obs, deterministic) method; got {type(policy).__name__}")
    if deterministic and isinstance(policy, ActionMemo):
        known = policy.known_actions(obs, action_spec)
        if known is not None:
            return known
    obs = np.asarray(obs, dtype=np.float32)
    parts = [np.asarray(policy.act(obs[i:i + _ACT_CHUNK], deterministic=deterministic))
             for i in range(0, len(obs), _ACT_CHUNK)]
    actions = np.concatenate(parts) if parts else np.zeros((0,))
    n = len(obs)
    if action_spec.discrete:
        actions = actions.reshape(n) if actions.size == n else actions
        if actions.shape != (n,) or not np.all(np.isfinite(actions)) or np.any(actions != np.round(actions)):
            raise ValueError(f"policy.act must return ({n},) integer actions for a discrete space, "
                             f"got shape {actions.shape}")
        actions = actions.astype(np.int64)
        if actions.min(initial=0) < 0 or actions.max(initial=0) >= action_spec.num_actions:
            raise ValueError(f"policy.act returned actions outside 0..{action_spec.num_actions - 1}")
        return actions
    if actions.shape != (n, action_spec.dim):
        raise ValueError(f"policy.act must return ({n}, {action_spec.dim}) actions, got shape {actions.shape}")
    if not np.all(np.isfinite(actions)):
        raise ValueError("policy.act returned NaN or infinite actions")
    return np.clip(actions.astype(np.float64), action_spec.low, action_spec.high)


class ActionMemo:
    """A deterministic policy (no ``log_prob``) whose actions at some state arrays are computed
    once: :func:`act_batched` on one of ``states`` (that very array object, e.g. a dataset's
    column) returns them from ``remember(key, compute)`` (an :class:`~marl_rec.ope.OPEContext`'s
    ``policy_table`` for the policy), as a copy; other states go to the policy. FQE's fits, the
    smoothed targets of IS and DR and FQE's value all ask for the policy's action at the
    dataset's states: one OPE pass computes each once. The arrays must not be modified while the
    memo is in use, and ``policy.act(obs, deterministic=True)`` must be a function of ``obs``."""

    def __init__(self, policy: Any, states: dict[str, np.ndarray],
                 remember: Callable[[Hashable, Callable[[], np.ndarray]], np.ndarray]) -> None:
        if is_stochastic(policy):
            raise ValueError("ActionMemo is for deterministic policies; this one has log_prob")
        self.policy, self.states, self.remember = policy, states, remember

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return self.policy.act(obs, deterministic=deterministic)

    def known_actions(self, obs: np.ndarray, action_spec: ActionSpec) -> np.ndarray | None:
        """The policy's actions at ``obs`` if it is one of ``states`` (else None)."""
        for name, states in self.states.items():
            if obs is states:
                return self.remember(("actions", name, action_spec),
                                     lambda: act_batched(self.policy, obs, action_spec)).copy()
        return None


def is_stochastic(policy: Any) -> bool:
    """A policy OPE treats as a distribution: a :class:`StochasticTarget` or anything with ``log_prob``."""
    return isinstance(policy, StochasticTarget) or callable(getattr(policy, "log_prob", None))


class StochasticTarget(ABC):
    """A target policy with exact densities: what the IS family and DR reweight by."""

    action_spec: ActionSpec
    policy: Any  # the policy being smoothed or wrapped

    @abstractmethod
    def log_prob(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """(N,) log π(a|s) of the given actions (log-density for continuous actions)."""

    @abstractmethod
    def sample(self, obs: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
        """(M, N, dim) continuous or (M, N) discrete actions drawn from π(·|s)."""

    def probs(self, obs: np.ndarray) -> np.ndarray:
        """(N, num_actions) π(·|s) for discrete actions."""
        if not self.action_spec.discrete:
            raise ValueError("probs() is defined for discrete action spaces only")
        n, num_actions = len(obs), self.action_spec.num_actions
        every = np.repeat(np.arange(num_actions)[None], n, axis=0)  # (N, A)
        logp = self.log_prob(np.repeat(obs, num_actions, axis=0), every.reshape(-1)).reshape(n, num_actions)
        return np.exp(logp)

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """The wrapped policy's own action: smoothing exists for reweighting only."""
        return self.policy.act(obs, deterministic=True)


class GaussianSmoothedPolicy(StochasticTarget):
    """π_h(a|s): a Gaussian of std ``bandwidth`` around ``policy.act(s)``, truncated to the box."""

    def __init__(self, policy: Any, action_spec: ActionSpec, bandwidth: float) -> None:
        if action_spec.discrete:
            raise ValueError("GaussianSmoothedPolicy needs a continuous action space; use EpsilonGreedyPolicy")
        if not bandwidth > 0:
            raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
        self.policy, self.action_spec, self.bandwidth = policy, action_spec, float(bandwidth)

    def mean_action(self, obs: np.ndarray) -> np.ndarray:
        return act_batched(self.policy, obs, self.action_spec, deterministic=True)

    def log_prob(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        spec, actions = self.action_spec, np.asarray(actions, np.float64)
        log_prob = truncated_normal_log_prob(actions, self.mean_action(obs), self.bandwidth, low=spec.low, high=spec.high)
        inside = ((actions >= spec.low) & (actions <= spec.high)).all(-1)
        return np.where(inside, log_prob, -np.inf)  # no density outside the box: weight 0

    def sample(self, obs: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
        """(M, N, dim) draws; one ``rng.random`` call for all M, as one batch of N·M states."""
        spec, mean = self.action_spec, self.mean_action(obs)
        return truncated_normal_sample(np.broadcast_to(mean, (num_samples, *mean.shape)), self.bandwidth,
                                       rng, low=spec.low, high=spec.high)


class EpsilonGreedyPolicy(StochasticTarget):
    """π_ε(a|s) = (1 - ε)·1[a = policy.act(s)] + ε / num_actions."""

    def __init__(self, policy: Any, action_spec: ActionSpec, epsilon: float) -> None:
        if not action_spec.discrete:
            raise ValueError("EpsilonGreedyPolicy needs a discrete action space; use GaussianSmoothedPolicy")
        if not 0.0 < epsilon <= 1.0:
            raise ValueError(f"epsilon must be in (0, 1], got {epsilon}")
        self.policy, self.action_spec, self.epsilon = policy, action_spec, float(epsilon)

    def probs(self, obs: np.ndarray) -> np.ndarray:
        greedy = act_batched(self.policy, obs, self.action_spec, deterministic=True)
        out = np.full((len(obs), self.action_spec.num_actions), self.epsilon / self.action_spec.num_actions)
        out[np.arange(len(obs)), greedy] += 1.0 - self.epsilon
        return out

    def log_prob(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        actions = np.asarray(actions, dtype=np.int64)
        return np.log(self.probs(obs)[np.arange(len(obs)), actions])

    def sample(self, obs: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
        probs = self.probs(obs)
        u = rng.random((num_samples, len(obs), 1))
        return (u > np.cumsum(probs, axis=1)[None]).sum(-1).clip(max=self.action_spec.num_actions - 1)


class NativeStochasticPolicy(StochasticTarget):
    """A policy with its own ``log_prob``; samples come from ``act(obs, deterministic=False)``
    (the policy's own random stream, so ``rng`` is not used)."""

    def __init__(self, policy: Any, action_spec: ActionSpec) -> None:
        self.policy, self.action_spec = policy, action_spec

    def log_prob(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float32)
        parts = [np.asarray(self.policy.log_prob(obs[i:i + _ACT_CHUNK], actions[i:i + _ACT_CHUNK]),
                            dtype=np.float64).reshape(-1) for i in range(0, len(obs), _ACT_CHUNK)]
        out = np.concatenate(parts) if parts else np.zeros(0)
        if out.shape != (len(obs),):
            raise ValueError(f"policy.log_prob must return ({len(obs)},) values, got {out.shape}")
        if np.any(np.isnan(out)) or np.any(out == np.inf):
            raise ValueError("policy.log_prob returned NaN or +inf")
        return out

    def sample(self, obs: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([act_batched(self.policy, obs, self.action_spec, deterministic=False)
                         for _ in range(num_samples)])

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return self.policy.act(obs, deterministic=deterministic)


class DeterministicView:
    """Hide a policy's ``log_prob`` so OPE evaluates its deterministic action (what is deployed)
    — and never samples from it (sampling would advance the algorithm's own generator)."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return self.policy.act(obs, deterministic=True)


def as_stochastic_target(policy: Any, action_spec: ActionSpec, bandwidth: float = 0.1,
                         epsilon: float = 0.05) -> StochasticTarget:
    """The distribution the IS family reweights by: the policy's own if it has ``log_prob``,
    otherwise its Gaussian (continuous) or ε-greedy (discrete) smoothing."""
    if isinstance(policy, StochasticTarget):
        return policy
    if is_stochastic(policy):
        return NativeStochasticPolicy(policy, action_spec)
    if action_spec.discrete:
        return EpsilonGreedyPolicy(policy, action_spec, epsilon)
    return GaussianSmoothedPolicy(policy, action_spec, bandwidth)


def action_table(policy: Any, obs: np.ndarray, action_spec: ActionSpec, num_samples: int,
                 rng: np.random.Generator) -> np.ndarray:
    """What a value function needs of a policy at these states.

    Discrete: (N, num_actions) probabilities (one-hot for a deterministic policy).
    Continuous: (M, N, dim) actions (M = 1 for a deterministic policy, ``num_samples`` else).
    """
    if action_spec.discrete:
        if is_stochastic(policy):
            return as_stochastic_target(policy, action_spec).probs(obs)
        greedy = act_batched(policy, obs, action_spec)
        return np.eye(action_spec.num_actions)[greedy]
    if is_stochastic(policy):
        return as_stochastic_target(policy, action_spec).sample(obs, num_samples, rng)
    return act_batched(policy, obs, action_spec)[None]


__all__ = ["Policy", "ActionMemo", "StochasticTarget", "GaussianSmoothedPolicy", "EpsilonGreedyPolicy",
           "NativeStochasticPolicy", "DeterministicView", "as_stochastic_target", "action_table",
           "act_batched", "is_stochastic"]
