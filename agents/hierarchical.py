"""Hierarchical offline learners for :mod:`marl_rec.envs.hierarchical`: a long-term controller that sets
one goal per session and a goal-conditioned short-term controller, both trained offline from
one logged dataset of user lifetimes; and the flat baseline trained on the same data.

Data (:func:`collect_lifetimes` → :class:`LifetimeLog`)
    Whole lifetimes of a batch of users under a behaviour *pair*: a goal policy (e.g.
    :class:`UniformGoalPolicy`) and a short-term policy that sees the goal (e.g. a
    :class:`GoalFollowingPolicy` with truncated-Gaussian noise), with the environment's rules
    (the same :class:`marl_rec.envs.hierarchical.LifetimeTracker`, the same return draws as
    :func:`marl_rec.envs.hierarchical.run_lifetimes`). Both levels' exact behaviour log-probabilities
    are kept. Three :class:`OfflineDataset` views are built from one log:

    - :func:`session_level_dataset` (long term, one row per session): the long-term observation
      at the session start, the goal action, the *discounted session return*
      ``Σ_{t<k} γ^t r_t`` over its k requests, the next session's start observation, terminal
      when the lifetime ends. Semi-MDP: the bootstrap discount of a session is ``γ^k``, not a
      constant; :class:`SemiMDPSampler` puts ``γ^k`` into the batch (``dones = 1 - γ^k`` on
      non-terminal rows) and the algorithm runs with ``gamma = 1``, so its target
      ``r + 1·(1 - done)·Q'`` is exactly ``R_session + γ^k·Q(s', g')``. The high level thus
      optimises the same per-request-discounted lifetime engagement as the flat learner,
      with ~25× fewer bootstrap steps.
    - :func:`goal_conditioned_dataset` (short term, one row per request, one episode per
      session): observation = simulator observation + goal (the env's short-term
      observation), reward = engagement + ``goal_reward_weight · goal_reward(achieved, goal)``
      (the env's short-term reward), terminal at the end of every session (the goal's
      episode ends: the next session has another goal). **Goal relabelling** (hindsight,
      Andrychowicz et al. 2017, "episode" strategy adapted to session-constant goals): a
      logged goal is often unreachable (random goals cover [0, 1]², the candidates reach
      about 0.43–0.89 click level and 0.25–0.71 quality level), so sessions whose goal is
      farther than ``tolerance`` (mean absolute difference) from what they achieved are,
      with probability ``fraction``, *copied* with the goal replaced by an achieved one —
      the ``achieved_goal`` of a uniformly random request of that session (``"episode"``),
      or the session's mean achieved goal (``"mean"``) — and their rewards recomputed. The
      copies are added to the original sessions, never replace them.
    - :func:`flat_dataset` (the baseline, one row per request, one episode per lifetime):
      observation = the plain simulator observation, reward = engagement; the return
      crosses session boundaries (the last request of a session whose user comes back has
      the next session's first observation as its next observation), terminal only when
      the lifetime ends. It has no behaviour log-probabilities: the logging policy acted on
      a goal the flat state does not contain, so its density given the flat state is a
      mixture that was never computed.

    The lifetime cap (``max_sessions``) is *terminal* in all three views: the evaluation
    objective is the engagement of the capped lifetime and both observations carry the
    session count (long term: ``session_fraction``; simulator: ``session_index / 10``, exact
    up to 10 sessions), so nothing is earned after the cap.

Learners
    :func:`train_short_term`, :func:`train_long_term` and :func:`train_flat` build any
    continuous algorithm of :func:`marl_rec.algos.registry.make_algorithm` (BCQ or CQL for
    the issue) and train it with :class:`marl_rec.trainer.Trainer` under the agent names
    ``short_term`` / ``long_term`` / ``flat`` (TensorBoard ``train/<agent>/...``), with
    :class:`LifetimeEvaluator` hooks that log ``eval/retention`` (sessions per user),
    ``eval/lifetime_engagement`` and ``eval/session_length`` from whole simulated lifetimes.
    :class:`HierarchicalAgent` puts the two learned controllers together for
    :func:`marl_rec.envs.hierarchical.run_lifetimes`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from marl_rec.contracts import PolicyOutput
from marl_rec.agents.policies import action_grid, grid_slates
from marl_rec.envs.hierarchical import (GOAL_DIM, HierarchicalConfig, LifetimeBatch, LifetimeStats,
                                        goal_reward, run_lifetimes, slate_goal_statistics)
from marl_rec.envs.simulator import NUM_TASKS, TASKS, UserSimulator
from marl_rec.algos.base import OfflineAlgorithm
from marl_rec.contracts import ActionSpec
from marl_rec.algos.registry import make_algorithm
from marl_rec.data.dataset import OfflineDataset, TensorSampler
from marl_rec.trainer import Trainer, TrainerConfig

LONG_TERM_AGENT, SHORT_TERM_AGENT, FLAT_AGENT = "long_term", "short_term", "flat"
RELABEL_STRATEGIES = ("episode", "mean")


# ------------------------------------------------------------------ behaviour policies
class UniformGoalPolicy:
    """Goal actions uniform on [-1, 1]² (goals uniform on [0, 1]²); log-density -2·log 2."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def __call__(self, sim: UserSimulator, obs: np.ndarray) -> PolicyOutput:
        b = obs.shape[0]
        return PolicyOutput(self.rng.uniform(-1.0, 1.0, (b, GOAL_DIM)), np.full(b, -GOAL_DIM * np.log(2.0)))


class GoalFollowingPolicy:
    """Per request, the grid action maximising predicted engagement + ``weight`` · goal-following
    (the environment's short-term reward, on the multi-task model's predictions). Reads the
    goal from the last ``GOAL_DIM`` entries of the short-term observation; deterministic."""

    def __init__(self, weight: float = 5.0, values: Sequence[float] = (-1.0, 1.0)) -> None:
        if not np.isfinite(weight) or weight < 0:
            raise ValueError(f"GoalFollowingPolicy.weight must be finite and >= 0, got {weight!r}")
        self.weight = float(weight)
        self.grid = action_grid(tuple(float(v) for v in values))

    def __call__(self, sim: UserSimulator, obs: np.ndarray) -> PolicyOutput:
        slates = grid_slates(sim, self.grid)  # (B, G, K)
        score = sim.slate_expectations(slates, use_true=False)["reward"] + self.weight * goal_reward(
            slate_goal_statistics(sim, slates), obs[:, None, -GOAL_DIM:])
        return PolicyOutput(self.grid[np.argmax(score, axis=1)], None)


# ------------------------------------------------------------------ the logged lifetimes
@dataclass
class LifetimeLog:
    """Logged lifetimes at both levels. Request rows (R) and session rows (S) are ordered by
    user, then time, so a session's requests and a user's sessions are contiguous."""

    # request level
    user: np.ndarray  # (R,) int64
    session: np.ndarray  # (R,) int64: row of the request's session in the session arrays
    observation: np.ndarray  # (R, d) float32 simulator observation before the request
    next_observation: np.ndarray  # (R, d) float32 simulator observation after it (same session)
    goal: np.ndarray  # (R, 2) float32 the session's goal in [0, 1]^2
    action: np.ndarray  # (R, 4) float32 fusion action
    log_prob: np.ndarray | None  # (R,) float32 behaviour log-density of the action (given the goal)
    engagement: np.ndarray  # (R,) float32
    components: np.ndarray  # (R, 4) float32 click / like / share / watch
    achieved_goal: np.ndarray  # (R, 2) float32 the slate's (click level, quality level)
    session_end: np.ndarray  # (R,) bool: the last request of its session
    # session level
    session_user: np.ndarray  # (S,) int64
    first_row: np.ndarray  # (S,) int64: its first request row
    length: np.ndarray  # (S,) int64: requests in the session (k)
    long_observation: np.ndarray  # (S, d + 6) float32 long-term observation at the session start
    next_long_observation: np.ndarray  # (S, d + 6) float32 at the next session's start (or after the end)
    goal_action: np.ndarray  # (S, 2) float32 the goal action in [-1, 1]^2
    goal_log_prob: np.ndarray | None  # (S,) float32 behaviour log-density of the goal action
    returned: np.ndarray  # (S,) bool: the user came back after the session
    continues: np.ndarray  # (S,) bool: the lifetime continues (returned and below max_sessions)
    config: HierarchicalConfig = field(default_factory=HierarchicalConfig)

    @property
    def num_requests(self) -> int:
        return len(self.user)

    @property
    def num_sessions(self) -> int:
        return len(self.session_user)

    def session_mean_achieved(self) -> np.ndarray:
        """(S, 2) mean achieved goal of every session."""
        return np.stack([np.bincount(self.session, self.achieved_goal[:, i], self.num_sessions)
                         for i in range(GOAL_DIM)], axis=1) / self.length[:, None]

    def request_in_session(self) -> np.ndarray:
        """(R,) index of each request inside its session (0 for the first)."""
        return np.arange(self.num_requests) - self.first_row[self.session]


def _action_and_log_prob(output: Any, batch: int, width: int, who: str) -> tuple[np.ndarray, np.ndarray | None]:
    action = np.asarray(getattr(output, "action", output), dtype=np.float64)
    if action.shape != (batch, width):
        raise ValueError(f"{who} returned actions of shape {action.shape}, expected {(batch, width)}")
    log_prob = getattr(output, "log_prob", None)
    return np.clip(action, -1.0, 1.0), None if log_prob is None else np.asarray(log_prob, dtype=np.float64)


def collect_lifetimes(sim: UserSimulator, goal_policy: Callable[[UserSimulator, np.ndarray], Any],
                      short_term_policy: Callable[[UserSimulator, np.ndarray], Any], num_users: int,
                      rng: np.random.Generator, config: HierarchicalConfig | None = None) -> LifetimeLog:
    """Log the whole lifetimes of ``num_users`` users (one batch) under a behaviour pair.

    The rules are :func:`marl_rec.envs.hierarchical.run_lifetimes`'s: ``goal_policy`` gets the long-term
    observations when sessions start, ``short_term_policy`` the short-term ones (simulator
    observation + goal) on every request; both return (B, ·) actions or a ``PolicyOutput``
    whose ``log_prob`` is recorded (a level without log-probs gets ``None``)."""
    config = config or HierarchicalConfig()
    if not isinstance(num_users, (int, np.integer)) or num_users < 1:
        raise ValueError(f"num_users must be an int >= 1, got {num_users!r}")
    n = int(num_users)
    lives = LifetimeBatch(sim, config, n, rng)
    tracker = lives.tracker
    current = np.full(n, -1, dtype=np.int64)  # each user's current session (global id)
    requests: dict[str, list[np.ndarray]] = {k: [] for k in (
        "user", "session", "obs", "next_obs", "goal", "action", "log_prob", "engagement", "components",
        "achieved", "end")}
    sessions: dict[str, list[np.ndarray]] = {k: [] for k in ("user", "obs", "goal_action", "log_prob")}
    ends: dict[str, list[np.ndarray]] = {k: [] for k in ("session", "next_obs", "returned", "continues")}
    has_goal_log_prob = has_log_prob = True
    num_sessions = 0
    while lives.alive.any():
        if lives.starting.any():
            index = np.flatnonzero(lives.starting)
            long_obs = lives.long_term_observation()
            goal_action, goal_log_prob = _action_and_log_prob(goal_policy(sim, long_obs), n, GOAL_DIM,
                                                              "goal_policy")
            has_goal_log_prob &= goal_log_prob is not None
            lives.start_sessions(goal_action)
            current[index] = np.arange(num_sessions, num_sessions + index.size)
            num_sessions += index.size
            sessions["user"].append(index)
            sessions["obs"].append(long_obs[index])
            sessions["goal_action"].append(goal_action[index])
            sessions["log_prob"].append(np.zeros(index.size) if goal_log_prob is None else goal_log_prob[index])
        short_obs = lives.short_term_observation()
        action, log_prob = _action_and_log_prob(short_term_policy(sim, short_obs), n, NUM_TASKS,
                                                "short_term_policy")
        has_log_prob &= log_prob is not None
        step = lives.step(action)
        result, ended = step.result, step.ended
        rows = np.flatnonzero(step.active)
        for key, value in (("user", rows), ("session", current[rows]), ("obs", step.observation[rows]),
                           ("next_obs", result.observation[rows]), ("goal", tracker.goal[rows]),
                           ("action", action[rows]), ("engagement", result.reward[rows]),
                           ("log_prob", np.zeros(rows.size) if log_prob is None else log_prob[rows]),
                           ("components", result.info["components"][rows]), ("achieved", step.achieved[rows]),
                           ("end", ended[rows])):
            requests[key].append(value)
        if ended.any():
            index = np.flatnonzero(ended)
            # the long-term observation the next goal will be chosen from (for a finished
            # lifetime: the state after its last session, never bootstrapped from)
            ends["session"].append(current[index])
            ends["next_obs"].append(lives.long_term_observation()[index])
            ends["returned"].append(step.returned[index])
            ends["continues"].append(lives.starting[index])
    sim_obs = lives.sim_obs

    def column(store: dict[str, list[np.ndarray]], key: str, dtype: Any) -> np.ndarray:
        return np.concatenate(store[key]).astype(dtype, copy=False)

    # requests: order by user, then time (appended in time order: a stable sort keeps it)
    order = np.argsort(column(requests, "user", np.int64), kind="stable")
    req = {key: column(requests, key, dtype)[order] for key, dtype in (
        ("user", np.int64), ("session", np.int64), ("obs", np.float32), ("next_obs", np.float32),
        ("goal", np.float32), ("action", np.float32), ("log_prob", np.float32), ("engagement", np.float32),
        ("components", np.float32), ("achieved", np.float32), ("end", np.bool_))}
    # sessions: ids are in time order; order them by user, then time, and renumber
    session_user = column(sessions, "user", np.int64)
    session_order = np.argsort(session_user, kind="stable")
    renumber = np.empty(num_sessions, dtype=np.int64)
    renumber[session_order] = np.arange(num_sessions)
    end_ids = column(ends, "session", np.int64)
    next_long = np.empty((num_sessions, tracker.long_term_observation(sim_obs).shape[1]), np.float32)
    returned, continues = np.zeros(num_sessions, bool), np.zeros(num_sessions, bool)
    next_long[end_ids] = column(ends, "next_obs", np.float32)
    returned[end_ids] = column(ends, "returned", np.bool_)
    continues[end_ids] = column(ends, "continues", np.bool_)
    session = renumber[req["session"]]
    length = np.bincount(session, minlength=num_sessions).astype(np.int64)
    first_row = np.cumsum(length) - length
    # the next session's start observation for sessions whose lifetime continues
    next_long = next_long[session_order]
    session_log = {key: column(sessions, key, np.float32)[session_order]
                   for key in ("obs", "goal_action", "log_prob")}
    return LifetimeLog(
        user=req["user"], session=session, observation=req["obs"], next_observation=req["next_obs"],
        goal=req["goal"], action=req["action"], log_prob=req["log_prob"] if has_log_prob else None,
        engagement=req["engagement"], components=req["components"], achieved_goal=req["achieved"],
        session_end=req["end"], session_user=session_user[session_order], first_row=first_row, length=length,
        long_observation=session_log["obs"], next_long_observation=next_long,
        goal_action=session_log["goal_action"],
        goal_log_prob=session_log["log_prob"] if has_goal_log_prob else None,
        returned=returned[session_order], continues=continues[session_order], config=config)


# ------------------------------------------------------------------ the three datasets
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
    sessions whose logged goal misses the achieved one by more than ``tolerance`` get a
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
    missed = np.abs(achieved - logged).mean(1) > relabel.tolerance
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
    rewards = log.engagement[rows] + w * goal_reward(log.achieved_goal[rows], goals)
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


# ------------------------------------------------------------------ learners
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


class HierarchicalAgent:
    """The learned pair as :func:`run_lifetimes` policies: ``goal_policy`` (long-term
    observation → goal action) and ``short_term_policy`` (observation + goal → fusion action),
    both greedy."""

    def __init__(self, long_term: OfflineAlgorithm, short_term: OfflineAlgorithm) -> None:
        self.long_term, self.short_term = long_term, short_term

    def goal_policy(self, sim: UserSimulator, obs: np.ndarray) -> np.ndarray:
        return self.long_term.act(obs, deterministic=True)

    def short_term_policy(self, sim: UserSimulator, obs: np.ndarray) -> np.ndarray:
        return self.short_term.act(obs, deterministic=True)


def greedy(algorithm: OfflineAlgorithm) -> Callable[[UserSimulator, np.ndarray], np.ndarray]:
    """``algorithm``'s greedy policy as a ``policy(sim, obs)`` callable."""
    return lambda sim, obs: algorithm.act(obs, deterministic=True)


PolicyPair = tuple[Callable | None, Callable]


class LifetimeEvaluator:
    """A :class:`marl_rec.trainer.Trainer` hook: whole lifetimes of the same ``num_users``
    users (``numpy.random.default_rng(seed)`` at every call) under ``policies(algorithm)`` →
    ``(goal_policy or None, short_term_policy)``. Returns ``retention`` (sessions per user),
    ``lifetime_engagement``, ``session_length`` and, with a goal policy, ``goal_error``."""

    def __init__(self, sim: UserSimulator, config: HierarchicalConfig, num_users: int, seed: int,
                 policies: Callable[[OfflineAlgorithm], PolicyPair]) -> None:
        if num_users < 1:
            raise ValueError(f"LifetimeEvaluator.num_users must be >= 1, got {num_users}")
        self.sim, self.config, self.num_users, self.seed, self.policies = sim, config, num_users, seed, policies

    def __call__(self, algorithm: OfflineAlgorithm, step: int) -> dict[str, float]:
        goal_policy, short_term_policy = self.policies(algorithm)
        stats = run_lifetimes(short_term_policy, self.num_users, np.random.default_rng(self.seed), goal_policy,
                              self.config, sim=self.sim)
        return lifetime_metrics(stats)


def lifetime_metrics(stats: LifetimeStats) -> dict[str, float]:
    """The experiment's three figures (plus goal error when a goal policy ran)."""
    summary = stats.summary()
    out = {"retention": summary["sessions_per_user"], "lifetime_engagement": summary["lifetime_engagement"],
           "session_length": summary["mean_session_length"]}
    if np.isfinite(summary["goal_error"]):
        out["goal_error"] = summary["goal_error"]
    return out


__all__ = ["UniformGoalPolicy", "GoalFollowingPolicy", "LifetimeLog", "collect_lifetimes",
           "discounted_session_returns", "discounted_lifetime_returns", "session_level_dataset", "RelabelConfig", "relabelled_goals",
           "goal_conditioned_dataset", "flat_dataset", "SemiMDPSampler", "LevelConfig", "make_learner",
           "train_short_term", "train_long_term", "train_flat", "HierarchicalAgent", "greedy",
           "LifetimeEvaluator", "lifetime_metrics", "LONG_TERM_AGENT", "SHORT_TERM_AGENT", "FLAT_AGENT"]
