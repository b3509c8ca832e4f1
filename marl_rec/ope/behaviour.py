"""Estimate the logging (behaviour) policy μ(a|s) when the dataset has no log-probabilities.

Continuous actions: a conditional mixture of ``num_components`` diagonal Gaussians, each
*truncated* to the action box so the density integrates to one on it (the behaviour
policies of the data pipelines are truncated Gaussians around a base action, which one
component represents exactly). Discrete actions: a softmax classifier. Both are MLPs on the
observation, fitted by maximum likelihood on a split of the episodes and selected on the
held-out episodes; the held-out mean log-likelihood per transition is reported, because
importance weights are only as good as this model.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from marl_rec.contracts import ActionSpec
from marl_rec.data.dataset import OfflineDataset
from marl_rec.nets import mlp


@dataclass(frozen=True)
class BehaviourConfig:
    """How to fit the behaviour model (defaults suit datasets of 10^4–10^6 transitions)."""

    hidden: tuple[int, ...] = (256, 256)
    num_components: int = 4  # mixture components (continuous actions)
    learning_rate: float = 1e-3
    batch_size: int = 512
    num_updates: int = 5000
    eval_interval: int = 250  # updates between held-out evaluations (the best one is kept)
    validation_fraction: float = 0.2  # fraction of *episodes* held out
    min_std: float = 0.01  # per-dimension std range, in action units
    max_std: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        for name in ("num_components", "batch_size", "num_updates", "eval_interval"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"BehaviourConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"BehaviourConfig.validation_fraction must be in (0, 1), got {self.validation_fraction}")
        if not 0.0 < self.min_std < self.max_std:
            raise ValueError(f"BehaviourConfig needs 0 < min_std < max_std, got {self.min_std}, {self.max_std}")
        if not self.learning_rate > 0:
            raise ValueError(f"BehaviourConfig.learning_rate must be > 0, got {self.learning_rate}")


def _log_normal_mass(lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """log(Φ(upper) - Φ(lower)) for lower < upper, accurate in both tails."""
    flip = lower > 0
    lo, hi = torch.where(flip, -upper, lower), torch.where(flip, -lower, upper)
    log_hi, log_lo = torch.special.log_ndtr(hi), torch.special.log_ndtr(lo)
    return log_hi + torch.log1p(-torch.exp((log_lo - log_hi).clamp(max=-1e-12)))


class BehaviourModel(nn.Module):
    """μ(a|s) as an MLP; ``log_prob(obs, actions)`` works on numpy arrays."""

    def __init__(self, obs_dim: int, action_spec: ActionSpec, config: BehaviourConfig) -> None:
        super().__init__()
        self.action_spec, self.config = action_spec, config
        k, d = config.num_components, action_spec.dim
        out = action_spec.num_actions if action_spec.discrete else k * (1 + 2 * d)
        self.net = mlp(obs_dim, config.hidden, out)
        self.held_out_log_likelihood = math.nan  # mean log μ(a|s) per held-out transition
        self.train_log_likelihood = math.nan

    def log_prob_tensor(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        out = self.net(obs)
        spec, cfg = self.action_spec, self.config
        if spec.discrete:
            return torch.log_softmax(out, -1).gather(1, actions.long().view(-1, 1)).squeeze(1)
        k, d = cfg.num_components, spec.dim
        logits, means, stds = out.split([k, k * d, k * d], dim=-1)
        center, half = (spec.high + spec.low) / 2.0, (spec.high - spec.low) / 2.0
        # component means may sit a little outside the box (a truncated mode at the edge)
        means = (center + 1.5 * half * torch.tanh(means)).view(-1, k, d)
        stds = (cfg.min_std + (cfg.max_std - cfg.min_std) * torch.sigmoid(stds)).view(-1, k, d)
        a = actions.unsqueeze(1)  # (B, 1, d)
        z = (a - means) / stds
        log_density = (-0.5 * z**2 - stds.log() - 0.5 * math.log(2 * math.pi)
                       - _log_normal_mass((spec.low - means) / stds, (spec.high - means) / stds)).sum(-1)
        return torch.logsumexp(torch.log_softmax(logits, -1) + log_density, dim=-1)

    @torch.no_grad()
    def log_prob(self, obs: np.ndarray, actions: np.ndarray, chunk: int = 65536) -> np.ndarray:
        """(N,) log μ(a|s) (a log-density for continuous actions)."""
        self.eval()
        dtype = torch.long if self.action_spec.discrete else torch.float32
        parts = [self.log_prob_tensor(torch.as_tensor(np.asarray(obs[i:i + chunk]), dtype=torch.float32),
                                      torch.as_tensor(np.asarray(actions[i:i + chunk]), dtype=dtype)).double()
                 for i in range(0, len(obs), chunk)]
        return torch.cat(parts).numpy()


def fit_behaviour_policy(dataset: OfflineDataset, config: BehaviourConfig | None = None) -> BehaviourModel:
    """Fit μ(a|s) on ``dataset`` by maximum likelihood; the held-out split selects the
    checkpoint and gives ``model.held_out_log_likelihood``."""
    config = config or BehaviourConfig()
    spec = dataset.action_spec
    bounds = dataset.episode_bounds()
    if len(bounds) < 2:
        raise ValueError("fit_behaviour_policy needs at least 2 episodes (one is held out)")
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(bounds))
    num_held_out = min(len(bounds) - 1, max(1, round(config.validation_fraction * len(bounds))))
    episode_of_row = np.cumsum(dataset.episode_starts) - 1
    held_out = np.isin(episode_of_row, order[:num_held_out])
    obs = torch.as_tensor(np.asarray(dataset.observations), dtype=torch.float32)
    actions = torch.as_tensor(np.asarray(dataset.actions), dtype=torch.long if spec.discrete else torch.float32)
    train_rows = torch.as_tensor(np.flatnonzero(~held_out))
    valid_rows = torch.as_tensor(np.flatnonzero(held_out))

    with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching global state
        torch.manual_seed(config.seed)
        model = BehaviourModel(dataset.obs_dim, spec, config)
    generator = torch.Generator().manual_seed(config.seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)

    @torch.no_grad()
    def mean_log_likelihood(rows: torch.Tensor) -> float:
        total = sum(float(model.log_prob_tensor(obs[r], actions[r]).sum()) for r in rows.split(65536))
        return total / len(rows)

    best, best_state = -math.inf, copy.deepcopy(model.state_dict())
    for step in range(1, config.num_updates + 1):
        index = train_rows[torch.randint(len(train_rows), (config.batch_size,), generator=generator)]
        loss = -model.log_prob_tensor(obs[index], actions[index]).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % config.eval_interval == 0 or step == config.num_updates:
            score = mean_log_likelihood(valid_rows)
            if score > best:
                best, best_state = score, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.held_out_log_likelihood = best
    model.train_log_likelihood = mean_log_likelihood(train_rows)
    model.eval()
    return model


__all__ = ["BehaviourConfig", "BehaviourModel", "fit_behaviour_policy"]
