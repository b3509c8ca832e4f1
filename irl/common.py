"""Small helpers shared by the reward learners."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from marl_rec.nets import init_linear_, mlp


def seeded_mlp(input_dim: int, hidden: Sequence[int], output_dim: int, generator: torch.Generator) -> nn.Sequential:
    """:func:`marl_rec.nets.mlp` initialised from ``generator`` (no global torch seeding)."""
    return init_linear_(mlp(input_dim, list(hidden), output_dim), generator)
