"""A headline run whose training diverges is evaluated at its last good checkpoint (the policy
just before its critic blew up), and says so; without a checkpoint it has no evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra_config import compose_config
from omegaconf import OmegaConf

import marl_rec.experiments.fusion_offline as fusion_offline
from marl_rec.checkpoint import load_checkpoint, restore_algorithm
from marl_rec.experiments.common import learner_spaces, load_dataset, simulator_factory
from marl_rec.trainer import DivergenceError, Trainer

TINY = ["algo=td3", "data=random", "data.num_transitions=1500", "data.batch_users=128", "train.num_updates=40",
        "train.eval_every=0", "train.log_every=10", "train.checkpoint_every=20", "evaluation.num_users=16",
        "evaluation.ab_users_per_group=16", "evaluation.ope=false", "progress=false"]


def diverging_trainer(with_checkpoint: bool) -> type[Trainer]:
    class Diverging(Trainer):
        """Trains for real (checkpoints at 20 and 40), then wrecks the live policy and reports a
        divergence at update 40 whose last good checkpoint is the one on disk."""

        def fit(self, resume: bool = False) -> dict[str, float]:
            super().fit(resume=resume)
            with torch.no_grad():
                for parameter in self.algorithm.actor.parameters():
                    parameter.add_(torch.randn_like(parameter) * 10.0)
            raise DivergenceError("training diverged by update 40: test", 40, "train/q_mean", 1e9,
                                  self.checkpoint_path if with_checkpoint else None,
                                  40 if with_checkpoint else None)
    return Diverging


@pytest.mark.parametrize("with_checkpoint", [True, False])
def test_diverged_run_is_evaluated_at_its_last_good_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              with_checkpoint: bool) -> None:
    cfg = compose_config(TINY + [f"cache_dir={tmp_path / 'cache'}"])
    monkeypatch.setattr(fusion_offline, "Trainer", diverging_trainer(with_checkpoint))
    run_dir = tmp_path / "run"
    metrics = fusion_offline.run(cfg, run_dir)
    assert metrics == json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and metrics["diverged_at"] == 40 and "test" in metrics["error"]
    if not with_checkpoint:
        assert "evaluated_update" not in metrics and "true_return" not in metrics and "q_estimate" not in metrics
        return
    assert metrics["evaluated_update"] == 40 and np.isfinite(metrics["true_return"])
    # the evaluated policy is the checkpoint's, not the wrecked live one
    factory = simulator_factory(cfg)
    algorithm, _ = fusion_offline.build_algorithm(cfg, *learner_spaces(factory()))
    restore_algorithm(algorithm, load_checkpoint(run_dir / "checkpoint.pt")["algorithm"])
    dataset, _ = load_dataset(OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)), learner=algorithm)
    obs0 = dataset.initial_observations()
    expected = float(np.mean(algorithm.q_value(obs0, algorithm.act(obs0, deterministic=True))))
    assert metrics["q_estimate"] == pytest.approx(expected, rel=1e-6)
