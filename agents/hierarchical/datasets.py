"""The three offline views of one :class:`LifetimeLog`: session level (long term, semi-MDP),
goal conditioned with hindsight relabelling (short term), and flat (the baseline)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from marl_rec.envs.hierarchical import (GOAL_DIM, goal_reward)
from marl_rec.envs.simulator import NUM_TASKS, TASKS
from marl_rec.contracts import ActionSpec
from marl_rec.data.dataset import OfflineDataset, TensorSampler
from marl_rec.agents.hierarchical.collection import LifetimeLog


LONG_TERM_AGENT, SHORT_TERM_AGENT, FLAT_AGENT = "long_term", "short_term", "flat"
RELABEL_STRATEGIES = ("episode", "mean")


def _episode_starts(group: np.ndarray) -> np.ndarray:
    starts = np.ones(len(group), dtype=bool)
    starts[1:] = group[1:] != group[:-1]
    return starts


def discounted_session_returns(log: LifetimeLog, gamma: float) -> np.ndarray:
    """(S,) ``Σ_{t<k} γ^t r_t`` over each session's k requests, plus the env's ``return_bonus``
    (booked on the last request) when the user came back."""
    _check_gamma(gamma)
    t = log.request_in_session()
    returns = np.bincount(log.session, log.engagement * gamma ** t, log.num_sessions)
    return returns + log.config.return_bonus * log.returned * gamma ** (log.length - 1)


def discounted_lifetime_returns(log: LifetimeLog, gamma: float) -> np.ndarray:
    """(users,) ``Σ_t γ^t r_t`` over each user's whole lifetime (t counts requests across
    sessions): the quantity the flat and the long-term learners' Q-values estimate."""
    _check_gamma(gamma)
    first = np.flatnonzero(_episode_starts(log.user))
    t = np.arange(log.num_requests) - np.repeat(first, np.diff(np.append(first, log.num_requests)))
    return np.bincount(np.repeat(np.arange(first.size), np.diff(np.append(first, log.num_requests))),
                       log.engagement.astype(np.float64) * gamma ** t)


def session_level_dataset(log: LifetimeLog, gamma: float) -> OfflineDataset:
    """The long-term controller's semi-MDP transitions, one per session (see module doc);
    pair it with :class:`SemiMDPSampler` (``durations = log.length``)."""
    components = np.stack([np.bincount(log.session, log.components[:, i], log.num_sessions)
                           for i in range(NUM_TASKS)], axis=1)
    return OfflineDataset(
        observations=log.long_observation, actions=log.goal_action,
        rewards=discounted_session_returns(log, gamma).astype(np.float32),
        next_observations=log.next_long_observation, terminals=~log.continues,
        truncations=np.zeros(log.num_sessions, dtype=bool), episode_starts=_episode_starts(log.session_user),
        action_spec=ActionSpec("continuous", dim=GOAL_DIM), behaviour_log_probs=log.goal_log_prob,
        reward_components=components.astype(np.float32), component_names=list(TASKS),
        metadata={"level": LONG_TERM_AGENT, "gamma": float(gamma),
                  "discount": "semi-MDP: gamma ** session_length (SemiMDPSampler)"})


@dataclass(frozen=True)
class RelabelConfig:
    """Hindsight goal relabelling of the short-term data (module doc): ``fraction`` of the
    sessions that missed their logged goal by more than ``tolerance`` (the session's mean
    achieved statistics scored by ``-goal_reward``: for ceilings, going over them) get a
    relabelled copy; ``strategy`` ``"episode"`` (an achieved goal of a random request of the
    session) or ``"mean"`` (the session's mean achieved goal)."""

    fraction: float = 1.0
    strategy: str = "episode"
    tolerance: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"RelabelConfig.fraction must be in [0, 1], got {self.fraction!r}")
        if self.strategy not in RELABEL_STRATEGIES:
            raise ValueError(f"RelabelConfig.strategy must be one of {RELABEL_STRATEGIES}, got {self.strategy!r}")
        if not self.tolerance >= 0.0:
            raise ValueError(f"RelabelConfig.tolerance must be >= 0, got {self.tolerance!r}")


def relabelled_goals(log: LifetimeLog, relabel: RelabelConfig, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(sessions to copy, their new goals (n, 2)) under ``relabel`` (see :class:`RelabelConfig`)."""
    achieved = log.session_mean_achieved()
    logged = log.goal[log.first_row]
    # missed in the goal space's own terms: a ceiling is missed only when the session went over it
    missed = -goal_reward(achieved, logged, log.config.goal_space) > relabel.tolerance
    chosen = np.flatnonzero(missed & (rng.random(log.num_sessions) < relabel.fraction))
    if relabel.strategy == "mean":
        return chosen, achieved[chosen]
    pick = log.first_row[chosen] + np.floor(rng.random(chosen.size) * log.length[chosen]).astype(np.int64)
    return chosen, log.achieved_goal[pick].astype(np.float64)


def goal_conditioned_dataset(log: LifetimeLog, relabel: RelabelConfig | None = None,
                             rng: np.random.Generator | None = None) -> OfflineDataset:
    """The short-term controller's transitions: the logged sessions with their goals, plus
    (``relabel``) hindsight copies with achieved goals. Behaviour log-probabilities are kept
    only without copies (the behaviour's density under a goal it did not see is unknown)."""
    rows, goals, episode = np.arange(log.num_requests), log.goal.astype(np.float64), log.session
    copies = 0
    if relabel is not None and relabel.fraction > 0:
        if rng is None:
            raise ValueError("goal relabelling needs an rng (numpy.random.Generator)")
        chosen, new_goals = relabelled_goals(log, relabel, rng)
        copies, lengths = chosen.size, log.length[chosen]
        # each copy: the session's rows again, under its new goal, as a new episode
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        rows = np.concatenate([rows, np.repeat(log.first_row[chosen], lengths) + offsets])
        goals = np.concatenate([goals, np.repeat(new_goals, lengths, axis=0)])
        episode = np.concatenate([episode, np.repeat(log.num_sessions + np.arange(copies), lengths)])
    w = log.config.goal_reward_weight
    rewards = log.engagement[rows] + w * goal_reward(log.achieved_goal[rows], goals, log.config.goal_space)
    goal32 = goals.astype(np.float32)
    return OfflineDataset(
        observations=np.concatenate([log.observation[rows], goal32], axis=1),
        actions=log.action[rows], rewards=rewards.astype(np.float32),
        next_observations=np.concatenate([log.next_observation[rows], goal32], axis=1),
        terminals=log.session_end[rows], truncations=np.zeros(len(rows), dtype=bool),
        episode_starts=_episode_starts(episode), action_spec=ActionSpec("continuous", dim=NUM_TASKS),
        behaviour_log_probs=log.log_prob if copies == 0 else None,
        reward_components=log.components[rows], component_names=list(TASKS),
        metadata={"level": SHORT_TERM_AGENT, "goal_reward_weight": w, "relabelled_sessions": int(copies),
                  "relabel": None if relabel is None else vars(relabel).copy()})


def flat_dataset(log: LifetimeLog) -> OfflineDataset:
    """The flat baseline's transitions: plain observations, engagement, one episode per
    lifetime, bootstrapping across a session boundary when the user came back."""
    crosses = log.session_end & log.continues[log.session]  # the user's next row starts the next session
    next_obs = log.next_observation.copy()
    index = np.flatnonzero(crosses)
    next_obs[index] = log.observation[index + 1]
    return OfflineDataset(
        observations=log.observation, actions=log.action, rewards=log.engagement, next_observations=next_obs,
        terminals=log.session_end & ~log.continues[log.session], truncations=np.zeros(log.num_requests, bool),
        episode_starts=_episode_starts(log.user), action_spec=ActionSpec("continuous", dim=NUM_TASKS),
        reward_components=log.components, component_names=list(TASKS), metadata={"level": FLAT_AGENT})


class SemiMDPSampler(TensorSampler):
    """Uniform minibatches whose ``dones`` carry the semi-MDP discount: ``1 - γ^k`` for a
    transition lasting k requests (1 when terminal). Train with the algorithm's
    ``gamma = 1``: its target ``r + gamma·(1 - done)·Q'`` is then ``r + γ^k·Q'``."""

    def __init__(self, dataset: OfflineDataset, durations: np.ndarray, gamma: float,
                 device: str | torch.device = "cpu") -> None:
        super().__init__(dataset, device)
        durations = np.asarray(durations)
        _check_gamma(gamma)
        if durations.shape != (len(dataset),) or not np.issubdtype(durations.dtype, np.integer) \
                or durations.min() < 1:
            raise ValueError(f"durations must be ({len(dataset)},) integers >= 1, got {durations.dtype} "
                             f"{durations.shape}")
        continuation = np.where(dataset.terminals, 0.0, float(gamma) ** durations)
        self.dones = torch.as_tensor(1.0 - continuation, dtype=torch.float32, device=self.device)


def _check_gamma(gamma: float) -> None:
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma!r}")
