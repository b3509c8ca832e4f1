"""Centralised training, decentralised execution for one continuous and one discrete agent
(the recommender's fusion weights and the advertiser's ad slot).

Training sees everything; execution does not:

- **Critic over the global state and the joint action** (``marl_rec.nets.CriticEnsemble``):
  Q(s, a_c, ·) takes the global state and the continuous agent's action as input and has one
  output per discrete action, so Q(s, a_c, a_d) is one head — every discrete action is
  valued in a single pass. Cooperative mode trains **one team critic** on the shared reward
  (``shared_critic=True``); otherwise each agent has its own critic on its own reward.
- **Target**: r + γ · E_{a_d' ~ π_d'(o_d')} min_i Q'_i(s', μ_c'(o_c') + ε, a_d'), the joint
  action of the *target actors* at s' (TD3 smoothing noise ε on the continuous part; the
  discrete policy masked by its action mask).
- **Conservatism on the joint action** (CQL(H)): the critic also minimises
  log-mean-exp of Q over joint actions — ``num_sampled_actions`` uniform continuous actions
  plus the current actor's, each with every allowed discrete action — minus Q at the logged
  joint action, weighted by ``cql_alpha``: values of joint actions the data never took are
  pushed down, so the actors cannot exploit them.
- **Per-agent actors on their own observation** (decentralised execution). The continuous
  actor follows the deterministic policy gradient of its critic *averaged over the discrete
  actor's current policy* (so it learns what is best given what the other agent now does),
  with the TD3+BC regulariser: loss = −α·Q / mean|Q| + (μ(o) − a_data)². The discrete actor
  imitates the critic's best *allowed* action given the continuous actor's action
  (cross-entropy to argmax_a min_i Q'_i(s, μ_c(o_c), a) over its mask). The target critic Q'
  (Polyak-averaged) gives a stable target — the online critic's ranking of nearly equal
  heads flips from one update to the next — and the minimum over the ensemble keeps an
  overestimated head from winning.

``act({agent: obs})`` returns both agents' actions from their own observations only; the
discrete agent's mask is read from its observation (``mask_columns``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from marl_rec.contracts import PolicyOutput
from marl_rec.contracts import ActionSpec
from marl_rec.algos.common import (TorchAlgorithm, adam, check_in_range, check_non_negative, check_positive,
                                   check_positive_int, normalise_hidden)
from marl_rec.data.multiagent import JointBatch, MultiAgentDataset
from marl_rec.nets import CriticEnsemble, DeterministicActor, mlp, soft_update


@dataclass(frozen=True)
class CentralisedConfig:
    """Defaults: TD3+BC's actor settings (α = 2.5, policy noise 0.2 clipped at 0.5, delay 2,
    τ = 0.005, Adam 3e-4) with twin 256-256 critics, CQL weight 1 and 10 uniform samples per
    state for the joint-action penalty."""

    critic_hidden: tuple[int, ...] = (256, 256)
    actor_hidden: tuple[int, ...] = (256, 256)
    num_critics: int = 2
    critic_lr: float = 3e-4
    actor_lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    cql_alpha: float = 1.0
    num_sampled_actions: int = 10
    actor_q_weight: float = 2.5  # TD3+BC's α
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    policy_delay: int = 2
    shared_critic: bool = True  # one team critic (cooperative rewards); False: one critic per agent
    batch_size: int = 256
    # the discrete agent's default action (the advertiser's 0 = "no ad"): when set, the discrete
    # actor leaves it only where *every* critic values the alternative above it (argmax of
    # min_i [Q_i(a) - Q_i(default)]); None: argmax of min_i Q_i(a)
    default_discrete_action: int | None = None
    # a decomposed team critic: with one critic per agent (shared_critic=False), each trained on
    # its own reward, both actors follow sum_a w_a Q_a (member by member) instead of their own
    # critic — e.g. engagement and revenue critics with weights (1, λ) for the team objective
    # engagement + λ·revenue (agents/experiments/joint_rec_ads.py, ``centralised.decomposed``).
    # None: each actor follows its own critic (or the team's)
    team_weights: tuple[float, ...] | None = None
    # with team_weights: the continuous actor follows its own critic only (the discrete actor
    # the weighted sum). Why: on JointRecAds a myopic revenue critic's gradient in the fusion
    # weights drove the recommender's engagement down once ads were shown (agents/experiments/
    # joint_rec_ads.py's findings); the engagement critic still sees the joint action
    continuous_own_critic: bool = False
    # one discount per agent critic (shared_critic=False), e.g. a myopic revenue critic; None: gamma
    critic_gammas: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        normalise_hidden(self, "critic_hidden", "actor_hidden")
        check_positive(self, "critic_lr", "actor_lr")
        check_non_negative(self, "cql_alpha", "actor_q_weight", "policy_noise", "noise_clip")
        check_in_range(self, "gamma", 0.0, 1.0)
        check_in_range(self, "tau", 0.0, 1.0, low_open=True)
        check_positive_int(self, "num_critics", "num_sampled_actions", "policy_delay", "batch_size")
        for name in ("shared_critic", "continuous_own_critic"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"CentralisedConfig.{name} must be a bool, got {getattr(self, name)!r}")
        self._check_per_critic("team_weights", math.isfinite, "two finite numbers")
        self._check_per_critic("critic_gammas", lambda g: 0.0 <= g <= 1.0, "two discounts in [0, 1]")
        if self.default_discrete_action is not None and (
                isinstance(self.default_discrete_action, bool) or not isinstance(self.default_discrete_action, int)
                or self.default_discrete_action < 0):
            raise ValueError(f"CentralisedConfig.default_discrete_action must be None or an int >= 0, "
                             f"got {self.default_discrete_action!r}")

    def _check_per_critic(self, name: str, valid: Callable[[float], bool], what: str) -> None:
        """``name``: None, or one float per agent critic (so it needs ``shared_critic=False``)."""
        value = getattr(self, name)
        if value is None:
            return
        pair = tuple(value)
        if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not valid(v) for v in pair):
            raise ValueError(f"CentralisedConfig.{name} must be None or {what} (one per agent critic), got {value!r}")
        if self.shared_critic:
            raise ValueError(f"CentralisedConfig.{name} sets one value per agent critic: it needs shared_critic=False")
        object.__setattr__(self, name, tuple(float(v) for v in pair))

    @classmethod
    def rec(cls) -> CentralisedConfig:
        """Recommendation-sized preset, like the core's rec presets: 64-64 actors and critics,
        Adam 1e-3 for the critics, 4 sampled actions, τ = 0.05. Measured on JointRecAds (λ = 4,
        60k logged transitions, 3,000 updates, one seed each, contended 2-core host): 64-64 with
        4 samples took 47 ms per update vs 101 ms for 128-128 with 10; τ = 0.05 gave a team
        return of 110.9 vs 109.2 with τ = 0.005, whose critics were still far below their
        fixed point (mean Q 31 vs a mean discounted return-to-go of 50 in the data)."""
        return cls(critic_hidden=(64, 64), actor_hidden=(64, 64), critic_lr=1e-3, num_sampled_actions=4, tau=0.05)


class CentralisedLearner(TorchAlgorithm):
    """CTDE for ``agents = (continuous_agent, discrete_agent)``; see the module docstring.

    ``obs_dim`` (the :class:`OfflineAlgorithm` field) is the global state's size and
    ``action_spec`` the continuous agent's; ``agent_specs`` / ``agent_obs_dims`` hold both
    agents'. ``mask_columns``: the discrete agent's observation columns holding its 0/1 action
    mask (None: every action always allowed). ``act`` and ``q_value`` take per-agent dicts.
    """

    name = "ctde"

    def __init__(self, state_dim: int, agent_obs_dims: Mapping[str, int], agent_specs: Mapping[str, ActionSpec],
                 config: CentralisedConfig | None = None, mask_columns: tuple[int, int] | None = None,
                 seed: int = 0, device: str | torch.device = "cpu") -> None:
        names = list(agent_specs)
        if len(names) != 2 or set(agent_obs_dims) != set(names) or [agent_specs[n].discrete for n in names] != [
                False, True]:
            raise ValueError(f"CentralisedLearner needs exactly two agents, a continuous one then a discrete one, "
                             f"with an observation size each; got specs {dict(agent_specs)} and obs dims "
                             f"{dict(agent_obs_dims)}")
        super().__init__(state_dim, agent_specs[names[0]], config or CentralisedConfig(), seed, device)
        c = self.config
        self.agents = names
        self.agent_specs, self.agent_obs_dims = dict(agent_specs), {n: int(agent_obs_dims[n]) for n in names}
        self.max_action = self._require_continuous()
        cont, disc = names
        self.num_discrete = agent_specs[disc].num_actions
        if mask_columns is not None and not (0 <= mask_columns[0] and mask_columns[1] - mask_columns[0]
                                             == self.num_discrete and mask_columns[1] <= agent_obs_dims[disc]):
            raise ValueError(f"mask_columns {mask_columns} must be {self.num_discrete} columns of the "
                             f"{agent_obs_dims[disc]}-dim observation of {disc!r}")
        self.mask_columns = None if mask_columns is None else (int(mask_columns[0]), int(mask_columns[1]))
        if c.default_discrete_action is not None and c.default_discrete_action >= self.num_discrete:
            raise ValueError(f"CentralisedConfig.default_discrete_action {c.default_discrete_action} is not one of "
                             f"the {self.num_discrete} actions of {disc!r}")
        k = self.action_spec.dim
        self.critic_names = ["team"] if c.shared_critic else list(names)
        self.critics = nn.ModuleDict({name: self._build(CriticEnsemble(
            state_dim + k, 0, c.critic_hidden, c.num_critics, num_actions=self.num_discrete))
            for name in self.critic_names})
        self.critic_targets = copy.deepcopy(self.critics).requires_grad_(False)
        self.continuous_actor = self._build(DeterministicActor(agent_obs_dims[cont], k, c.actor_hidden,
                                                               self.max_action))
        self.discrete_actor = self._build(mlp(agent_obs_dims[disc], c.actor_hidden, self.num_discrete))
        self.continuous_target = copy.deepcopy(self.continuous_actor).requires_grad_(False)
        self.discrete_target = copy.deepcopy(self.discrete_actor).requires_grad_(False)
        self.critic_optimizer = adam(self.critics.parameters(), c.critic_lr)
        self.actor_optimizer = adam([*self.continuous_actor.parameters(), *self.discrete_actor.parameters()],
                                    c.actor_lr)

    @classmethod
    def for_dataset(cls, dataset: MultiAgentDataset, config: CentralisedConfig | None = None, seed: int = 0,
                    device: str | torch.device = "cpu") -> CentralisedLearner:
        """Sized for ``dataset`` (the continuous agent first). A shared team critic needs one
        reward for both agents (cooperative mode): other data raises a ValueError."""
        tables = dataset.tables
        discrete = [a for a, t in tables.items() if t.action_spec.discrete]
        ordered = [a for a in tables if a not in discrete] + discrete
        config = config or CentralisedConfig()
        if config.shared_critic and len(ordered) == 2 and not np.array_equal(
                tables[ordered[0]].rewards, tables[ordered[1]].rewards):
            raise ValueError(f"shared_critic=True trains one team critic, but the agents' rewards differ "
                             f"({ordered[0]!r} vs {ordered[1]!r}: mixed mode?); use shared_critic=False")
        return cls(dataset.state_dim, {a: tables[a].obs_dim for a in ordered},
                   {a: tables[a].action_spec for a in ordered}, config,
                   dataset.action_mask_columns.get(discrete[0]) if discrete else None, seed, device)

    # -------------------------------------------------------------- helpers
    def _mask(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, n) bool: the discrete actions allowed by the mask in the observation."""
        if self.mask_columns is None:
            return torch.ones(obs.shape[0], self.num_discrete, dtype=torch.bool, device=obs.device)
        return obs[:, self.mask_columns[0]:self.mask_columns[1]] > 0.5

    def _discrete_logits(self, actor: nn.Module, obs: torch.Tensor) -> torch.Tensor:
        return actor(obs).masked_fill(~self._mask(obs), -math.inf)

    def _critic_for(self, agent: str) -> str:
        return "team" if self.config.shared_critic else agent

    def _actor_values(self, agent: str, critics: nn.ModuleDict, inputs: torch.Tensor, single: bool) -> torch.Tensor:
        """The values ``agent``'s actor follows: its own critic (the team's when shared), or with
        ``team_weights`` the weighted sum of the agents' critics (the continuous agent's own with
        ``continuous_own_critic``); ``single``: the first member only (B, N), else every member
        (E, B, N)."""
        def values(name: str) -> torch.Tensor:
            return critics[name].single(inputs) if single else critics[name](inputs)

        if self.config.team_weights is None or (self.config.continuous_own_critic and agent == self.agents[0]):
            return values(self._critic_for(agent))
        return sum(w * values(name) for w, name in zip(self.config.team_weights, self.critic_names))

    # --------------------------------------------------------------- update
    def update(self, batch: JointBatch) -> dict[str, Any]:
        c, g, m = self.config, self.generator, self.max_action
        cont, disc = self.agents
        bc, bd, s = batch[cont], batch[disc], batch.states
        b, k, n = bc.actions.shape[0], self.action_spec.dim, c.num_sampled_actions
        self.num_updates += 1
        with torch.no_grad():  # the target actors' joint action at s'; sampled joint actions at s
            noise = (torch.randn(bc.actions.shape, generator=g, device=s.device) * c.policy_noise
                     ).clamp(-c.noise_clip, c.noise_clip)
            next_cont = (self.continuous_target(bc.next_observations) + noise).clamp(-m, m)
            next_probs = self._discrete_logits(self.discrete_target, bd.next_observations).softmax(1)
            uniform = (torch.rand((b, n, k), generator=g, device=s.device) * 2.0 - 1.0) * m
            sampled = torch.cat([uniform, self.continuous_actor(bc.observations)[:, None]], 1)  # (B, n + 1, k)
            allowed = self._mask(bd.observations)[None, :, None, :]  # (1, B, 1, N_d)
        # 1. critics: TD + CQL penalty on the joint action
        metrics, critic_loss = {}, 0.0
        for index, (name, critic) in enumerate(self.critics.items()):
            reward = (bc if name in ("team", cont) else bd).rewards
            gamma = c.gamma if c.critic_gammas is None else c.critic_gammas[index]
            with torch.no_grad():
                next_q = self.critic_targets[name](torch.cat([batch.next_states, next_cont], 1)).min(0).values
                target = reward + gamma * (1.0 - batch.dones) * (next_q * next_probs).sum(1)
            q_all = critic(torch.cat([s, bc.actions], 1))  # (E, B, N_d)
            q = q_all.gather(2, bd.actions[None, :, None].expand(q_all.shape[0], -1, 1)).squeeze(2)  # (E, B)
            td_loss = (q - target).pow(2).mean(1).sum()
            q_sampled = critic(torch.cat([s.repeat_interleave(n + 1, 0), sampled.flatten(0, 1)], 1))
            q_sampled = q_sampled.view(-1, b, n + 1, self.num_discrete).masked_fill(~allowed, -math.inf)
            gap = (torch.logsumexp(q_sampled.flatten(2), 2) - q).mean(1)  # (E,)
            critic_loss = critic_loss + td_loss + c.cql_alpha * gap.sum()
            prefix = "" if name == "team" else f"{name}_"
            metrics.update({f"{prefix}td_loss": td_loss, f"{prefix}cql_penalty": gap.mean(),
                            f"{prefix}q_mean": q.mean(), f"{prefix}target_mean": target.mean()})
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_optimizer.step()
        metrics["critic_loss"] = critic_loss.detach()

        # 2. actors (delayed): continuous DPG against the discrete actor's policy (+ BC);
        #    discrete imitates the critic's best allowed action given the continuous action
        if self.num_updates % c.policy_delay == 0:
            self.critics.requires_grad_(False)
            action = self.continuous_actor(bc.observations)
            probs = self._discrete_logits(self.discrete_actor, bd.observations).softmax(1).detach()
            q_cont = (self._actor_values(cont, self.critics, torch.cat([s, action], 1), True) * probs).sum(1)
            weight = c.actor_q_weight / q_cont.abs().mean().detach().clamp_min(1e-6)
            continuous_loss = -weight * q_cont.mean() + (action - bc.actions).pow(2).mean()
            with torch.no_grad():
                q_disc = self._actor_values(disc, self.critic_targets, torch.cat([s, action.detach()], 1), False)
                best = self.discrete_choice(q_disc, self._mask(bd.observations))
            discrete_loss = F.cross_entropy(self._discrete_logits(self.discrete_actor, bd.observations), best)
            self.actor_optimizer.zero_grad()
            (continuous_loss + discrete_loss).backward()
            self.actor_optimizer.step()
            self.critics.requires_grad_(True)
            soft_update(self.continuous_target, self.continuous_actor, c.tau)
            soft_update(self.discrete_target, self.discrete_actor, c.tau)
            metrics.update({f"{cont}_actor_loss": continuous_loss, f"{disc}_actor_loss": discrete_loss})
        soft_update(self.critic_targets, self.critics, c.tau)
        return self._metrics(metrics)

    def discrete_choice(self, q: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """(B,) the discrete action the discrete actor imitates, from the critics' (E, B, N)
        values and the (B, N) mask. Without a default: argmax of min_i Q_i. With one (d):
        argmax of min_i [Q_i(a) − Q_i(d)], d scoring 0 — an ad is shown only where every
        critic agrees it beats "no ad". Why: on JointRecAds at λ = 0 an ad at the cap costs
        about 0.3 engagement per ad (measured: 102.3 vs 99.9 per session, slot 5) on values
        near 100, so the critics' per-head approximation error decides argmax min_i Q_i and
        the learned advertiser kept showing ads (ad load 0.079 at λ = 0, seed 0)."""
        d = self.config.default_discrete_action
        if d is None:
            return q.min(0).values.masked_fill(~allowed, -math.inf).argmax(1)
        advantage = (q - q[..., d:d + 1]).min(0).values  # (B, N); the default's is exactly 0
        fallback = allowed[:, d]  # where the default is masked, the plain rule among the allowed
        plain = q.min(0).values.masked_fill(~allowed, -math.inf).argmax(1)
        return torch.where(fallback, advantage.masked_fill(~allowed, -math.inf).argmax(1), plain)

    # ------------------------------------------------------------ execution
    def _act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.continuous_actor(obs)

    def _q_value(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("CentralisedLearner.q_value takes the global state and a dict of actions")

    def act(self, observations: Mapping[str, np.ndarray], deterministic: bool = True) -> dict[str, np.ndarray]:
        """Each agent's action from its own observation (B, d_agent): the continuous actor's
        output, and the discrete actor's most likely allowed action (``deterministic``) or a
        draw from its masked policy."""
        cont, disc = self.agents
        with torch.no_grad():
            obs_c, obs_d = (self._checked(agent, observations[agent]) for agent in (cont, disc))
            logits = self._discrete_logits(self.discrete_actor, obs_d)
            discrete = (logits.argmax(1) if deterministic
                        else torch.multinomial(logits.softmax(1), 1, generator=self.generator)[:, 0])
            return {cont: self.continuous_actor(obs_c).cpu().numpy(), disc: discrete.cpu().numpy()}

    def q_value(self, states: np.ndarray, actions: Mapping[str, np.ndarray], critic: str | None = None) -> np.ndarray:
        """min over the ensemble of Q(s, a_c, a_d) for (B, state_dim) states and per-agent
        actions; ``critic``: "team" or an agent name (default: the first critic)."""
        cont, disc = self.agents
        name = critic or self.critic_names[0]
        if name not in self.critics:
            raise ValueError(f"unknown critic {name!r}; this learner has {self.critic_names}")
        s = self._tensor(states)
        if s.ndim != 2 or s.shape[1] != self.obs_dim:
            raise ValueError(f"states must have shape (B, {self.obs_dim}), got {tuple(s.shape)}")
        a_c = self._tensor(actions[cont]).reshape(s.shape[0], -1)
        a_d = torch.as_tensor(np.asarray(actions[disc], dtype=np.int64), device=self.device).reshape(-1, 1)
        with torch.no_grad():
            q = self.critics[name](torch.cat([s, a_c], 1)).min(0).values
            return q.gather(1, a_d).squeeze(1).cpu().numpy()

    def _checked(self, agent: str, obs: np.ndarray) -> torch.Tensor:
        array = np.asarray(obs, dtype=np.float32)
        if array.ndim != 2 or array.shape[1] != self.agent_obs_dims[agent]:
            raise ValueError(f"observations of {agent!r} must have shape (B, {self.agent_obs_dims[agent]}), "
                             f"got {array.shape}")
        return self._tensor(array)

    def policies(self) -> dict[str, Any]:
        """Decentralised policies ``policy(sim, obs) -> PolicyOutput`` for the joint evaluation."""
        cont, disc = self.agents

        def agent_policy(agent: str):
            def policy(sim: Any, obs: np.ndarray) -> PolicyOutput:
                with torch.no_grad():
                    tensor = self._checked(agent, obs)
                    if agent == cont:
                        return PolicyOutput(self.continuous_actor(tensor).cpu().numpy(), None)
                    logits = self._discrete_logits(self.discrete_actor, tensor)
                    return PolicyOutput(logits.argmax(1).cpu().numpy(), None)
            return policy

        return {agent: agent_policy(agent) for agent in (cont, disc)}

    def _parts(self) -> dict[str, nn.Module | torch.optim.Optimizer]:
        return {"critics": self.critics, "critic_targets": self.critic_targets,
                "continuous_actor": self.continuous_actor, "discrete_actor": self.discrete_actor,
                "continuous_target": self.continuous_target, "discrete_target": self.discrete_target,
                "critic_optimizer": self.critic_optimizer, "actor_optimizer": self.actor_optimizer}


__all__ = ["CentralisedConfig", "CentralisedLearner"]
