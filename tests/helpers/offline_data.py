"""Small synthetic offline datasets for tests (storage, cache, loaders' fuzzing)."""

from __future__ import annotations

import numpy as np

from marl_rec.contracts import ActionSpec
from marl_rec.data import OfflineDataset

COLUMNS = ("observations", "actions", "rewards", "next_observations", "terminals", "truncations",
           "episode_starts", "behaviour_log_probs", "reward_components")


def make_dataset(seed: int = 0, lengths: tuple[int, ...] = (3, 4, 1, 5), obs_dim: int = 3,
                 discrete: bool = False, truncated: tuple[int, ...] = (1,)) -> OfflineDataset:
    """Episodes of the given lengths with next_observations[t] == observations[t + 1] inside
    each episode (as in real data); the episodes listed in ``truncated`` end truncated."""
    rng = np.random.default_rng(seed)
    obs, next_obs, terminals, truncations, starts = [], [], [], [], []
    for e, length in enumerate(lengths):
        states = rng.normal(size=(length + 1, obs_dim)).astype(np.float32)
        obs.append(states[:-1])
        next_obs.append(states[1:])
        end = np.zeros(length, bool)
        end[-1] = True
        terminals.append(end & (e not in truncated))
        truncations.append(end & (e in truncated))
        start = np.zeros(length, bool)
        start[0] = True
        starts.append(start)
    n = sum(lengths)
    spec = ActionSpec("discrete", num_actions=5) if discrete else ActionSpec("continuous", dim=2)
    actions = rng.integers(0, 5, n) if discrete else rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    components = rng.uniform(0, 1, (n, 2)).astype(np.float32)
    return OfflineDataset(
        observations=np.concatenate(obs), actions=actions, rewards=components @ np.float32([1.0, 0.5]),
        next_observations=np.concatenate(next_obs), terminals=np.concatenate(terminals),
        truncations=np.concatenate(truncations), episode_starts=np.concatenate(starts), action_spec=spec,
        behaviour_log_probs=rng.normal(size=n).astype(np.float32) - 2, reward_components=components,
        component_names=["click", "watch"], metadata={"pipeline": "test", "seed": seed})


def assert_same(a: OfflineDataset, b: OfflineDataset) -> None:
    for name in COLUMNS:
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert a.action_spec == b.action_spec
    assert list(a.component_names) == list(b.component_names)
    assert a.metadata == b.metadata
