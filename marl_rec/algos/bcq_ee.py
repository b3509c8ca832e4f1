"""BCQ-EE and its RE ablation: BCQ (:mod:`marl_rec.algos.bcq`) trained inside the iterated
deploy-and-retrain loop of :mod:`marl_rec.batch_loop`.

The learner is BCQ itself; what differs is the config, which adds the loop's settings
(:class:`BatchLoopConfig`). A run whose algorithm config is a :class:`BatchLoopConfig` is
run through the loop after its initial training (``marl_rec.experiments.fusion_offline``),
so BCQ-EE/RE are registered like every other algorithm and matched by type, not by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from marl_rec.algos.bcq import BCQConfig


@dataclass(frozen=True)
class BatchLoopConfig:
    rounds: int = 3  # deploy-and-retrain rounds after the initial training
    sessions_per_round: int = 2_000  # simulated users served per round (both groups together)
    exploration: str = "mixed"  # "mixed" (random + around-policy groups) or "random" (RE ablation)
    random_group_share: float = 0.5  # share of the round's users in the random-Gaussian group
    random_sigma: float = 0.5  # σ_r of the policy-independent Gaussian (around 0)
    policy_sigma: float = 0.1  # σ_p of the noise around the policy's action
    updates_per_round: int = 2_000  # BCQ updates after each round's data is added

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.exploration not in ("mixed", "random"):
            raise ValueError(f"{name}.exploration must be 'mixed' or 'random', got {self.exploration!r}")
        if not 0.0 <= self.random_group_share <= 1.0:
            raise ValueError(f"{name}.random_group_share must be in [0, 1], got {self.random_group_share}")
        for field in ("rounds", "sessions_per_round", "updates_per_round"):
            if int(getattr(self, field)) < 1:
                raise ValueError(f"{name}.{field} must be >= 1, got {getattr(self, field)}")
        for field in ("random_sigma", "policy_sigma"):
            if not getattr(self, field) > 0:
                raise ValueError(f"{name}.{field} must be > 0, got {getattr(self, field)}")


@dataclass(frozen=True)
class BCQEEConfig(BCQConfig, BatchLoopConfig):
    """BCQ's config (paper defaults, ``rec()`` preset) plus the batch loop's, mixed exploration."""

    def __post_init__(self) -> None:
        BCQConfig.__post_init__(self)
        BatchLoopConfig.__post_init__(self)


@dataclass(frozen=True)
class BCQREConfig(BCQEEConfig):
    """The "RE" ablation: the same loop, exploring with the random-Gaussian group only."""

    exploration: str = "random"
