"""The contract every offline algorithm implements (the types it exchanges, :class:`ActionSpec` and
:class:`Batch`, live in :mod:`marl_rec.contracts`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch

from marl_rec.contracts import ActionSpec, Batch


class OfflineAlgorithm(ABC):
    """update(batch) -> metrics; act(obs) -> actions; q_value(obs, action) -> Q estimates."""

    name: str = "base"
    action_kind: str = "continuous"  # the ActionSpec.kind it learns on ("continuous" or "discrete")

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
