"""Move datasets between marl_rec and d3rlpy (``d3rlpy.dataset.MDPDataset``, d3rlpy >= 2.0).

d3rlpy is optional and imported only when these functions run.

How the two layouts map. d3rlpy keeps, per episode, the observations s_0..s_{T-1}, actions
and rewards; a transition's next observation is the next row's observation, and at a
terminal step it is zeros. A *timeout* (non-terminal) episode's last row only supplies the
next observation of the row before it — its action and reward are never used. So:

* ``to_d3rlpy`` writes each terminal episode as it is, and each truncated episode with one
  extra row holding its final next observation (action: a copy of the last action, reward
  0, flagged as timeout). d3rlpy then yields exactly our N transitions.
* ``from_d3rlpy`` reverses that: a terminal episode of T rows gives T transitions, a timeout
  episode T - 1 (a one-row timeout episode gives none and is skipped).

A dataset whose next observation inside an episode differs from the following row's
observation cannot be exported (``ValueError`` naming the row).

Not representable in an MDPDataset and therefore lost on export: behaviour log-probs,
reward components, metadata, and the next observation after a terminal step (d3rlpy uses
zeros; the learner never bootstraps from it). Everything else round-trips exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from marl_rec.contracts import ActionSpec
from marl_rec.data.dataset import OfflineDataset


def _import_d3rlpy() -> Any:
    try:
        import d3rlpy
    except ImportError as error:
        raise ImportError("d3rlpy interop needs d3rlpy (pip install d3rlpy>=2); it is an optional "
                          "dependency of marl-rec") from error
    return d3rlpy


def to_d3rlpy(dataset: OfflineDataset) -> Any:
    """An ``MDPDataset`` with the same transitions as ``dataset`` (see the module docstring)."""
    d3rlpy = _import_d3rlpy()
    ends = dataset.episode_bounds()[:, 1] - 1
    within = ~(dataset.terminals | dataset.truncations)[:-1]  # rows followed by a row of the same episode
    mismatch = within & np.any(dataset.next_observations[:-1] != dataset.observations[1:], axis=1)
    if mismatch.any():
        row = int(np.flatnonzero(mismatch)[0])
        raise ValueError(f"row {row}: 'next_observations' differs from the next row's 'observations' inside an "
                         f"episode; d3rlpy derives next observations from the following row and cannot hold this")
    truncated_ends = ends[dataset.truncations[ends]]
    positions = truncated_ends + 1  # one extra row after each truncated episode: its final next observation

    def with_extra(column: np.ndarray, extra: np.ndarray) -> np.ndarray:
        return np.insert(column, positions, extra, axis=0)

    observations = with_extra(np.asarray(dataset.observations, np.float32),
                              np.asarray(dataset.next_observations[truncated_ends], np.float32))
    actions = np.asarray(dataset.actions)
    if dataset.action_spec.discrete:
        actions = actions.astype(np.int64).reshape(-1, 1)
    else:
        actions = actions.astype(np.float32)
    actions = with_extra(actions, actions[truncated_ends])
    rewards = with_extra(np.asarray(dataset.rewards, np.float32), np.zeros(len(truncated_ends), np.float32))
    terminals = with_extra(dataset.terminals.astype(np.float32), np.zeros(len(truncated_ends), np.float32))
    timeouts = with_extra(np.zeros(len(dataset), np.float32), np.ones(len(truncated_ends), np.float32))
    spec = dataset.action_spec
    return d3rlpy.dataset.MDPDataset(
        observations=observations, actions=actions, rewards=rewards.reshape(-1, 1),
        terminals=terminals, timeouts=timeouts,
        action_space=d3rlpy.ActionSpace.DISCRETE if spec.discrete else d3rlpy.ActionSpace.CONTINUOUS,
        action_size=spec.num_actions if spec.discrete else spec.dim,
    )


def from_d3rlpy(mdp_dataset: Any, action_spec: ActionSpec) -> OfflineDataset:
    """An :class:`OfflineDataset` from a d3rlpy replay buffer / ``MDPDataset``.

    ``action_spec`` is explicit (d3rlpy may have guessed its action space from dtypes); it
    must agree with the dataset's action space and size.
    """
    d3rlpy = _import_d3rlpy()
    info = mdp_dataset.dataset_info
    expected_space = d3rlpy.ActionSpace.DISCRETE if action_spec.discrete else d3rlpy.ActionSpace.CONTINUOUS
    expected_size = action_spec.num_actions if action_spec.discrete else action_spec.dim
    if info.action_space != expected_space or info.action_size != expected_size:
        raise ValueError(f"action_spec {action_spec} does not match the d3rlpy dataset "
                         f"({info.action_space.name}, action_size={info.action_size})")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "next_obs", "action", "reward", "terminal")}
    for index, episode in enumerate(mdp_dataset.episodes):
        observations = episode.observations
        if not isinstance(observations, np.ndarray):
            raise ValueError(f"episode {index}: tuple observations are not supported (need one (T, d) array)")
        if observations.ndim != 2:
            raise ValueError(f"episode {index}: observations must be vectors (T, d), got shape {observations.shape}")
        observations = observations.astype(np.float32)
        size = len(observations)
        count = size if episode.terminated else size - 1
        if count == 0:
            continue
        next_observations = np.zeros_like(observations[:count])  # zeros after a terminal step
        next_observations[:size - 1] = observations[1:]
        parts["obs"].append(observations[:count])
        parts["next_obs"].append(next_observations)
        parts["action"].append(np.asarray(episode.actions[:count]))
        parts["reward"].append(np.asarray(episode.rewards[:count], np.float32).reshape(count))
        flag = np.zeros(count, dtype=bool)
        flag[-1] = episode.terminated
        parts["terminal"].append(flag)
    if not parts["obs"]:
        raise ValueError("the d3rlpy dataset holds no transitions")
    terminals = np.concatenate(parts["terminal"])
    lengths = [len(r) for r in parts["reward"]]
    starts = np.zeros(len(terminals), dtype=bool)
    starts[np.cumsum([0] + lengths[:-1])] = True
    ends = np.cumsum(lengths) - 1
    truncations = np.zeros(len(terminals), dtype=bool)
    truncations[ends] = ~terminals[ends]
    actions = np.concatenate(parts["action"])
    if action_spec.discrete:
        actions = actions.reshape(-1)
        if not np.all(actions == np.round(actions)):
            raise ValueError("discrete action_spec, but the d3rlpy dataset's actions are not integers")
        actions = actions.astype(np.int64)
    else:
        actions = actions.astype(np.float32).reshape(len(terminals), -1)
    return OfflineDataset(
        observations=np.concatenate(parts["obs"]), actions=actions, rewards=np.concatenate(parts["reward"]),
        next_observations=np.concatenate(parts["next_obs"]), terminals=terminals, truncations=truncations,
        episode_starts=starts, action_spec=action_spec, metadata={"source": "d3rlpy"},
    )
