"""Small helpers shared by the reward learners."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from marl_rec.nets import mlp


@torch.no_grad()
def init_linear_(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-draw every ``nn.Linear`` of ``module`` with PyTorch's default initialisation
    (Kaiming-uniform weights, uniform(±1/sqrt(fan_in)) biases) from ``generator``, so the
    networks are reproducible without seeding torch's global generator."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
            if layer.bias is not None:
                bound = 1.0 / math.sqrt(layer.in_features) if layer.in_features > 0 else 0.0
                nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return module


def seeded_mlp(input_dim: int, hidden: Sequence[int], output_dim: int, generator: torch.Generator) -> nn.Sequential:
    """:func:`marl_rec.nets.mlp` initialised from ``generator``."""
    return init_linear_(mlp(input_dim, list(hidden), output_dim), generator)
