"""Logging whole user lifetimes under a behaviour pair (:func:`collect_lifetimes` → :class:`LifetimeLog`),
on the batched lifetime rules of :class:`marl_rec.envs.hierarchical.LifetimeBatch`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from marl_rec.envs.hierarchical import (GOAL_DIM, HierarchicalConfig, LifetimeBatch)
from marl_rec.envs.simulator import NUM_TASKS, UserSimulator


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
