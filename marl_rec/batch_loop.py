"""BCQ-EE: batch-constrained Q-learning inside an iterated batch loop with exploration.

The production loop of offline fusion ranking: train BCQ on the logs, deploy the policy to
simulated user groups under *mixed exploration*, log what happens, add it to the data,
retrain — for a few rounds. Two exploration groups share each round's users:

- a **random-Gaussian** group: actions drawn from N(0, σ_r²) truncated to the action box,
  independent of the policy (broad coverage);
- a **noise-around-policy** group: the current policy's action plus N(0, σ_p²) noise,
  truncated to the box (local improvement).

The "RE" ablation (``exploration="random"``) explores with the random group only. Every
logged action keeps its exact truncated-normal log-density, so the grown dataset still
supports importance-sampling OPE. marl_rec does not import the simulator: ``sim`` is
duck-typed (the batched ``UserSimulator`` core).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from marl_rec.algos.bcq_ee import BatchLoopConfig
from marl_rec.contracts import PolicyOutput
from marl_rec.data.collect import collect
from marl_rec.data.dataset import OfflineDataset
from marl_rec.distributions import truncated_normal_log_prob, truncated_normal_sample


class ExplorationGroups:
    """Behaviour policy of one deployment round: each user belongs to one group for the
    whole session (by batch slot), random-Gaussian or noise-around-policy."""

    def __init__(self, algorithm: Any, config: BatchLoopConfig, rng: np.random.Generator,
                 low: float = -1.0, high: float = 1.0) -> None:
        self.algorithm, self.config, self.rng = algorithm, config, rng
        self.low, self.high = low, high
        self._random_slot: np.ndarray | None = None

    def __call__(self, sim: Any, obs: np.ndarray) -> PolicyOutput:
        b = obs.shape[0]
        if self._random_slot is None or self._random_slot.size != b:
            share = 1.0 if self.config.exploration == "random" else self.config.random_group_share
            self._random_slot = np.arange(b) < int(round(share * b))
        random_slot = self._random_slot
        dim = self.algorithm.action_spec.dim
        mean = np.zeros((b, dim))
        sigma = np.full((b, 1), self.config.random_sigma)
        if not random_slot.all():
            policy_rows = ~random_slot
            mean[policy_rows] = self.algorithm.act(obs[policy_rows], deterministic=True)
            sigma[policy_rows] = self.config.policy_sigma
        action = truncated_normal_sample(mean, sigma, self.rng, low=self.low, high=self.high)
        return PolicyOutput(action, truncated_normal_log_prob(action, mean, sigma, low=self.low, high=self.high))


def run_batch_loop(algorithm: Any, dataset: OfflineDataset, sim: Any, config: BatchLoopConfig,
                   rng: np.random.Generator, train: Callable[[Any, OfflineDataset, int], dict[str, float]],
                   ) -> tuple[OfflineDataset, list[dict[str, float]]]:
    """Run ``config.rounds`` deploy → log → retrain rounds after the caller's initial training.

    ``train(algorithm, dataset, round_index)`` trains the algorithm in place on the grown
    dataset (the caller owns logging and checkpoints) and returns its metrics. Returns the
    final dataset and per-round records (data size, mean logged return of each group)."""
    history = []
    for round_index in range(1, config.rounds + 1):
        groups = ExplorationGroups(algorithm, config, rng)
        logged = collect(sim, groups, config.sessions_per_round * 10, rng,
                         batch_size=config.sessions_per_round,
                         metadata={"pipeline": f"bcq_ee_round{round_index}"})
        dataset = OfflineDataset.concatenate([dataset, logged])
        metrics = train(algorithm, dataset, round_index)
        history.append({"round": round_index, "dataset_size": len(dataset),
                        "logged_return": float(logged.episode_returns().mean()), **metrics})
    return dataset, history
