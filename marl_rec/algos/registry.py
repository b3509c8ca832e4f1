"""Algorithms by name, and one way to build them: ``make_algorithm("bcq", obs_dim, spec, "rec")``.

Each entry is ``name -> (algorithm class, config dataclass)``; the config's defaults are the
paper's and its ``rec()`` classmethod is the recommendation-sized preset. To add one, put a
line in ``ALGORITHMS`` (or call :func:`register_algorithm` from your own package).

The ``rec`` presets are measured choices (sizes, τ): the measurements, and why BCQ's learning
test does not use the heuristic expert's data, are in bench/results/README.md ("Algorithm presets").
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from marl_rec.algos.base import OfflineAlgorithm

from marl_rec.contracts import ActionSpec
from marl_rec.algos.bc import BC, BCConfig
from marl_rec.algos.bcq import BCQ, BCQConfig
from marl_rec.algos.bcq_ee import BCQEEConfig, BCQREConfig
from marl_rec.algos.cql import CQL, CQLConfig
from marl_rec.algos.ddpg import DDPG, DDPGConfig
from marl_rec.algos.discrete_bcq import DiscreteBCQ, DiscreteBCQConfig
from marl_rec.algos.discrete_cql import DiscreteCQL, DiscreteCQLConfig
from marl_rec.algos.td3 import TD3, TD3Config
from marl_rec.algos.uwac import UWAC, UWACConfig

PRESETS = ("paper", "rec")

ALGORITHMS: dict[str, tuple[type[OfflineAlgorithm], type]] = {
    "bc": (BC, BCConfig),
    "ddpg": (DDPG, DDPGConfig),
    "td3": (TD3, TD3Config),
    "bcq": (BCQ, BCQConfig),
    # BCQ inside the deploy-and-retrain loop (marl_rec.batch_loop), mixed / random exploration
    "bcq_ee": (BCQ, BCQEEConfig),
    "bcq_re": (BCQ, BCQREConfig),
    "cql": (CQL, CQLConfig),
    "uwac": (UWAC, UWACConfig),
    "discrete_bcq": (DiscreteBCQ, DiscreteBCQConfig),
    "discrete_cql": (DiscreteCQL, DiscreteCQLConfig),
}


def register_algorithm(name: str, algorithm: type[OfflineAlgorithm], config: type) -> None:
    """Add an algorithm under ``name`` (its config must be a dataclass with a ``rec()`` preset)."""
    if name in ALGORITHMS and ALGORITHMS[name] != (algorithm, config):
        raise ValueError(f"algorithm name {name!r} is already registered to {ALGORITHMS[name][0].__name__}")
    if not dataclasses.is_dataclass(config) or not callable(getattr(config, "rec", None)):
        raise ValueError(f"config of {name!r} must be a dataclass with a rec() classmethod, got {config!r}")
    ALGORITHMS[name] = (algorithm, config)


def make_config(name: str, preset: str = "paper", **overrides: Any) -> Any:
    """The config of algorithm ``name``: the paper defaults or the ``rec`` preset, with
    ``overrides`` applied (validated by the config; unknown fields are an error)."""
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; registered: {sorted(ALGORITHMS)}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} for {name!r}; choose one of {PRESETS}")
    config_cls = ALGORITHMS[name][1]
    config = config_cls() if preset == "paper" else config_cls.rec()
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown {config_cls.__name__} field(s) {unknown}; valid: {sorted(known)}")
    return dataclasses.replace(config, **overrides)


def make_algorithm(name: str, obs_dim: int, action_spec: ActionSpec, preset: str = "paper",
                   seed: int = 0, device: str | torch.device = "cpu", **overrides: Any) -> OfflineAlgorithm:
    """Build algorithm ``name`` for the given spaces with the ``preset`` config plus ``overrides``."""
    config = make_config(name, preset, **overrides)
    return ALGORITHMS[name][0](obs_dim, action_spec, config, seed=seed, device=device)
