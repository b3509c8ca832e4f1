"""The behaviour pair that logs lifetimes: random session goals and a goal-following ranker."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from marl_rec.contracts import PolicyOutput
from marl_rec.agents.policies import action_grid, grid_slates
from marl_rec.envs.hierarchical import DEFAULT_GOAL_SPACE, GOAL_DIM, goal_names, goal_reward, slate_goal_statistics
from marl_rec.envs.simulator import UserSimulator


class UniformGoalPolicy:
    """Goal actions uniform on [-1, 1]² (goals uniform on [0, 1]²); log-density -2·log 2."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def __call__(self, sim: UserSimulator, obs: np.ndarray) -> PolicyOutput:
        b = obs.shape[0]
        return PolicyOutput(self.rng.uniform(-1.0, 1.0, (b, GOAL_DIM)), np.full(b, -GOAL_DIM * np.log(2.0)))


class GoalFollowingPolicy:
    """Per request, the grid action maximising predicted engagement + ``weight`` · goal-following
    (the environment's short-term reward in ``goal_space``, on the multi-task model's
    predictions). Reads the goal from the last ``GOAL_DIM`` entries of the short-term
    observation; deterministic."""

    def __init__(self, weight: float = 5.0, values: Sequence[float] = (-1.0, 1.0),
                 goal_space: str = DEFAULT_GOAL_SPACE) -> None:
        if not np.isfinite(weight) or weight < 0:
            raise ValueError(f"GoalFollowingPolicy.weight must be finite and >= 0, got {weight!r}")
        goal_names(goal_space)  # validates it
        self.weight, self.goal_space = float(weight), goal_space
        self.grid = action_grid(tuple(float(v) for v in values))

    def __call__(self, sim: UserSimulator, obs: np.ndarray) -> PolicyOutput:
        slates = grid_slates(sim, self.grid)  # (B, G, K)
        score = sim.slate_expectations(slates, use_true=False)["reward"] + self.weight * goal_reward(
            slate_goal_statistics(sim, slates, self.goal_space), obs[:, None, -GOAL_DIM:], self.goal_space)
        return PolicyOutput(self.grid[np.argmax(score, axis=1)], None)
