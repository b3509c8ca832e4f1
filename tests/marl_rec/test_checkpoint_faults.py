"""Malformed checkpoints (the right format tag, the wrong content) are refused with a
CheckpointError naming what is wrong, never a raw KeyError from deep inside a resume."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from marl_rec.checkpoint import CheckpointError, load_checkpoint
from marl_rec.trainer import Trainer, TrainerConfig
from trainer_worker import make_algorithm, synthetic_dataset

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> dict:
    run_dir = tmp_path_factory.mktemp("run")
    config = TrainerConfig(num_updates=2, batch_size=8, eval_every=0, checkpoint_every=2, log_every=1,
                           progress=False)
    Trainer(make_algorithm(), synthetic_dataset(num_episodes=2), config, run_dir).fit()
    return torch.load(run_dir / Trainer.checkpoint_name, weights_only=True)


def _without(key: str) -> Callable[[dict], None]:
    return lambda c: c["algorithm"].pop(key)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.pop("algorithm"), "its 'algorithm' must be a mapping, got NoneType"),
    (lambda c: c.update(algorithm=[1, 2]), "its 'algorithm' must be a mapping, got list"),
    (_without("state"), r"its 'algorithm' lacks the keys \['state'\]"),
    (_without("obs_dim"), r"its 'algorithm' lacks the keys \['obs_dim'\]"),
    (lambda c: c["algorithm"].update(state=torch.zeros(2)), "'algorithm.state' is not a mapping"),
])
def test_resume_names_the_malformed_algorithm(tmp_path: Path, checkpoint: dict, edit, message: str) -> None:
    broken = {**checkpoint, "algorithm": dict(checkpoint["algorithm"])}
    edit(broken)
    torch.save(broken, tmp_path / Trainer.checkpoint_name)
    config = TrainerConfig(**checkpoint["trainer"]["config"])
    with pytest.raises(CheckpointError, match=message):
        Trainer(make_algorithm(), synthetic_dataset(num_episodes=2), config, tmp_path).fit(resume=True)


def test_load_refuses_a_trainer_state_that_is_not_a_mapping(tmp_path: Path, checkpoint: dict) -> None:
    torch.save({**checkpoint, "trainer": [0]}, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="'trainer' must be a mapping or None"):
        load_checkpoint(tmp_path / "checkpoint.pt")


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.pop("numpy_rng"), r"trainer state lacks the keys \['numpy_rng'\]"),
    (lambda t: t.update(eval_history=[1.0]), "is malformed: AttributeError"),
    (lambda t: t.update(config={"batch_size": 8}), "is malformed: KeyError: 'seed'"),
])
def test_resume_names_the_malformed_trainer_state(tmp_path: Path, checkpoint: dict, edit, message: str) -> None:
    trainer_state = dict(checkpoint["trainer"])
    edit(trainer_state)
    torch.save({**checkpoint, "trainer": trainer_state}, tmp_path / Trainer.checkpoint_name)
    config = TrainerConfig(**checkpoint["trainer"]["config"])
    with pytest.raises(CheckpointError, match=message):
        Trainer(make_algorithm(), synthetic_dataset(num_episodes=2), config, tmp_path).fit(resume=True)


def test_resume_names_a_missing_trainer_config(tmp_path: Path, checkpoint: dict) -> None:
    trainer_state = {k: v for k, v in checkpoint["trainer"].items() if k != "config"}
    torch.save({**checkpoint, "trainer": trainer_state}, tmp_path / Trainer.checkpoint_name)
    with pytest.raises(CheckpointError, match="holds no valid trainer config: KeyError: 'config'"):
        Trainer.resume(tmp_path, make_algorithm(), synthetic_dataset(num_episodes=2))
