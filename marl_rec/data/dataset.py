"""The offline dataset: columnar numpy arrays of logged transitions.

Columns (N transitions, in episode order):

===================== ================ =====================================================
column                dtype / shape    meaning
===================== ================ =====================================================
observations          float32 (N, d)   state before the action
actions               float32 (N, k)   continuous actions, or int64 (N,) discrete indices
rewards               float32 (N,)     the reward the learner optimises
next_observations     float32 (N, d)   state after the action
terminals             bool (N,)        the episode ended in a terminal state (user left)
truncations           bool (N,)        the episode was cut (time limit): bootstrap through it
episode_starts        bool (N,)        first transition of each episode
behaviour_log_probs   float32 (N,)     log μ(a|s) of the logging policy, when known
reward_components     float32 (N, c)   per-behaviour rewards (click, like, ...), when known
===================== ================ =====================================================

Every episode is a contiguous run that starts where ``episode_starts`` is True and ends
with a terminal or truncated transition. The action space is explicit (:class:`ActionSpec`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from marl_rec.algos.base import ActionSpec, Batch

REQUIRED_COLUMNS = ("observations", "actions", "rewards", "next_observations", "terminals",
                    "truncations", "episode_starts")
OPTIONAL_COLUMNS = ("behaviour_log_probs", "reward_components")


@dataclass
class OfflineDataset:
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    truncations: np.ndarray
    episode_starts: np.ndarray
    action_spec: ActionSpec
    behaviour_log_probs: np.ndarray | None = None
    reward_components: np.ndarray | None = None
    component_names: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ValueError naming the first column that is malformed."""
        n = len(self.rewards) if np.ndim(self.rewards) == 1 else -1
        if n < 0:
            raise ValueError(f"column 'rewards' must be 1-D, got shape {np.shape(self.rewards)}")
        if n == 0:
            raise ValueError("dataset is empty (column 'rewards' has length 0)")
        for name in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
            column = getattr(self, name)
            if column is None:
                continue
            if len(column) != n:
                raise ValueError(f"column {name!r} has length {len(column)}, expected {n} (length of 'rewards')")
        obs, next_obs = self.observations, self.next_observations
        if obs.ndim != 2:
            raise ValueError(f"column 'observations' must be 2-D (N, obs_dim), got shape {obs.shape}")
        if next_obs.shape != obs.shape:
            raise ValueError(f"column 'next_observations' has shape {next_obs.shape}, expected {obs.shape}")
        spec = self.action_spec
        if spec.discrete:
            if self.actions.ndim != 1 or not np.issubdtype(self.actions.dtype, np.integer):
                raise ValueError(f"column 'actions' must be 1-D integers for discrete actions, got "
                                 f"{self.actions.dtype} {self.actions.shape}")
            if self.actions.min() < 0 or self.actions.max() >= spec.num_actions:
                raise ValueError(f"column 'actions' has values outside 0..{spec.num_actions - 1}")
        else:
            if self.actions.ndim != 2 or self.actions.shape[1] != spec.dim:
                raise ValueError(f"column 'actions' must have shape (N, {spec.dim}) for the action "
                                 f"space, got {self.actions.shape}")
            if not np.issubdtype(self.actions.dtype, np.floating):
                raise ValueError(f"column 'actions' must be floating point, got {self.actions.dtype}")
        for name in ("terminals", "truncations", "episode_starts"):
            if getattr(self, name).dtype != np.bool_:
                raise ValueError(f"column {name!r} must be bool, got {getattr(self, name).dtype}")
        for name in ("observations", "actions", "rewards", "next_observations",
                     "behaviour_log_probs", "reward_components"):
            column = getattr(self, name)
            if column is not None and np.issubdtype(column.dtype, np.floating) and not np.all(np.isfinite(column)):
                bad = int(np.argwhere(~np.isfinite(column))[0][0])
                raise ValueError(f"column {name!r} contains NaN or infinite values (first at row {bad})")
        if self.reward_components is not None and self.component_names and \
                self.reward_components.shape[1:] != (len(self.component_names),):
            raise ValueError(f"column 'reward_components' has shape {self.reward_components.shape}, "
                             f"expected (N, {len(self.component_names)}) for {self.component_names}")
        if not self.episode_starts[0]:
            raise ValueError("column 'episode_starts' must be True at row 0")
        ends = self.terminals | self.truncations
        # an episode ends exactly where the next one starts
        if not np.array_equal(ends[:-1], self.episode_starts[1:]):
            bad = int(np.flatnonzero(ends[:-1] != self.episode_starts[1:])[0])
            raise ValueError(f"episode boundaries are inconsistent at row {bad}: 'terminals'/'truncations' "
                             f"must mark the row before each 'episode_starts'")
        if not ends[-1]:
            raise ValueError("the last transition must be terminal or truncated (column 'terminals'/'truncations')")

    # ---------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[1]

    def episode_bounds(self) -> np.ndarray:
        """(E, 2) [start, end) row ranges of the episodes."""
        starts = np.flatnonzero(self.episode_starts)
        return np.stack([starts, np.append(starts[1:], len(self))], axis=1)

    def episode_returns(self, gamma: float = 1.0) -> np.ndarray:
        """Discounted return of every episode."""
        bounds = self.episode_bounds()
        out = np.empty(len(bounds))
        for i, (s, e) in enumerate(bounds):
            out[i] = np.sum(self.rewards[s:e] * gamma ** np.arange(e - s))
        return out

    def initial_observations(self) -> np.ndarray:
        return self.observations[self.episode_starts]


class TensorSampler:
    """Uniform minibatches by index-gather on columns preloaded as torch tensors."""

    def __init__(self, dataset: OfflineDataset, device: str | torch.device = "cpu") -> None:
        def tensor(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(array), dtype=dtype, device=device)

        self.size = len(dataset)
        self.device = torch.device(device)
        action_dtype = torch.long if dataset.action_spec.discrete else torch.float32
        self.observations = tensor(dataset.observations, torch.float32)
        self.actions = tensor(dataset.actions, action_dtype)
        self.rewards = tensor(dataset.rewards, torch.float32)
        self.next_observations = tensor(dataset.next_observations, torch.float32)
        self.dones = tensor(dataset.terminals, torch.float32)
        self.behaviour_log_probs = (None if dataset.behaviour_log_probs is None
                                    else tensor(dataset.behaviour_log_probs, torch.float32))

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        index = torch.randint(self.size, (batch_size,), generator=generator, device=self.device)
        return Batch(
            observations=self.observations[index],
            actions=self.actions[index],
            rewards=self.rewards[index],
            next_observations=self.next_observations[index],
            dones=self.dones[index],
            behaviour_log_probs=None if self.behaviour_log_probs is None else self.behaviour_log_probs[index],
        )
