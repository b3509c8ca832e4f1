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
truncations           bool (N,)        the episode was cut (time limit), see below
episode_starts        bool (N,)        first transition of each episode
behaviour_log_probs   float32 (N,)     log μ(a|s) of the logging policy, when known
reward_components     float32 (N, c)   per-behaviour rewards (click, like, ...), when known
===================== ================ =====================================================

Every episode is a contiguous run that starts where ``episode_starts`` is True and ends
with a terminal or truncated transition. The action space is explicit (:class:`ActionSpec`).

Truncations and TD targets: by default a truncation ends the return like a terminal does
(:class:`TensorSampler` ``bootstrap_truncated=False``). In the fusion-ranking simulator the
request cap is part of the task — the observation holds the request index, and the session's
return (what the A/B test and the reported "true value" count) stops there — so
bootstrapping through it would credit the learner with requests that never come (Pardo et
al. 2018, "Time limits in reinforcement learning"). Pass ``bootstrap_truncated=True`` for
logs whose cuts are only an artefact of the logging window.

On disk a dataset is a folder of ``.npy`` columns plus ``metadata.json``
(:meth:`OfflineDataset.save` / :meth:`OfflineDataset.load`, see :mod:`marl_rec.data.storage`).
Episode-level helpers (:meth:`~OfflineDataset.concatenate`, :meth:`~OfflineDataset.subset_episodes`,
:meth:`~OfflineDataset.split_episodes`, :meth:`~OfflineDataset.with_rewards`) return new
datasets and never modify the one they are called on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from marl_rec.contracts import ActionSpec, Batch

REQUIRED_COLUMNS = ("observations", "actions", "rewards", "next_observations", "terminals",
                    "truncations", "episode_starts")
OPTIONAL_COLUMNS = ("behaviour_log_probs", "reward_components")
# the columns whose values (not only structure) validate() checks
_VALUE_CHECKED = ("observations", "actions", "rewards", "next_observations", "behaviour_log_probs",
                  "reward_components")
_CHUNK_BYTES = 1 << 26  # finiteness is checked in ~64 MiB blocks so memory-mapped columns stay lazy


def first_non_finite_row(column: np.ndarray) -> int | None:
    """Row of the first NaN/inf in ``column`` (None if all finite), scanning in blocks so a
    memory-mapped column larger than memory is never materialised whole."""
    row_bytes = max(1, column.itemsize * int(np.prod(column.shape[1:], dtype=np.int64)))
    step = max(1, _CHUNK_BYTES // row_bytes)
    for start in range(0, len(column), step):
        finite = np.isfinite(column[start:start + step])
        if not finite.all():
            return start + int(np.argwhere(~finite)[0][0])
    return None


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
    def validate(self, check_values: bool = True) -> None:
        """Raise ValueError naming the first column that is malformed.

        ``check_values=False`` checks only the structure (lengths, shapes, dtypes, episode
        boundaries), not the values (NaN/inf, discrete actions in range): for a dataset made of
        columns whose values were already checked (:meth:`concatenate`). A full check records
        which column objects it checked (:meth:`_values_checked`)."""
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
        for name in ("terminals", "truncations", "episode_starts", "behaviour_log_probs"):
            column = getattr(self, name)
            if column is not None and column.ndim != 1:
                raise ValueError(f"column {name!r} must be 1-D, got shape {column.shape}")
        if self.reward_components is not None and self.reward_components.ndim != 2:
            raise ValueError(f"column 'reward_components' must be 2-D (N, num_components), got shape "
                             f"{self.reward_components.shape}")
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
            if check_values and (self.actions.min() < 0 or self.actions.max() >= spec.num_actions):
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
        for name in _VALUE_CHECKED if check_values else ():
            column = getattr(self, name)
            if column is not None and np.issubdtype(column.dtype, np.floating):
                bad = first_non_finite_row(column)
                if bad is not None:
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
        if check_values:
            self._checked_columns = {name: getattr(self, name) for name in _VALUE_CHECKED}

    def _values_checked(self) -> bool:
        """Whether every column whose values :meth:`validate` checks is still the array object it
        checked. (A column assigned since then is not; one written to in place still is: the
        dataset's arrays are not frozen, and writing NaN into one is outside its contract.)"""
        checked = self.__dict__.get("_checked_columns", {})
        return all(name in checked and checked[name] is getattr(self, name) for name in _VALUE_CHECKED)

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

    @property
    def num_episodes(self) -> int:
        return int(np.count_nonzero(self.episode_starts))

    # --------------------------------------------------------------- storage
    def save(self, path: str | Path, overwrite: bool = True) -> Path:
        """Write the dataset atomically as a folder of ``.npy`` columns + ``metadata.json``
        (see :func:`marl_rec.data.storage.save_dataset`)."""
        from marl_rec.data.storage import save_dataset
        return save_dataset(self, path, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path, mmap: bool | None = None, verify_checksums: bool = True) -> OfflineDataset:
        """Load and validate a saved dataset; ``mmap=None`` memory-maps it when it is large
        (see :func:`marl_rec.data.storage.load_dataset`)."""
        from marl_rec.data.storage import load_dataset
        return load_dataset(path, mmap=mmap, verify_checksums=verify_checksums)

    # ------------------------------------------------------ episode helpers
    def _replace(self, rows: np.ndarray | slice | None = None, **overrides: Any) -> OfflineDataset:
        """A new dataset with the columns gathered at ``rows`` (all rows if None) and some
        fields replaced; validated on construction like any other."""
        def take(column: np.ndarray | None) -> np.ndarray | None:
            return column if column is None or rows is None else column[rows]

        fields = dict(
            observations=take(self.observations), actions=take(self.actions),
            rewards=take(self.rewards), next_observations=take(self.next_observations),
            terminals=take(self.terminals), truncations=take(self.truncations),
            episode_starts=take(self.episode_starts), action_spec=self.action_spec,
            behaviour_log_probs=take(self.behaviour_log_probs),
            reward_components=take(self.reward_components),
            component_names=list(self.component_names), metadata=dict(self.metadata))
        fields.update(overrides)
        return OfflineDataset(**fields)

    def episode_rows(self, episode_indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Row indices of the given episodes, in the order given."""
        bounds = self.episode_bounds()
        index = np.asarray(episode_indices)
        if index.dtype == np.bool_:
            if index.shape != (len(bounds),):
                raise ValueError(f"episode mask has shape {index.shape}, expected ({len(bounds)},)")
            index = np.flatnonzero(index)
        if index.ndim != 1 or not (index.size == 0 or np.issubdtype(index.dtype, np.integer)):
            raise ValueError(f"episode indices must be a 1-D integer array or boolean mask, got "
                             f"{index.dtype} {index.shape}")
        if index.size == 0:
            raise ValueError("no episodes selected: a dataset needs at least one episode")
        if index.min() < -len(bounds) or index.max() >= len(bounds):
            raise ValueError(f"episode index out of range: the dataset has {len(bounds)} episodes, "
                             f"got indices in [{index.min()}, {index.max()}]")
        selected = bounds[index]
        lengths = selected[:, 1] - selected[:, 0]
        # rows = start of its episode + offset inside it, without a Python loop over episodes
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return np.repeat(selected[:, 0], lengths) + offsets

    def subset_episodes(self, episode_indices: Sequence[int] | np.ndarray) -> OfflineDataset:
        """A new dataset holding the given episodes (integer indices or a boolean mask over
        episodes), in the order given. Columns are copied, so the result is in memory even
        when this dataset is memory-mapped."""
        return self._replace(self.episode_rows(episode_indices))

    def split_episodes(self, fraction: float, rng: np.random.Generator) -> tuple[OfflineDataset, OfflineDataset]:
        """Split whole episodes at random into (first, second) with ``round(fraction * E)``
        episodes in the first (e.g. train / validation); each part keeps episode order."""
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}")
        num_episodes = self.num_episodes
        num_first = int(round(fraction * num_episodes))
        if not 0 < num_first < num_episodes:
            raise ValueError(f"fraction={fraction} of {num_episodes} episodes leaves one split empty")
        permutation = rng.permutation(num_episodes)
        return (self.subset_episodes(np.sort(permutation[:num_first])),
                self.subset_episodes(np.sort(permutation[num_first:])))

    def with_rewards(self, new_rewards: np.ndarray, source: str = "relabelled") -> OfflineDataset:
        """The same transitions with ``rewards`` replaced (reward learning relabels data this
        way). Other columns are shared, not copied; ``metadata['reward_source']`` records
        ``source``. The original rewards remain in this dataset."""
        rewards = np.asarray(new_rewards)
        if rewards.shape != self.rewards.shape:
            raise ValueError(f"new rewards have shape {rewards.shape}, expected {self.rewards.shape}")
        if not np.issubdtype(rewards.dtype, np.number) or np.issubdtype(rewards.dtype, np.complexfloating):
            raise ValueError(f"new rewards must be real numbers, got dtype {rewards.dtype}")
        return self._replace(rewards=rewards.astype(np.float32),
                             metadata={**self.metadata, "reward_source": source})

    @classmethod
    def concatenate(cls, datasets: Sequence[OfflineDataset]) -> OfflineDataset:
        """Episodes of all ``datasets`` one after another (e.g. ``mixed`` = random + expert).

        Action spaces, observation sizes, the other columns' widths and component names must
        agree. An optional column (behaviour log-probs, reward components) is kept only if every
        part has it; the result's ``metadata`` lists each part's metadata under ``parts``.

        The values are not checked again (issue #19: the parallel collection's merge): each part
        checked its own when it was built, and copying rows cannot make a value NaN or an action
        index out of range. A part with a column assigned since it was checked is checked again
        (:meth:`_values_checked`); the result's structure (shapes, dtypes, episode boundaries)
        is checked as any dataset's is."""
        datasets = list(datasets)
        if not datasets:
            raise ValueError("concatenate needs at least one dataset")
        first = datasets[0]
        for i, other in enumerate(datasets[1:], start=1):
            if other.action_spec != first.action_spec:
                raise ValueError(f"dataset {i} has action_spec {other.action_spec}, dataset 0 has {first.action_spec}")
            if other.obs_dim != first.obs_dim:
                raise ValueError(f"dataset {i} has obs_dim {other.obs_dim}, dataset 0 has {first.obs_dim}")
        for part in datasets:
            if not part._values_checked():
                part.validate()

        def joined(name: str) -> np.ndarray | None:
            columns = [getattr(d, name) for d in datasets]
            if any(c is None for c in columns):
                return None
            for i, column in enumerate(columns[1:], start=1):
                if column.shape[1:] != columns[0].shape[1:]:
                    raise ValueError(f"dataset {i} has column {name!r} of shape {column.shape}, dataset 0 has "
                                     f"{columns[0].shape}: the widths must agree")
            return np.concatenate(columns)  # (one allocation, each part copied into it once)

        components = joined("reward_components")
        names = list(first.component_names) if components is not None else []
        if components is not None:
            for i, other in enumerate(datasets[1:], start=1):
                if list(other.component_names) != names:
                    raise ValueError(f"dataset {i} has component_names {other.component_names}, dataset 0 has {names}")
        result = cls.__new__(cls)  # not through __init__: its validation would check every value again
        result.__dict__.update(
            observations=joined("observations"), actions=joined("actions"), rewards=joined("rewards"),
            next_observations=joined("next_observations"), terminals=joined("terminals"),
            truncations=joined("truncations"), episode_starts=joined("episode_starts"),
            action_spec=first.action_spec, behaviour_log_probs=joined("behaviour_log_probs"),
            reward_components=components, component_names=names,
            metadata={"parts": [dict(d.metadata) for d in datasets]})
        result.validate(check_values=False)
        result._checked_columns = {name: getattr(result, name) for name in _VALUE_CHECKED}
        return result

    def summary(self) -> dict[str, Any]:
        """Plain-Python statistics (JSON-serialisable) for logs and reports."""
        returns = self.episode_returns()
        lengths = np.diff(self.episode_bounds(), axis=1)[:, 0]
        ends = self.episode_bounds()[:, 1] - 1
        out: dict[str, Any] = {
            "num_transitions": len(self), "num_episodes": self.num_episodes,
            "obs_dim": self.obs_dim, "action_spec": self.action_spec.to_dict(),
            "episode_length": {"mean": float(lengths.mean()), "min": int(lengths.min()), "max": int(lengths.max())},
            "episode_return": {"mean": float(returns.mean()), "std": float(returns.std()),
                               "min": float(returns.min()), "max": float(returns.max())},
            "reward": {"mean": float(np.mean(self.rewards)), "std": float(np.std(self.rewards))},
            "terminal_episode_fraction": float(np.mean(self.terminals[ends])),
            "has_behaviour_log_probs": self.behaviour_log_probs is not None,
            "nbytes": int(sum(getattr(self, n).nbytes for n in REQUIRED_COLUMNS + OPTIONAL_COLUMNS
                              if getattr(self, n) is not None)),
        }
        if self.action_spec.discrete:
            counts = np.bincount(self.actions, minlength=self.action_spec.num_actions)
            out["action_frequency"] = (counts / len(self)).tolist()
        else:
            out["action_mean"] = np.mean(self.actions, axis=0, dtype=np.float64).tolist()
            out["action_std"] = np.std(self.actions, axis=0, dtype=np.float64).tolist()
        if self.reward_components is not None:
            means = np.mean(self.reward_components, axis=0, dtype=np.float64).tolist()
            names = self.component_names or [f"component_{i}" for i in range(len(means))]
            out["component_mean"] = dict(zip(names, means))
        return out


class TensorSampler:
    """Uniform minibatches by index-gather on columns preloaded as torch tensors.

    ``Batch.dones`` is 1.0 at terminals and, unless ``bootstrap_truncated``, at truncations
    (see the module docstring)."""

    def __init__(self, dataset: OfflineDataset, device: str | torch.device = "cpu",
                 bootstrap_truncated: bool = False) -> None:
        def tensor(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(array), dtype=dtype, device=device)

        self.size = len(dataset)
        self.device = torch.device(device)
        action_dtype = torch.long if dataset.action_spec.discrete else torch.float32
        self.observations = tensor(dataset.observations, torch.float32)
        self.actions = tensor(dataset.actions, action_dtype)
        self.rewards = tensor(dataset.rewards, torch.float32)
        self.next_observations = tensor(dataset.next_observations, torch.float32)
        ends = dataset.terminals if bootstrap_truncated else dataset.terminals | dataset.truncations
        self.dones = tensor(ends, torch.float32)  # 1.0 where the TD target does not bootstrap
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
