"""Fuzz: checkpoints damaged at random (file bytes, a key deleted or a value replaced anywhere in
the payload) are refused with a CheckpointError (a ValueError) or TypeError naming the file or
key, or resume cleanly — never a KeyError, AttributeError, ... (tests/helpers/fuzzing.py)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from fuzzing import FUZZ, assert_refused, outcome
from hypothesis import assume, given
from hypothesis import strategies as st
from trainer_worker import make_algorithm, synthetic_dataset

from marl_rec.checkpoint import load_checkpoint
from marl_rec.trainer import Trainer, TrainerConfig

torch.set_num_threads(1)
CONFIG = TrainerConfig(num_updates=2, batch_size=8, eval_every=0, checkpoint_every=2, log_every=1, progress=False)
DATA = synthetic_dataset(num_episodes=2)


class Saved:
    """A real checkpoint: its bytes and its payload (short repr: hypothesis prints arguments)."""

    def __init__(self, path: Path) -> None:
        self.content = path.read_bytes()
        self.payload = torch.load(path, weights_only=True)

    def __repr__(self) -> str:
        return "Saved(checkpoint of 2 updates)"


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Saved:
    run_dir = tmp_path_factory.mktemp("run")
    Trainer(make_algorithm(), DATA, CONFIG, run_dir).fit()
    return Saved(run_dir / Trainer.checkpoint_name)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path into the nested dicts of a checkpoint."""
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append(prefix + (key,))
            out.extend(_paths(value, prefix + (key,)))
    return out


def _resume(run_dir: Path) -> Any:
    return Trainer.resume(run_dir, make_algorithm(), DATA)  # with the trainer config stored in the checkpoint


@FUZZ
@given(cut=st.integers(0, 200_000), noise=st.binary(max_size=64))
def test_a_damaged_checkpoint_file_is_named(saved, tmp_path: Path, cut: int, noise: bytes) -> None:
    content = saved.content
    assume(cut < len(content))  # bytes appended to an intact zip are its comment: still the same checkpoint
    damaged = content[:cut] + noise
    (tmp_path / "checkpoint.pt").write_bytes(damaged)
    assert_refused(lambda: load_checkpoint(tmp_path / "checkpoint.pt"), [str(tmp_path / "checkpoint.pt")])


@FUZZ
@given(data=st.data())
def test_a_deleted_key_is_named_or_optional(saved, tmp_path: Path, data) -> None:
    checkpoint = saved.payload
    path = data.draw(st.sampled_from(_paths(checkpoint)))
    broken = copy.deepcopy(checkpoint)
    node = broken
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    torch.save(broken, tmp_path / Trainer.checkpoint_name)
    result = outcome(lambda: _resume(tmp_path))
    if isinstance(result, BaseException):
        assert any(str(key) in str(result) for key in path) or "not a marl-rec checkpoint" in str(result), result
    else:  # optional: entries of the evaluation history and pending metrics, and an optimiser's
        # per-parameter state (integer keys; empty before a parameter's first step, see first_state_mismatch)
        # and the algorithm's config (informational: the state's structure is what is checked)
        assert path[:2] in {("trainer", "eval_history"), ("trainer", "pending_metrics"), ("trainer", "last_train"),
                            ("algorithm", "config")} \
            or any(isinstance(key, int) for key in path), f"deleting {path} was accepted"


values = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**12), st.floats(), st.text(max_size=5),
                   st.lists(st.integers(0, 3), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                   st.integers(0, 3).map(lambda n: torch.zeros(n)), st.just(torch.zeros(2, 2, dtype=torch.int64)))


@FUZZ
@given(data=st.data(), value=values)
def test_a_replaced_value_is_refused_or_resumes(saved, tmp_path: Path, data, value) -> None:
    checkpoint = saved.payload
    path = data.draw(st.sampled_from(_paths(checkpoint)))
    broken = copy.deepcopy(checkpoint)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    torch.save(broken, tmp_path / Trainer.checkpoint_name)
    outcome(lambda: _resume(tmp_path))  # an allowed exception, or a resumed run: never another type
