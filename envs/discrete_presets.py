"""A discrete-action view of fusion ranking: the recommender picks one of N fusion presets.

Industry often ships a handful of hand-tuned fusion-weight vectors ("presets") and lets a
policy choose among them per request; discrete-action offline algorithms (discrete BCQ,
discrete CQL, the advertiser's learners) are tested on this view. A preset is a fusion
action in [-1, 1]^4 (like / share / watch / negative weights relative to the click weight,
see :mod:`marl_rec.envs.simulator`).

- :class:`FusionPresets`: the N preset actions, index <-> action conversion.
- :class:`EpsilonGreedyPresets`: a behaviour policy over presets with exact log-probabilities
  (it returns the continuous preset action too, so ``collect`` and ``run_sessions`` take it
  unchanged).
- :class:`DiscretePresetEnv`: ``FusionRankingEnv`` with a ``Discrete(N)`` action space
  (PettingZoo Parallel API, agent ``"recommender"``).

No torch here (``envs`` imports nothing of ours outside ``envs``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable

import gymnasium
import numpy as np
from pettingzoo import AECEnv, ParallelEnv
from pettingzoo.utils.conversions import parallel_to_aec_wrapper
from pettingzoo.utils.wrappers import OrderEnforcingWrapper

from marl_rec.envs.fusion_env import AGENT, FusionRankingEnv
from marl_rec.envs.simulator import ACTION_DIM, ACTION_TASKS, FUSION_WEIGHT_BASE, SimulatorConfig



def default_preset_actions() -> np.ndarray:
    """(17, 4) presets: the neutral action 0 (all weights 1) and every corner of [-1, 1]^4
    (each weight 0.1 or 10 relative to the click weight). The click weight is fixed, so all
    17 rank differently."""
    corners = np.array(list(itertools.product((-1.0, 1.0), repeat=ACTION_DIM)))
    return np.concatenate([np.zeros((1, ACTION_DIM)), corners])


class FusionPresets:
    """N fusion presets, rows of a (N, 4) array in [-1, 1]; index i means action ``actions[i]``."""

    def __init__(self, actions: np.ndarray | None = None, names: list[str] | None = None) -> None:
        array = default_preset_actions() if actions is None else np.array(actions, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != ACTION_DIM or array.shape[0] < 2:
            raise ValueError(f"preset actions must have shape (N >= 2, {ACTION_DIM}), got {array.shape}")
        if not np.all(np.isfinite(array)) or np.any(np.abs(array) > 1.0):
            raise ValueError("preset actions must be finite and inside [-1, 1]")
        if len(np.unique(array, axis=0)) != len(array):
            raise ValueError("preset actions contain duplicate rows")
        self.actions = array
        self.actions.setflags(write=False)
        self.names = list(names) if names is not None else [self._name(row) for row in array]
        if len(self.names) != len(array):
            raise ValueError(f"got {len(self.names)} preset names for {len(array)} presets")

    @staticmethod
    def _name(row: np.ndarray) -> str:
        return ",".join(f"{task}={FUSION_WEIGHT_BASE ** a:g}" for task, a in zip(ACTION_TASKS, row))

    @property
    def num_actions(self) -> int:
        return len(self.actions)

    def to_action(self, index: np.ndarray | int) -> np.ndarray:
        """Preset indices (B,) -> fusion actions (B, 4); raises ValueError on an invalid index."""
        array = np.asarray(index)
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"preset indices must be integers, got dtype {array.dtype}")
        if np.any((array < 0) | (array >= self.num_actions)):
            raise ValueError(f"preset indices must be in 0..{self.num_actions - 1}, got "
                             f"{np.unique(array[(array < 0) | (array >= self.num_actions)])}")
        return self.actions[array]

    def nearest(self, actions: np.ndarray) -> np.ndarray:
        """(B,) index of the preset closest (Euclidean) to each (B, 4) action."""
        actions = np.asarray(actions, dtype=np.float64)
        distance = ((actions[:, None, :] - self.actions[None]) ** 2).sum(-1)
        return np.argmin(distance, axis=1)

    def to_index(self, actions: np.ndarray, atol: float = 1e-5) -> np.ndarray:
        """(B,) preset index of each (B, 4) action that *is* a preset (e.g. logged actions of a
        preset policy); raises ValueError naming the first row that is not one."""
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 2 or actions.shape[1] != ACTION_DIM:
            raise ValueError(f"actions must have shape (B, {ACTION_DIM}), got {actions.shape}")
        index = self.nearest(actions)
        off = np.abs(actions - self.actions[index]).max(1) > atol
        if off.any():
            row = int(np.flatnonzero(off)[0])
            raise ValueError(f"action at row {row} ({actions[row]}) is not one of the presets")
        return index

    def __len__(self) -> int:
        return self.num_actions


@dataclass
class PresetPolicyOutput:
    index: np.ndarray  # (B,) chosen preset
    action: np.ndarray  # (B, 4) the preset's fusion action
    log_prob: np.ndarray  # (B,) log-probability of the chosen index


class EpsilonGreedyPresets:
    """With probability 1 - ε the preset nearest to ``base``'s action, else a uniform preset.

    ``base`` is any policy ``base(sim, obs)`` returning an object with ``action`` (B, 4) (or a
    bare array), e.g. ``HeuristicExpertPolicy(grid=presets.actions)``, whose actions are
    presets already. Log-probabilities are exact: log(1 - ε + ε/N) for the greedy preset,
    log(ε/N) otherwise.
    """

    def __init__(self, base: Callable[[Any, np.ndarray], Any], presets: FusionPresets, epsilon: float,
                 rng: np.random.Generator) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.base, self.presets, self.epsilon, self.rng = base, presets, epsilon, rng

    def __call__(self, sim: Any, obs: np.ndarray) -> PresetPolicyOutput:
        out = self.base(sim, obs)
        greedy = self.presets.nearest(np.asarray(getattr(out, "action", out)))
        n, b = self.presets.num_actions, obs.shape[0]
        explore = self.rng.random(b) < self.epsilon
        index = np.where(explore, self.rng.integers(0, n, b), greedy)
        log_prob = np.where(index == greedy, np.log(1.0 - self.epsilon + self.epsilon / n),
                            np.log(self.epsilon / n) if self.epsilon > 0 else -np.inf)
        return PresetPolicyOutput(index, self.presets.actions[index], log_prob)


class DiscretePresetEnv(ParallelEnv):
    """``FusionRankingEnv`` whose recommender picks a preset index: action space ``Discrete(N)``.

    A wrapper (the continuous env is ``self.env``): observations, rewards, termination and
    infos are the continuous env's; the info also carries the fusion ``action`` the chosen
    preset stands for. An index outside 0..N-1 or a non-integer raises ValueError.
    """

    metadata = {**FusionRankingEnv.metadata, "name": "fusion_presets_v0"}

    def __init__(self, config: SimulatorConfig | None = None, presets: FusionPresets | None = None,
                 render_mode: str | None = None, **config_overrides: Any) -> None:
        self.env = FusionRankingEnv(config, render_mode, **config_overrides)
        self.config, self.sim, self.render_mode = self.env.config, self.env.sim, render_mode
        self.presets = presets or FusionPresets()
        self.possible_agents = [AGENT]
        self.observation_spaces = {AGENT: self.env.observation_space(AGENT)}
        self.action_spaces = {AGENT: gymnasium.spaces.Discrete(self.presets.num_actions)}
        self.state_space = self.env.state_space

    def state(self) -> np.ndarray:
        return self.env.state()

    @property
    def agents(self) -> list[str]:  # type: ignore[override]
        return self.env.agents

    def observation_space(self, agent: str) -> gymnasium.spaces.Box:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> gymnasium.spaces.Discrete:
        return self.action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None):
        return self.env.reset(seed=seed, options=options)

    def step(self, actions: dict[str, Any]):
        if not isinstance(actions, dict) or set(actions) != {AGENT}:
            keys = list(actions) if isinstance(actions, dict) else type(actions).__name__
            raise ValueError(f"actions must be a dict with the single key {AGENT!r}, got {keys}")
        index = np.asarray(actions[AGENT])
        if index.shape != () or not np.issubdtype(index.dtype, np.integer):
            raise ValueError(f"action for {AGENT!r} must be a single preset index, got {actions[AGENT]!r}")
        action = self.presets.to_action(index.reshape(1))[0]
        observations, rewards, terminations, truncations, infos = self.env.step({AGENT: action})
        infos[AGENT]["action"] = action.copy()
        return observations, rewards, terminations, truncations, infos

    def render(self) -> None:
        return self.env.render()

    def close(self) -> None:
        self.env.close()


def parallel_env(**kwargs: Any) -> DiscretePresetEnv:
    return DiscretePresetEnv(**kwargs)


def raw_env(**kwargs: Any) -> AECEnv:
    """The AEC form, unwrapped (``parallel_to_aec_wrapper``)."""
    return parallel_to_aec_wrapper(DiscretePresetEnv(**kwargs))


def env(**kwargs: Any) -> AECEnv:
    """The AEC form inside PettingZoo's ``OrderEnforcingWrapper``."""
    return OrderEnforcingWrapper(raw_env(**kwargs))


__all__ = ["default_preset_actions", "FusionPresets", "EpsilonGreedyPresets", "PresetPolicyOutput",
           "DiscretePresetEnv", "parallel_env", "raw_env", "env"]
