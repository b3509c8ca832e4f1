"""``FusionRankingEnv``: one recommender choosing fusion weights per request (PettingZoo).

A thin B = 1 adapter over :class:`marl_rec.envs.simulator.UserSimulator`; see that module for the
user model, the observation layout and the fusion formula. One episode is one session
of one simulated user.

- agent: ``"recommender"``; action ``Box(-1, 1, (4,), float32)`` — fusion actions for
  (like, share, watch, negative), weights relative to the fixed click weight; values outside
  [-1, 1] are clipped, NaN/inf raise.
- observation: ``Box(0, 1, (obs_dim,), float32)``, one flat vector (SB3, Tianshou and RLlib
  read it unchanged): the user summary and the request's top candidates with their predicted
  behaviours (196 entries with the default config; ``observed_candidates=0``: the summary only,
  36 entries).
- reward: engagement = Σ reward_weights · (clicks, likes, shares, watch minutes).
- termination: the user leaves; truncation: ``max_requests`` requests served.
- info: ``components`` (the four behaviours), ``true_utility`` (evaluation only),
  ``satisfaction`` (latent, evaluation only).
- bad input raises ``ValueError`` naming the problem: a NaN or infinite action, a wrong
  shape, a non-numeric action, an unknown or missing agent key, ``step`` after the episode
  ended (call ``reset``).
- seeding: ``reset(seed=s)`` reseeds the env's own generator; ``reset()`` continues it, so
  a seeded env replays the same sequence of episodes.

- ``state()`` / ``state_space``: the simulator observation (one agent); ``render()``: the
  last served request (:mod:`marl_rec.envs.render`; ``"ansi"``, ``"rgb_array"``, ``"human"``).

``FusionRankingGymEnv`` is the Gymnasium single-agent view of the same episode.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from pettingzoo import AECEnv, ParallelEnv
from pettingzoo.utils.conversions import parallel_to_aec_wrapper
from pettingzoo.utils.wrappers import OrderEnforcingWrapper

from marl_rec.envs.render import RENDER_FPS, RENDER_MODES, RequestRecorder
from marl_rec.envs.simulator import NUM_TASKS, SimulatorConfig, UserSimulator, all_finite

AGENT = "recommender"


def make_spaces(config: SimulatorConfig) -> tuple[gymnasium.spaces.Box, gymnasium.spaces.Box]:
    """The recommender's (observation, action) spaces for a simulator configuration."""
    obs = gymnasium.spaces.Box(0.0, 1.0, (config.obs_dim,), np.float32)
    act = gymnasium.spaces.Box(-1.0, 1.0, (NUM_TASKS,), np.float32)
    return obs, act


def validate_action(action: Any, space: gymnasium.spaces.Box, name: str = AGENT) -> np.ndarray:
    """Return the action as a (1, dim) float64 array, clipped to the space; raise on bad input."""
    try:
        array = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"action for {name!r} is not numeric: {action!r}") from error
    if array.shape != space.shape:
        raise ValueError(f"action for {name!r} must have shape {space.shape}, got {array.shape}")
    if not all_finite(array):
        raise ValueError(f"action for {name!r} contains NaN or infinite values: {array}")
    return np.maximum(np.minimum(array, space.high), space.low)[None, :]


def _info(result, index: int = 0) -> dict[str, Any]:
    info = result.info
    return {
        "components": info["components"][index].copy(),
        "true_utility": float(info["true_utility"][index]),
        "satisfaction": float(info["satisfaction"][index]),
        "negative_feedback": float(info["negative_feedback"][index]),
    }


def _simulator_config(config: SimulatorConfig | None, overrides: dict[str, Any]) -> SimulatorConfig:
    """The env's simulator config from a config or keyword overrides (not both)."""
    if config is None:
        return SimulatorConfig(**overrides)
    if overrides:
        raise ValueError("pass either a SimulatorConfig or keyword overrides, not both")
    return config


class FusionRankingEnv(ParallelEnv):
    """PettingZoo Parallel env with the single agent ``"recommender"``."""

    metadata = {"name": "fusion_ranking_v0", "render_modes": RENDER_MODES, "render_fps": RENDER_FPS,
                "is_parallelizable": True}

    def __init__(self, config: SimulatorConfig | None = None, render_mode: str | None = None,
                 **config_overrides: Any) -> None:
        self.config = config = _simulator_config(config, config_overrides)
        self.sim = UserSimulator(config)
        self._recorder = RequestRecorder(self.sim, self.metadata["name"], render_mode)
        self.render_mode = render_mode
        self.possible_agents = [AGENT]
        self.agents: list[str] = []
        obs_space, act_space = make_spaces(config)
        self.observation_spaces = {AGENT: obs_space}
        self.action_spaces = {AGENT: act_space}
        self.state_space = obs_space  # one agent: the global state is its observation
        self._rng: np.random.Generator | None = None

    def observation_space(self, agent: str) -> gymnasium.spaces.Box:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> gymnasium.spaces.Box:
        return self.action_spaces[agent]

    def state(self) -> np.ndarray:
        """Global state for centralised critics: the simulator observation (in ``state_space``)."""
        if self._rng is None:
            raise ValueError("state() called before reset(); call reset() first")
        return self.sim.observe()[0]

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None or self._rng is None:
            self._rng = np.random.default_rng(seed)
        obs = self.sim.reset(1, self._rng)
        self.agents = self.possible_agents[:]
        self._recorder.reset()
        return {AGENT: obs[0]}, {AGENT: {}}

    def step(self, actions: dict[str, Any]):
        if not self.agents:
            raise ValueError("step() called after the episode ended (or before reset()); call reset() first")
        if not isinstance(actions, dict) or len(actions) != 1 or AGENT not in actions:
            keys = list(actions) if isinstance(actions, dict) else type(actions).__name__
            unknown = [key for key in actions if key != AGENT] if isinstance(actions, dict) else []
            what = f"unknown agent key(s) {unknown}" if unknown else f"got {keys}"
            raise ValueError(f"actions must be a dict with the single key {AGENT!r}: {what}")
        action = validate_action(actions[AGENT], self.action_spaces[AGENT])
        self._recorder.before_step(action)
        result = self.sim.step(action)
        reward = float(result.reward[0])
        self._recorder.after_step(result, {AGENT: reward})
        terminated, truncated = bool(result.terminated[0]), bool(result.truncated[0])
        if terminated or truncated:
            self.agents = []
        return ({AGENT: result.observation[0]}, {AGENT: reward},
                {AGENT: terminated}, {AGENT: truncated}, {AGENT: _info(result)})

    def render(self) -> str | np.ndarray | None:
        """The last served request in ``render_mode`` (:mod:`marl_rec.envs.render`)."""
        return self._recorder.render()

    def close(self) -> None:
        return None


def parallel_env(**kwargs: Any) -> FusionRankingEnv:
    return FusionRankingEnv(**kwargs)


class ParallelToAEC(parallel_to_aec_wrapper):
    """PettingZoo's ``parallel_to_aec_wrapper``, except that stepping an agent that is done
    (terminated or truncated) with an action other than ``None`` raises a ValueError naming the
    agent, where PettingZoo's wrapper fails a bare ``assert``."""

    def step(self, action: Any) -> None:
        agent = self.agent_selection
        if action is not None and (self.terminations.get(agent) or self.truncations.get(agent)):
            raise ValueError(f"agent {agent!r} is done (terminated or truncated): its step takes the action None, "
                             f"got {type(action).__name__}")
        super().step(action)


def raw_env(**kwargs: Any) -> AECEnv:
    """The AEC form, unwrapped: PettingZoo's ``parallel_to_aec_wrapper`` of the Parallel env
    (:class:`ParallelToAEC`)."""
    return ParallelToAEC(FusionRankingEnv(**kwargs))


def env(**kwargs: Any) -> AECEnv:
    """The AEC form inside PettingZoo's ``OrderEnforcingWrapper`` (the registered AEC form; what
    ``parallel_to_aec`` gives)."""
    return OrderEnforcingWrapper(raw_env(**kwargs))


class FusionRankingGymEnv(gymnasium.Env):
    """Gymnasium single-agent view of one session (for SB3 and other single-agent libraries)."""

    metadata = {"render_modes": RENDER_MODES, "render_fps": RENDER_FPS}

    def __init__(self, config: SimulatorConfig | None = None, render_mode: str | None = None,
                 **config_overrides: Any) -> None:
        self.config = config = _simulator_config(config, config_overrides)
        self.sim = UserSimulator(config)
        self._recorder = RequestRecorder(self.sim, "FusionRankingGym", render_mode)
        self.render_mode = render_mode
        self.observation_space, self.action_space = make_spaces(config)
        self._done = True

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs = self.sim.reset(1, self.np_random)
        self._done = False
        self._recorder.reset()
        return obs[0], {}

    def step(self, action: Any):
        if self._done:
            raise ValueError("step() called after the episode ended (or before reset()); call reset() first")
        action = validate_action(action, self.action_space, "action")
        self._recorder.before_step(action)
        result = self.sim.step(action)
        self._recorder.after_step(result, {AGENT: float(result.reward[0])})
        terminated, truncated = bool(result.terminated[0]), bool(result.truncated[0])
        self._done = terminated or truncated
        return result.observation[0], float(result.reward[0]), terminated, truncated, _info(result)

    def render(self) -> str | np.ndarray | None:
        """The last served request in ``render_mode`` (:mod:`marl_rec.envs.render`)."""
        return self._recorder.render()
