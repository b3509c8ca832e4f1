"""Checkpoints: atomic writes, safe loading, clear errors for corrupted/foreign/mismatched files."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from marl_rec.checkpoint import (
    CheckpointError,
    atomic_torch_save,
    first_state_mismatch,
    load_checkpoint,
    numpy_rng_state,
    remove_stale_temporaries,
    restore_algorithm,
    save_checkpoint,
    set_numpy_rng_state,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))
from trainer_worker import OBS_DIM, assert_states_equal, make_algorithm, synthetic_dataset  # noqa: E402

from marl_rec.data.dataset import TensorSampler  # noqa: E402

torch.set_num_threads(1)


def trained(name: str, steps: int = 5, seed: int = 0, hidden: tuple[int, ...] = (32, 32)):
    algorithm = make_algorithm(name, seed=seed, hidden=hidden)
    sampler, generator = TensorSampler(synthetic_dataset(num_episodes=4)), torch.Generator().manual_seed(0)
    for _ in range(steps):
        algorithm.update(sampler.sample(16, generator))
    return algorithm


def test_round_trip_restores_identical_actions_and_state(tmp_path: Path) -> None:
    source = trained("td3")
    save_checkpoint(tmp_path / "c.pt", source, {"step": 5})
    target = make_algorithm("td3", seed=9)
    checkpoint = load_checkpoint(tmp_path / "c.pt")
    assert checkpoint["trainer"] == {"step": 5} and checkpoint["algorithm"]["name"] == "td3"
    restore_algorithm(target, checkpoint["algorithm"])
    obs = np.random.default_rng(0).random((8, OBS_DIM), dtype=np.float32)
    np.testing.assert_array_equal(source.act(obs), target.act(obs))
    np.testing.assert_array_equal(source.q_value(obs, source.act(obs)), target.q_value(obs, target.act(obs)))
    assert_states_equal(source.state_dict(), target.state_dict())
    assert oct(os.stat(tmp_path / "c.pt").st_mode & 0o777) == "0o644"


def test_checkpoint_from_another_algorithm_or_size_or_space_is_refused(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "td3.pt", trained("td3"))
    payload = load_checkpoint(tmp_path / "td3.pt")["algorithm"]
    bcq = make_algorithm("bcq")
    before = bcq.state_dict()
    with pytest.raises(CheckpointError, match=r"written by algorithm 'td3'.*into 'bcq'"):
        restore_algorithm(bcq, payload)
    assert_states_equal(before, bcq.state_dict())  # untouched
    wider = make_algorithm("td3", hidden=(64, 32))
    with pytest.raises(CheckpointError, match=rf"actor.net.0.weight has shape \(32, {OBS_DIM}\) in the checkpoint, "
                                              rf"\(64, {OBS_DIM}\) here.*"
                                              r"actor_hidden: saved '\[32, 32\]' vs '\[64, 32\]'"):
        restore_algorithm(wider, payload)
    tiny = make_algorithm("tiny_td3")
    with pytest.raises(CheckpointError, match="tiny_td3"):
        restore_algorithm(tiny, payload)
    other_space = dict(payload, obs_dim=OBS_DIM + 1)
    with pytest.raises(CheckpointError, match="obs_dim"):
        restore_algorithm(make_algorithm("td3"), other_space)


def test_missing_corrupted_and_foreign_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing.pt")
    save_checkpoint(tmp_path / "good.pt", trained("tiny_td3", steps=1))
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(tmp_path / "truncated.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(tmp_path / "garbage.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a marl-rec checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    torch.save({"format": "marl-rec-checkpoint", "version": 99}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(tmp_path / "future.pt")
    # an arbitrary pickled object is refused by weights_only=True, not executed
    torch.save({"format": "marl-rec-checkpoint", "version": 1, "payload": Path("/etc")}, tmp_path / "pickle.pt")
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(tmp_path / "pickle.pt")


def test_interrupted_write_leaves_the_previous_checkpoint_intact(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.pt"
    atomic_torch_save({"format": "marl-rec-checkpoint", "version": 1, "value": torch.ones(3)}, path)
    real_save = torch.save

    def dying_save(obj, handle, *args, **kwargs):
        handle.write(b"half a checkpoint")
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of the write

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"value": torch.zeros(3)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.equal(load_checkpoint(path)["value"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # temporary file removed
    # a SIGKILL cannot clean up: the trainer removes such leftovers when it starts
    leftover = tmp_path / ".c.pt.abc123.tmp"
    leftover.write_bytes(b"partial")
    (tmp_path / ".other.pt.x.tmp").write_bytes(b"someone else's")
    assert remove_stale_temporaries(path) == [leftover]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.pt.x.tmp", "c.pt"]


@pytest.mark.parametrize("bit_generator", [np.random.PCG64, np.random.MT19937, np.random.Philox])
def test_numpy_rng_state_survives_a_weights_only_round_trip(tmp_path: Path, bit_generator: type) -> None:
    rng = np.random.Generator(bit_generator(7))
    rng.random(5)
    atomic_torch_save({"rng": numpy_rng_state(rng)}, tmp_path / "r.pt")
    expected = rng.random(10)
    restored = np.random.Generator(bit_generator(0))
    set_numpy_rng_state(restored, torch.load(tmp_path / "r.pt", weights_only=True)["rng"])
    np.testing.assert_array_equal(restored.random(10), expected)
    with pytest.raises(CheckpointError, match="numpy RNG state"):
        set_numpy_rng_state(np.random.Generator(np.random.SFC64(0)), numpy_rng_state(rng))


def test_state_mismatch_ignores_fresh_optimiser_state_but_not_shapes() -> None:
    fresh, stepped = make_algorithm("td3"), trained("td3", steps=2)
    assert first_state_mismatch(stepped.state_dict(), fresh.state_dict()) is None  # empty Adam state
    assert first_state_mismatch({"a": torch.zeros(2)}, {"a": torch.zeros(2, dtype=torch.float64)}) == \
        "state.a has dtype torch.float32 in the checkpoint, torch.float64 here"
    assert "keys differ" in first_state_mismatch({"a": torch.zeros(2)}, {"b": torch.zeros(2)})
    assert "length" in first_state_mismatch({"a": [torch.zeros(1)]}, {"a": [torch.zeros(1), torch.zeros(1)]})
