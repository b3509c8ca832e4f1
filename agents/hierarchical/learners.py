"""Training the long-term, short-term and flat learners (any registered continuous algorithm)
with :class:`marl_rec.trainer.Trainer`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from marl_rec.envs.hierarchical import GOAL_DIM
from marl_rec.envs.simulator import NUM_TASKS
from marl_rec.algos.base import OfflineAlgorithm
from marl_rec.contracts import ActionSpec
from marl_rec.algos.registry import make_algorithm
from marl_rec.data.dataset import OfflineDataset, TensorSampler
from marl_rec.trainer import Trainer, TrainerConfig
from marl_rec.agents.hierarchical.datasets import FLAT_AGENT, LONG_TERM_AGENT, SHORT_TERM_AGENT, SemiMDPSampler


@dataclass(frozen=True)
class LevelConfig:
    """One learner: the registry ``algorithm`` and ``preset``, ``overrides`` of its config
    fields (network sizes, learning rates, ...), ``num_updates`` and the per-request
    discount ``gamma`` (the long-term level turns it into γ^k per session)."""

    algorithm: str = "bcq"
    preset: str = "rec"
    num_updates: int = 3000
    gamma: float = 0.99
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.num_updates, (int, np.integer)) or self.num_updates < 1:
            raise ValueError(f"LevelConfig.num_updates must be an int >= 1, got {self.num_updates!r}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"LevelConfig.gamma must be in [0, 1], got {self.gamma!r}")
        if "gamma" in self.overrides:
            raise ValueError("LevelConfig.overrides must not set 'gamma': use LevelConfig.gamma")
        object.__setattr__(self, "overrides", {k: tuple(v) if isinstance(v, list) else v
                                               for k, v in dict(self.overrides).items()})


def make_learner(level: LevelConfig, obs_dim: int, action_dim: int, seed: int, gamma: float | None = None,
                 device: str = "cpu") -> OfflineAlgorithm:
    """The level's algorithm from the registry (``gamma`` replaces ``level.gamma`` when given)."""
    return make_algorithm(level.algorithm, obs_dim, ActionSpec("continuous", dim=action_dim), preset=level.preset,
                          seed=seed, device=device, gamma=level.gamma if gamma is None else gamma,
                          **level.overrides)


def _fit(algorithm: OfflineAlgorithm, data: OfflineDataset | TensorSampler, trainer: TrainerConfig,
         num_updates: int, run_dir: str | Path, agent_name: str, evaluators: Sequence[Callable],
         hparams: Mapping[str, Any] | None) -> dict[str, float]:
    config = TrainerConfig(**{**vars(trainer), "num_updates": int(num_updates)})
    return Trainer(algorithm, data, config, run_dir, evaluators, agent_name=agent_name, hparams=hparams).fit(
        resume=True)


def train_short_term(dataset: OfflineDataset, level: LevelConfig, trainer: TrainerConfig, run_dir: str | Path,
                     evaluators: Sequence[Callable] = (), hparams: Mapping[str, Any] | None = None
                     ) -> tuple[OfflineAlgorithm, dict[str, float]]:
    """Goal-conditioned low level on :func:`goal_conditioned_dataset` (``train/short_term/...``)."""
    algorithm = make_learner(level, dataset.obs_dim, NUM_TASKS, trainer.seed, device=trainer.device)
    return algorithm, _fit(algorithm, dataset, trainer, level.num_updates, run_dir, SHORT_TERM_AGENT,
                           evaluators, hparams)


def train_long_term(dataset: OfflineDataset, durations: np.ndarray, level: LevelConfig, trainer: TrainerConfig,
                    run_dir: str | Path, evaluators: Sequence[Callable] = (),
                    hparams: Mapping[str, Any] | None = None) -> tuple[OfflineAlgorithm, dict[str, float]]:
    """High level on :func:`session_level_dataset`: the algorithm runs with gamma = 1 and the
    :class:`SemiMDPSampler` supplies γ^k per session (``train/long_term/...``)."""
    algorithm = make_learner(level, dataset.obs_dim, GOAL_DIM, trainer.seed, gamma=1.0, device=trainer.device)
    sampler = SemiMDPSampler(dataset, durations, level.gamma, device=trainer.device)
    return algorithm, _fit(algorithm, sampler, trainer, level.num_updates, run_dir, LONG_TERM_AGENT,
                           evaluators, hparams)


def train_flat(dataset: OfflineDataset, level: LevelConfig, trainer: TrainerConfig, run_dir: str | Path,
               evaluators: Sequence[Callable] = (), hparams: Mapping[str, Any] | None = None
               ) -> tuple[OfflineAlgorithm, dict[str, float]]:
    """The flat baseline on :func:`flat_dataset`, γ per request across sessions (``train/flat/...``)."""
    algorithm = make_learner(level, dataset.obs_dim, NUM_TASKS, trainer.seed, device=trainer.device)
    return algorithm, _fit(algorithm, dataset, trainer, level.num_updates, run_dir, FLAT_AGENT,
                           evaluators, hparams)
