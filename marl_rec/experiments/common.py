"""What every experiment's ``run(cfg, run_dir)`` starts from: the run's settings checked
(:func:`validate_run`), its simulator, its learner's spaces, its cached dataset and its
:class:`TrainerConfig` (from ``cfg.train``)."""

from __future__ import annotations

import math
import re
import tempfile
import time
from pathlib import Path
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


def check_cache_dir(cache_dir: Any) -> Path:
    """``cache_dir`` created if missing and checked writable (a file is created and removed in
    it), so an unusable cache fails the run before the data is logged, not when it is saved."""
    path = Path(str(cache_dir))
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise ValueError(f"cache_dir={path}: not a writable folder ({error.strerror or error})") from error
    return path


def _setting(node: Any, prefix: str, key: str, kind: type, allowed: Any, why: str) -> Any:
    """``node[key]`` (or ``node.key``, for a dataclass) of type ``kind`` (an int is a float; a bool is neither) satisfying
    ``allowed(value)``; ValueError naming ``prefix.key`` and ``why`` otherwise."""
    value = node.get(key) if hasattr(node, "get") else getattr(node, key, None)
    numeric = kind in (int, float) and not isinstance(value, bool)
    typed = (isinstance(value, int) if kind is int else isinstance(value, (int, float)) if kind is float
             else isinstance(value, kind)) and (numeric or kind not in (int, float))
    if not typed or (kind is float and not math.isfinite(value)) or not allowed(value):
        raise ValueError(f"{prefix}.{key}={value!r}: must be {why}")
    return value


def _rename_fields(error: Exception | str, owner: str, prefix: str) -> str:
    """An error message with ``Owner.field`` written as the config key ``prefix.field``."""
    return re.sub(rf"\b{owner}\.", f"{prefix}.", str(error))


def check_setting(node: Any, prefix: str, key: str, kind: type, allowed: Any, why: str) -> Any:
    """The public name of :func:`_setting`, for the experiments outside the core (agents, irl)."""
    return _setting(node, prefix, key, kind, allowed, why)


def instantiate_checked(node: Any, names: dict[str, str]) -> Any:
    """``instantiate(node)``; a failure (Hydra wraps the config's own error) is re-raised as a
    ValueError whose ``Owner.field`` names are written as config keys ``prefix.field``, for
    every ``Owner: prefix`` of ``names``."""
    try:
        return instantiate(node)
    except Exception as error:
        message = str(error.__cause__ or error)
        for owner, prefix in names.items():
            message = _rename_fields(message, owner, prefix)
        raise ValueError(message) from error


def float_tuple(values: Any, key: str) -> tuple[float, ...]:
    """``values`` (a list of numbers) as a tuple of floats; ValueError naming ``key`` when it is
    not a list or holds something that is not a number (a bool, a string)."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{key} must be a list of numbers, got {values!r}")
    values = tuple(values)
    if any(isinstance(v, (bool, str, bytes)) or not isinstance(v, (int, float, np.integer, np.floating)) for v in values):
        raise ValueError(f"{key} must be a list of numbers, got {list(values)!r}")
    return tuple(float(v) for v in values)


def validate_evaluation(cfg: DictConfig) -> None:
    """The ``evaluation`` node every experiment reads: users, seed, discount, A/B group size, OPE switch."""
    evaluation = cfg.evaluation
    _setting(evaluation, "evaluation", "num_users", int, lambda v: v >= 1, "an integer >= 1 (users of the learning curves)")
    _setting(evaluation, "evaluation", "seed", int, lambda v: v >= 0, "an integer >= 0")
    _setting(evaluation, "evaluation", "gamma", float, lambda v: 0.0 <= v <= 1.0, "a discount in [0, 1]")
    _setting(evaluation, "evaluation", "ab_users_per_group", int, lambda v: v >= 2,
             "an integer >= 2 (the A/B test's confidence interval needs two users per group)")
    _setting(evaluation, "evaluation", "ope", bool, lambda v: True, "true or false")


def validate_train(cfg: DictConfig) -> TrainerConfig:
    """The run's :class:`TrainerConfig` from ``cfg.train``, its errors naming ``train.<field>``."""
    try:
        return trainer_config(cfg)
    except (TypeError, ValueError) as error:
        raise type(error)(_rename_fields(error, "TrainerConfig", "train")) from error


def validate_run(cfg: DictConfig) -> TrainerConfig:
    """Check every setting of an offline-training run before any work (logging data, training):
    ``cache_dir`` (created, writable), the simulator config (``env.config``), ``data``, ``train``,
    ``evaluation`` and the OPE estimators and behaviour policies it will build. Raises ValueError
    (or TypeError) naming the config key; returns the run's :class:`TrainerConfig`."""
    check_cache_dir(cfg.cache_dir)
    # SimulatorConfig checks each field's type, finiteness and range
    instantiate_checked(cfg.simulator.config, {"SimulatorConfig": "env.config"})

    data = cfg.data
    kind = data.get("kind")
    if kind not in ("policy", "mixture", "online"):
        raise ValueError(f"data.kind={kind!r}: must be 'policy', 'mixture' or 'online'")
    if kind != "online" or data.get("collect_after") is not None:  # (an online buffer is what it is)
        _setting(data, "data", "num_transitions", int, lambda v: v >= 1, "an integer >= 1")
    if kind == "online":
        _setting(data, "data", "online_steps", int, lambda v: v >= 1, "an integer >= 1")
        _setting(data, "data", "exploration_sigma", float, lambda v: v >= 0, "a finite number >= 0")

    validate_evaluation(cfg)
    trainer = validate_train(cfg)

    evaluation = cfg.evaluation
    if evaluation.ope and cfg.get("ope") is not None:
        for name, node in cfg.ope.estimators.items():
            try:
                instantiate(node)
            except Exception as error:
                raise ValueError(f"ope.estimators.{name}: {error.__cause__ or error}") from error
    return trainer
