"""The types that data, algorithms, policies and OPE exchange, defined once.

A leaf module (numpy and torch only): ``marl_rec.data``, ``marl_rec.algos``, ``marl_rec.ope``,
the behaviour policies and the experiments all import these from here, so that no two of
those packages need each other for a type.

- :class:`ActionSpec`: the explicit action space of a dataset or algorithm;
- :class:`Batch`: the minibatch an algorithm's ``update`` consumes;
- :class:`PolicyOutput`: what a behaviour policy ``policy(sim, obs)`` returns to data collection.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class ActionSpec:
    """Explicit action space of a dataset or algorithm (never guessed from dtypes).

    continuous: ``dim`` entries in [low, high]; discrete: ``num_actions`` choices 0..n-1
    (``dim`` is then 1 by convention).
    """

    kind: str  # "continuous" or "discrete"
    dim: int = 1
    num_actions: int = 0
    low: float = -1.0
    high: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ("continuous", "discrete"):
            raise ValueError(f"ActionSpec.kind must be 'continuous' or 'discrete', got {self.kind!r}")
        if self.kind == "discrete" and self.num_actions < 2:
            raise ValueError(f"ActionSpec.num_actions must be >= 2 for discrete actions, got {self.num_actions}")
        if self.kind == "continuous" and (self.dim < 1 or not self.low < self.high):
            raise ValueError(f"invalid continuous ActionSpec: dim={self.dim}, low={self.low}, high={self.high}")

    @property
    def discrete(self) -> bool:
        return self.kind == "discrete"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Batch:
    """A minibatch as torch tensors. Continuous actions are float (B, dim); discrete are long (B,).

    ``dones`` is 1.0 where the TD target must not bootstrap: a terminal state (the user
    left) and, by default, a truncation (the session cap is part of the task; see
    :mod:`marl_rec.data.dataset`); 0.0 for ordinary steps.
    """

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_observations: torch.Tensor
    dones: torch.Tensor
    behaviour_log_probs: torch.Tensor | None = None


@dataclass
class PolicyOutput:
    """A behaviour policy's actions for a batch of users, and their exact log-density under
    the policy (stored as the behaviour log-probability; None for a deterministic policy)."""

    action: np.ndarray  # (B, action_dim) continuous, or (B,) discrete
    log_prob: np.ndarray | None  # (B,)
