"""What every experiment's ``run(cfg, run_dir)`` starts from: the run's simulator, its
learner's spaces, its cached dataset and its :class:`TrainerConfig` (from ``cfg.train``)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from marl_rec.contracts import ActionSpec
from marl_rec.data.dataset import OfflineDataset
from marl_rec.pipelines import build_dataset, cached_dataset, dataset_key
from marl_rec.trainer import TrainerConfig


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dict → {"a/b": value} with TensorBoard-hparams-compatible values."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}/"))
        elif isinstance(value, (int, float, str, bool)):
            out[name] = value
        elif value is not None:
            out[name] = str(value)
    return out


def simulator_factory(cfg: DictConfig):
    return lambda: instantiate(cfg.simulator)


def learner_spaces(sim: Any) -> tuple[int, ActionSpec]:
    """The observation size and the action space a learner of ``sim`` needs, read from the
    simulator (its observation after a reset, its ``action_dim`` fusion actions in [-1, 1])."""
    obs_dim = sim.reset(1, np.random.default_rng(0)).shape[1]
    return int(obs_dim), ActionSpec("continuous", dim=int(sim.action_dim))


def load_dataset(cfg: DictConfig, learner: Any = None) -> tuple[OfflineDataset, dict[str, Any]]:
    """The run's dataset from its pipeline, cached by content hash of the data and simulator
    configs. The ``concurrent`` pipeline trains ``learner`` while logging, so it is rebuilt."""
    data_spec = OmegaConf.to_container(cfg.data, resolve=True)
    env_spec = OmegaConf.to_container(cfg.simulator, resolve=True)
    seed = int(data_spec.get("seed", 0))
    factory = simulator_factory(cfg)

    def build(concurrent_learner: Any = None) -> OfflineDataset:
        return build_dataset(data_spec, factory, instantiate, seed, concurrent_learner=concurrent_learner)

    started = time.perf_counter()
    if data_spec.get("concurrent"):
        dataset, path, reused = build(learner), None, False
    else:
        key = dataset_key(data_spec, env_spec)
        dataset, path, reused = cached_dataset(cfg.cache_dir, str(data_spec["name"]), key, build)
    info = {"dataset": data_spec["name"], "dataset_path": str(path) if path else None,
            "dataset_reused": reused, "dataset_seconds": time.perf_counter() - started,
            "dataset_transitions": len(dataset), "dataset_episodes": dataset.num_episodes}
    return dataset, info


def trainer_config(cfg: DictConfig, seed: int | None = None, num_updates: int | None = None) -> TrainerConfig:
    """The :class:`TrainerConfig` of a run: ``cfg.train`` (its fields, by the schema derived from
    TrainerConfig) with the run's seed, progress and device; the batch size stays None, i.e. the
    algorithm config's."""
    train = OmegaConf.to_container(cfg.train, resolve=True)
    if num_updates:
        train["num_updates"] = int(num_updates)
    return TrainerConfig(**train, seed=int(cfg.seed if seed is None else seed), progress=bool(cfg.progress),
                         device=str(cfg.device))
