"""The multi-agent offline dataset: one :class:`OfflineDataset` table per agent plus the
shared global state, and a sampler that draws the same rows from every table.

Row ``i`` of every table is the same moment of the same session: agent ``a``'s observation,
action, reward, next observation, behaviour log-probability and reward components are in
``tables[a]``, and the global state before / after the joint action (what a centralised
critic sees) in ``states[i]`` / ``next_states[i]``. So every table has the same length and
the same episode boundaries (``episode_starts``, ``terminals``, ``truncations``); a
dataset whose tables disagree raises a ``ValueError`` naming the agents.

Discrete agents with an action mask keep the mask *in their observation*:
``action_mask_columns[agent] = (start, stop)`` names the observation columns holding the
0/1 mask of the actions allowed on that request. Construction checks that every logged
action is allowed by its mask (a violating row raises a ``ValueError`` with its index), so a
learner can rely on the data never containing a masked action.

On disk (:meth:`MultiAgentDataset.save` / :meth:`MultiAgentDataset.load`)::

    metadata.json            format, agents, length, mask columns, user metadata,
                             and per state column: file, dtype, shape, sha256
    states.npy, next_states.npy
    agents/<agent>/          each table saved by OfflineDataset.save (its own metadata + checksums)

The whole folder is written by :func:`marl_rec.data.storage.save_folder_atomically`, the
same code that saves one table: written to a hidden sibling and renamed into place (an
existing dataset is renamed aside first and deleted last), so an interrupted save never
leaves half a dataset at ``path``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from marl_rec.contracts import Batch
from marl_rec.data.dataset import OfflineDataset, TensorSampler, first_non_finite_row
from marl_rec.data.storage import (METADATA_FILE, column_file, json_copy, load_column, load_dataset, read_metadata,
                                   save_dataset, save_folder_atomically, write_columns)

FORMAT_NAME = "marl_rec.multiagent_dataset"
FORMAT_VERSION = 1
STATE_COLUMNS = ("states", "next_states")
_AGENT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")  # a safe folder name, not hidden


@dataclass
class MultiAgentDataset:
    """Per-agent tables (same rows, same episodes) plus the global state; validated on construction."""

    tables: dict[str, OfflineDataset]
    states: np.ndarray  # (N, state_dim) float32: global state before the joint action
    next_states: np.ndarray  # (N, state_dim) float32: global state after it
    action_mask_columns: dict[str, tuple[int, int]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tables = dict(self.tables)
        self.action_mask_columns = {a: (int(c[0]), int(c[1])) for a, c in self.action_mask_columns.items()}
        self.validate()

    # ------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ValueError naming the agent, column or row that is inconsistent."""
        if not self.tables:
            raise ValueError("a multi-agent dataset needs at least one agent table")
        for agent, table in self.tables.items():
            if not isinstance(agent, str) or not _AGENT_NAME.match(agent):
                raise ValueError(f"agent name {agent!r} must be letters, digits, '_', '.', '-' (a folder name)")
            if not isinstance(table, OfflineDataset):
                raise ValueError(f"table of agent {agent!r} must be an OfflineDataset, got {type(table).__name__}")
        lengths = {agent: len(table) for agent, table in self.tables.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"the agent tables disagree in length: {lengths} (row i of every table must be "
                             f"the same step of the same session)")
        n = next(iter(lengths.values()))
        first_agent, first = next(iter(self.tables.items()))
        for agent, table in self.tables.items():
            for name in ("episode_starts", "terminals", "truncations"):
                if not np.array_equal(getattr(table, name), getattr(first, name)):
                    row = int(np.flatnonzero(getattr(table, name) != getattr(first, name))[0])
                    raise ValueError(f"agent tables {first_agent!r} and {agent!r} disagree in column {name!r} "
                                     f"at row {row}: every table must hold the same episodes")
        for name in STATE_COLUMNS:
            column = getattr(self, name)
            if not isinstance(column, np.ndarray) or column.ndim != 2 or column.dtype.kind != "f":
                raise ValueError(f"column {name!r} must be a 2-D floating-point array (N, state_dim), got "
                                 f"{getattr(column, 'dtype', type(column).__name__)} {np.shape(column)}")
            if len(column) != n:
                raise ValueError(f"column {name!r} has {len(column)} rows, the agent tables have {n}")
            bad = first_non_finite_row(column)
            if bad is not None:
                raise ValueError(f"column {name!r} contains NaN or infinite values (first at row {bad})")
        if self.next_states.shape != self.states.shape:
            raise ValueError(f"column 'next_states' has shape {self.next_states.shape}, expected {self.states.shape}")
        for agent, (start, stop) in self.action_mask_columns.items():
            self._check_mask(agent, start, stop)

    def _check_mask(self, agent: str, start: int, stop: int) -> None:
        if agent not in self.tables:
            raise ValueError(f"action_mask_columns names agent {agent!r}, which has no table ({self.agents})")
        table = self.tables[agent]
        spec = table.action_spec
        if not spec.discrete:
            raise ValueError(f"action_mask_columns[{agent!r}]: only discrete agents have action masks")
        if not (0 <= start < stop <= table.obs_dim and stop - start == spec.num_actions):
            raise ValueError(f"action_mask_columns[{agent!r}] = ({start}, {stop}) must be {spec.num_actions} "
                             f"columns inside its {table.obs_dim}-dim observation")
        for name in ("observations", "next_observations"):
            mask = getattr(table, name)[:, start:stop]
            if not np.isin(mask, (0.0, 1.0)).all():
                raise ValueError(f"agent {agent!r}: the action mask in columns {start}:{stop} of {name!r} "
                                 f"must be 0/1")
        allowed = table.observations[np.arange(len(table)), start + table.actions]
        if not (allowed == 1.0).all():
            row = int(np.flatnonzero(allowed != 1.0)[0])
            raise ValueError(f"agent {agent!r}: action {int(table.actions[row])} at row {row} violates the "
                             f"action mask stored in observation columns {start}:{stop}")

    # ---------------------------------------------------------------- access
    @property
    def agents(self) -> list[str]:
        return list(self.tables)

    def __len__(self) -> int:
        return len(self.states)

    @property
    def state_dim(self) -> int:
        return self.states.shape[1]

    @property
    def num_episodes(self) -> int:
        return next(iter(self.tables.values())).num_episodes

    def action_masks(self, agent: str, next_step: bool = False) -> np.ndarray | None:
        """(N, num_actions) bool masks of ``agent`` (None when it has none)."""
        if agent not in self.action_mask_columns:
            return None
        start, stop = self.action_mask_columns[agent]
        table = self.tables[agent]
        return (table.next_observations if next_step else table.observations)[:, start:stop] > 0.5

    def with_rewards(self, rewards: Mapping[str, np.ndarray], source: str = "relabelled") -> MultiAgentDataset:
        """The same transitions with each named agent's rewards replaced (others kept); see
        :meth:`OfflineDataset.with_rewards`."""
        unknown = sorted(set(rewards) - set(self.tables))
        if unknown:
            raise ValueError(f"with_rewards: unknown agents {unknown}; this dataset has {self.agents}")
        tables = {agent: table.with_rewards(rewards[agent], source) if agent in rewards else table
                  for agent, table in self.tables.items()}
        return MultiAgentDataset(tables, self.states, self.next_states, dict(self.action_mask_columns),
                                 {**self.metadata, "reward_source": source})

    def summary(self) -> dict[str, Any]:
        return {"num_transitions": len(self), "num_episodes": self.num_episodes, "state_dim": self.state_dim,
                "agents": {agent: table.summary() for agent, table in self.tables.items()}}

    # --------------------------------------------------------------- storage
    def save(self, path: str | Path, overwrite: bool = True) -> Path:
        """Write the dataset atomically (module docstring). An existing folder is replaced only
        if it is a saved multi-agent dataset and ``overwrite`` is True."""
        self.validate()
        user_metadata = json_copy(self.metadata, "metadata")

        def fill(folder: Path) -> dict[str, Any]:
            for agent, table in self.tables.items():
                save_dataset(table, folder / "agents" / agent)
            columns = write_columns(folder, {name: getattr(self, name) for name in STATE_COLUMNS})
            return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "agents": self.agents,
                    "num_transitions": len(self),
                    "action_mask_columns": {a: list(c) for a, c in self.action_mask_columns.items()},
                    "metadata": user_metadata, "columns": columns}

        return save_folder_atomically(path, fill, FORMAT_NAME, "multi-agent dataset", overwrite)

    @classmethod
    def load(cls, path: str | Path, mmap: bool | None = None, verify_checksums: bool = True) -> MultiAgentDataset:
        """Load and validate a saved multi-agent dataset (``np.load(allow_pickle=False)``).

        Raises FileNotFoundError for a missing folder or file, ValueError naming the agent or
        column for anything inconsistent (a table of another length, a corrupted file, ...)."""
        path = Path(path)
        meta = read_metadata(path, FORMAT_NAME, FORMAT_VERSION, "multi-agent dataset",
                             ("agents", "num_transitions", "action_mask_columns", "metadata", "columns"))
        agents = meta["agents"]
        if not isinstance(agents, list) or not agents or not all(
                isinstance(a, str) and _AGENT_NAME.match(a) for a in agents):
            raise ValueError(f"{path / METADATA_FILE}: field 'agents' must be a non-empty list of agent names, "
                             f"got {agents!r}")
        n = meta["num_transitions"]
        tables = {}
        for agent in agents:
            table = load_dataset(path / "agents" / agent, mmap=mmap, verify_checksums=verify_checksums)
            if len(table) != n:
                raise ValueError(f"agent table {agent!r} has {len(table)} transitions, {path / METADATA_FILE} "
                                 f"says num_transitions={n}: the agent tables disagree in length")
            tables[agent] = table
        columns = meta["columns"]
        if not isinstance(columns, dict) or not all(isinstance(columns.get(name), dict) for name in STATE_COLUMNS):
            raise ValueError(f"{path / METADATA_FILE}: field 'columns' must describe the columns "
                             f"{list(STATE_COLUMNS)}, got {columns!r}")
        arrays = {name: load_column(column_file(path, name, columns.get(name)), name, columns[name], bool(mmap),
                                    verify_checksums) for name in STATE_COLUMNS}
        masks, user_metadata = meta["action_mask_columns"], meta["metadata"]
        if not isinstance(masks, dict) or not all(isinstance(c, list) and all(
                isinstance(i, int) and not isinstance(i, bool) for i in c) for c in masks.values()):
            raise ValueError(f"{path / METADATA_FILE}: field 'action_mask_columns' must map agents to lists of "
                             f"column indices, got {masks!r}")
        if not isinstance(user_metadata, dict):
            raise ValueError(f"{path / METADATA_FILE}: field 'metadata' must be a JSON object, got "
                             f"{type(user_metadata).__name__}")
        try:
            return cls(tables, arrays["states"], arrays["next_states"],
                       {a: tuple(c) for a, c in masks.items()}, dict(user_metadata))
        except (TypeError, ValueError) as error:
            raise ValueError(f"multi-agent dataset at {path} is invalid: {error}") from error


# ------------------------------------------------------------------- sampling
@dataclass
class JointBatch:
    """A minibatch of the same rows from every agent table plus the global states."""

    states: torch.Tensor  # (B, state_dim)
    next_states: torch.Tensor  # (B, state_dim)
    agents: dict[str, Batch]
    dones: torch.Tensor  # (B,) 1.0 where the session ended in a terminal state

    def __getitem__(self, agent: str) -> Batch:
        return self.agents[agent]


class JointSampler:
    """Uniform minibatches of whole joint transitions by one index-gather per column.

    Has the sampler interface of :class:`marl_rec.trainer.Trainer` (``sample``, ``size``,
    ``device``), so a centralised learner trains with the ordinary trainer."""

    def __init__(self, dataset: MultiAgentDataset, device: str | torch.device = "cpu") -> None:
        self.size = len(dataset)
        self.device = torch.device(device)
        self.samplers = {agent: TensorSampler(table, device) for agent, table in dataset.tables.items()}
        self.states = torch.as_tensor(np.ascontiguousarray(dataset.states), dtype=torch.float32, device=device)
        self.next_states = torch.as_tensor(np.ascontiguousarray(dataset.next_states), dtype=torch.float32,
                                           device=device)

    def sample(self, batch_size: int, generator: torch.Generator) -> JointBatch:
        index = torch.randint(self.size, (batch_size,), generator=generator, device=self.device)
        agents = {}
        for agent, s in self.samplers.items():
            agents[agent] = Batch(
                observations=s.observations[index], actions=s.actions[index], rewards=s.rewards[index],
                next_observations=s.next_observations[index], dones=s.dones[index],
                behaviour_log_probs=None if s.behaviour_log_probs is None else s.behaviour_log_probs[index])
        return JointBatch(self.states[index], self.next_states[index], agents,
                          next(iter(agents.values())).dones)


__all__ = ["MultiAgentDataset", "JointBatch", "JointSampler", "FORMAT_NAME", "STATE_COLUMNS"]
