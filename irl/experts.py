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


class BoltzmannCuratorPolicy:
    """A soft-optimal (Boltzmann-rational) curator of the expected true utility, the expert
    AIRL's theory assumes: per request it draws ``a ∝ exp(β · E[utility | s, a])`` over the
    action box, by sampling-importance-resampling — ``num_proposals`` uniform actions
    (shared by the batch, fresh every request), one picked per user by softmax. It is
    myopic (the utility of this request only), so AIRL's matching discount is 0, where
    potential shaping is a state-only offset. Reads the simulator's latent item utility:
    an oracle demonstrator, never a learner. Log-probabilities are not recorded (the
    resampling density is only approximately the Boltzmann one)."""

    def __init__(self, beta: float, rng: np.random.Generator, num_proposals: int = 64) -> None:
        if not beta > 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        if num_proposals < 2:
            raise ValueError(f"num_proposals must be >= 2, got {num_proposals}")
        self.beta, self.rng, self.num_proposals = beta, rng, num_proposals

    def __call__(self, sim, obs: np.ndarray) -> PolicyOutput:
        proposals = self.rng.uniform(-1.0, 1.0, (self.num_proposals, sim.action_dim))
        expected = sim.slate_expectations(grid_slates(sim, proposals), use_true=True)["utility"]  # (B, M)
        gumbel = -np.log(-np.log(self.rng.random(expected.shape)))  # Gumbel-max: a softmax draw per row
        return PolicyOutput(proposals[np.argmax(self.beta * expected + gumbel, axis=1)], None)


__all__ = ["UtilityGreedyPolicy", "BoltzmannCuratorPolicy"]
