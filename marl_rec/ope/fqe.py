"""Fitted Q Evaluation (Le et al. 2019) and its conservative variant.

FQE regresses Q(s, a) onto r + γ·(1 - done)·E_{a'~π}[Q̄(s', a')] on the logged
transitions, with a Polyak-averaged target network Q̄ (:func:`marl_rec.nets.soft_update`),
using the shared :class:`marl_rec.nets.CriticEnsemble`: every critic of the ensemble is an
independent FQE fit (own initialisation, own target), which the confidence interval uses.
The policy value is V̂ = mean over initial states s₀ of E_{a~π}[Q(s₀, a)].

Conservative FQE adds a CQL-style penalty with weight ``conservative_weight`` (α):

* ``"policy_gap"`` (default; CQL eq. 2 written for policy evaluation):
  α·(E_{s~D, a~π}[Q(s, a)] - E_{(s,a)~D}[Q(s, a)]) — pushes Q down at the target's actions
  and up at the logged ones, so V̂ = E_π Q̂ lower-bounds V^π once α is large enough;
* ``"logsumexp"`` (CQL(H)): α·(log E_{a~U}[exp Q(s, a)] - Q(s, a_data)) with the expectation
  over ``num_penalty_samples`` uniform actions in the box (continuous) or exactly over
  all actions (discrete). It is pessimistic about the soft-greedy policy of Q — the one an
  offline learner would pick — but can *raise* Q at actions a stochastic target takes less
  often than the data does, so it is not a lower bound for every π.

The penalty's push-down stops at the a-priori floor ``min(0, r_min) / (1 - γ)`` (r_min the
smallest logged reward; the longest logged episode instead of 1 / (1 - γ) when γ = 1): for a
deterministic target with continuous actions, Q(s, π(s)) where π leaves the data is tied
to nothing but the penalty and would otherwise fall without bound (the density ratio
π/μ of the CQL fixed point is infinite there). Such a policy is then estimated at the
floor — a valid, uninformative lower bound (Q values are reported clipped to it, and
``fraction_at_floor`` says how often that happened) — while policies the data supports get a
finite pessimism that grows as their support shrinks.

Units: the critic learns Q / ``value_scale`` (auto: the mean |discounted return| of the
data), so learning behaves the same on any reward scale; α is in units of the mean
|reward| per logged step — at the tabular CQL fixed point each step's Q is lowered by
about α·mean|r|·(π/μ - 1) — so one α means the same on any reward scale and horizon.
With a deterministic target and continuous actions the effective ratio π/μ the network
sees is large, so small α are strong: on 50k fusion-ranking transitions logged by the
noisy heuristic expert (σ = 0.3), α = 0.03 put a behaviour-cloning policy 5% under its
true value and constant policies far from the data at or near the floor (α = 0.01 left
the BC policy 4% above it).

Truncated episodes: in the fusion-ranking simulator a session's request cap is part of
the task (the observation holds the request index) and the ground-truth A/B value counts
rewards up to the session's end, so by default a truncation ends the return like a
terminal does (``bootstrap_truncated=False``), as the IS family does with whole logged
episodes. Set it to True where the time limit is only a logging artefact.

Confidence interval: each replicate resamples the initial states and picks one critic of the
ensemble at random. By default (``episode_bootstrap=False``) the critics differ only by their
initialisation, so the interval covers the start-state distribution and part of the model
uncertainty, not the sampling variability of the transitions (measured coverage:
bench/results/ope_coverage.json). With ``episode_bootstrap=True`` every critic is a bootstrap
refit: its TD (and penalty) terms weight each logged episode by its own Poisson(1) count (the
Poisson bootstrap: a resample of episodes with replacement, without materialising it), and
averages the logged start states with the same counts, so each critic's value is one bootstrap
replicate of the whole estimate; the interval is V̂ ± t_{K-1}·sd of the K replicates, which
includes the model's own uncertainty. Use 5+ critics then (``num_critics``). It is still an
interval of the sampling error only: a bias every refit shares (the critic extrapolating to
actions the logs hardly hold) stays outside it — on the OPE benchmark's uniform fusion-ranking
logs it covered the truth for 27% of the policies, errors up to 11 standard errors
(bench/results/README.md, bench/results/ope_benchmark_diagnosis.json).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy.stats import t as student_t

from marl_rec.contracts import ActionSpec
from marl_rec.algos.common import adam
from marl_rec.data.dataset import OfflineDataset
from marl_rec.nets import CriticEnsemble, soft_update
from marl_rec.ope.estimate import Estimate, bootstrap_replicates, check_confidence, percentile_estimate
from marl_rec.ope.policy import action_table

if TYPE_CHECKING:
    from marl_rec.ope.context import OPEContext

PENALTIES = ("policy_gap", "logsumexp")
_EVAL_ROWS = 16384  # state-action pairs per critic forward pass when evaluating a fitted model


@dataclass(frozen=True)
class FQEConfig:
    """FQE hyper-parameters; ``conservative_weight`` > 0 makes it conservative FQE."""

    hidden: tuple[int, ...] = (256, 256)
    num_critics: int = 2
    layer_norm: bool = False  # LayerNorm in the critics' hidden layers (helps on thinly covered actions, not off support)
    learning_rate: float = 3e-4
    batch_size: int = 256
    num_updates: int = 10_000
    tau: float = 0.01  # target-network Polyak rate (0.005 needed > 10k updates to converge on the fusion data)
    lr_decay: bool = True  # anneal the learning rate linearly to 0: the final Q settles instead of jittering
    num_target_samples: int = 4  # a' ~ π(s') per next state, for stochastic continuous targets
    bootstrap_truncated: bool = False
    value_scale: float = 0.0  # the critic learns Q / value_scale; 0 = auto (mean |discounted return| of the data)
    conservative_weight: float = 0.0  # α of the CQL-style penalty, in units of mean |reward|; 0 = plain FQE
    penalty: str = "policy_gap"  # or "logsumexp"
    num_penalty_samples: int = 10  # uniform actions per state for the continuous logsumexp
    num_bootstrap: int = 1000
    episode_bootstrap: bool = False  # each critic a bootstrap refit over episodes (Poisson weights)
    confidence: float = 0.95
    seed: int = 0
    name: str = ""  # "" = "fqe" or "conservative_fqe"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        for field_name in ("num_critics", "batch_size", "num_updates", "num_target_samples",
                           "num_penalty_samples", "num_bootstrap"):
            if int(getattr(self, field_name)) < 1:
                raise ValueError(f"FQEConfig.{field_name} must be >= 1, got {getattr(self, field_name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"FQEConfig.learning_rate must be > 0, got {self.learning_rate}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"FQEConfig.tau must be in (0, 1], got {self.tau}")
        if not self.value_scale >= 0:
            raise ValueError(f"FQEConfig.value_scale must be >= 0 (0 = auto), got {self.value_scale}")
        if not self.conservative_weight >= 0:
            raise ValueError(f"FQEConfig.conservative_weight must be >= 0, got {self.conservative_weight}")
        if self.penalty not in PENALTIES:
            raise ValueError(f"FQEConfig.penalty must be one of {PENALTIES}, got {self.penalty!r}")
        check_confidence(self.confidence)
        for flag in ("episode_bootstrap", "layer_norm"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"FQEConfig.{flag} must be a bool, got {getattr(self, flag)!r}")

    @property
    def estimator_name(self) -> str:
        return self.name or ("conservative_fqe" if self.conservative_weight > 0 else "fqe")


class FittedQ:
    """A fitted Q^π ensemble with numpy helpers; per-critic arrays have leading dim K.

    The critic outputs Q / ``scale``; the helpers return Q in reward units, never below
    ``floor`` (a value no policy can fall below, see the module docstring).
    """

    def __init__(self, critic: CriticEnsemble, action_spec: ActionSpec, diagnostics: dict[str, float],
                 scale: float = 1.0, floor: float = -math.inf, episode_counts: np.ndarray | None = None) -> None:
        self.critic, self.action_spec, self.diagnostics = critic.eval(), action_spec, diagnostics
        self.scale, self.floor = scale, floor
        # (K, E): critic k's bootstrap count of each logged episode (episode_bootstrap), else None
        self.episode_counts = episode_counts

    @torch.no_grad()
    def q_values(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """(K, N) Q_k(s, a) of every critic at the given state-action pairs."""
        out = []
        for start in range(0, len(obs), _EVAL_ROWS):
            o = torch.as_tensor(np.asarray(obs[start:start + _EVAL_ROWS]), dtype=torch.float32)
            a = np.asarray(actions[start:start + _EVAL_ROWS])
            if self.action_spec.discrete:
                q = self.critic(o).gather(2, torch.as_tensor(a, dtype=torch.long).view(1, -1, 1).expand(
                    len(self.critic.critics), -1, 1)).squeeze(2)
            else:
                q = self.critic(o, torch.as_tensor(a, dtype=torch.float32))
            out.append(q.double().numpy())
        return np.maximum(self.scale * np.concatenate(out, axis=1), self.floor)

    @torch.no_grad()
    def state_values(self, obs: np.ndarray, table: np.ndarray) -> np.ndarray:
        """(K, N) E_{a~π}[Q_k(s, a)] with ``table`` from :func:`marl_rec.ope.policy.action_table`."""
        discrete = self.action_spec.discrete
        rows = _EVAL_ROWS if discrete else max(1, _EVAL_ROWS // table.shape[0])
        out = []
        for start in range(0, len(obs), rows):
            o = torch.as_tensor(np.asarray(obs[start:start + rows]), dtype=torch.float32)
            part = table[start:start + rows] if discrete else table[:, start:start + rows]
            out.append(_expected_q(self.critic, o, torch.as_tensor(part, dtype=torch.float32),
                                   discrete).double().numpy())
        return np.maximum(self.scale * np.concatenate(out, axis=1), self.floor)


def _expected_q(critic: CriticEnsemble, obs: torch.Tensor, table: torch.Tensor, discrete: bool) -> torch.Tensor:
    """(K, B) E_{a~π}[Q_k(s, a)]: probabilities (B, A) or action samples (M, B, d)."""
    if discrete:
        return (critic(obs) * table).sum(-1)
    m, b = table.shape[0], table.shape[1]
    q = critic(obs.repeat(m, 1), table.reshape(m * b, -1))
    return q.view(-1, m, b).mean(1)


def value_floor(dataset: OfflineDataset, gamma: float) -> float:
    """A value no policy can fall below: the smallest logged reward (or 0) at every step, over
    1 / (1 - γ) steps (the longest logged episode when γ = 1)."""
    horizon = 1.0 / (1.0 - gamma) if gamma < 1 else float(np.diff(dataset.episode_bounds(), axis=1).max())
    return min(0.0, float(np.min(dataset.rewards))) * horizon


def fit_fqe(dataset: OfflineDataset, policy: Any, gamma: float, config: FQEConfig | None = None) -> FittedQ:
    """Train FQE (conservative if ``config.conservative_weight`` > 0) for ``policy`` on ``dataset``."""
    config = config or FQEConfig()
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    spec = dataset.action_spec
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)

    def tensor(array: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(array), dtype=dtype)

    obs, next_obs = tensor(dataset.observations), tensor(dataset.next_observations)
    actions = tensor(dataset.actions, torch.long if spec.discrete else torch.float32)
    # Q is learned in units of the typical return, so its size (and α's meaning) is scale-free
    scale = config.value_scale or float(np.mean(np.abs(dataset.episode_returns(gamma)))) or 1.0
    floor = value_floor(dataset, gamma) / scale
    alpha = config.conservative_weight * (float(np.mean(np.abs(dataset.rewards))) or 1.0) / scale
    rewards = tensor(dataset.rewards / scale)
    ends = dataset.terminals | (dataset.truncations & (not config.bootstrap_truncated))
    dones = tensor(ends)
    # what π does at every logged (next) state, computed once: probabilities or action samples
    next_table = tensor(action_table(policy, dataset.next_observations, spec, config.num_target_samples, rng))
    penalised = config.conservative_weight > 0
    table = (tensor(action_table(policy, dataset.observations, spec, config.num_target_samples, rng))
             if penalised and config.penalty == "policy_gap" else None)

    with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching global state
        torch.manual_seed(config.seed)
        critic = CriticEnsemble(dataset.obs_dim, 0 if spec.discrete else spec.dim, config.hidden,
                                config.num_critics, num_actions=spec.num_actions if spec.discrete else 0,
                                layer_norm=config.layer_norm)
    target = copy.deepcopy(critic).requires_grad_(False)
    optimiser = adam(critic.parameters(), config.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, (lambda step: 1.0 - step / config.num_updates) if config.lr_decay else (lambda step: 1.0))
    rows_of = (lambda t, i: t[i]) if spec.discrete else (lambda t, i: t[:, i])
    if config.episode_bootstrap:  # (K, N): critic k's Poisson(1) count of each row's episode
        episode_of_row = np.cumsum(dataset.episode_starts) - 1
        counts = rng.poisson(1.0, (config.num_critics, int(episode_of_row[-1]) + 1))
        row_weights = tensor(counts[:, episode_of_row])
    else:
        counts, row_weights = None, None
    td_losses, penalties = [], []
    for _ in range(config.num_updates):
        i = torch.randint(len(rewards), (config.batch_size,), generator=generator)
        with torch.no_grad():
            next_v = _expected_q(target, next_obs[i], rows_of(next_table, i), spec.discrete)  # (K, B)
            y = rewards[i] + gamma * (1.0 - dones[i]) * next_v
        if spec.discrete:
            q_all = critic(obs[i])  # (K, B, A)
            q_data = q_all.gather(2, actions[i].view(1, -1, 1).expand(q_all.shape[0], -1, 1)).squeeze(2)
        else:
            q_data = critic(obs[i], actions[i])
        weight = row_weights[:, i] if row_weights is not None else 1.0
        td_loss = (weight * (q_data - y) ** 2).mean(1).sum()
        loss = td_loss
        if penalised:
            # pushing down stops at the floor: where π leaves the data nothing else bounds it
            if config.penalty == "policy_gap":
                q_pi = (q_all * table[i]).sum(-1) if spec.discrete else _expected_q(critic, obs[i], table[:, i], False)
                q_pi = q_pi.clamp(min=floor)
            elif spec.discrete:
                q_pi = torch.logsumexp(q_all.clamp(min=floor), dim=-1)
            else:
                p = config.num_penalty_samples
                uniform = spec.low + (spec.high - spec.low) * torch.rand((p * len(i), spec.dim), generator=generator)
                q_u = critic(obs[i].repeat(p, 1), uniform).view(-1, p, len(i)).clamp(min=floor)
                q_pi = torch.logsumexp(q_u, dim=1) - math.log(p)
            penalty = (weight * (q_pi - q_data)).mean(1).sum()
            loss = loss + alpha * penalty
            penalties.append(penalty.item() / config.num_critics)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        soft_update(target, critic, config.tau)
        td_losses.append(td_loss.item() / config.num_critics)
    tail = max(1, min(100, config.num_updates // 10))
    diagnostics = {"td_loss": float(np.mean(td_losses[-tail:])), "value_scale": scale}  # td_loss in scaled units
    if penalties:
        diagnostics["penalty"] = float(np.mean(penalties[-tail:]))
    return FittedQ(critic, spec, diagnostics, scale, floor * scale, counts)


def fqe_estimate(fitted: FittedQ, policy: Any, initial_observations: np.ndarray, config: FQEConfig) -> Estimate:
    """V̂ = mean over initial states and critics of E_π Q; CI by the documented cheap bootstrap,
    or, for bootstrap refits whose start states are the logged episodes' (the default), by
    the refits: critic k's value averages the start states with its own episode counts (a
    whole bootstrap replicate), and the interval is V̂ ± t_{K-1}·sd over the K replicates
    (Student's t: K is small)."""
    rng = np.random.default_rng(config.seed + 1)
    table = action_table(policy, initial_observations, fitted.action_spec, config.num_target_samples, rng)
    values = fitted.state_values(initial_observations, table)  # (K, E0)
    k, n = values.shape
    counts = fitted.episode_counts
    if counts is not None and counts.shape == values.shape and k > 1:
        replicate_values = (counts * values).sum(1) / np.maximum(counts.sum(1), 1)
        se = float(replicate_values.std(ddof=1))
        half = float(student_t.ppf(0.5 + config.confidence / 2.0, k - 1)) * se
        value = float(values.mean())
        diagnostics = {**fitted.diagnostics, "critic_spread": se, "bootstrap_refits": float(k),
                       "fraction_at_floor": float(np.mean(values <= fitted.floor))}
        return Estimate(value, value - half, value + half, config.estimator_name, config.confidence, se, n,
                        diagnostics)

    def statistic(counts: np.ndarray) -> np.ndarray:
        critic = rng.integers(k, size=len(counts))
        return np.einsum("be,be->b", counts, values[critic]) / n

    replicates = bootstrap_replicates(statistic, n, config.num_bootstrap, rng)
    diagnostics = dict(fitted.diagnostics)
    diagnostics["critic_spread"] = float(values.mean(1).std()) if k > 1 else 0.0
    diagnostics["fraction_at_floor"] = float(np.mean(values <= fitted.floor))
    return percentile_estimate(float(values.mean()), replicates, config.confidence,
                               config.estimator_name, n, diagnostics)


class FQEEstimator:
    """FQE (or conservative FQE) as an estimator: ``estimate(context, policy) -> Estimate``."""

    def __init__(self, config: FQEConfig | None = None) -> None:
        self.config = config or FQEConfig()
        self.name = self.config.estimator_name

    def estimate(self, context: OPEContext, policy: Any) -> Estimate:
        fitted = context.fitted_q(policy, self.config)
        return fqe_estimate(fitted, context.acting(policy), context.initial_observations, self.config)

    def __repr__(self) -> str:
        return f"FQEEstimator({self.config})"


__all__ = ["FQEConfig", "FittedQ", "fit_fqe", "fqe_estimate", "FQEEstimator", "value_floor"]
