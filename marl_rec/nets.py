"""Network building blocks shared by every algorithm: MLPs and the one critic ensemble.

The critic ensemble is written once here and used by all algorithms (TD3, BCQ, CQL,
UWAC, FQE, the multi-agent critics). Its layout is a plain list of independent MLPs:
on a 2-core CPU two plain critics measured ~12% faster than one batched (vmapped /
bmm) network; on a GPU batching wins — see bench/updates.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def mlp(input_dim: int, hidden: Sequence[int], output_dim: int, dropout: float = 0.0,
        output_activation: nn.Module | None = None) -> nn.Sequential:
    """Linear-ReLU stack; ``dropout`` > 0 adds Dropout after every hidden layer (UWAC)."""
    layers: list[nn.Module] = []
    last = input_dim
    for width in hidden:
        layers += [nn.Linear(last, width), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        last = width
    layers.append(nn.Linear(last, output_dim))
    if output_activation is not None:
        layers.append(output_activation)
    return nn.Sequential(*layers)


class CriticEnsemble(nn.Module):
    """``num_critics`` independent Q(s, a) networks (or Q(s, ·) heads for discrete actions).

    Continuous: ``forward(obs, action) -> (num_critics, B)``.
    Discrete:   ``forward(obs) -> (num_critics, B, num_actions)`` (pass ``action_dim=0``
    and ``num_actions``).
    """

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int], num_critics: int = 2,
                 dropout: float = 0.0, num_actions: int = 0) -> None:
        super().__init__()
        if num_critics < 1:
            raise ValueError(f"num_critics must be >= 1, got {num_critics}")
        self.discrete = num_actions > 0
        out = num_actions if self.discrete else 1
        self.critics = nn.ModuleList(
            mlp(obs_dim + action_dim, hidden, out, dropout) for _ in range(num_critics))

    def forward(self, obs: torch.Tensor, action: torch.Tensor | None = None) -> torch.Tensor:
        x = obs if self.discrete else torch.cat([obs, action], dim=-1)
        if self.discrete:
            return torch.stack([critic(x) for critic in self.critics])
        return torch.stack([critic(x).squeeze(-1) for critic in self.critics])


class DeterministicActor(nn.Module):
    """a = max_action · tanh(MLP(s)) (DDPG, TD3, BC)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int], max_action: float = 1.0) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, action_dim, output_activation=nn.Tanh())
        self.max_action = max_action

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.max_action * self.net(obs)


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging target ← (1 - τ)·target + τ·source, fused over all parameters."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)
