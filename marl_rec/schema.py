"""Structured-config schemas for the Hydra app, registered in Hydra's ConfigStore, each
generated from the dataclass that owns the settings, so that no YAML or schema repeats them.

- ``algo``: every algorithm gets a schema from its config dataclass: the same fields, each
  ``Optional`` with default ``None`` (= "take the value of the chosen ``preset``"), plus
  ``name`` and ``preset``. The YAML ``conf/algo/<name>.yaml`` starts its defaults list with
  ``/schema/algo/base_<name>@_here_`` (stored in the group ``schema/algo``, not ``algo``, so
  that ``base_*`` is no ``algo=`` choice; a different name from the YAML, as Hydra 1.3 requires).
- ``train``: the fields of :class:`marl_rec.trainer.TrainerConfig` with its defaults, less
  ``batch_size`` (the algorithm config owns it), ``seed``, ``progress`` and ``device`` (run-level keys).
- ``env=fusion``: ``/schema/env/base_fusion``, whose ``config`` node has every field of the simulator's
  ``SimulatorConfig`` with its default (looked up by name: the core does not import ``envs``),
  so ``conf/env/fusion.yaml`` lists none of them.

An unknown key (``algo.lr=1``, ``train.batch_size=64``, ``env.config.max_request=9``) or a wrong
type (``algo.critic_lr=abc``) in an override is rejected by Hydra with a message naming the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.utils import get_class

from marl_rec.algos.registry import ALGORITHMS
from marl_rec.trainer import TrainerConfig


@dataclass
class EvaluationSchema:
    num_users: int = 1_000  # seeded users for the learning curves (eval/return, eval/q_estimate)
    seed: int = 10_007
    gamma: float = 0.99
    ab_users_per_group: int = 2_000  # final simulated A/B test
    ope: bool = True  # run the final OPE estimators


def _schema_type(annotation: Any) -> Any:
    """The OmegaConf-compatible form of a config field's annotation (tuples become lists)."""
    origin = typing.get_origin(annotation)
    if origin in (tuple, list, typing.Tuple, typing.List):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        item = args[0] if args and all(a == args[0] for a in args) and args[0] in (int, float, str, bool) else Any
        return List[item]  # type: ignore[valid-type]
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        inner = _schema_type(args[0]) if len(args) == 1 else Any
        return Optional[inner] if type(None) in typing.get_args(annotation) else inner
    return annotation if annotation in (int, float, str, bool) else Any


def config_schema(config_cls: type, exclude: tuple[str, ...] = (), target: str | None = None) -> type:
    """A structured-config dataclass with the fields of the dataclass ``config_cls`` (less
    ``exclude``): the same names, types and defaults, and a ``_target_`` field naming
    ``target`` when given (so ``hydra.utils.instantiate`` builds ``config_cls`` from the node)."""
    hints = typing.get_type_hints(config_cls)
    fields_: list[tuple[str, Any, Any]] = [] if target is None else [("_target_", str, field(default=target))]
    for f in dataclasses.fields(config_cls):
        if f.name in exclude:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        if isinstance(default, (list, tuple)):
            fields_.append((f.name, _schema_type(hints[f.name]), field(default_factory=lambda d=default: list(d))))
        else:
            fields_.append((f.name, _schema_type(hints[f.name]), field(default=default)))
    return dataclasses.make_dataclass(f"{config_cls.__name__}Schema", fields_)


#: TrainerConfig's fields that are not ``train`` settings: the algorithm owns ``batch_size``,
#: the run's top level ``seed``, ``progress`` and ``device``
TRAIN_EXCLUDED = ("batch_size", "seed", "progress", "device")
TrainSchema = config_schema(TrainerConfig, exclude=TRAIN_EXCLUDED)

#: the environment whose simulator config gets a generated schema (``env=fusion``)
FUSION_ENV = "marl_rec.envs.fusion_env.FusionRankingEnv"
SIMULATOR_CONFIG = "marl_rec.envs.simulator.SimulatorConfig"


def fusion_env_schema() -> type:
    """The ``env=fusion`` node: ``_target_`` and a ``config`` node generated from ``SimulatorConfig``."""
    simulator = config_schema(get_class(SIMULATOR_CONFIG), target=SIMULATOR_CONFIG)
    return dataclasses.make_dataclass("FusionEnvSchema", [("_target_", str, field(default=FUSION_ENV)),
                                                          ("config", simulator, field(default_factory=simulator))])


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
    # in their own groups (schema/...), so that they are not offered as env= / algo= choices
    cs.store(group="schema/env", name="base_fusion", node=fusion_env_schema())
    for name, (_, config_cls) in ALGORITHMS.items():
        cs.store(group="schema/algo", name=f"base_{name}", node=algorithm_schema(name, config_cls))
