"""Collect an :class:`OfflineDataset` by running a behaviour policy on a batched simulator.

``marl_rec`` does not import ``envs``: the simulator is passed in and only needs the
batched-core interface of ``marl_rec.envs.simulator.UserSimulator`` (``reset(B, rng)``,
``step(action) -> result`` with ``observation/reward/terminated/truncated/info``,
``done``, ``reset_users(mask)``). A policy is ``policy(sim, obs)`` returning an object with
``action`` (B, k) and ``log_prob`` (B,) or None (``marl_rec.agents.policies.PolicyOutput``).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from marl_rec.contracts import ActionSpec
from marl_rec.data.dataset import OfflineDataset


def collect(sim: Any, policy: Callable[[Any, np.ndarray], Any], num_transitions: int,
            rng: np.random.Generator, batch_size: int = 1024,
            component_names: tuple[str, ...] = ("click", "like", "share", "watch"),
            metadata: dict[str, Any] | None = None) -> OfflineDataset:
    """Run ``policy`` on ``batch_size`` parallel users, replacing each user who finishes a
    session with a new one while fewer than ``num_transitions`` transitions are logged; once
    the target is reached no session starts, and every session already started runs to its
    end. Returns every session, each contiguous.

    Every started session is kept: whether a session starts depends only on what happened
    before it, never on its own outcome, so the logged sessions are a fair sample of the
    behaviour policy's sessions. (Stopping at the target and dropping the sessions still
    running would keep the short ones and drop the long ones -- the inspection paradox --
    and bias the logged mean length and return low.) The dataset therefore holds at least
    ``num_transitions`` transitions: more by the rest of the sessions running at the target
    (about ``batch_size`` half-sessions), or by the first ``batch_size`` whole sessions when
    they alone exceed it."""
    if num_transitions < 1:
        raise ValueError(f"num_transitions must be >= 1, got {num_transitions}")
    obs = sim.reset(batch_size, rng)
    slot_episode = np.arange(batch_size)
    next_episode = batch_size
    columns: dict[str, list[np.ndarray]] = {k: [] for k in (
        "episode", "obs", "action", "reward", "next_obs", "terminal", "truncation", "log_prob",
        "components")}
    logged = 0
    has_log_prob = True
    action_dim = None
    while not np.asarray(sim.done, dtype=bool).all():
        out = policy(sim, obs)
        action = np.asarray(getattr(out, "action", out), dtype=np.float32)
        action_dim = action.shape[1]
        log_prob = getattr(out, "log_prob", None)
        has_log_prob &= log_prob is not None
        result = sim.step(action)
        active = result.info["active"]
        logged += int(active.sum())
        columns["episode"].append(slot_episode[active])
        columns["obs"].append(obs[active])
        columns["action"].append(action[active])
        columns["reward"].append(result.reward[active].astype(np.float32))
        columns["next_obs"].append(result.observation[active])
        columns["terminal"].append(result.terminated[active])
        columns["truncation"].append(result.truncated[active])
        columns["log_prob"].append(np.zeros(int(active.sum()), np.float32) if log_prob is None
                                   else np.asarray(log_prob, np.float32)[active])
        columns["components"].append(result.info["components"][active].astype(np.float32))
        ended = result.terminated | result.truncated
        obs = result.observation
        if ended.any() and logged < num_transitions:  # else the slots stay done: no new session
            n_ended = int(ended.sum())
            slot_episode[ended] = np.arange(next_episode, next_episode + n_ended)
            next_episode += n_ended
            obs = sim.reset_users(ended)
    episode = np.concatenate(columns["episode"])
    order = np.argsort(episode, kind="stable")  # contiguous episodes, time order kept

    def gather(name: str) -> np.ndarray:
        return np.concatenate(columns[name])[order]

    episode_sorted = episode[order]
    starts = np.ones(len(episode_sorted), dtype=bool)
    starts[1:] = episode_sorted[1:] != episode_sorted[:-1]
    return OfflineDataset(
        observations=gather("obs"), actions=gather("action"), rewards=gather("reward"),
        next_observations=gather("next_obs"), terminals=gather("terminal"),
        truncations=gather("truncation"), episode_starts=starts,
        action_spec=ActionSpec("continuous", dim=action_dim),
        behaviour_log_probs=gather("log_prob") if has_log_prob else None,
        reward_components=gather("components"), component_names=list(component_names),
        metadata=dict(metadata or {}),
    )
