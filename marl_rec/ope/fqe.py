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

Truncated episodes: in the fusion-ranking simulator a session's request cap is part of
the task (the observation holds the request index) and the ground-truth A/B value counts
rewards up to the session's end, so by default a truncation ends the return like a
terminal does (``bootstrap_truncated=False``), as the IS family does with whole logged
episodes. Set it to True where the time limit is only a logging artefact.

Confidence interval: a cheap bootstrap that does not refit — each replicate resamples the
initial states and picks one critic of the ensemble at random, so it covers the spread of
the start-state distribution and (with ≥ 2 critics) part of the model uncertainty, not the
full sampling variability of the transitions.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from marl_rec.algos.base import ActionSpec
from marl_rec.data.dataset import OfflineDataset
from marl_rec.nets import CriticEnsemble, soft_update
from marl_rec.ope.estimate import Estimate, bootstrap_replicates, check_confidence, percentile_estimate
from marl_rec.ope.policy import action_table

if TYPE_CHECKING:
    from marl_rec.ope.context import OPEContext

PENALTIES = ("policy_gap", "logsumexp")


@dataclass(frozen=True)
class FQEConfig:
    """FQE hyper-parameters; ``conservative_weight`` > 0 makes it conservative FQE."""

    hidden: tuple[int, ...] = (256, 256)
    num_critics: int = 2
    learning_rate: float = 3e-4
    batch_size: int = 256
    num_updates: int = 10_000
    tau: float = 0.005  # target-network Polyak rate
    lr_decay: bool = True  # anneal the learning rate linearly to 0: the final Q settles instead of jittering
    num_target_samples: int = 4  # a' ~ π(s') per next state, for stochastic continuous targets
    bootstrap_truncated: bool = False
    conservative_weight: float = 0.0  # α of the CQL-style penalty; 0 = plain FQE
    penalty: str = "policy_gap"  # or "logsumexp"
    num_penalty_samples: int = 10  # uniform actions per state for the continuous logsumexp
    num_bootstrap: int = 1000
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
        if not self.conservative_weight >= 0:
            raise ValueError(f"FQEConfig.conservative_weight must be >= 0, got {self.conservative_weight}")
        if self.penalty not in PENALTIES:
            raise ValueError(f"FQEConfig.penalty must be one of {PENALTIES}, got {self.penalty!r}")
        check_confidence(self.confidence)

    @property
    def estimator_name(self) -> str:
        return self.name or ("conservative_fqe" if self.conservative_weight > 0 else "fqe")


class FittedQ:
    """A fitted Q^π ensemble with numpy helpers; ``per-critic`` arrays have leading dim K."""

    def __init__(self, critic: CriticEnsemble, action_spec: ActionSpec, diagnostics: dict[str, float]) -> None:
        self.critic, self.action_spec, self.diagnostics = critic.eval(), action_spec, diagnostics

    @torch.no_grad()
    def q_values(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """(K, N) Q_k(s, a) of every critic at the given state-action pairs."""
        o = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
        if self.action_spec.discrete:
            index = torch.as_tensor(np.asarray(actions), dtype=torch.long)
            q = self.critic(o).gather(2, index.view(1, -1, 1).expand(len(self.critic.critics), -1, 1))
            return q.squeeze(2).double().numpy()
        return self.critic(o, torch.as_tensor(np.asarray(actions), dtype=torch.float32)).double().numpy()

    @torch.no_grad()
    def state_values(self, obs: np.ndarray, table: np.ndarray) -> np.ndarray:
        """(K, N) E_{a~π}[Q_k(s, a)] with ``table`` from :func:`marl_rec.ope.policy.action_table`."""
        o = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
        return _expected_q(self.critic, o, torch.as_tensor(table, dtype=torch.float32),
                           self.action_spec.discrete).double().numpy()


def _expected_q(critic: CriticEnsemble, obs: torch.Tensor, table: torch.Tensor, discrete: bool) -> torch.Tensor:
    """(K, B) E_{a~π}[Q_k(s, a)]: probabilities (B, A) or action samples (M, B, d)."""
    if discrete:
        return (critic(obs) * table).sum(-1)
    m, b = table.shape[0], table.shape[1]
    q = critic(obs.repeat(m, 1), table.reshape(m * b, -1))
    return q.view(-1, m, b).mean(1)


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
    rewards = tensor(dataset.rewards)
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
                                config.num_critics, num_actions=spec.num_actions if spec.discrete else 0)
    target = copy.deepcopy(critic).requires_grad_(False)
    optimiser = torch.optim.Adam(critic.parameters(), lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, (lambda step: 1.0 - step / config.num_updates) if config.lr_decay else (lambda step: 1.0))
    rows_of = (lambda t, i: t[i]) if spec.discrete else (lambda t, i: t[:, i])
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
        td_loss = ((q_data - y) ** 2).mean(1).sum()
        loss = td_loss
        if penalised:
            if config.penalty == "policy_gap":
                q_pi = (q_all * table[i]).sum(-1) if spec.discrete else _expected_q(critic, obs[i], table[:, i], False)
            elif spec.discrete:
                q_pi = torch.logsumexp(q_all, dim=-1)
            else:
                p = config.num_penalty_samples
                uniform = spec.low + (spec.high - spec.low) * torch.rand((p * len(i), spec.dim), generator=generator)
                q_u = critic(obs[i].repeat(p, 1), uniform).view(-1, p, len(i))
                q_pi = torch.logsumexp(q_u, dim=1) - math.log(p)
            penalty = (q_pi - q_data).mean(1).sum()
            loss = loss + config.conservative_weight * penalty
            penalties.append(penalty.item() / config.num_critics)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        soft_update(target, critic, config.tau)
        td_losses.append(td_loss.item() / config.num_critics)
    tail = max(1, min(100, config.num_updates // 10))
    diagnostics = {"td_loss": float(np.mean(td_losses[-tail:]))}
    if penalties:
        diagnostics["penalty"] = float(np.mean(penalties[-tail:]))
    return FittedQ(critic, spec, diagnostics)


def fqe_estimate(fitted: FittedQ, policy: Any, initial_observations: np.ndarray, config: FQEConfig) -> Estimate:
    """V̂ = mean over initial states and critics of E_π Q; CI by the documented cheap bootstrap."""
    rng = np.random.default_rng(config.seed + 1)
    table = action_table(policy, initial_observations, fitted.action_spec, config.num_target_samples, rng)
    values = fitted.state_values(initial_observations, table)  # (K, E0)
    k, n = values.shape

    def statistic(counts: np.ndarray) -> np.ndarray:
        critic = rng.integers(k, size=len(counts))
        return np.einsum("be,be->b", counts, values[critic]) / n

    replicates = bootstrap_replicates(statistic, n, config.num_bootstrap, rng)
    diagnostics = dict(fitted.diagnostics)
    diagnostics["critic_spread"] = float(values.mean(1).std()) if k > 1 else 0.0
    return percentile_estimate(float(values.mean()), replicates, config.confidence,
                               config.estimator_name, n, diagnostics)


class FQEEstimator:
    """FQE (or conservative FQE) as an estimator: ``estimate(context, policy) -> Estimate``."""

    def __init__(self, config: FQEConfig | None = None) -> None:
        self.config = config or FQEConfig()
        self.name = self.config.estimator_name

    def estimate(self, context: OPEContext, policy: Any) -> Estimate:
        fitted = context.fitted_q(policy, self.config)
        return fqe_estimate(fitted, policy, context.initial_observations, self.config)

    def __repr__(self) -> str:
        return f"FQEEstimator({self.config})"


__all__ = ["FQEConfig", "FittedQ", "fit_fqe", "fqe_estimate", "FQEEstimator"]
