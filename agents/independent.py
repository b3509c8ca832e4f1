"""Independent offline learners: one core algorithm per agent, each trained on its own table
(its own observation, action and reward; the other agent is part of its environment).

The algorithms come from :func:`marl_rec.algos.registry.make_algorithm` (e.g. ``bcq`` for the
recommender, ``discrete_bcq`` / ``discrete_cql`` for the advertiser) and train with the
ordinary :class:`marl_rec.trainer.Trainer` (TensorBoard tags ``train/<agent>/...``).

A discrete agent with an action mask in its observation acts through :func:`masked_act`:
the algorithm's own greedy choice, replaced where the mask forbids it by the allowed action
of highest ``q_value`` — so the learned advertiser never requests an ad the cap forbids.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from marl_rec.contracts import PolicyOutput
from marl_rec.algos.base import OfflineAlgorithm
from marl_rec.algos.registry import make_algorithm
from marl_rec.data.multiagent import MultiAgentDataset
from marl_rec.trainer import Trainer, TrainerConfig


@dataclass(frozen=True)
class LearnerSpec:
    """Which registered algorithm an agent uses: ``make_algorithm(algorithm, ..., preset, **overrides)``."""

    algorithm: str
    preset: str = "rec"
    overrides: dict[str, Any] = field(default_factory=dict)


def masked_act(algorithm: OfflineAlgorithm, obs: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The algorithm's greedy actions (B,), with every masked choice replaced by the allowed
    action of highest ``q_value`` (``mask``: (B, n) bool, None = no mask)."""
    action = np.asarray(algorithm.act(obs, deterministic=True)).astype(np.int64)
    if mask is None:
        return action
    bad = ~mask[np.arange(len(action)), action]
    if bad.any():
        n = mask.shape[1]
        rows = obs[bad]
        q = np.stack([algorithm.q_value(rows, np.full(len(rows), a, dtype=np.int64)) for a in range(n)], axis=1)
        action[bad] = np.where(mask[bad], q, -np.inf).argmax(1)
    return action


class IndependentLearners:
    """``algorithms[agent]`` learns from ``dataset.tables[agent]`` alone; ``policies()`` acts
    for each agent from its own observation."""

    def __init__(self, algorithms: Mapping[str, OfflineAlgorithm],
                 action_mask_columns: Mapping[str, tuple[int, int]] | None = None) -> None:
        self.algorithms = dict(algorithms)
        self.action_mask_columns = dict(action_mask_columns or {})
        unknown = sorted(set(self.action_mask_columns) - set(self.algorithms))
        if unknown:
            raise ValueError(f"action_mask_columns names agents without an algorithm: {unknown}")

    @classmethod
    def for_dataset(cls, dataset: MultiAgentDataset, specs: Mapping[str, LearnerSpec], seed: int = 0,
                    device: str = "cpu") -> IndependentLearners:
        """One algorithm per agent table, sized for it."""
        missing = sorted(set(dataset.tables) - set(specs))
        if missing:
            raise ValueError(f"no learner given for agents {missing}")
        algorithms = {agent: make_algorithm(spec.algorithm, table.obs_dim, table.action_spec, preset=spec.preset,
                                            seed=seed, device=device, **dict(spec.overrides))
                      for agent, table in dataset.tables.items() for spec in [specs[agent]]}
        return cls(algorithms, dataset.action_mask_columns)

    def fit(self, dataset: MultiAgentDataset, config: TrainerConfig, run_dir: str | Path,
            num_updates: Mapping[str, int] | None = None) -> dict[str, dict[str, float]]:
        """Train each agent on its table with its own :class:`Trainer` in ``run_dir/<agent>``
        (resuming a checkpoint there); ``num_updates`` may set an agent's own budget."""
        finals = {}
        for agent, algorithm in self.algorithms.items():
            agent_config = TrainerConfig(**{**config.__dict__, "num_updates": int(
                (num_updates or {}).get(agent, config.num_updates))})
            trainer = Trainer(algorithm, dataset.tables[agent], agent_config, Path(run_dir) / agent,
                              agent_name=agent)
            finals[agent] = trainer.fit(resume=True)
        return finals

    def act(self, agent: str, obs: np.ndarray) -> np.ndarray:
        algorithm = self.algorithms[agent]
        if algorithm.action_spec.discrete:
            columns = self.action_mask_columns.get(agent)
            mask = None if columns is None else np.asarray(obs)[:, columns[0]:columns[1]] > 0.5
            return masked_act(algorithm, obs, mask)
        return algorithm.act(obs, deterministic=True)

    def policies(self) -> dict[str, Any]:
        """Decentralised policies ``policy(sim, obs) -> PolicyOutput`` for the joint evaluation."""
        return {agent: (lambda sim, obs, agent=agent: PolicyOutput(self.act(agent, obs), None))
                for agent in self.algorithms}


__all__ = ["LearnerSpec", "IndependentLearners", "masked_act"]
