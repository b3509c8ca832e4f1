"""CQL (Kumar, Zhou, Tucker & Levine, 2020): conservative Q-learning on top of SAC.

CQL(H) adds to the critics' TD loss the gap between a soft maximum of Q over actions and Q
on the logged actions,

    α · ( τ·log Σ_a exp(Q(s, a) / τ) − E_data[Q(s, a)] ),

which pushes Q down on actions the data does not support and up on the ones it does.
The log-sum-exp over the continuous action box is estimated by importance sampling with
``num_sampled_actions`` uniform actions and as many policy actions at s and at s' (each
term divided by its proposal density), as in the authors' code; with
``importance_sampling=False`` it is the code's other estimator: the log-sum-exp of the sampled
and the logged actions' Q values, unweighted (the ``rec`` preset, see ``CQLConfig.rec``). With ``lagrange=True``
the weight is tuned by dual gradient descent so that the (α-scaled) gap stays near
``lagrange_threshold`` (CQL-Lagrange). The actor and the entropy temperature are SAC's.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

from marl_rec.contracts import ActionSpec, Batch
from marl_rec.algos.common import (TorchAlgorithm, adam, check_in_range, check_non_negative, check_positive,
                                   check_positive_int, normalise_hidden)
from marl_rec.nets import CriticEnsemble, TanhGaussianActor, soft_update


@dataclass(frozen=True)
class CQLConfig:
    """Defaults: the paper's continuous-control settings and the authors' code (3×256 actor and
    twin critics, α = 5, 10 sampled actions, policy and entropy-temperature lr 3e-5, critic
    and Lagrange-multiplier lr 3e-4, γ = 0.99, τ = 0.005, automatic SAC entropy with target
    −action_dim, no entropy term in the backup ("deterministic backup"), log-sum-exp
    temperature 1, CQL-Lagrange threshold τ = 5). ``bc_warmup_updates``: the first updates
    train the actor by maximum likelihood on the logged actions (the code's
    ``policy_eval_start`` = 40,000; 0 = off). ``importance_sampling``: the soft maximum's
    estimator (the code's ``min_q_version`` 3 when True, 2 when False).

    Options for online SAC (issue #16's online bar; off by default, the algorithm is then as
    it was): ``penalty=False`` (only with α = 0 and no Lagrangian: SAC) skips
    the penalty's proposals and critic passes, which then weigh nothing (online SAC at batch 1,024:
    28 instead of 51 ms of CPU a batched step in bench/online_probe.py's runs, separate runs, not an
    interleaved A/B); the default computes them, so online SAC's random stream stays as it was.
    ``learn_entropy_alpha=False`` keeps the entropy weight at ``initial_entropy_alpha`` (SAC with
    a fixed temperature, Haarnoja et al.'s first version) instead of tuning it to the target entropy.
    ``actor_average_tau`` > 0 keeps a Polyak average of the actor's weights (updated with this τ
    after every actor step) and acts greedily (``act(deterministic=True)``) with it: the average
    of the last ~1/τ iterates instead of the last one; the stochastic action (exploration, the
    backups) stays the live actor's.

    ``greedy_action``: what ``act(deterministic=True)`` returns — ``"mode"``, SAC's tanh(μ) (the
    authors' code), or ``"mean"``, the mean of the squashed distribution
    (:meth:`~marl_rec.nets.TanhGaussianActor.mean_action`). Only acting changes: the updates, and so
    training, are the same either way."""

    actor_hidden: tuple[int, ...] = (256, 256, 256)
    critic_hidden: tuple[int, ...] = (256, 256, 256)
    actor_lr: float = 3e-5
    critic_lr: float = 3e-4
    entropy_lr: float = 3e-5
    gamma: float = 0.99
    tau: float = 0.005
    cql_alpha: float = 5.0
    num_sampled_actions: int = 10
    cql_temperature: float = 1.0
    lagrange: bool = False
    lagrange_threshold: float = 5.0
    lagrange_lr: float = 3e-4
    initial_entropy_alpha: float = 1.0
    target_entropy: float | None = None  # None: -action_dim
    backup_entropy: bool = False
    bc_warmup_updates: int = 40_000
    importance_sampling: bool = True
    batch_size: int = 256
    # online SAC's options (issue #16's online bar); the defaults are the algorithm as it was
    penalty: bool = True
    learn_entropy_alpha: bool = True
    actor_average_tau: float = 0.0
    greedy_action: str = "mode"

    def __post_init__(self) -> None:
        normalise_hidden(self, "actor_hidden", "critic_hidden")
        check_positive(self, "actor_lr", "critic_lr", "entropy_lr", "lagrange_lr", "cql_temperature",
                       "initial_entropy_alpha")
        check_non_negative(self, "cql_alpha", "bc_warmup_updates")
        check_in_range(self, "gamma", 0.0, 1.0)
        check_in_range(self, "tau", 0.0, 1.0, low_open=True)
        check_in_range(self, "actor_average_tau", 0.0, 1.0)
        check_positive_int(self, "num_sampled_actions", "batch_size")
        if not isinstance(self.bc_warmup_updates, int) or isinstance(self.bc_warmup_updates, bool):
            raise ValueError(f"CQLConfig.bc_warmup_updates must be an integer >= 0, got {self.bc_warmup_updates!r}")
        for name in ("lagrange", "backup_entropy", "importance_sampling", "penalty",
                     "learn_entropy_alpha"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"CQLConfig.{name} must be a bool, got {getattr(self, name)!r}")
        if self.greedy_action not in ("mode", "mean"):
            raise ValueError(f"CQLConfig.greedy_action must be 'mode' or 'mean', got {self.greedy_action!r}")
        if not self.penalty and (self.cql_alpha != 0 or self.lagrange):
            raise ValueError(f"CQLConfig.penalty=False (SAC alone) needs cql_alpha=0 and lagrange=False, got "
                             f"cql_alpha={self.cql_alpha!r}, lagrange={self.lagrange!r}")
        if not isinstance(self.lagrange_threshold, (int, float)) or not math.isfinite(self.lagrange_threshold):
            raise ValueError(f"CQLConfig.lagrange_threshold must be a finite number, got {self.lagrange_threshold!r}")
        if self.target_entropy is not None and (
                not isinstance(self.target_entropy, (int, float)) or not math.isfinite(self.target_entropy)):
            raise ValueError(f"CQLConfig.target_entropy must be a finite number or None, got {self.target_entropy!r}")

    @classmethod
    def rec(cls) -> CQLConfig:
        """Recommendation-sized preset (33-dim state, 4-dim action, sessions of ~35 requests with
        rewards ~3 each), chosen on the legacy world's observation-based noisy expert
        (bench/results/README.md, "Algorithm presets"): 64-64 networks, 4 sampled actions, batch 128; τ = 0.05
        so the critics converge during a 1,000-update BC warm start (with τ = 0.005 they are
        at a quarter of their fixed point after 2,000 updates and the actor follows a myopic
        Q); SAC entropy weight starting at 0.01 with lr 1e-3 (at the paper's 1.0 the policy
        stays wide for thousands of updates and its mean action, drifting with Q, fell to
        the data's level); actor lr 1e-4.

        The soft maximum without importance weights (issue #16's world, bench/results/README.md,
        "Algorithms"): weighted by 1/π, the policy's own actions drop out of the penalty once
        the policy narrows (its entropy fell to about −20, so log π ≈ +20 against the uniform
        proposals' +2.8), the actor then climbed unpenalised to the corner a = −1 of the box —
        the logs' most frequent action — in every state, and Q rose to 2–2.5× its true value;
        unweighted, the penalty lowers Q wherever the policy goes.

        The greedy action is the squashed distribution's mean, not tanh(μ) (bench/results/README.md,
        "Algorithm presets"): on the production policy's logs, most of whose actions lie near one end
        of the box, tanh(μ) of the warm-started actor earned 98.2–100.6 and the mean 111.5–113.4 (the
        logs 125); on the same trained weights the mean earns 1.7–9.7 more on three of the headline's
        datasets at every α and 0.6–2.0 less on uniform logs (bench/results/cql_greedy_action.json; on
        the averaged actors below, 1.6–9.6 more and 0.4–2.7 less: cql_greedy_action_averaged.json).

        It comes from a Polyak average (τ 0.001, ~the last 1,000 iterates) of the actor, as online
        SAC's steady agent does: the live actor's greedy return swung by up to 12 between evaluations
        1,000 updates apart (the headline study's CQL runs, ``eval_history.json``), so where a run
        stopped set its result (seed spreads of 2.8–5.1 on three datasets). With the average, 12 probe runs
        (bench/results/fusion_offline/probe_cql_actor_average/) had seed spreads of
        0.4–1.8 (mean returns 116.4–121.0) on the four non-uniform datasets."""
        return cls(actor_hidden=(64, 64), critic_hidden=(64, 64), num_sampled_actions=4, batch_size=128,
                   tau=0.05, bc_warmup_updates=1000, actor_lr=1e-4, initial_entropy_alpha=0.01,
                   entropy_lr=1e-3, importance_sampling=False, greedy_action="mean", actor_average_tau=0.001)


class CQL(TorchAlgorithm):
    """CQL(H) on SAC. ``act(deterministic=True)`` is tanh(μ) or the squashed distribution's
    mean (``CQLConfig.greedy_action``), of the averaged actor where there is one; ``q_value``
    reports min(Q1, Q2), the value the backups use. ``update`` metrics: ``critic_loss`` (TD +
    penalty), ``td_loss``, ``cql_penalty`` (the soft-max gap, before weighting), ``cql_alpha``
    (its weight α, or α·α' with the Lagrangian), ``alpha`` (SAC entropy weight), ``entropy``,
    ``actor_loss``, ``q_mean`` (Q on the logged actions), ``target_mean``."""

    name = "cql"

    def __init__(self, obs_dim: int, action_spec: ActionSpec, config: CQLConfig | None = None,
                 seed: int = 0, device: str | torch.device = "cpu") -> None:
        super().__init__(obs_dim, action_spec, config or CQLConfig(), seed, device)
        c, k = self.config, action_spec.dim
        if action_spec.discrete:
            raise ValueError(f"CQL needs a continuous action space, got {action_spec} (use DiscreteCQL)")
        self.low, self.high = float(action_spec.low), float(action_spec.high)
        self.actor = self._build(TanhGaussianActor(obs_dim, k, c.actor_hidden, self.low, self.high))
        self.critic = self._build(CriticEnsemble(obs_dim, k, c.critic_hidden, num_critics=2))
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        if c.actor_average_tau > 0:  # the greedy policy: a Polyak average of the actor's iterates
            self.actor_average = copy.deepcopy(self.actor).requires_grad_(False)
        # learned log-temperatures: SAC's entropy weight and CQL-Lagrange's multiplier α'
        self.log_alphas = torch.nn.ParameterDict({
            "entropy": torch.nn.Parameter(torch.tensor(math.log(c.initial_entropy_alpha), device=self.device)),
            "cql": torch.nn.Parameter(torch.zeros((), device=self.device))})
        self.actor_optimizer = adam(self.actor.parameters(), c.actor_lr)
        self.critic_optimizer = adam(self.critic.parameters(), c.critic_lr)
        self.entropy_optimizer = adam([self.log_alphas["entropy"]], c.entropy_lr)
        self.lagrange_optimizer = adam([self.log_alphas["cql"]], c.lagrange_lr)
        self._unit = torch.ones((), device=self.device)
        self.target_entropy = -float(k) if c.target_entropy is None else float(c.target_entropy)
        self.uniform_log_density = -k * math.log(self.high - self.low)

    def update(self, batch: Batch) -> dict[str, float]:
        c, g = self.config, self.generator
        obs, actions, next_obs = batch.observations, batch.actions, batch.next_observations
        self.num_updates += 1
        # 1. SAC actor (maximum likelihood on the logged actions during the warm start) and temperature
        new_actions, log_pi = self.actor(obs, g)
        log_entropy_alpha = self.log_alphas["entropy"]
        entropy_alpha = log_entropy_alpha.exp().detach()
        self.critic.requires_grad_(False)
        objective = (self.actor.log_prob(obs, actions) if self.num_updates <= c.bc_warmup_updates
                     else self.critic(obs, new_actions).min(0).values)
        actor_loss = (entropy_alpha * log_pi - objective).mean()
        self.critic.requires_grad_(True)
        entropy_loss = -(log_entropy_alpha * (log_pi.detach() + self.target_entropy)).mean()
        self.actor_optimizer.zero_grad()
        actor_loss.backward()
        self.actor_optimizer.step()
        if c.actor_average_tau > 0:
            soft_update(self.actor_average, self.actor, c.actor_average_tau)
        if c.learn_entropy_alpha:
            self.entropy_optimizer.zero_grad()
            entropy_loss.backward()
            self.entropy_optimizer.step()

        # 2. critics: TD target from the policy at s', plus CQL(H) on n uniform + 2n policy actions
        with torch.no_grad():
            next_actions, next_log_pi = self.actor(next_obs, g)
            next_q = self.critic_target(next_obs, next_actions).min(0).values
            if c.backup_entropy:
                next_q = next_q - entropy_alpha * next_log_pi
            target = batch.rewards + c.gamma * (1.0 - batch.dones) * next_q
        q = self.critic(obs, actions)  # (2, B)
        td_loss = (q - target).pow(2).mean(1).sum()
        if c.penalty:
            gap, penalty, cql_alpha = self._conservative_penalty(obs, next_obs, q, g)
        else:  # SAC alone: no proposals, no penalty passes (α = 0 is checked by the config)
            gap = penalty = self._unit * 0.0
            cql_alpha = self._unit
        critic_loss = td_loss + penalty.sum()
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_optimizer.step()
        soft_update(self.critic_target, self.critic, c.tau)
        return self._metrics({"critic_loss": critic_loss, "td_loss": td_loss, "actor_loss": actor_loss,
                              "cql_penalty": gap.mean(), "q_mean": q.mean(), "target_mean": target.mean(),
                              "alpha": entropy_alpha, "cql_alpha": cql_alpha * c.cql_alpha,
                              "entropy": -log_pi.mean()})

    def _conservative_penalty(self, obs: torch.Tensor, next_obs: torch.Tensor, q: torch.Tensor,
                              g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """CQL(H) on n uniform + 2n policy actions per state: each critic's gap (soft maximum over
        the sampled actions − Q of the logged ones), the penalty it adds to the critics' loss, and
        the weight α' of the Lagrangian form (its dual step is taken here)."""
        c, b, k, n = self.config, obs.shape[0], self.action_spec.dim, self.config.num_sampled_actions
        with torch.no_grad():
            obs_rep = obs.repeat_interleave(n, 0)
            uniform = torch.rand((b * n, k), generator=g, device=self.device) * (self.high - self.low) + self.low
            pi_actions, pi_log = self.actor.sample(obs, n, g)
            next_pi_actions, next_pi_log = self.actor.sample(next_obs, n, g)
            log_density = torch.stack([torch.full_like(pi_log, self.uniform_log_density), pi_log, next_pi_log])
        # one critic call per kind of action, not one on all B + 3Bn rows: on a CPU the smaller
        # activations stay in cache (measured ~10% faster per update at the paper sizes, #19)
        q_sampled = torch.stack([self.critic(obs_rep, a) for a in (uniform, pi_actions, next_pi_actions)],
                                dim=1).view(2, 3, b, n)
        if c.importance_sampling:
            terms = (q_sampled - log_density.view(1, 3, b, n)).permute(0, 2, 1, 3).reshape(2, b, 3 * n)
        else:  # the authors' code's other estimator: the sampled and the logged actions' Q, unweighted
            terms = torch.cat([q_sampled.permute(0, 2, 1, 3).reshape(2, b, 3 * n), q.unsqueeze(2)], dim=2)
        soft_max = c.cql_temperature * torch.logsumexp(terms / c.cql_temperature, dim=2)
        gap = soft_max.mean(1) - q.mean(1)  # (2,): one per critic
        if c.lagrange:
            cql_alpha = self.log_alphas["cql"].exp().clamp(0.0, 1e6)
            penalty = cql_alpha.detach() * (c.cql_alpha * gap - c.lagrange_threshold)
            lagrange_loss = -(cql_alpha * (c.cql_alpha * gap.detach() - c.lagrange_threshold)).mean()
            self.lagrange_optimizer.zero_grad()
            lagrange_loss.backward()
            self.lagrange_optimizer.step()
        else:
            cql_alpha = self._unit
            penalty = c.cql_alpha * gap
        return gap, penalty, cql_alpha

    def _act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        actor = self.actor_average if deterministic and self.config.actor_average_tau > 0 else self.actor
        if deterministic and self.config.greedy_action == "mean":
            return actor.mean_action(obs)
        return actor(obs, self.generator, deterministic=deterministic)[0]

    def _q_value(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.critic(obs, action).min(0).values

    def _parts(self) -> dict[str, torch.nn.Module | torch.optim.Optimizer]:
        return {"actor": self.actor, "critic": self.critic, "critic_target": self.critic_target,
                "log_alphas": self.log_alphas,
                "actor_optimizer": self.actor_optimizer, "critic_optimizer": self.critic_optimizer,
                "entropy_optimizer": self.entropy_optimizer, "lagrange_optimizer": self.lagrange_optimizer,
                **({"actor_average": self.actor_average} if self.config.actor_average_tau > 0 else {})}

