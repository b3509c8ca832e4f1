"""``HierarchicalInterestEnv``: long-term and short-term controllers over one user's lifetime.

One episode is the *lifetime* of one simulated user: a sequence of sessions of
:class:`marl_rec.envs.simulator.UserSimulator`. Two agents act at two time scales (PettingZoo AEC):

``"long_term"`` — acts **once per session**, at its start (the semi-MDP level)
    Observation ``Box(0, 1, (obs_dim + 6,), float32)``: the simulator observation at the
    session start, then ``LIFETIME_FEATURES`` (sessions so far / ``max_sessions``, the last
    session's length / ``max_requests``, its engagement per request / the maximum possible
    per request, its mean achieved goal statistics (2, see :func:`slate_goal_statistics`),
    whether it ended because the user left).
    Action ``Box(-1, 1, (2,), float32)``: the session's *goal* ``g = (a + 1) / 2`` in
    [0, 1]² (:func:`goal_from_action`), whose two entries depend on
    ``HierarchicalConfig.goal_space`` (``GOAL_SPACES``; names from :func:`goal_names`):

    - ``"ceilings"`` (default): *limits the short-term controller must respect* —
      ``click_ceiling``, the most mean p̂(click) its slates may have, and
      ``negative_ceiling``, the most mean p̂(negative) (negative feedback, the prediction
      that reveals an item's utility for this user), divided by ``NEGATIVE_LEVEL_SCALE`` so
      that the levels served slates reach (a few hundredths up to about 0.1) span more of [0, 1]. Going
      over a ceiling costs, staying under it does not (``goal_reward``); g = (1, 1) leaves
      the short-term controller free to maximise engagement.
    - ``"click_quality"`` (the goals before issue #17): *targets* to hit —
      ``click_level`` (mean p̂(click)) and ``quality_level`` (mean p̂(like | click)); any
      distance costs.

    Why ceilings on negative feedback: on the new world a user comes back with a
    probability set by satisfaction at the end of their sessions, and satisfaction rises
    with the utility of what they consume — which p̂(negative) reveals and p̂(like | click)
    does not. A per-request engagement maximiser burns satisfaction (5.14 sessions per user
    vs 7.97 for the best constant); with a negative-feedback ceiling the same ranker keeps
    the user coming back and earns more over the lifetime than the best constant
    (``bench/hierarchical_levers.py``; ``bench/results/README.md``, hierarchical section). Targets on (click, quality) can
    only be hit by giving up engagement, and a target reached from above or below costs
    the same.
    Reward: the session's engagement, plus ``return_bonus`` when the user comes back. It
    is booked through ``_cumulative_rewards``: ``last()`` for ``"long_term"`` is exactly
    its return since it last acted (the whole session, bonus included).

``"short_term"`` — acts on **every request** with fusion weights
    Observation ``Box(0, 1, (obs_dim + 2,), float32)``: the simulator observation followed
    by the current goal. Action ``Box(-1, 1, (4,), float32)``: fusion actions as in
    :class:`marl_rec.envs.fusion_env.FusionRankingEnv`.
    Reward: the request's engagement plus ``goal_reward_weight · goal_reward(achieved, g)``
    with ``goal_reward`` ∈ [-1, 0] (``-mean_i max(0, achieved_i - g_i)`` for ceilings,
    ``-mean|achieved - g|`` for targets); ``achieved`` (the slate's statistics,
    :func:`slate_goal_statistics`) is known when the slate is ranked, so the short-term
    controller can follow the goal precisely, and a learner can relabel goals with
    ``info["achieved_goal"]``.

``info``: ``short_term`` after every request — ``engagement``, ``goal_reward``, ``goal``,
``achieved_goal``, ``components``, ``session_index``, ``session_end``, ``user_left`` and the
latent ``true_utility`` / ``satisfaction`` (evaluation only); ``long_term`` when a session
ends (what its next ``last()`` shows) — ``session_engagement``, ``session_length``,
``session_achieved_goal``, ``session_index``, ``user_left``, ``return_probability``,
``returned``.

Turn order: ``long_term`` → ``short_term`` × (requests of the session) → ``long_term`` → …
When a session ends (the user leaves, or ``max_requests`` requests), the user comes back
with the simulator's ``return_probability`` (its retention model: a sigmoid of the
lifetime satisfaction) and :meth:`UserSimulator.start_new_sessions` begins the next
session; otherwise the user churns and both agents are *terminated*. After
``max_sessions`` sessions a returning user ends the episode by *truncation*.

``state()`` / ``state_space``: the global state for centralised critics,
``Box(0, 1, (obs_dim + 6 + 2,), float32)`` — the simulator observation, ``LIFETIME_FEATURES``
and the current goal (the union of both observations). ``render()``: :mod:`marl_rec.envs.render`.

:func:`run_lifetimes` runs whole lifetimes for a batch of users under a (goal policy,
short-term policy) pair — the simulator's ground truth for retention (sessions per user),
lifetime engagement and session length.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable

import gymnasium
import numpy as np
from pettingzoo import AECEnv
from pettingzoo.utils.wrappers import OrderEnforcingWrapper

from marl_rec.envs.fusion_env import make_spaces, validate_action
from marl_rec.envs.render import RENDER_FPS, RENDER_MODES, RequestRecorder
from marl_rec.envs.simulator import NUM_TASKS, SimulatorConfig, StepResult, UserSimulator

LONG_TERM = "long_term"
SHORT_TERM = "short_term"
# goal space -> (names of the two goal entries, True if they are ceilings (one-sided) rather
# than targets); the statistics behind them: slate_goal_statistics
GOAL_SPACES: dict[str, tuple[tuple[str, str], bool]] = {
    "ceilings": (("click_ceiling", "negative_ceiling"), True),
    "click_quality": (("click_level", "quality_level"), False),
}
DEFAULT_GOAL_SPACE = "ceilings"
GOAL_NAMES: tuple[str, ...] = GOAL_SPACES[DEFAULT_GOAL_SPACE][0]
GOAL_DIM = len(GOAL_NAMES)
# mean p̂(negative) / this = the negative level of a slate: the levels served slates reach (a few
# hundredths up to about 0.1 on the reference world) then cover more of the goal range [0, 1]
NEGATIVE_LEVEL_SCALE = 0.25
LIFETIME_FEATURES: tuple[str, ...] = (
    "session_fraction", "last_session_length", "last_session_engagement",
    "last_achieved_goal_0", "last_achieved_goal_1", "last_session_user_left")  # goal entries in goal_names order


@dataclass(frozen=True)
class HierarchicalConfig:
    """Lifetime and reward settings of the hierarchical environment.

    ``return_bonus`` defaults to 0 so that the long-term rewards of a lifetime sum to its
    engagement (the evaluation objective); churn already ends the episode, so retention
    enters the long-term return through the sessions it adds. A positive bonus rewards a
    return explicitly (shaping).
    """

    max_sessions: int = 20
    return_bonus: float = 0.0
    goal_reward_weight: float = 5.0
    goal_space: str = DEFAULT_GOAL_SPACE  # a key of GOAL_SPACES: what the long-term goal means

    def __post_init__(self) -> None:
        if self.goal_space not in GOAL_SPACES:
            raise ValueError(f"HierarchicalConfig.goal_space must be one of {sorted(GOAL_SPACES)}, "
                             f"got {self.goal_space!r}")
        if not isinstance(self.max_sessions, (int, np.integer)) or self.max_sessions < 1:
            raise ValueError(f"HierarchicalConfig.max_sessions must be an int >= 1, got {self.max_sessions!r}")
        for name in ("return_bonus", "goal_reward_weight"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"HierarchicalConfig.{name} must be finite and >= 0, got {value!r}")


def split_overrides(overrides: dict[str, Any], *classes: type) -> list[dict[str, Any]]:
    """Route keyword overrides to the dataclass that has a field of that name (first wins);
    an unknown key raises a ValueError naming it and the accepted keys."""
    names = [{f.name for f in fields(cls)} for cls in classes]
    routed: list[dict[str, Any]] = [{} for _ in classes]
    for key, value in overrides.items():
        for index, accepted in enumerate(names):
            if key in accepted:
                routed[index][key] = value
                break
        else:
            known = sorted(set().union(*names))
            raise ValueError(f"unknown option {key!r}; accepted options: {known}")
    return routed


def goal_from_action(action: np.ndarray) -> np.ndarray:
    """Map long-term actions in [-1, 1]^2 (clipped) to goals in [0, 1]^2: ``g = (a + 1) / 2``."""
    return (np.clip(action, -1.0, 1.0) + 1.0) * 0.5


def goal_names(goal_space: str = DEFAULT_GOAL_SPACE) -> tuple[str, ...]:
    """The names of the two goal entries of ``goal_space`` (a key of ``GOAL_SPACES``)."""
    if goal_space not in GOAL_SPACES:
        raise ValueError(f"unknown goal_space {goal_space!r}; choose from {sorted(GOAL_SPACES)}")
    return GOAL_SPACES[goal_space][0]


def slate_goal_statistics(sim: UserSimulator, slate: np.ndarray, goal_space: str = DEFAULT_GOAL_SPACE) -> np.ndarray:
    """(B, ..., 2) achieved goal of (B, ..., K) slates of candidate positions, in the order of
    :func:`goal_names`: ``"ceilings"`` — the slate's mean p̂(click) and its mean p̂(negative) /
    ``NEGATIVE_LEVEL_SCALE`` (clipped to 1); ``"click_quality"`` — its mean p̂(click) and mean
    p̂(like | click). Predictions only: what the ranking system knows."""
    goal_names(goal_space)  # validates it
    rows = np.arange(sim.batch_size).reshape((-1,) + (1,) * (slate.ndim - 1))
    pred = sim.cand_pred[rows, slate]  # (B, ..., K, 5)
    if goal_space == "click_quality":
        return pred[..., :2].mean(-2).astype(np.float64)
    click = pred[..., 0].mean(-1).astype(np.float64)
    negative = np.minimum(pred[..., 4].mean(-1).astype(np.float64) / NEGATIVE_LEVEL_SCALE, 1.0)
    return np.stack([click, negative], axis=-1)


def goal_reward(achieved: np.ndarray, goal: np.ndarray, goal_space: str = DEFAULT_GOAL_SPACE) -> np.ndarray:
    """Goal-following reward ∈ [-1, 0] (last axis = goal): for ceilings
    ``-mean_i max(0, achieved_i - goal_i)`` (only going over a limit costs), for targets
    ``-mean_i |achieved_i - goal_i|``."""
    excess = np.asarray(achieved, dtype=np.float64) - np.asarray(goal, dtype=np.float64)
    goal_names(goal_space)  # validates it
    ceilings = GOAL_SPACES[goal_space][1]
    return -(np.maximum(excess, 0.0) if ceilings else np.abs(excess)).mean(-1)


class LifetimeTracker:
    """Batched bookkeeping of B users' lifetimes: current goal, per-session statistics and the
    long-term / short-term observations. Shared by the environment (B = 1) and
    :func:`run_lifetimes`, so both build observations and rewards the same way."""

    def __init__(self, sim_config: SimulatorConfig, config: HierarchicalConfig, batch_size: int) -> None:
        self.sim_config, self.config, self.batch_size = sim_config, config, batch_size
        c = sim_config
        weights = np.asarray(c.reward_weights, dtype=np.float64)
        # the most engagement one request can earn: every slot clicked, liked, shared, fully watched
        self._max_request_reward = c.slate_size * float(weights[:3].sum() + weights[3] * c.max_duration)
        b = batch_size
        self.goal = np.zeros((b, GOAL_DIM))
        self.sessions = np.zeros(b, dtype=np.int64)  # sessions started
        self.session_length = np.zeros(b, dtype=np.int64)
        self.session_engagement = np.zeros(b)
        self.session_achieved = np.zeros((b, GOAL_DIM))  # sum over the session's requests
        self.last_features = np.zeros((b, len(LIFETIME_FEATURES) - 1))  # all but session_fraction

    def start_sessions(self, mask: np.ndarray, goal_action: np.ndarray) -> None:
        """Set the goals of the users in ``mask`` (who start a session) from (B, 2) actions."""
        self.goal[mask] = goal_from_action(goal_action)[mask]
        self.sessions[mask] += 1
        self.session_length[mask] = 0
        self.session_engagement[mask] = 0.0
        self.session_achieved[mask] = 0.0

    def record_requests(self, active: np.ndarray, engagement: np.ndarray, achieved: np.ndarray) -> None:
        self.session_length += active
        self.session_engagement += engagement * active
        self.session_achieved += achieved * active[:, None]

    def end_sessions(self, ended: np.ndarray, user_left: np.ndarray) -> None:
        """Move the statistics of the sessions that ended into the ``last_session_*`` features."""
        length = np.maximum(self.session_length, 1)
        features = np.column_stack([
            self.session_length / self.sim_config.max_requests,
            self.session_engagement / length / self._max_request_reward,
            self.session_achieved / length[:, None],
            user_left.astype(np.float64),
        ])
        self.last_features[ended] = features[ended]

    def session_mean_achieved(self) -> np.ndarray:
        return self.session_achieved / np.maximum(self.session_length, 1)[:, None]

    def long_term_observation(self, sim_obs: np.ndarray) -> np.ndarray:
        """(B, obs_dim + 6) float32: the simulator observation and ``LIFETIME_FEATURES``."""
        fraction = (self.sessions / self.config.max_sessions)[:, None]
        extra = np.clip(np.concatenate([fraction, self.last_features], axis=1), 0.0, 1.0)
        return np.concatenate([sim_obs, extra], axis=1).astype(np.float32)

    def short_term_observation(self, sim_obs: np.ndarray) -> np.ndarray:
        """(B, obs_dim + 2) float32: the simulator observation and the current goal."""
        return np.concatenate([sim_obs, self.goal], axis=1).astype(np.float32)


class HierarchicalInterestEnv(AECEnv):
    """PettingZoo AEC env over one user's lifetime; agents ``"long_term"`` and ``"short_term"``."""

    metadata = {"name": "hierarchical_interest_v0", "render_modes": RENDER_MODES, "render_fps": RENDER_FPS,
                "is_parallelizable": False}

    def __init__(self, config: HierarchicalConfig | None = None, simulator: SimulatorConfig | None = None,
                 render_mode: str | None = None, **overrides: Any) -> None:
        super().__init__()
        env_kwargs, sim_kwargs = split_overrides(overrides, HierarchicalConfig, SimulatorConfig)
        if env_kwargs and config is not None:
            raise ValueError(f"pass either a HierarchicalConfig or its options {sorted(env_kwargs)}, not both")
        if sim_kwargs and simulator is not None:
            raise ValueError(f"pass either a SimulatorConfig or its options {sorted(sim_kwargs)}, not both")
        self.config = config or HierarchicalConfig(**env_kwargs)
        self.sim_config = simulator or SimulatorConfig(**sim_kwargs)
        self.sim = UserSimulator(self.sim_config)
        self._recorder = RequestRecorder(self.sim, self.metadata["name"], render_mode)
        self.render_mode = render_mode
        self.possible_agents = [LONG_TERM, SHORT_TERM]
        self.agents = []
        _, fusion_space = make_spaces(self.sim_config)
        d = self.sim_config.obs_dim
        self.observation_spaces = {
            LONG_TERM: gymnasium.spaces.Box(0.0, 1.0, (d + len(LIFETIME_FEATURES),), np.float32),
            SHORT_TERM: gymnasium.spaces.Box(0.0, 1.0, (d + GOAL_DIM,), np.float32),
        }
        self.action_spaces = {
            LONG_TERM: gymnasium.spaces.Box(-1.0, 1.0, (GOAL_DIM,), np.float32),
            SHORT_TERM: fusion_space,
        }
        # global state for centralised critics: the union of both observations without
        # repeating the shared simulator part (see state())
        self.state_space = gymnasium.spaces.Box(0.0, 1.0, (d + len(LIFETIME_FEATURES) + GOAL_DIM,), np.float32)
        self._rng: np.random.Generator | None = None
        self._sim_obs: np.ndarray | None = None
        self.tracker = LifetimeTracker(self.sim_config, self.config, 1)

    def observation_space(self, agent: str) -> gymnasium.spaces.Box:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> gymnasium.spaces.Box:
        return self.action_spaces[agent]

    def observe(self, agent: str) -> np.ndarray:
        if agent == LONG_TERM:
            return self.tracker.long_term_observation(self._sim_obs)[0]
        if agent == SHORT_TERM:
            return self.tracker.short_term_observation(self._sim_obs)[0]
        raise ValueError(f"unknown agent {agent!r}; agents are {self.possible_agents}")

    def state(self) -> np.ndarray:
        """Global state (float32, in ``state_space``): the simulator observation, the
        ``LIFETIME_FEATURES`` and the current goal (zeros before the first goal is set)."""
        if self._sim_obs is None:
            raise ValueError("state() called before reset(); call reset() first")
        long_term = self.tracker.long_term_observation(self._sim_obs)[0]
        return np.concatenate([long_term, self.tracker.goal[0]]).astype(np.float32)

    def reset(self, seed: int | None = None, options: dict | None = None) -> None:
        if seed is not None or self._rng is None:
            self._rng = np.random.default_rng(seed)
        self._sim_obs = self.sim.reset(1, self._rng)
        self.tracker = LifetimeTracker(self.sim_config, self.config, 1)
        self.agents = self.possible_agents[:]
        self.rewards = {agent: 0.0 for agent in self.agents}
        self._cumulative_rewards = {agent: 0.0 for agent in self.agents}
        self.terminations = {agent: False for agent in self.agents}
        self.truncations = {agent: False for agent in self.agents}
        self.infos = {agent: {} for agent in self.agents}
        self.agent_selection = LONG_TERM
        self._recorder.reset()

    def step(self, action: Any) -> None:
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        self._cumulative_rewards[agent] = 0.0  # last() shows the return since the agent acted
        self._clear_rewards()
        if agent == LONG_TERM:
            goal_action = validate_action(action, self.action_spaces[LONG_TERM], LONG_TERM)
            self.tracker.start_sessions(np.ones(1, dtype=bool), goal_action)
            self.agent_selection = SHORT_TERM
            if self._recorder.active:
                goal = ", ".join(f"{n} {g:.2f}" for n, g in zip(goal_names(self.config.goal_space),
                                                                self.tracker.goal[0]))
                self._recorder.lines["goal"] = f"{goal} (set by {LONG_TERM} for session {self.tracker.sessions[0]})"
        else:
            self._step_short_term(validate_action(action, self.action_spaces[SHORT_TERM], SHORT_TERM))
        self._accumulate_rewards()

    def _step_short_term(self, action: np.ndarray) -> None:
        sim, tracker, cfg = self.sim, self.tracker, self.config
        achieved = slate_goal_statistics(sim, sim.rank(action), cfg.goal_space)  # the slate step() will serve
        self._recorder.before_step(action)
        result = sim.step(action)
        self._sim_obs = result.observation
        engagement = float(result.reward[0])
        following = float(goal_reward(achieved, tracker.goal, cfg.goal_space)[0])
        tracker.record_requests(np.ones(1, dtype=bool), result.reward, achieved)
        left, capped = bool(result.terminated[0]), bool(result.truncated[0])
        self.rewards[SHORT_TERM] = engagement + cfg.goal_reward_weight * following
        self.rewards[LONG_TERM] = engagement
        if self._recorder.active:
            self._recorder.lines["achieved goal"] = ", ".join(
                f"{n} {g:.2f}" for n, g in zip(goal_names(cfg.goal_space), achieved[0]))
            self._recorder.after_step(result, {SHORT_TERM: self.rewards[SHORT_TERM], LONG_TERM: engagement})
        self.infos[SHORT_TERM] = {
            "engagement": engagement,
            "goal_reward": following,
            "goal": tracker.goal[0].copy(),
            "achieved_goal": achieved[0].copy(),
            "components": result.info["components"][0].copy(),
            "true_utility": float(result.info["true_utility"][0]),
            "satisfaction": float(result.info["satisfaction"][0]),
            "session_index": int(tracker.sessions[0]) - 1,
            "session_end": left or capped,
            "user_left": left,
        }
        if not (left or capped):
            return
        return_probability = float(result.info["return_probability"][0])
        returned = bool(self._rng.random() < return_probability)
        self.infos[LONG_TERM] = {
            "session_engagement": float(tracker.session_engagement[0]),
            "session_length": int(tracker.session_length[0]),
            "session_achieved_goal": tracker.session_mean_achieved()[0].copy(),
            "session_index": int(tracker.sessions[0]) - 1,
            "user_left": left,
            "return_probability": return_probability,
            "returned": returned,
        }
        tracker.end_sessions(np.ones(1, dtype=bool), np.array([left]))
        if returned:
            self.rewards[LONG_TERM] += cfg.return_bonus
        if not returned:
            self.terminations = {agent: True for agent in self.agents}
        elif tracker.sessions[0] >= cfg.max_sessions:
            self.truncations = {agent: True for agent in self.agents}
        else:
            self._sim_obs = sim.start_new_sessions(np.ones(1, dtype=bool))
        # the next session's goal, or (episode over) long_term's final session return first
        self.agent_selection = LONG_TERM

    def render(self) -> str | np.ndarray | None:
        """The last served request in ``render_mode`` (:mod:`marl_rec.envs.render`)."""
        return self._recorder.render()

    def close(self) -> None:
        return None


def raw_env(**kwargs: Any) -> HierarchicalInterestEnv:
    """The unwrapped environment."""
    return HierarchicalInterestEnv(**kwargs)


def env(**kwargs: Any) -> AECEnv:
    """The environment inside PettingZoo's ``OrderEnforcingWrapper`` (the registered form)."""
    return OrderEnforcingWrapper(raw_env(**kwargs))


# ------------------------------------------------------------------ lifetimes
@dataclass
class LifetimeStats:
    """Per-user results of whole lifetimes (ground truth from the simulator)."""

    sessions: np.ndarray  # (N,) sessions per user (retention)
    engagement: np.ndarray  # (N,) lifetime engagement
    requests: np.ndarray  # (N,) requests served over the lifetime
    true_utility: np.ndarray  # (N,) summed true utility of consumed items
    goal_error: np.ndarray  # (N,) mean -goal_reward per request (NaN without a goal policy)
    churned: np.ndarray  # (N,) bool: the user stopped coming back (vs reached max_sessions)

    def summary(self) -> dict[str, float]:
        n = self.sessions.size

        def se(x: np.ndarray) -> float:
            return float(x.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0

        return {
            "sessions_per_user": float(self.sessions.mean()), "sessions_se": se(self.sessions),
            "lifetime_engagement": float(self.engagement.mean()), "engagement_se": se(self.engagement),
            "mean_session_length": float(self.requests.sum() / self.sessions.sum()),
            "true_utility": float(self.true_utility.mean()),
            "goal_error": float(np.mean(self.goal_error)),
            "churn_rate": float(self.churned.mean()),
        }


@dataclass
class LifetimeStep:
    """What one request of :meth:`LifetimeBatch.step` did, per user (B,) unless noted."""

    result: StepResult  # the simulator's step
    observation: np.ndarray  # (B, obs_dim) the simulator observation the action was chosen on
    achieved: np.ndarray  # (B, GOAL_DIM) the goal statistics of the served slate
    active: np.ndarray  # bool: the user was served this request (alive, in a session)
    ended: np.ndarray  # bool: the user's session ended with it
    returned: np.ndarray  # bool: ... and the user comes back for another session


class LifetimeBatch:
    """The lifetime rules, once, for B users stepped at once: sessions of goal-directed requests,
    the return draw between them (``return_probability``), and the end of a lifetime (the user
    does not return, or ``max_sessions``). :func:`run_lifetimes` (evaluation) and
    ``marl_rec.agents.hierarchical.collect_lifetimes`` (logging) drive it; callers choose goals
    for the users in ``starting`` (:meth:`start_sessions`) and fusion actions for all
    (:meth:`step`). All randomness of the rules comes from ``rng``."""

    def __init__(self, sim: UserSimulator, config: HierarchicalConfig, num_users: int,
                 rng: np.random.Generator) -> None:
        self.sim, self.config, self.rng, self.num_users = sim, config, rng, num_users
        self.sim_obs = sim.reset(num_users, rng)
        self.tracker = LifetimeTracker(sim.config, config, num_users)
        self.alive = np.ones(num_users, dtype=bool)
        self.starting = np.ones(num_users, dtype=bool)  # users whose session starts now: they need a goal

    def long_term_observation(self) -> np.ndarray:
        return self.tracker.long_term_observation(self.sim_obs)

    def short_term_observation(self) -> np.ndarray:
        return self.tracker.short_term_observation(self.sim_obs)

    def start_sessions(self, goal_action: np.ndarray) -> None:
        """Set the goals of the users in ``starting`` from (B, GOAL_DIM) goal actions."""
        self.tracker.start_sessions(self.starting, goal_action)

    def step(self, action: np.ndarray) -> LifetimeStep:
        """Serve one request to every user with (B, action_dim) fusion actions in [-1, 1]."""
        sim, tracker, n = self.sim, self.tracker, self.num_users
        observation = self.sim_obs
        achieved = slate_goal_statistics(sim, sim.rank(action), self.config.goal_space)
        result = sim.step(action)
        active = result.info["active"] & self.alive
        tracker.record_requests(active, result.reward, achieved)
        ended = (result.terminated | result.truncated) & self.alive
        self.sim_obs = result.observation
        self.starting = np.zeros(n, dtype=bool)
        returned = np.zeros(n, dtype=bool)
        if ended.any():
            tracker.end_sessions(ended, result.terminated)
            returned = ended & (self.rng.random(n) < result.info["return_probability"])
            self.alive &= ~(ended & ~returned) & ~(ended & (tracker.sessions >= self.config.max_sessions))
            self.starting = ended & self.alive
            if self.starting.any():
                self.sim_obs = sim.start_new_sessions(self.starting)
        return LifetimeStep(result, observation, achieved, active, ended, returned)


def _action_of(output: object) -> np.ndarray:
    return np.asarray(getattr(output, "action", output), dtype=np.float64)


def run_lifetimes(short_term_policy: Callable[[UserSimulator, np.ndarray], object], num_users: int,
                  rng: np.random.Generator, goal_policy: Callable[[UserSimulator, np.ndarray], object] | None = None,
                  config: HierarchicalConfig | None = None, sim_config: SimulatorConfig | None = None,
                  sim: UserSimulator | None = None) -> LifetimeStats:
    """Simulate the lifetimes of ``num_users`` users as one batch, with the environment's rules.

    Policies are called as ``policy(sim, obs)`` and return (B, ·) actions or an object with an
    ``action`` attribute (``marl_rec.agents.policies.PolicyOutput``); both are called on the whole batch.
    With a ``goal_policy`` it gets the long-term observations (whose actions are used at session
    starts) and ``short_term_policy`` gets the short-term ones (observation + goal). Without
    one, ``short_term_policy`` is a flat policy and gets the plain simulator observation.
    """
    config = config or HierarchicalConfig()
    sim = sim or UserSimulator(sim_config)
    n = num_users
    lives = LifetimeBatch(sim, config, n, rng)
    engagement, utility, goal_error = np.zeros(n), np.zeros(n), np.zeros(n)
    requests = np.zeros(n, dtype=np.int64)
    churned = np.zeros(n, dtype=bool)
    while lives.alive.any():
        if lives.starting.any():
            goal_action = (_action_of(goal_policy(sim, lives.long_term_observation()))
                           if goal_policy is not None else np.zeros((n, GOAL_DIM)))
            lives.start_sessions(goal_action)
        obs = lives.short_term_observation() if goal_policy is not None else lives.sim_obs
        action = np.clip(_action_of(short_term_policy(sim, obs)), -1.0, 1.0)
        if action.shape != (n, NUM_TASKS):
            raise ValueError(f"short_term_policy returned actions of shape {action.shape}, expected {(n, NUM_TASKS)}")
        step = lives.step(action)
        result, active = step.result, step.active
        engagement += result.reward * active
        utility += result.info["true_utility"] * active
        goal_error -= goal_reward(step.achieved, lives.tracker.goal, config.goal_space) * active
        requests += active
        churned |= step.ended & ~step.returned
    error = goal_error / np.maximum(requests, 1) if goal_policy is not None else np.full(n, np.nan)
    return LifetimeStats(lives.tracker.sessions.copy(), engagement, requests, utility, error, churned)


__all__ = ["HierarchicalInterestEnv", "HierarchicalConfig", "LifetimeBatch", "LifetimeStep", "LifetimeStats", "LifetimeTracker",
           "run_lifetimes", "goal_from_action", "goal_reward", "slate_goal_statistics", "goal_names",
           "GOAL_SPACES", "DEFAULT_GOAL_SPACE", "NEGATIVE_LEVEL_SCALE", "GOAL_NAMES", "GOAL_DIM", "LIFETIME_FEATURES", "LONG_TERM", "SHORT_TERM", "env", "raw_env"]
