"""TD3 (Fujimoto, van Hoof & Meger, 2018): clipped double Q, target policy smoothing, delayed
actor updates. Offline it is the unconstrained baseline whose Q estimates run away from the
true return on actions the data never contains (extrapolation error)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from marl_rec.contracts import ActionSpec, Batch
from marl_rec.algos.common import (TorchAlgorithm, adam, check_in_range, check_non_negative, check_positive,
                                   check_positive_int, normalise_hidden)
from marl_rec.nets import CriticEnsemble, DeterministicActor, soft_update


@dataclass(frozen=True)
class TD3Config:
    """Defaults: the authors' reference implementation (github.com/sfujim/TD3): 256-256 actor
    and twin critics, Adam 3e-4, batch 256, γ = 0.99, τ = 0.005, target noise 0.2 clipped at
    0.5, actor every 2 updates, exploration noise 0.1 (noise scales are × max_action)."""

    actor_hidden: tuple[int, ...] = (256, 256)
    critic_hidden: tuple[int, ...] = (256, 256)
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    policy_delay: int = 2
    exploration_noise: float = 0.1  # act(deterministic=False) and online training
    batch_size: int = 256

    def __post_init__(self) -> None:
        normalise_hidden(self, "actor_hidden", "critic_hidden")
        check_positive(self, "actor_lr", "critic_lr")
        check_in_range(self, "gamma", 0.0, 1.0)
        check_in_range(self, "tau", 0.0, 1.0, low_open=True)
        check_non_negative(self, "policy_noise", "noise_clip", "exploration_noise")
        check_positive_int(self, "policy_delay", "batch_size")

    @classmethod
    def rec(cls) -> TD3Config:
        """Recommendation-sized preset (33-dim state, 4-dim action): 128-128 networks and
        τ = 0.05, the reference learning rates and noise. Measured online on the legacy
        world (bench/results/README.md, "Algorithm presets"): reaches the 256-256 network's return at half the
        time per update; 64-64 was unstable; τ = 0.005 needed 2.5x the updates."""
        return cls(actor_hidden=(128, 128), critic_hidden=(128, 128), tau=0.05)


class TD3(TorchAlgorithm):
    """Twin critics from :class:`CriticEnsemble`; ``q_value`` reports min(Q1, Q2), the value
    TD3's own targets use."""

    name = "td3"

    def __init__(self, obs_dim: int, action_spec: ActionSpec, config: TD3Config | None = None,
                 seed: int = 0, device: str | torch.device = "cpu") -> None:
        super().__init__(obs_dim, action_spec, config or TD3Config(), seed, device)
        c, k = self.config, action_spec.dim
        self.max_action = self._require_continuous()
        self.actor = self._build(DeterministicActor(obs_dim, k, c.actor_hidden, self.max_action))
        self.critic = self._build(CriticEnsemble(obs_dim, k, c.critic_hidden, num_critics=2))
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optimizer = adam(self.actor.parameters(), c.actor_lr)
        self.critic_optimizer = adam(self.critic.parameters(), c.critic_lr)

    def update(self, batch: Batch) -> dict[str, float]:
        c, m = self.config, self.max_action
        self.num_updates += 1
        with torch.no_grad():
            noise = torch.randn(batch.actions.shape, generator=self.generator, device=self.device)
            noise = (noise * (c.policy_noise * m)).clamp_(-c.noise_clip * m, c.noise_clip * m)
            next_action = (self.actor_target(batch.next_observations) + noise).clamp_(-m, m)
            next_q = self.critic_target(batch.next_observations, next_action).min(0).values
            target = batch.rewards + c.gamma * (1.0 - batch.dones) * next_q
        q = self.critic(batch.observations, batch.actions)  # (2, B)
        critic_loss = (q - target).pow(2).mean(1).sum()
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_optimizer.step()
        metrics = {"critic_loss": critic_loss, "q_mean": q.mean(), "target_mean": target.mean()}

        if self.num_updates % c.policy_delay == 0:
            self.critic.requires_grad_(False)  # the actor step needs no critic weight gradients
            actor_loss = -self.critic.single(batch.observations, self.actor(batch.observations)).mean()
            self.actor_optimizer.zero_grad()
            actor_loss.backward()
            self.actor_optimizer.step()
            self.critic.requires_grad_(True)
            soft_update(self.critic_target, self.critic, c.tau)
            soft_update(self.actor_target, self.actor, c.tau)
            metrics["actor_loss"] = actor_loss
        return self._metrics(metrics)

    def _act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        action = self.actor(obs)
        if not deterministic:
            noise = torch.randn(action.shape, generator=self.generator, device=self.device)
            action = (action + self.config.exploration_noise * self.max_action * noise).clamp_(
                -self.max_action, self.max_action)
        return action

    def _q_value(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.critic(obs, action).min(0).values

    def _parts(self) -> dict[str, torch.nn.Module | torch.optim.Optimizer]:
        return {"actor": self.actor, "critic": self.critic, "actor_target": self.actor_target,
                "critic_target": self.critic_target, "actor_optimizer": self.actor_optimizer,
                "critic_optimizer": self.critic_optimizer}
