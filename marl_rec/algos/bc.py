"""Behaviour cloning: regress the logged actions (MSE), plus an optional critic of the cloned
policy so that BC reports a Q estimate like every other algorithm.

The critic is policy *evaluation* (a SARSA-style TD target with the BC actor's own action
at the next state), never used to change the policy; its actions stay in the data's
support, so its estimate is the calibrated reference next to TD3's runaway one."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from marl_rec.contracts import ActionSpec, Batch
from marl_rec.algos.common import (TorchAlgorithm, adam, check_in_range, check_positive,
                                   check_positive_int, normalise_hidden)
from marl_rec.nets import CriticEnsemble, DeterministicActor, soft_update


@dataclass(frozen=True)
class BCConfig:
    """Defaults: the usual BC baseline (d3rlpy's: a 256-256 deterministic actor, Adam 1e-3)
    and a 256-256 evaluation critic trained like TD3's (Adam 3e-4, γ = 0.99, τ = 0.005).
    ``evaluate_critic=False`` drops the critic (pure BC; ``q_value`` then raises)."""

    actor_hidden: tuple[int, ...] = (256, 256)
    actor_lr: float = 1e-3
    evaluate_critic: bool = True
    critic_hidden: tuple[int, ...] = (256, 256)
    critic_lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    batch_size: int = 256

    def __post_init__(self) -> None:
        normalise_hidden(self, "actor_hidden", "critic_hidden")
        check_positive(self, "actor_lr", "critic_lr")
        check_in_range(self, "gamma", 0.0, 1.0)
        check_in_range(self, "tau", 0.0, 1.0, low_open=True)
        check_positive_int(self, "batch_size")
        if not isinstance(self.evaluate_critic, bool):
            raise ValueError(f"BCConfig.evaluate_critic must be a bool, got {self.evaluate_critic!r}")

    @classmethod
    def rec(cls) -> BCConfig:
        """Recommendation-sized preset: 128-128 actor and critic, τ = 0.05 for the critic.
        Measured on the legacy world (bench/results/README.md, "Algorithm presets"): the 256-256
        return at half the time per update; 64-64 lost a little; τ = 0.05 calibrates the Q
        estimate within ~1,000 updates."""
        return cls(actor_hidden=(128, 128), critic_hidden=(128, 128), tau=0.05)


class BC(TorchAlgorithm):
    """Deterministic behaviour cloning; ``q_value`` is the evaluation critic's Q^π_BC."""

    name = "bc"

    def __init__(self, obs_dim: int, action_spec: ActionSpec, config: BCConfig | None = None,
                 seed: int = 0, device: str | torch.device = "cpu") -> None:
        super().__init__(obs_dim, action_spec, config or BCConfig(), seed, device)
        c, k = self.config, action_spec.dim
        self.max_action = self._require_continuous()
        self.actor = self._build(DeterministicActor(obs_dim, k, c.actor_hidden, self.max_action))
        self.actor_optimizer = adam(self.actor.parameters(), c.actor_lr)
        if c.evaluate_critic:
            self.critic = self._build(CriticEnsemble(obs_dim, k, c.critic_hidden, num_critics=1))
            self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
            self.critic_optimizer = adam(self.critic.parameters(), c.critic_lr)

    def update(self, batch: Batch) -> dict[str, float]:
        c = self.config
        self.num_updates += 1
        actor_loss = (self.actor(batch.observations) - batch.actions).pow(2).mean()
        self.actor_optimizer.zero_grad()
        actor_loss.backward()
        self.actor_optimizer.step()
        if not c.evaluate_critic:
            return self._metrics({"actor_loss": actor_loss})

        with torch.no_grad():
            next_q = self.critic_target.single(batch.next_observations, self.actor(batch.next_observations))
            target = batch.rewards + c.gamma * (1.0 - batch.dones) * next_q
        q = self.critic.single(batch.observations, batch.actions)
        critic_loss = (q - target).pow(2).mean()
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_optimizer.step()
        soft_update(self.critic_target, self.critic, c.tau)
        return self._metrics({"actor_loss": actor_loss, "critic_loss": critic_loss, "q_mean": q.mean()})

    def _act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.actor(obs)  # a deterministic policy either way

    def _q_value(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        if not self.config.evaluate_critic:
            raise ValueError("this BC was built with evaluate_critic=False and has no Q estimate")
        return self.critic.single(obs, action)

    def _parts(self) -> dict[str, torch.nn.Module | torch.optim.Optimizer]:
        parts: dict[str, torch.nn.Module | torch.optim.Optimizer] = {
            "actor": self.actor, "actor_optimizer": self.actor_optimizer}
        if self.config.evaluate_critic:
            parts.update(critic=self.critic, critic_target=self.critic_target,
                         critic_optimizer=self.critic_optimizer)
        return parts
