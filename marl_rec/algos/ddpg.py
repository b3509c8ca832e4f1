"""DDPG (Lillicrap et al., 2016): one critic, a deterministic actor, soft target networks.

The behavioural agent of Fujimoto et al.'s offline settings (final buffer, concurrent) and,
trained offline, the textbook case of extrapolation error."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from marl_rec.contracts import ActionSpec, Batch
from marl_rec.algos.common import (TorchAlgorithm, adam, check_in_range, check_non_negative,
                                   check_positive, check_positive_int, normalise_hidden)
from marl_rec.nets import CriticEnsemble, DeterministicActor, soft_update


@dataclass(frozen=True)
class DDPGConfig:
    """Defaults: the DDPG that Fujimoto et al. (2019, BCQ) train as the behavioural agent —
    400-300 actor and critic, actor Adam 1e-4, critic Adam 1e-3 with L2 weight decay 1e-2,
    τ = 0.005, γ = 0.99 (Lillicrap et al.'s settings, τ aside); batch 256 as for every
    algorithm here (their 100), exploration noise 0.1 × max_action."""

    actor_hidden: tuple[int, ...] = (400, 300)
    critic_hidden: tuple[int, ...] = (400, 300)
    actor_lr: float = 1e-4
    critic_lr: float = 1e-3
    critic_weight_decay: float = 1e-2
    gamma: float = 0.99
    tau: float = 0.005
    exploration_noise: float = 0.1  # act(deterministic=False) and online training
    batch_size: int = 256

    def __post_init__(self) -> None:
        normalise_hidden(self, "actor_hidden", "critic_hidden")
        check_positive(self, "actor_lr", "critic_lr")
        check_non_negative(self, "critic_weight_decay", "exploration_noise")
        check_in_range(self, "gamma", 0.0, 1.0)
        check_in_range(self, "tau", 0.0, 1.0, low_open=True)
        check_positive_int(self, "batch_size")

    @classmethod
    def rec(cls) -> DDPGConfig:
        """Recommendation-sized preset: 128-128 networks, the paper's optimiser settings and τ.
        Measured online on the legacy world (bench/results/README.md, "Algorithm presets"): with
        τ = 0.05 (TD3's rec value) DDPG's critic ran away and its return fell after ~500
        updates; with Fujimoto's re-tuned optimiser (Adam 3e-4, no weight decay) it stalled at a
        poor saturated action."""
        return cls(actor_hidden=(128, 128), critic_hidden=(128, 128))


class DDPG(TorchAlgorithm):
    """A one-member :class:`CriticEnsemble`; ``q_value`` is that critic's estimate."""

    name = "ddpg"

    def __init__(self, obs_dim: int, action_spec: ActionSpec, config: DDPGConfig | None = None,
                 seed: int = 0, device: str | torch.device = "cpu") -> None:
        super().__init__(obs_dim, action_spec, config or DDPGConfig(), seed, device)
        c, k = self.config, action_spec.dim
        self.max_action = self._require_continuous()
        self.actor = self._build(DeterministicActor(obs_dim, k, c.actor_hidden, self.max_action))
        self.critic = self._build(CriticEnsemble(obs_dim, k, c.critic_hidden, num_critics=1))
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optimizer = adam(self.actor.parameters(), c.actor_lr)
        self.critic_optimizer = adam(self.critic.parameters(), c.critic_lr, c.critic_weight_decay)

    def update(self, batch: Batch) -> dict[str, float]:
        c = self.config
        self.num_updates += 1
        with torch.no_grad():
            next_q = self.critic_target.single(batch.next_observations,
                                               self.actor_target(batch.next_observations))
            target = batch.rewards + c.gamma * (1.0 - batch.dones) * next_q
        q = self.critic.single(batch.observations, batch.actions)
        critic_loss = (q - target).pow(2).mean()
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_optimizer.step()

        self.critic.requires_grad_(False)  # the actor step needs no critic weight gradients
        actor_loss = -self.critic.single(batch.observations, self.actor(batch.observations)).mean()
        self.actor_optimizer.zero_grad()
        actor_loss.backward()
        self.actor_optimizer.step()
        self.critic.requires_grad_(True)

        soft_update(self.critic_target, self.critic, c.tau)
        soft_update(self.actor_target, self.actor, c.tau)
        return self._metrics({"critic_loss": critic_loss, "actor_loss": actor_loss, "q_mean": q.mean(),
                              "target_mean": target.mean()})

    def _act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        action = self.actor(obs)
        if not deterministic:
            noise = torch.randn(action.shape, generator=self.generator, device=self.device)
            action = (action + self.config.exploration_noise * self.max_action * noise).clamp_(
                -self.max_action, self.max_action)
        return action

    def _q_value(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.critic.single(obs, action)

    def _parts(self) -> dict[str, torch.nn.Module | torch.optim.Optimizer]:
        return {"actor": self.actor, "critic": self.critic, "actor_target": self.actor_target,
                "critic_target": self.critic_target, "actor_optimizer": self.actor_optimizer,
                "critic_optimizer": self.critic_optimizer}
