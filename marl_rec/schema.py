"""Structured-config schemas for the Hydra app, registered in Hydra's ConfigStore.

Every algorithm gets a schema generated from its config dataclass: the same fields, each
``Optional`` with default ``None`` (= "take the value of the chosen ``preset``"), plus
``name`` and ``preset``. The YAML ``conf/algo/<name>.yaml`` starts its defaults list with
``base_<name>`` (a different name from the YAML, as Hydra 1.3 requires), so an unknown key
(``algo.lr=1``) or a wrong type (``algo.critic_lr=abc``) in an override is rejected by
Hydra with a message that names the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore

from marl_rec.algos.registry import ALGORITHMS


@dataclass
class TrainSchema:
    num_updates: int = 20_000
    batch_size: int = 256
    eval_every: int = 2_000
    checkpoint_every: int = 5_000
    log_every: int = 500
    q_divergence_bound: float = 1e4
    bootstrap_truncated: bool = False  # TD targets bootstrap through truncations (marl_rec.data.dataset)


@dataclass
class EvaluationSchema:
    num_users: int = 1_000  # seeded users for the learning curves (eval/return, eval/q_estimate)
    seed: int = 10_007
    gamma: float = 0.99
    ab_users_per_group: int = 2_000  # final simulated A/B test
    ope: bool = True  # run the final OPE estimators


@dataclass
class RunSchema:
    """The top level of ``conf/config.yaml`` (groups stay untyped except ``algo``)."""

    task: str = "marl_rec.experiments.fusion_offline.run"
    seed: int = 0
    device: str = "cpu"
    torch_threads: int = 1
    progress: bool = True
    cache_dir: str = "data_cache"
    train: TrainSchema = field(default_factory=TrainSchema)
    evaluation: EvaluationSchema = field(default_factory=EvaluationSchema)
    env: Any = None
    simulator: Any = None
    data: Any = None
    algo: Any = None
    ope: Any = None
    agent: Any = None
    irl: Any = None
    experiment: Any = None


def _optional(annotation: Any) -> Any:
    """The OmegaConf-compatible Optional form of a config field's annotation."""
    origin = typing.get_origin(annotation)
    if origin in (tuple, list, typing.Tuple, typing.List):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        item = args[0] if args and args[0] in (int, float, str, bool) else Any
        return Optional[List[item]]  # type: ignore[valid-type]
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _optional(args[0]) if len(args) == 1 else Any
    if annotation in (int, float, str, bool):
        return Optional[annotation]
    return Any


def algorithm_schema(name: str, *config_classes: type) -> type:
    """A dataclass with ``name``, ``preset`` and every field of ``config_classes`` as Optional."""
    fields_ = [("name", str, field(default=name)), ("preset", str, field(default="rec"))]
    for config_cls in config_classes:
        hints = typing.get_type_hints(config_cls)
        for f in dataclasses.fields(config_cls):
            fields_.append((f.name, _optional(hints[f.name]), field(default=None)))
    return dataclasses.make_dataclass(f"{name.title().replace('_', '')}Schema", fields_)


def algorithm_overrides(algo_cfg: Any) -> dict[str, Any]:
    """The explicitly set (non-None) config fields of an ``algo`` node."""
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(algo_cfg, resolve=True) if not isinstance(algo_cfg, dict) else algo_cfg
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()
            if k not in ("name", "preset") and v is not None}


def register_schemas() -> None:
    cs = ConfigStore.instance()
    cs.store(name="marl_rec_schema", node=RunSchema)
    for name, (_, config_cls) in ALGORITHMS.items():
        cs.store(group="algo", name=f"base_{name}", node=algorithm_schema(name, config_cls))
