"""The contract every registered offline algorithm keeps, written once.

``tests/marl_rec/algos/test_contract.py`` runs each check for every entry of
``marl_rec.algos.registry.ALGORITHMS`` (so registering an algorithm is what gets it tested);
a family's own test file runs them for config variants the registry does not name (CQL with
the Lagrangian α, twin-critic discrete CQL). Networks are tiny: these check mechanics.
"""
from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from marl_rec.algos.registry import ALGORITHMS, make_algorithm
from marl_rec.contracts import ActionSpec, Batch

OBS_DIM = 12
SPECS = {"continuous": ActionSpec("continuous", dim=4), "discrete": ActionSpec("discrete", num_actions=5)}


def spec_of(name: str) -> ActionSpec:
    """The action space a registered algorithm learns on (its class's ``action_kind``)."""
    return SPECS[ALGORITHMS[name][0].action_kind]


def tiny_overrides(name: str) -> dict[str, Any]:
    """16-16 for every hidden-layer field of the algorithm's config (whatever it names them)."""
    return {f.name: (16, 16) for f in dataclasses.fields(ALGORITHMS[name][1]) if f.name.endswith("hidden")}


def build(name: str, seed: int = 0, **overrides: Any) -> Any:
    return make_algorithm(name, OBS_DIM, spec_of(name), "rec", seed=seed, **{**tiny_overrides(name), **overrides})


def random_batch(spec: ActionSpec, seed: int, size: int = 32) -> Batch:
    g = torch.Generator().manual_seed(seed)
    actions = (torch.randint(spec.num_actions, (size,), generator=g) if spec.discrete
               else torch.rand(size, spec.dim, generator=g) * 2 - 1)
    return Batch(observations=torch.rand(size, OBS_DIM, generator=g), actions=actions,
                 rewards=torch.rand(size, generator=g) * 3, next_observations=torch.rand(size, OBS_DIM, generator=g),
                 dones=(torch.rand(size, generator=g) < 0.1).float())


def through_bytes(state: dict) -> dict:
    """A state dict saved and loaded as a checkpoint file would be (tensors only, no pickle)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def tensors(state: Any) -> list[torch.Tensor]:
    """Every tensor of a (nested) state dict, in a fixed order."""
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for key in sorted(state, key=str) for t in tensors(state[key])]
    if isinstance(state, (list, tuple)):
        return [t for item in state for t in tensors(item)]
    return []


def observations(size: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((size, OBS_DIM), dtype=np.float32)


def check_round_trip(make: Callable[[int], Any], spec: ActionSpec) -> None:
    """A trained algorithm's state dict, saved and loaded into one built with another seed, acts,
    estimates and goes on training exactly as the original (optimisers, counters, generator)."""
    algo = make(1)
    for i in range(4):
        algo.update(random_batch(spec, i))
    clone = make(123)
    clone.load_state_dict(through_bytes(algo.state_dict()))
    obs = observations()
    assert np.array_equal(algo.act(obs), clone.act(obs))
    assert np.array_equal(algo.act(obs, deterministic=False), clone.act(obs, deterministic=False))
    actions = algo.act(obs)
    assert np.array_equal(algo.q_value(obs, actions), clone.q_value(obs, actions))
    batch = random_batch(spec, 9)
    assert algo.update(batch) == clone.update(batch)
    assert all(torch.equal(a, b) for a, b in zip(tensors(algo.state_dict()), tensors(clone.state_dict())))


def check_determinism(make: Callable[[int], Any], spec: ActionSpec) -> None:
    """The seed decides everything: same seed, same updates and actions (the global torch RNG is
    neither read nor advanced); another seed, other networks."""
    torch.manual_seed(123)
    expected_global = torch.rand(3)
    runs = []
    for seed in (7, 7, 8):
        algo = make(seed)
        torch.manual_seed(123)
        metrics = [algo.update(random_batch(spec, i)) for i in range(3)]
        runs.append((metrics, algo.act(observations(), deterministic=False), tensors(algo.state_dict())))
        assert torch.equal(torch.rand(3), expected_global)
    (m0, a0, t0), (m1, a1, t1), (_, _, t2) = runs
    assert m0 == m1 and np.array_equal(a0, a1) and all(torch.equal(x, y) for x, y in zip(t0, t1))
    assert not all(torch.equal(x, y) for x, y in zip(t0, t2))


def check_shapes(algo: Any, spec: ActionSpec) -> None:
    """act: (B, dim) float32 in the box (continuous) or (B,) int64 indices (discrete), one
    observation gives one action; q_value: (B,); a wrong observation shape is named."""
    obs = observations(5)
    actions = algo.act(obs)
    if spec.discrete:
        assert actions.shape == (5,) and actions.dtype == np.int64
        assert ((actions >= 0) & (actions < spec.num_actions)).all()
    else:
        assert actions.shape == (5, spec.dim) and actions.dtype == np.float32
        assert ((actions >= spec.low) & (actions <= spec.high)).all()
    assert np.shape(algo.act(obs[0])) == actions.shape[1:]
    assert np.shape(algo.q_value(obs, actions)) == (5,)
    assert np.isfinite(algo.q_value(obs, actions)).all()
    with pytest.raises(ValueError, match="obs"):
        algo.act(np.zeros((5, OBS_DIM + 3), np.float32))
    wrong = np.zeros((5, 2), np.int64) if spec.discrete else np.zeros((5, spec.dim + 1), np.float32)
    with pytest.raises(ValueError, match="action"):
        algo.q_value(obs, wrong)
