"""Data and evaluation for the joint recommendation-and-advertising problem, on its batched
core :class:`marl_rec.envs.joint_rec_ads.JointRecAdsBatch` (the rules, written once there; the
PettingZoo ``JointRecAdsEnv`` is its B = 1 adapter). Flat observations, per agent:

- ``"recommender"``: the simulator observation (``obs_dim``);
- ``"advertiser"``: the environment's ``observation`` entry (simulator observation, the
  ``AD_FEATURES`` and the ad candidates' bid × p̂(ad click)) followed by its ``action_mask`` as 0/1 floats (``K + 1``) — the mask
  travels inside the observation (``JointRecAdsBatch.mask_columns``), so offline tables and
  learners see it as ordinary columns. This flat observation equals the global ``state()``.

An advertiser action the mask forbids is served as "no ad" and counted in
``info["invalid_action"]`` (the environment's ``invalid_action="noop"``), or raises a
``ValueError`` before anything changes (``invalid_action="raise"``).

Advertiser behaviour policies (``policy(sim, obs) -> PolicyOutput`` with int64 actions and
exact log-probabilities, always respecting the mask): :class:`RandomAdPolicy`,
:class:`ThresholdAdPolicy` (deterministic) and :class:`EpsilonGreedyAdPolicy`.
:func:`collect_joint` logs a :class:`marl_rec.data.multiagent.MultiAgentDataset`;
:func:`evaluate_joint` measures engagement, revenue, session length and ad load.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from marl_rec.contracts import PolicyOutput
from marl_rec.envs.joint_rec_ads import ADVERTISER, RECOMMENDER, JointRecAdsBatch, JointRecAdsConfig, agent_rewards
from marl_rec.envs.simulator import TASKS, UserSimulator
from marl_rec.data.dataset import OfflineDataset
from marl_rec.data.multiagent import MultiAgentDataset

AGENTS = (RECOMMENDER, ADVERTISER)
#: reward components stored in both agent tables (engagement = reward_weights · the first four)
COMPONENT_NAMES = (*TASKS, "engagement", "ad_revenue")
AgentPolicy = Callable[[UserSimulator, np.ndarray], Any]


# ------------------------------------------------------------- advertiser policies
def ad_mask_of(obs: np.ndarray, num_actions: int) -> np.ndarray:
    """The (B, num_actions) bool action mask at the end of flat advertiser observations."""
    return obs[:, -num_actions:] > 0.5


class RandomAdPolicy:
    """Shows an ad with probability ``ad_probability`` whenever the cap allows one, at a
    uniformly random allowed slot; exact log-probabilities."""

    def __init__(self, ad_probability: float, rng: np.random.Generator, num_actions: int = 6) -> None:
        if not 0.0 <= ad_probability <= 1.0:
            raise ValueError(f"ad_probability must be in [0, 1], got {ad_probability}")
        self.ad_probability, self.rng, self.num_actions = ad_probability, rng, num_actions

    def probabilities(self, obs: np.ndarray) -> np.ndarray:
        mask = ad_mask_of(obs, self.num_actions)
        slots = mask[:, 1:].sum(1, keepdims=True)
        probs = np.where(mask[:, 1:], self.ad_probability / np.maximum(slots, 1), 0.0)
        return np.concatenate([1.0 - probs.sum(1, keepdims=True), probs], axis=1)

    def __call__(self, sim: UserSimulator, obs: np.ndarray) -> PolicyOutput:
        return _sample(self.probabilities(obs), self.rng)


class ThresholdAdPolicy:
    """Deterministic heuristic: an ad at ``slot`` whenever the cap allows one and the measured
    satisfaction signal (the last simulator observation column) is at least ``min_satisfaction``."""

    def __init__(self, slot: int, min_satisfaction: float = 0.0, num_actions: int = 6) -> None:
        if not 1 <= slot < num_actions:
            raise ValueError(f"slot must be in 1..{num_actions - 1}, got {slot}")
        self.slot, self.min_satisfaction, self.num_actions = slot, min_satisfaction, num_actions

    def __call__(self, sim: UserSimulator, obs: np.ndarray) -> PolicyOutput:
        mask = ad_mask_of(obs, self.num_actions)
        signal = obs[:, sim.config.obs_dim - 1]
        show = mask[:, self.slot] & (signal >= self.min_satisfaction)
        return PolicyOutput(np.where(show, self.slot, 0).astype(np.int64), None)


class EpsilonGreedyAdPolicy:
    """The ``base`` advertiser's action (``no ad`` if the mask forbids it) with probability
    1 - ε, a uniformly random *allowed* action with probability ε; exact log-probabilities."""

    def __init__(self, base: AgentPolicy, epsilon: float, rng: np.random.Generator, num_actions: int = 6) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.base, self.epsilon, self.rng, self.num_actions = base, epsilon, rng, num_actions

    def probabilities(self, sim: UserSimulator, obs: np.ndarray) -> np.ndarray:
        mask = ad_mask_of(obs, self.num_actions)
        base = np.asarray(getattr(self.base(sim, obs), "action", None))
        base = np.where(mask[np.arange(len(obs)), base], base, 0)
        probs = self.epsilon * mask / mask.sum(1, keepdims=True)
        probs[np.arange(len(obs)), base] += 1.0 - self.epsilon
        return probs

    def __call__(self, sim: UserSimulator, obs: np.ndarray) -> PolicyOutput:
        return _sample(self.probabilities(sim, obs), self.rng)


def _sample(probs: np.ndarray, rng: np.random.Generator) -> PolicyOutput:
    """One categorical draw per row (inverse CDF) and its exact log-probability."""
    cdf = np.cumsum(probs, axis=1)
    action = np.minimum((rng.random((len(probs), 1)) * cdf[:, -1:] >= cdf).sum(1), probs.shape[1] - 1)
    action = np.where(probs[np.arange(len(probs)), action] > 0, action, probs.argmax(1))  # never a 0-prob action
    return PolicyOutput(action.astype(np.int64), np.log(probs[np.arange(len(probs)), action]))


# --------------------------------------------------------------------- collection
def collect_joint(env: JointRecAdsBatch, policies: Mapping[str, AgentPolicy], num_transitions: int,
                  rng: np.random.Generator, batch_size: int = 1024,
                  metadata: dict[str, Any] | None = None) -> MultiAgentDataset:
    """Run both behaviour policies on ``batch_size`` parallel users (each user whose session
    ends is replaced) until at least ``num_transitions`` transitions of complete sessions are
    logged; return them as a :class:`MultiAgentDataset` (contiguous sessions, behaviour
    log-probabilities when both policies give them, components :data:`COMPONENT_NAMES`)."""
    if num_transitions < 1:
        raise ValueError(f"num_transitions must be >= 1, got {num_transitions}")
    if set(policies) != set(AGENTS):
        raise ValueError(f"policies must be given for exactly {list(AGENTS)}, got {sorted(policies)}")
    obs = env.reset(batch_size, rng)
    slot_episode, next_episode, completed = np.arange(batch_size), batch_size, 0
    log: dict[str, list[np.ndarray]] = {}
    has_log_prob = {agent: True for agent in AGENTS}

    def record(name: str, value: np.ndarray, active: np.ndarray) -> None:
        log.setdefault(name, []).append(np.asarray(value)[active])

    while completed < num_transitions:
        state = env.state()
        outputs = {agent: policies[agent](env.sim, obs[agent]) for agent in AGENTS}
        actions = {RECOMMENDER: np.asarray(outputs[RECOMMENDER].action, dtype=np.float32),
                   ADVERTISER: np.asarray(outputs[ADVERTISER].action, dtype=np.int64)}
        result = env.step(actions[RECOMMENDER], actions[ADVERTISER])
        if result.info["invalid_action"].any():
            raise ValueError("the behaviour advertiser chose an action its mask forbids; behaviour policies "
                             "must respect the ad-load cap (their log-probabilities would be wrong)")
        active = result.info["active"]
        record("episode", slot_episode, active)
        record("state", state, active)
        record("next_state", env.state(), active)
        record("terminal", result.terminated, active)
        record("truncation", result.truncated, active)
        record("components", result.info["components"].astype(np.float32), active)
        for agent in AGENTS:
            record(f"{agent}/obs", obs[agent], active)
            record(f"{agent}/action", actions[agent], active)
            record(f"{agent}/reward", result.rewards[agent].astype(np.float32), active)
            record(f"{agent}/next_obs", result.observations[agent], active)
            log_prob = getattr(outputs[agent], "log_prob", None)
            has_log_prob[agent] &= log_prob is not None
            record(f"{agent}/log_prob", np.zeros(len(active), np.float32) if log_prob is None
                   else np.asarray(log_prob, np.float32), active)
        ended = result.terminated | result.truncated
        if ended.any():
            completed += int(env.requests[ended].sum())
            n_ended = int(ended.sum())
            slot_episode[ended] = np.arange(next_episode, next_episode + n_ended)
            next_episode += n_ended
            obs = env.reset_users(ended)
        else:
            obs = result.observations
    episode = np.concatenate(log["episode"])
    finished = np.concatenate(log["terminal"]) | np.concatenate(log["truncation"])
    keep = np.isin(episode, np.unique(episode[finished]))
    order = np.argsort(episode[keep], kind="stable")

    def gather(name: str) -> np.ndarray:
        return np.concatenate(log[name])[keep][order]

    episodes = episode[keep][order]
    starts = np.ones(len(episodes), dtype=bool)
    starts[1:] = episodes[1:] != episodes[:-1]
    terminals, truncations, components = gather("terminal"), gather("truncation"), gather("components")
    meta = dict(metadata or {})
    meta.update(mode=env.config.mode, revenue_weight=env.config.revenue_weight,
                max_ad_share=env.config.max_ad_share, max_ads_per_session=env.config.max_ads_per_session)
    tables = {agent: OfflineDataset(
        observations=gather(f"{agent}/obs"), actions=gather(f"{agent}/action"), rewards=gather(f"{agent}/reward"),
        next_observations=gather(f"{agent}/next_obs"), terminals=terminals, truncations=truncations,
        episode_starts=starts, action_spec=env.action_specs[agent],
        behaviour_log_probs=gather(f"{agent}/log_prob") if has_log_prob[agent] else None,
        reward_components=components, component_names=list(COMPONENT_NAMES), metadata={"agent": agent})
        for agent in AGENTS}
    return MultiAgentDataset(tables, gather("state"), gather("next_state"), {ADVERTISER: env.mask_columns}, meta)


def relabel(dataset: MultiAgentDataset, mode: str, revenue_weight: float) -> MultiAgentDataset:
    """Rewards of ``mode`` ("cooperative": both get engagement + λ·revenue; "mixed": own
    rewards) recomputed from the stored components, for any λ without collecting again."""
    config = JointRecAdsConfig(mode=mode, revenue_weight=revenue_weight)  # validates both
    components = dataset.tables[RECOMMENDER].reward_components
    if components is None or list(dataset.tables[RECOMMENDER].component_names) != list(COMPONENT_NAMES):
        raise ValueError(f"relabel needs the reward components {list(COMPONENT_NAMES)} in the recommender table")
    engagement, revenue = (components[:, COMPONENT_NAMES.index(name)] for name in ("engagement", "ad_revenue"))
    rewards = agent_rewards(engagement, revenue, config)
    out = dataset.with_rewards(rewards, source=f"{mode}, revenue_weight={revenue_weight:g}")
    out.metadata.update(mode=mode, revenue_weight=revenue_weight)
    return out


# --------------------------------------------------------------------- evaluation
@dataclass
class JointEvaluation:
    """Per-user results of one session each under a pair of policies."""

    engagement: np.ndarray  # (N,) summed engagement
    revenue: np.ndarray  # (N,) summed ad revenue
    session_length: np.ndarray  # (N,) requests served
    ads_shown: np.ndarray  # (N,)
    invalid_actions: np.ndarray  # (N,) masked advertiser actions served as "no ad"

    def summary(self, revenue_weight: float) -> dict[str, float]:
        """Means over users; ``team_return`` = engagement + λ·revenue per session, ``ad_load`` =
        ads per served request (pooled), with standard errors of the first two."""
        team = self.engagement + revenue_weight * self.revenue
        n = len(team)
        return {"team_return": float(team.mean()), "team_return_se": float(team.std(ddof=1) / np.sqrt(n)),
                "engagement": float(self.engagement.mean()), "revenue": float(self.revenue.mean()),
                "session_length": float(self.session_length.mean()),
                "ad_load": float(self.ads_shown.sum() / max(self.session_length.sum(), 1)),
                "invalid_action_rate": float(self.invalid_actions.sum() / max(self.session_length.sum(), 1))}


def evaluate_joint(env: JointRecAdsBatch, policies: Mapping[str, AgentPolicy], num_users: int,
                   seed: int) -> JointEvaluation:
    """One session for each of ``num_users`` users (``default_rng(seed)``: the same users and
    simulator draws for every policy pair given the same actions) under both policies."""
    if num_users < 1:
        raise ValueError(f"num_users must be >= 1, got {num_users}")
    obs = env.reset(num_users, np.random.default_rng(seed))
    engagement, revenue = np.zeros(num_users), np.zeros(num_users)
    lengths, ads, invalid = (np.zeros(num_users, dtype=np.int64) for _ in range(3))
    while not env.done.all():
        rec = np.asarray(getattr(policies[RECOMMENDER](env.sim, obs[RECOMMENDER]), "action"), dtype=np.float64)
        ad = np.asarray(getattr(policies[ADVERTISER](env.sim, obs[ADVERTISER]), "action"), dtype=np.int64)
        result = env.step(rec, ad)
        engagement += result.engagement
        revenue += result.revenue
        lengths += result.info["active"]
        ads += result.info["ad_shown"]
        invalid += result.info["invalid_action"]
        obs = result.observations
    return JointEvaluation(engagement, revenue, lengths, ads, invalid)


__all__ = ["AGENTS", "COMPONENT_NAMES", "RandomAdPolicy",
           "ThresholdAdPolicy", "EpsilonGreedyAdPolicy", "ad_mask_of", "collect_joint", "relabel",
           "JointEvaluation", "evaluate_joint"]
