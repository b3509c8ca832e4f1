"""UWAC (Wu et al., 2021): uncertainty-weighted actor-critic, here on BCQ's actor.

The critics are MC-dropout networks (dropout after every hidden layer, also at training
time). The epistemic uncertainty of a value is the variance of Q over ``num_dropout_samples``
dropout masks, and every loss term is weighted by β / Var (clipped to ``weight_clip``):

    critic:  E[ β/Var[Q'(s', a')] · (Q(s, a) − r − γ·E_dropout[Q'(s', a')])² ]
    actor:   −E[ β/Var[Q1(s, π(s))] · Q1(s, π(s)) ]

so backups from and policy gradients at out-of-distribution actions (high variance) count
less. The paper builds UWAC on BEAR; this implementation builds it on :class:`BCQ` (VAE +
perturbation actor, λ-clipped double Q over n proposals), reusing BCQ's networks, acting and
checkpointing: only the critics (with dropout) and the update differ. The MC statistics of
the target are taken at the next action BCQ selects (best of n proposals under the
dropout-free target critics), so a backup costs B·n + B·M critic rows instead of B·n·M.
Acting and ``q_value`` use the dropout-free critics (the MC mean's usual approximation).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import torch

from marl_rec.contracts import ActionSpec, Batch
from marl_rec.algos.bcq import BCQ, BCQConfig
from marl_rec.algos.common import adam, check_in_range, check_positive
from marl_rec.nets import CriticEnsemble, set_dropout_generator, soft_update


@dataclass(frozen=True)
class UWACConfig(BCQConfig):
    """BCQ's defaults (see :class:`BCQConfig`) plus the paper's dropout 0.1 and β = 0.5, the
    reference code's weight clip 1.0 and 100 dropout samples per variance estimate."""

    dropout: float = 0.1
    beta: float = 0.5
    weight_clip: float = 1.0
    num_dropout_samples: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        check_in_range(self, "dropout", 0.0, 1.0, low_open=True)
        if self.dropout >= 1.0:
            raise ValueError(f"UWACConfig.dropout must be < 1, got {self.dropout!r}")
        check_positive(self, "beta", "weight_clip")
        n = self.num_dropout_samples
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f"UWACConfig.num_dropout_samples must be an integer >= 2 (a variance needs two "
                             f"samples), got {n!r}")

    @classmethod
    def rec(cls) -> UWACConfig:
        """BCQ's recommendation-sized preset (:meth:`BCQConfig.rec`: networks, τ) with 10 dropout
        samples per variance estimate instead of 100 (the variance only sets relative weights).
        Chosen on the legacy world's observation-based noisy expert (bench/results/README.md, "Algorithm presets");
        the learning bar it passes: tests/marl_rec/algos/test_learning_bars.py."""
        return cls(**dataclasses.asdict(BCQConfig.rec()), num_dropout_samples=10)


class UWAC(BCQ):
    """BCQ with MC-dropout critics and inverse-variance weighted critic and actor losses."""

    name = "uwac"

    def __init__(self, obs_dim: int, action_spec: ActionSpec, config: UWACConfig | None = None,
                 seed: int = 0, device: str | torch.device = "cpu") -> None:
        config = config or UWACConfig()
        if not isinstance(config, UWACConfig):
            raise TypeError(f"UWAC needs a UWACConfig, got {type(config).__name__}")
        super().__init__(obs_dim, action_spec, config, seed, device)
        c, k = self.config, action_spec.dim
        # BCQ built dropout-free critics; UWAC's are MC-dropout ones with masks from self.generator
        self.critic = self._build(CriticEnsemble(obs_dim, k, c.critic_hidden, num_critics=2, dropout=c.dropout))
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        set_dropout_generator(self.critic, self.generator)
        set_dropout_generator(self.critic_target, self.generator)
        self.critic_optimizer = adam(self.critic.parameters(), c.critic_lr)

    def _weight(self, samples: torch.Tensor) -> torch.Tensor:
        """β / Var over the dropout-sample axis 0, clipped to [0, weight_clip]."""
        return (self.config.beta / samples.var(0)).clamp(max=self.config.weight_clip)

    def update(self, batch: Batch) -> dict[str, float]:
        c, n, m = self.config, self.config.num_sampled_actions, self.config.num_dropout_samples
        obs, actions, next_obs = batch.observations, batch.actions, batch.next_observations
        b, k = actions.shape
        self.num_updates += 1
        # 1. generative model of the logged actions (as BCQ)
        reconstruction, mean, log_std = self.vae(obs, actions, self.generator)
        kl = -0.5 * (1.0 + 2.0 * log_std - mean.pow(2) - (2.0 * log_std).exp()).mean()
        vae_loss = (reconstruction - actions).pow(2).mean() + c.kl_weight * kl
        self.vae_optimizer.zero_grad()
        vae_loss.backward()
        self.vae_optimizer.step()

        # 2. critics: BCQ's next action, MC-dropout mean and variance of its λ-clipped value
        with torch.no_grad():
            next_rep = next_obs.repeat_interleave(n, 0)
            latent = self.vae.sample_latent(next_rep.shape[0], self.generator, self.device)
            proposals = self.actor_target(next_rep, self.vae.decode(next_rep, latent))
            self.critic_target.eval()
            q_det = self.critic_target(next_rep, proposals)
            self.critic_target.train()
            best = (c.lmbda * q_det.min(0).values + (1.0 - c.lmbda) * q_det.max(0).values).view(b, n).argmax(1)
            next_action = proposals.view(b, n, k)[torch.arange(b, device=self.device), best]
            q_mc = self.critic_target(next_obs.repeat(m, 1), next_action.repeat(m, 1)).view(2, m, b)
            q_mc = c.lmbda * q_mc.min(0).values + (1.0 - c.lmbda) * q_mc.max(0).values  # (M, B)
            target = batch.rewards + c.gamma * (1.0 - batch.dones) * q_mc.mean(0)
            critic_weight = self._weight(q_mc)
        q = self.critic(obs, actions)  # (2, B), one dropout mask
        critic_loss = (critic_weight * (q - target).pow(2)).mean(1).sum()
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_optimizer.step()

        # 3. perturbation actor: Q1 of perturbed proposals, weighted by β / Var[Q1]
        with torch.no_grad():
            proposals = self.vae.decode(obs, self.vae.sample_latent(b, self.generator, self.device))
        policy_actions = self.actor(obs, proposals)
        self.critic.requires_grad_(False)
        with torch.no_grad():
            actor_weight = self._weight(self.critic.single(obs.repeat(m, 1), policy_actions.repeat(m, 1)).view(m, b))
        actor_loss = -(actor_weight * self.critic.single(obs, policy_actions)).mean()
        self.actor_optimizer.zero_grad()
        actor_loss.backward()
        self.actor_optimizer.step()
        self.critic.requires_grad_(True)

        soft_update(self.critic_target, self.critic, c.tau)
        soft_update(self.actor_target, self.actor, c.tau)
        return self._metrics({"critic_loss": critic_loss, "actor_loss": actor_loss, "vae_loss": vae_loss,
                              "q_mean": q.mean(), "target_mean": target.mean(),
                              "target_std": q_mc.std(0).mean(), "critic_weight": critic_weight.mean(),
                              "actor_weight": actor_weight.mean()})

    def _act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        self.critic.eval()  # dropout off: the policy is a function of the state
        try:
            return super()._act(obs, deterministic)
        finally:
            self.critic.train()

    def _q_value(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        self.critic.eval()
        try:
            return super()._q_value(obs, action)
        finally:
            self.critic.train()
