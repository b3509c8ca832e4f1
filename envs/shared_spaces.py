"""``shared_spaces(env)``: every agent of an AEC env gets the same observation and action space.

Clients such as Tianshou (``tianshou.env.PettingZooEnv``) and SuperSuit's vector wrappers
require identical spaces across agents; ours differ (JointRecAds: a Box recommender and a
masked Discrete advertiser; HierarchicalInterest: goals in ``Box(2)``, fusion weights in
``Box(4)``). SuperSuit's padding cannot mix Box and Dict observations, so this wrapper does it:

- observation ``Box(low, high, (D + N,), float32)``: the agent's observation flattened (a
  ``{"observation", "action_mask"}`` Dict becomes the observation followed by its mask as
  0/1 floats, so a policy still sees which actions are allowed), zero-padded to the largest
  ``D`` over agents, then a one-hot of the agent (N agents; lets one shared network tell the
  agents apart);
- action ``Box(-1, 1, (A,), float32)``, A the largest action size over agents: a Box agent
  reads the first entries of its own size (values are clipped by the env as usual); a
  ``Discrete(n)`` agent's action is the highest-scoring of the first ``n`` entries among
  the actions its ``action_mask`` allows — so a continuous-action learner never sends a
  masked action.

Rewards, terminations, infos, ``state()`` and ``render()`` are the wrapped env's. Use it on
the AEC form: ``shared_spaces(pettingzoo.make("aec", "marl_rec/JointRecAds-v0"))``.

Tianshou (2.0.1): ``tianshou.env.PettingZooEnv(shared_spaces(env))`` with one PPO per agent
(``MultiAgentOnPolicyAlgorithm``) trains every env; bench/clients/train_clients.py is the
recipe, including two client-side shims for a Tianshou bug (its ``MultiAgentPolicy.forward``
reads ``batch.obs_next`` for observations without a mask, which collection batches lack).

Rewards under Tianshou's convention (measured by ``make clients``): ``PettingZooEnv`` stores
``env.rewards`` right after the acting agent's own step, and each agent learns from the reward
column on its own transitions only. The JointRecAds request is served when its last agent
(the advertiser) acts, and HierarchicalInterest's ``long_term`` earns its return during
``short_term``'s steps, so the recommender's and ``long_term``'s own transitions carry 0 — their
rewards land on the other agent's transitions. No booking by the environment can fix this: it
would have to pay an agent before its action's outcome exists. Workarounds: RLlib's
``PettingZooEnv`` (it returns ``last()``, the reward since the agent last acted: exact, same
measurement), or marl-rec's own learners (``marl_rec.agents``), which drive the simulator.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from pettingzoo import AECEnv
from pettingzoo.utils.wrappers import BaseWrapper


def _flat_size(space: gymnasium.spaces.Space) -> int:
    if isinstance(space, gymnasium.spaces.Dict):
        return int(np.prod(space["observation"].shape)) + int(np.prod(space["action_mask"].shape))
    return int(np.prod(space.shape))


def _bounds(space: gymnasium.spaces.Space) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(space, gymnasium.spaces.Dict):
        low, high = _bounds(space["observation"])
        mask = int(np.prod(space["action_mask"].shape))
        return np.concatenate([low, np.zeros(mask)]), np.concatenate([high, np.ones(mask)])
    return np.asarray(space.low, np.float64).ravel(), np.asarray(space.high, np.float64).ravel()


def _action_size(space: gymnasium.spaces.Space) -> int:
    if isinstance(space, gymnasium.spaces.Discrete):
        return int(space.n)
    if isinstance(space, gymnasium.spaces.Box):
        return int(np.prod(space.shape))
    raise ValueError(f"shared_spaces supports Box and Discrete action spaces, got {space}")


class SharedSpacesWrapper(BaseWrapper):
    """See the module docstring."""

    def __init__(self, env: AECEnv) -> None:
        super().__init__(env)
        agents = list(env.possible_agents)
        self._index = {agent: i for i, agent in enumerate(agents)}
        self._obs_size = max(_flat_size(env.observation_space(a)) for a in agents)
        low, high = np.zeros(self._obs_size + len(agents)), np.zeros(self._obs_size + len(agents))
        high[self._obs_size:] = 1.0
        for agent in agents:
            a_low, a_high = _bounds(env.observation_space(agent))
            low[:a_low.size] = np.minimum(low[:a_low.size], a_low)
            high[:a_high.size] = np.maximum(high[:a_high.size], a_high)
        observation_space = gymnasium.spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
        self._action_size = max(_action_size(env.action_space(a)) for a in agents)
        action_space = gymnasium.spaces.Box(-1.0, 1.0, (self._action_size,), np.float32)
        # one space object shared by every agent: clients compare them with ==, PettingZoo with is
        self.observation_spaces = {agent: observation_space for agent in agents}
        self.action_spaces = {agent: action_space for agent in agents}

    def observation_space(self, agent: str) -> gymnasium.spaces.Box:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> gymnasium.spaces.Box:
        return self.action_spaces[agent]

    def observe(self, agent: str) -> np.ndarray:
        raw = self.env.observe(agent)
        if isinstance(raw, dict):
            raw = np.concatenate([np.ravel(raw["observation"]), np.ravel(raw["action_mask"])])
        flat = np.ravel(np.asarray(raw, dtype=np.float32))
        out = np.zeros(self.observation_spaces[agent].shape, dtype=np.float32)
        out[:flat.size] = flat
        out[self._obs_size + self._index[agent]] = 1.0
        return out

    def step(self, action: Any) -> None:
        agent = self.env.agent_selection
        if self.env.terminations[agent] or self.env.truncations[agent]:
            self.env.step(None)  # the dead step (clients that send an action there are fine)
            return
        self.env.step(self._decode(agent, np.asarray(action, dtype=np.float64).ravel()))

    def _decode(self, agent: str, action: np.ndarray) -> Any:
        if action.shape != (self._action_size,):
            raise ValueError(f"action for {agent!r} must have shape ({self._action_size},), got {action.shape}")
        space = self.env.action_space(agent)
        if isinstance(space, gymnasium.spaces.Box):
            return action[:_action_size(space)].reshape(space.shape).astype(space.dtype)
        scores = action[:space.n].copy()
        raw = self.env.observe(agent)
        if isinstance(raw, dict) and "action_mask" in raw:
            scores[np.asarray(raw["action_mask"]) == 0] = -np.inf  # never a masked action
        return int(np.argmax(scores))


def shared_spaces(env: AECEnv) -> SharedSpacesWrapper:
    """``env`` (AEC) with one observation and one action space for every agent (module docstring)."""
    return SharedSpacesWrapper(env)


__all__ = ["SharedSpacesWrapper", "shared_spaces"]
