"""Demonstrators whose behaviour carries the user's true utility (for adversarial IRL).

The engagement-seeking reference expert (``marl_rec.agents.policies.HeuristicExpertPolicy``) earns
*less* true utility than a random policy on the default simulator (it harvests clickbait),
so imitating it recovers engagement, not utility. AIRL's demonstrations therefore come
from :class:`UtilityGreedyPolicy` (plus Gaussian noise for coverage): per request, the grid
action whose slate has the highest expected true utility. Like the heuristic expert it
reads the simulator's latent state — it stands for an oracle curator, never a learner.
"""

from __future__ import annotations

import numpy as np

from marl_rec.contracts import PolicyOutput
from marl_rec.agents.policies import action_grid, grid_slates


class UtilityGreedyPolicy:
    """argmax over ``grid`` of the expected true utility of the slate it ranks."""

    def __init__(self, grid: np.ndarray | None = None) -> None:
        self.grid = action_grid() if grid is None else np.asarray(grid, dtype=np.float64)

    def __call__(self, sim, obs: np.ndarray) -> PolicyOutput:
        expected = sim.slate_expectations(grid_slates(sim, self.grid), use_true=True)
        return PolicyOutput(self.grid[np.argmax(expected["utility"], axis=1)], None)


__all__ = ["UtilityGreedyPolicy"]
