"""Adversarial IRL (Fu, Luo & Levine 2018) for the continuous fusion-ranking MDP.

Discriminator
    ``D(s, a, s') = exp(f) / (exp(f) + π(a|s))`` with
    ``f(s, a, s') = g(s, a) + γ (1 − done) h(s') − h(s)``: a reward network g over the
    observation and fusion action and a potential h over the observation, so that the
    shaping part of what separates expert from policy lands in h and g keeps the
    reward. Trained by logistic regression: expert transitions (from a logged
    :class:`~marl_rec.data.OfflineDataset`) are 1, the generator's are 0; its logit is
    ``f − log π(a|s)`` under the current generator. For a myopic expert (γ = 0),
    ``uniform_negatives`` = ε draws that share of the negatives' actions uniformly from the box
    and the logit uses the mixture's density ``(1 − ε) π + ε U``: g is then fitted over the
    whole box, not only where the generator acts.

Generator — trained *in the simulator* (on-policy)
    A tanh-squashed Gaussian policy, trained with PPO (clipped surrogate, GAE) on whole
    sessions of a batch of fresh simulated users per iteration, with the AIRL reward
    ``log D − log(1 − D) = f − log π``. Nothing of the simulator's own reward or utility
    is used: the simulator only supplies user responses (next observations, who leaves).
    Session truncation is treated as the end of the episode (sessions are finite).

Output
    :meth:`AIRL.reward` is g on every transition of a dataset: the reward to relabel it
    with (:func:`marl_rec.irl.data.relabel`). g sees ``reward_features`` — ``"state_action"``
    (g(s, a), the AIRL form, default) or ``"transition"`` (also the logged behaviours and
    the next observation, as the preference model), plus optionally ``slate_features``.
    It is identified up to a constant and a positive scale at best, and only up to what
    separates the expert from the generator.

What it recovers, and from which demonstrator
    At the discriminator's optimum f = log π_E(a|s) (+ a state term): g is the reward only
    if the expert is soft-optimal (Boltzmann-rational) for it. A greedy curator plus
    Gaussian noise makes log π_E the distance to its argmax, which carries little of the
    utility; :class:`~marl_rec.irl.experts.BoltzmannCuratorPolicy` is the matching
    demonstrator (myopic, so ``gamma=0``: shaping is then a state-only offset, removed by
    :func:`~marl_rec.irl.metrics.epic_distance_myopic`). ``slate_features`` gives g the
    slate the action would show. Measured before and after in ``bench/airl_recovery.py``
    (table in ``bench/results/README.md``); :class:`TabularAIRL` is the tabular check of
    the theory (``tests/irl/test_irl_airl.py``: EPIC 0.040 to the true reward).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from marl_rec.irl.common import seeded_mlp
from marl_rec.irl.data import FEATURE_SETS, SLATE_FEATURES, feature_dim, slate_features, transition_features
from marl_rec.irl.maxent import TopicMDP, soft_value_iteration
from marl_rec.data import OfflineDataset


@dataclass(frozen=True)
class AIRLConfig:
    gamma: float = 0.9
    reward_features: str = "state_action"  # what g sees: a key of marl_rec.irl.data.FEATURE_SETS
    # g also sees marl_rec.irl.data.slate_features(obs, action): the slate the action shows, as the
    # platform predicts it (needs the simulator config)
    slate_features: bool = False
    reward_hidden: tuple[int, ...] = (64, 64)
    potential_hidden: tuple[int, ...] = (64, 64)
    policy_hidden: tuple[int, ...] = (64, 64)
    iterations: int = 60
    users_per_iteration: int = 128  # fresh simulated users per generator rollout (one session each)
    discriminator_lr: float = 3e-4
    discriminator_steps: int = 20  # per iteration
    discriminator_batch: int = 256
    discriminator_weight_decay: float = 1e-4
    policy_lr: float = 3e-4
    policy_epochs: int = 4
    policy_minibatch: int = 512
    clip: float = 0.2
    gae_lambda: float = 0.95
    entropy_coef: float = 1e-3
    initial_log_std: float = -0.5
    # Share ε of the discriminator's negatives whose action is drawn uniformly from the action box
    # (in the generator's states) instead of by the generator: the density ratio is then estimated
    # against q = (1 − ε) π + ε U, f → log π_E(a|s) (+ a state term) wherever q has mass, so g is
    # also fitted away from where the generator acts. Myopic AIRL only (gamma = 0: a uniform
    # action's next state is not simulated). 0: the paper's discriminator.
    uniform_negatives: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.gamma <= 1.0:  # 0: a myopic expert (potential shaping is then -h(s))
            raise ValueError(f"AIRLConfig.gamma must be in [0, 1], got {self.gamma}")
        if self.reward_features not in FEATURE_SETS:
            raise ValueError(f"AIRLConfig.reward_features must be one of {sorted(FEATURE_SETS)}, "
                             f"got {self.reward_features!r}")
        for name in ("iterations", "users_per_iteration", "discriminator_steps", "discriminator_batch",
                     "policy_epochs", "policy_minibatch"):
            if getattr(self, name) < 1:
                raise ValueError(f"AIRLConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.uniform_negatives < 1.0:
            raise ValueError(f"AIRLConfig.uniform_negatives must be in [0, 1), got {self.uniform_negatives}")
        if self.uniform_negatives > 0.0 and self.gamma != 0.0:
            raise ValueError("AIRLConfig.uniform_negatives needs gamma = 0 (a uniform action's next state is not "
                             f"simulated), got gamma={self.gamma}")


def discriminator_loss(f_expert: torch.Tensor, log_pi_expert: torch.Tensor, f_generator: torch.Tensor,
                       log_pi_generator: torch.Tensor) -> tuple[torch.Tensor, float]:
    """AIRL's discriminator objective: ``D = exp(f) / (exp(f) + π(a|s))`` is a logistic
    regression with logit ``f − log π(a|s)`` (π the current generator, not differentiated),
    expert transitions labelled 1 and the generator's 0. Returns (loss, accuracy)."""
    logit = torch.cat([f_expert - log_pi_expert.detach(), f_generator - log_pi_generator.detach()])
    label = torch.cat([torch.ones_like(f_expert), torch.zeros_like(f_generator)])
    loss = F.binary_cross_entropy_with_logits(logit, label)
    return loss, float(((logit > 0).float() == label).float().mean())


class SquashedGaussianPolicy(nn.Module):
    """a = tanh(u), u ~ N(μ(s), σ²) with a state-independent σ; exact log-density of a."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...], initial_log_std: float,
                 generator: torch.Generator) -> None:
        super().__init__()
        self.mean = seeded_mlp(obs_dim, hidden, action_dim, generator)
        self.log_std = nn.Parameter(torch.full((action_dim,), float(initial_log_std)))

    def distribution(self, obs: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(self.mean(obs), self.log_std.exp())

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """log π(a|s) for actions in [-1, 1] (clamped inside so atanh stays finite)."""
        action = action.clamp(-1 + 1e-4, 1 - 1e-4)
        u = torch.atanh(action)
        return (self.distribution(obs).log_prob(u) - torch.log1p(-action**2)).sum(-1)

    def sample(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        dist = self.distribution(obs)
        noise = torch.randn(dist.loc.shape, generator=generator)
        return torch.tanh(dist.loc + dist.scale * noise)


class AIRL:
    """Adversarial IRL with a simulator-trained generator; see the module docstring."""

    def __init__(self, obs_dim: int, action_dim: int, num_components: int = 4, config: AIRLConfig | None = None,
                 seed: int = 0, simulator_config: Any = None) -> None:
        self.config = c = config or AIRLConfig()
        if c.slate_features and simulator_config is None:
            raise ValueError("AIRLConfig.slate_features needs the simulator_config (the observation layout)")
        self.simulator_config = simulator_config
        self.generator = torch.Generator().manual_seed(seed)
        g = self.generator
        width = feature_dim(obs_dim, action_dim, num_components, c.reward_features)
        self.reward_net = seeded_mlp(width + (len(SLATE_FEATURES) if c.slate_features else 0), c.reward_hidden, 1, g)
        self.potential_net = seeded_mlp(obs_dim, c.potential_hidden, 1, g)
        self.policy = SquashedGaussianPolicy(obs_dim, action_dim, c.policy_hidden, c.initial_log_std, g)
        self.value_net = seeded_mlp(obs_dim, c.policy_hidden, 1, g)
        self.discriminator_optimizer = torch.optim.Adam(
            [*self.reward_net.parameters(), *self.potential_net.parameters()], lr=c.discriminator_lr,
            weight_decay=c.discriminator_weight_decay)
        self.policy_optimizer = torch.optim.Adam([*self.policy.parameters(), *self.value_net.parameters()],
                                                 lr=c.policy_lr)
        self.history: list[dict[str, float]] = []

    # ----------------------------------------------------------------- reward
    def _slate(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(slate_features(obs.numpy(), action.numpy(), self.simulator_config))

    def g(self, data: dict[str, torch.Tensor]) -> torch.Tensor:
        """The reward network on the configured columns of a transition batch (``obs``,
        ``action``, ``components``, ``next_obs``; ``slate`` is computed when absent)."""
        columns = {"observations": "obs", "actions": "action", "reward_components": "components",
                   "next_observations": "next_obs"}
        parts = [data[columns[name]] for name in FEATURE_SETS[self.config.reward_features]]
        if self.config.slate_features:
            parts.append(data["slate"] if "slate" in data else self._slate(data["obs"], data["action"]))
        return self.reward_net(torch.cat(parts, -1)).squeeze(-1)

    @torch.no_grad()
    def reward_of(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """(N,) g of arrays keyed like :meth:`g`'s batch (float64)."""
        return self.g({k: torch.as_tensor(v, dtype=torch.float32) for k, v in columns.items()}).double().numpy()

    def f(self, data: dict[str, torch.Tensor]) -> torch.Tensor:
        """g + γ (1 − terminal) h(s') − h(s)."""
        h = self.potential_net(data["obs"]).squeeze(-1)
        h_next = self.potential_net(data["next_obs"]).squeeze(-1)
        return self.g(data) + self.config.gamma * (1.0 - data["terminal"]) * h_next - h

    @torch.no_grad()
    def reward(self, dataset: OfflineDataset) -> np.ndarray:
        """(N,) learned reward g of every transition of ``dataset`` (float64), to relabel it."""
        x = transition_features(dataset, self.config.reward_features)
        if self.config.slate_features:
            x = np.concatenate([x, slate_features(dataset.observations, dataset.actions, self.simulator_config)], 1)
        x = torch.as_tensor(x)
        return torch.cat([self.reward_net(x[i:i + 65536]).squeeze(-1)
                          for i in range(0, len(x), 65536)]).double().numpy()

    # -------------------------------------------------------------- generator
    @torch.no_grad()
    def rollout(self, sim: Any, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """One session for each of ``users_per_iteration`` fresh users; (B, T) arrays."""
        c = self.config
        obs = torch.as_tensor(sim.reset(c.users_per_iteration, rng))
        steps: dict[str, list[torch.Tensor]] = {k: [] for k in ("obs", "action", "log_prob", "next_obs",
                                                               "components", "terminal", "ended", "active")}
        while not sim.done.all():
            action = self.policy.sample(obs, self.generator)
            result = sim.step(action.double().numpy())
            next_obs = torch.as_tensor(result.observation)
            steps["obs"].append(obs)
            steps["action"].append(action)
            steps["log_prob"].append(self.policy.log_prob(obs, action))
            steps["next_obs"].append(next_obs)
            steps["components"].append(torch.as_tensor(result.info["components"], dtype=torch.float32))
            steps["terminal"].append(torch.as_tensor(result.terminated, dtype=torch.float32))
            steps["ended"].append(torch.as_tensor(result.terminated | result.truncated, dtype=torch.float32))
            steps["active"].append(torch.as_tensor(result.info["active"]))
            if self.config.slate_features:  # of the state the action was taken in (before the step)
                steps.setdefault("slate", []).append(self._slate(obs, action))
            obs = next_obs
        return {k: torch.stack(v, 1) for k, v in steps.items()}

    def _update_policy(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        c = self.config
        active = batch["active"]
        with torch.no_grad():
            reward = self.f(batch) - batch["log_prob"]
            value = self.value_net(batch["obs"]).squeeze(-1)
            next_value = self.value_net(batch["next_obs"]).squeeze(-1) * (1.0 - batch["ended"])
            delta = reward + c.gamma * next_value - value
            advantage = torch.zeros_like(delta)
            running = torch.zeros(delta.shape[0])
            for t in reversed(range(delta.shape[1])):  # GAE, reset at the end of each session
                running = delta[:, t] + c.gamma * c.gae_lambda * (1.0 - batch["ended"][:, t]) * running
                advantage[:, t] = running
            target = advantage + value
        obs, action = batch["obs"][active], batch["action"][active]
        old_log_prob, adv, target = batch["log_prob"][active], advantage[active], target[active]
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        n = len(obs)
        for _ in range(c.policy_epochs):
            order = torch.randperm(n, generator=self.generator)
            for start in range(0, n, c.policy_minibatch):
                i = order[start:start + c.policy_minibatch]
                ratio = (self.policy.log_prob(obs[i], action[i]) - old_log_prob[i]).exp()
                surrogate = torch.min(ratio * adv[i], ratio.clamp(1 - c.clip, 1 + c.clip) * adv[i])
                entropy = self.policy.log_std.sum()  # Gaussian entropy up to constants
                value_loss = F.mse_loss(self.value_net(obs[i]).squeeze(-1), target[i])
                loss = -surrogate.mean() + 0.5 * value_loss - c.entropy_coef * entropy
                self.policy_optimizer.zero_grad()
                loss.backward()
                self.policy_optimizer.step()
        return {"policy_reward": float(reward[active].mean()), "value_loss": value_loss.item()}

    # ---------------------------------------------------------- discriminator
    def _update_discriminator(self, expert: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, float]:
        c = self.config
        active = batch["active"]
        fake = {k: batch[k][active] for k in ("obs", "action", "next_obs", "components", "terminal", "slate")
                if k in batch}
        n_expert, n_fake = len(expert["obs"]), len(fake["obs"])
        n_uniform = round(c.uniform_negatives * c.discriminator_batch)
        for _ in range(c.discriminator_steps):
            ie = torch.randint(n_expert, (c.discriminator_batch,), generator=self.generator)
            jf = torch.randint(n_fake, (c.discriminator_batch,), generator=self.generator)
            parts = []
            for data, rows in ((expert, ie), (fake, jf)):
                sample = {k: v[rows] for k, v in data.items()}
                if data is fake and n_uniform:
                    self._uniform_actions(sample, n_uniform)
                with torch.no_grad():
                    log_pi = self._log_proposal(sample["obs"], sample["action"])
                parts.append((self.f(sample), log_pi))
            loss, accuracy = discriminator_loss(*parts[0], *parts[1])
            self.discriminator_optimizer.zero_grad()
            loss.backward()
            self.discriminator_optimizer.step()
        return {"discriminator_loss": loss.item(), "discriminator_accuracy": accuracy}

    def _uniform_actions(self, sample: dict[str, torch.Tensor], n: int) -> None:
        """Replace the actions of the first ``n`` negatives with uniform ones in [-1, 1]^d, in place
        (with their slate features; γ = 0, so the next state does not enter f)."""
        action = sample["action"].clone()
        action[:n] = torch.rand((n, action.shape[1]), generator=self.generator) * 2.0 - 1.0
        sample["action"] = action
        if "slate" in sample:
            slate = sample["slate"].clone()
            slate[:n] = self._slate(sample["obs"][:n], action[:n])
            sample["slate"] = slate

    def _log_proposal(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """log q(a|s) of the negatives' distribution: the generator's log π, mixed with the uniform
        density 2^-d when ``uniform_negatives`` = ε > 0."""
        log_pi = self.policy.log_prob(obs, action)
        eps = self.config.uniform_negatives
        if eps == 0.0:
            return log_pi
        log_uniform = torch.full_like(log_pi, math.log(eps) - action.shape[1] * math.log(2.0))
        return torch.logaddexp(log_pi + math.log1p(-eps), log_uniform)

    def train(self, sim: Any, expert: OfflineDataset, rng: np.random.Generator,
              evaluate: Callable[[AIRL], dict[str, float]] | None = None, evaluate_every: int = 10,
              log: Callable[[dict[str, float], int], Any] | None = None) -> list[dict[str, float]]:
        """Alternate generator rollouts in ``sim``, discriminator steps on ``expert`` vs the
        rollout, and PPO steps on the AIRL reward, for ``config.iterations`` iterations."""
        if expert.action_spec.discrete:
            raise ValueError("AIRL here needs continuous actions; the expert dataset's are discrete")
        expert_t = {"obs": torch.as_tensor(expert.observations, dtype=torch.float32),
                    "action": torch.as_tensor(expert.actions, dtype=torch.float32),
                    "next_obs": torch.as_tensor(expert.next_observations, dtype=torch.float32),
                    "components": torch.as_tensor(expert.reward_components if expert.reward_components is not None
                                                  else np.zeros((len(expert), 0)), dtype=torch.float32),
                    "terminal": torch.as_tensor(expert.terminals, dtype=torch.float32)}
        if self.config.slate_features:
            expert_t["slate"] = torch.as_tensor(slate_features(expert.observations, expert.actions,
                                                               self.simulator_config))
        started = time.perf_counter()
        for iteration in range(1, self.config.iterations + 1):
            batch = self.rollout(sim, rng)
            entry = {"iteration": float(iteration)}
            entry.update(self._update_discriminator(expert_t, batch))
            entry.update(self._update_policy(batch))
            entry["policy_log_std"] = self.policy.log_std.mean().item()
            entry["seconds"] = time.perf_counter() - started
            if evaluate is not None and (iteration % evaluate_every == 0 or iteration == self.config.iterations):
                entry.update(evaluate(self))
            if not all(math.isfinite(v) for v in entry.values()):
                raise FloatingPointError(f"AIRL diverged at iteration {iteration}: {entry}")
            self.history.append(entry)
            if log is not None:
                log(entry, iteration)
        return self.history

    def state_dict(self) -> dict[str, Any]:
        return {"reward": self.reward_net.state_dict(), "potential": self.potential_net.state_dict(),
                "policy": self.policy.state_dict(), "value": self.value_net.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reward_net.load_state_dict(state["reward"])
        self.potential_net.load_state_dict(state["potential"])
        self.policy.load_state_dict(state["policy"])
        self.value_net.load_state_dict(state["value"])


# -------------------------------------------------------------------------- tabular
@dataclass(frozen=True)
class TabularAIRLConfig:
    gamma: float = 0.9
    iterations: int = 200
    trajectories_per_iteration: int = 256  # generator rollouts per iteration (from the experts' start states)
    horizon: int = 10  # steps per rollout; the experts' trajectories should be as long
    discriminator_steps: int = 5
    lr: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 < self.gamma < 1.0:
            raise ValueError(f"TabularAIRLConfig.gamma must be in (0, 1), got {self.gamma}")
        for name in ("iterations", "trajectories_per_iteration", "horizon", "discriminator_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"TabularAIRLConfig.{name} must be >= 1, got {getattr(self, name)}")


def sample_transitions(mdp: TopicMDP, log_policy: np.ndarray, start: np.ndarray, num_trajectories: int,
                       horizon: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(s, a, s') of ``num_trajectories`` rollouts of ``horizon`` steps of the (T, A)
    log-policy from start states drawn from ``start`` (T,); flat arrays, rollouts in order."""
    policy_cdf = np.cumsum(np.exp(log_policy) * mdp.action_mask, axis=1)
    next_cdf = np.cumsum(mdp.transitions, axis=2)
    s = rng.choice(mdp.num_states, size=num_trajectories, p=start)
    out = np.empty((3, num_trajectories, horizon), dtype=np.int64)
    for t in range(horizon):  # all rollouts step together
        a = np.minimum((policy_cdf[s] <= rng.random(num_trajectories)[:, None]).sum(1), mdp.action_mask.shape[1] - 1)
        s_next = np.minimum((next_cdf[s, a] <= rng.random(num_trajectories)[:, None]).sum(1), mdp.num_states - 1)
        out[:, :, t] = s, a, s_next
        s = s_next
    return out[0].ravel(), out[1].ravel(), out[2].ravel()


class TabularAIRL:
    """AIRL on a tabular MDP with known dynamics, the setting of Fu et al.'s disentanglement
    result: a *state-only* reward table g(s) and a potential table h(s),
    ``f(s, a, s') = g(s) + γ h(s') − h(s)``, the discriminator of :func:`discriminator_loss`.
    The generator step is exact: the maximum-entropy policy for the reward f, which is the
    one for g (potential shaping leaves the optimal soft policy unchanged), by soft value
    iteration. With deterministic dynamics and a soft-optimal expert, g recovers the true
    state reward up to a constant (the paper's Theorem 5.1); tests/irl/test_irl_airl.py
    measures it with EPIC."""

    def __init__(self, mdp: TopicMDP, config: TabularAIRLConfig | None = None, seed: int = 0) -> None:
        self.mdp, self.config = mdp, config or TabularAIRLConfig()
        self.generator = torch.Generator().manual_seed(seed)
        t = mdp.num_states
        self.g = nn.Parameter(torch.zeros(t, dtype=torch.float64))
        self.h = nn.Parameter(torch.zeros(t, dtype=torch.float64))
        self.optimizer = torch.optim.Adam([self.g, self.h], lr=self.config.lr)
        self.history: list[dict[str, float]] = []

    @property
    def reward(self) -> np.ndarray:
        """(T,) the learned state reward g."""
        return self.g.detach().numpy().copy()

    def log_policy(self) -> np.ndarray:
        """(T, A) the generator: the maximum-entropy policy for the current g."""
        return soft_value_iteration(self.mdp, self.reward, self.config.gamma)[0]

    def _f(self, s: torch.Tensor, s_next: torch.Tensor) -> torch.Tensor:
        return self.g[s] + self.config.gamma * self.h[s_next] - self.h[s]

    def fit(self, states: np.ndarray, actions: np.ndarray, next_states: np.ndarray, start: np.ndarray,
            rng: np.random.Generator) -> list[dict[str, float]]:
        """Train on expert transitions ``(states, actions, next_states)`` (flat int arrays);
        generator rollouts start from ``start`` (T,), the distribution of the experts' first
        states, and last ``horizon`` steps like theirs, so that the two state distributions
        differ only through the policies."""
        c = self.config
        start = np.asarray(start, dtype=np.float64)
        if start.shape != (self.mdp.num_states,) or np.any(start < 0) or not np.isclose(start.sum(), 1.0):
            raise ValueError(f"start must be a distribution over the {self.mdp.num_states} states, got {start}")
        states, actions, next_states = (np.asarray(x, dtype=np.int64) for x in (states, actions, next_states))
        if not states.shape == actions.shape == next_states.shape or states.ndim != 1:
            raise ValueError(f"states, actions and next_states must be flat arrays of one length, got "
                             f"{states.shape}, {actions.shape}, {next_states.shape}")
        if not self.mdp.action_mask[states, actions].all():
            raise ValueError("the expert transitions contain actions the MDP masks")
        expert = [torch.as_tensor(x) for x in (states, actions, next_states)]
        for iteration in range(1, c.iterations + 1):
            log_policy = self.log_policy()
            fake = [torch.as_tensor(x) for x in sample_transitions(self.mdp, log_policy, start,
                                                                   c.trajectories_per_iteration, c.horizon, rng)]
            log_pi = torch.as_tensor(log_policy)
            for _ in range(c.discriminator_steps):
                # as many expert as generator transitions: a class imbalance would add its log-odds to f
                rows = torch.randint(len(expert[0]), (len(fake[0]),), generator=self.generator)
                es, ea, en = (x[rows] for x in expert)
                loss, accuracy = discriminator_loss(self._f(es, en), log_pi[es, ea],
                                                    self._f(fake[0], fake[2]), log_pi[fake[0], fake[1]])
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
            self.history.append({"iteration": float(iteration), "discriminator_loss": loss.item(),
                                 "discriminator_accuracy": accuracy})
        return self.history


__all__ = ["AIRLConfig", "SquashedGaussianPolicy", "AIRL", "discriminator_loss", "TabularAIRLConfig",
           "TabularAIRL", "sample_transitions"]
