"""The contract every offline algorithm implements, and the batch it consumes."""

from __future__ import annotations

from abc import ABC, abstractmethod
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


class OfflineAlgorithm(ABC):
    """update(batch) -> metrics; act(obs) -> actions; q_value(obs, action) -> Q estimates."""

    name: str = "base"

    def __init__(self, obs_dim: int, action_spec: ActionSpec, config: Any, seed: int = 0) -> None:
        self.obs_dim, self.action_spec, self.config = obs_dim, action_spec, config
        # all sampling inside the algorithm (noise, VAE latents, dropout) draws from this
        self.generator = torch.Generator().manual_seed(seed)

    @abstractmethod
    def update(self, batch: Batch) -> dict[str, float]: ...

    @abstractmethod
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray: ...

    @abstractmethod
    def q_value(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def state_dict(self) -> dict[str, Any]: ...

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
