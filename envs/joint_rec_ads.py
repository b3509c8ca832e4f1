"""``JointRecAdsEnv``: a recommender and an advertiser acting on the same feed request.

A thin B = 1 adapter over :class:`marl_rec.envs.simulator.UserSimulator` (PettingZoo Parallel,
``parallel_env``; the AEC form ``raw_env``, and ``env`` with PettingZoo's order enforcing). One episode is one session of one simulated user.
On every request both agents act at once:

``"recommender"``
    action ``Box(-1, 1, (4,), float32)``: fusion actions, exactly as in
    :class:`marl_rec.envs.fusion_env.FusionRankingEnv` (clipped; NaN/inf raise); observation the
    simulator observation ``Box(0, 1, (obs_dim,), float32)``.
``"advertiser"``
    action ``Discrete(K + 1)``: 0 = no ad, j = 1..K = the best ad replaces organic slate
    position j. "Best" is the simulator's ad auction: among ``num_ad_candidates`` retrieved
    ads it serves the one maximising bid × predicted ad-click probability
    (``UserSimulator._serve_ads``); revenue = bid when the user clicks the ad.
    Observation ``Dict(observation=Box(0, 1, (obs_dim + 3 + A,), float32),
    action_mask=Box(0, 1, (K + 1,), int8))``: the simulator observation followed by
    ``AD_FEATURES`` (share of this session's requests that carried an ad, the fraction of
    the session's ad budget left, requests since the last ad / ``max_requests``), the request's
    A = ``num_ad_candidates`` ad candidates' bid × p̂(ad click) (best first, / the inventory's
    largest bid: :meth:`UserSimulator.ad_candidate_values`), and the mask of the actions allowed
    on the next request.

Ad-load cap (as production feeds enforce): an ad may be served on the n-th request of a
session (n = 1, 2, …) only if the session's ads, this one included, stay within
``max_ad_share · n`` and within ``max_ads_per_session`` (when set). So *after every
request* ``ads_shown <= max_ad_share · requests_served`` — whatever the advertiser does.
When the cap binds, the mask is ``[1, 0, …, 0]``. An ad action the mask forbids is, with
``invalid_action="noop"`` (default; RLlib-style clients without masking keep running),
served as "no ad" and flagged ``info["invalid_action"] = True``; with
``invalid_action="raise"`` it raises a ``ValueError`` and the environment is left
unchanged. An action outside ``0..K`` (or not an integer) always raises.

Rewards (``mode``):
- ``"cooperative"``: both agents get the team reward ``engagement + revenue_weight · revenue``;
- ``"mixed"``: the recommender gets engagement, the advertiser gets ad revenue.
Ads cost both: the ad takes an organic slot (fewer clicks) and lowers satisfaction (shorter
sessions), so revenue now trades against engagement and future revenue.

``state()`` / ``state_space``: the global state for centralised critics, the union of both
observations without repeating the shared part: the simulator observation, the advertiser's
``AD_FEATURES``, the ad candidates' values and its action mask (as floats),
``Box(0, 1, (obs_dim + 3 + A + K + 1,), float32)``.

``info`` (the same for both agents): ``engagement``, ``revenue``, ``components`` (click,
like, share, watch), ``ad_shown``, ``ad_click``, ``ad_slot`` (served; 0 = none),
``requested_ad_slot``, ``invalid_action``, ``ad_share`` (this session so far),
``true_utility`` and ``satisfaction`` (latent: evaluation only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
from pettingzoo import AECEnv, ParallelEnv
from pettingzoo.utils.wrappers import OrderEnforcingWrapper

from marl_rec.envs.fusion_env import ParallelToAEC, make_spaces, validate_action
from marl_rec.envs.hierarchical import split_overrides
from marl_rec.envs.render import RENDER_FPS, RENDER_MODES, RequestRecorder
from marl_rec.contracts import ActionSpec
from marl_rec.envs.simulator import SimulatorConfig, StepResult, UserSimulator

RECOMMENDER = "recommender"
ADVERTISER = "advertiser"
MODES = ("cooperative", "mixed")
INVALID_ACTION_MODES = ("noop", "raise")
AD_FEATURES: tuple[str, ...] = ("ad_share", "ad_budget_left", "requests_since_ad")
_TOLERANCE = 1e-9  # float slack in the share comparison (0.2 · 5 is 1.0000000000000002)


@dataclass(frozen=True)
class JointRecAdsConfig:
    """Reward mode and ad-load cap of the joint environment.

    ``revenue_weight`` (λ) defaults to 4: on the reference world an ad served at the 0.25 cap
    costs about 0.6–1.4 engagement (a lost organic slot, a shorter session) and earns about
    0.16–0.31 revenue depending on its slot (break-even λ ≈ 3.6–4.5; measured over 4000
    simulated sessions per slot). Near break-even, *when* and *where* to insert an ad is a
    real, state-dependent choice; at λ = 1 "never show an ad" is close to team-optimal.
    """

    mode: str = "cooperative"
    revenue_weight: float = 4.0  # λ: team reward = engagement + λ · revenue (cooperative mode)
    max_ad_share: float = 0.25  # at most this share of a session's requests carry an ad
    max_ads_per_session: int | None = None  # optional absolute cap per session
    invalid_action: str = "noop"  # masked ad action: "noop" (serve no ad, flag it) or "raise"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"JointRecAdsConfig.mode must be one of {MODES}, got {self.mode!r}")
        if self.invalid_action not in INVALID_ACTION_MODES:
            raise ValueError(f"JointRecAdsConfig.invalid_action must be one of {INVALID_ACTION_MODES}, "
                             f"got {self.invalid_action!r}")
        if not np.isfinite(self.revenue_weight) or self.revenue_weight < 0:
            raise ValueError(f"JointRecAdsConfig.revenue_weight must be finite and >= 0, got {self.revenue_weight!r}")
        if not 0.0 <= self.max_ad_share <= 1.0:
            raise ValueError(f"JointRecAdsConfig.max_ad_share must be in [0, 1], got {self.max_ad_share!r}")
        cap = self.max_ads_per_session
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, np.integer)) or cap < 0):
            raise ValueError(f"JointRecAdsConfig.max_ads_per_session must be None or an int >= 0, got {cap!r}")


def ad_allowed(ads_shown: np.ndarray, requests_served: np.ndarray, max_ad_share: float,
               max_ads_per_session: int | None) -> np.ndarray:
    """Whether one more ad keeps the cap on the next request (batched; the module docstring)."""
    ads_shown = np.asarray(ads_shown)
    allowed = ads_shown + 1 <= max_ad_share * (np.asarray(requests_served) + 1) + _TOLERANCE
    if max_ads_per_session is not None:
        allowed &= ads_shown < max_ads_per_session
    return allowed


def validate_ad_action(action: Any, num_actions: int) -> int:
    """The advertiser's action as an int in 0..num_actions-1; raise ValueError on anything else."""
    array = np.asarray(action)
    if array.size != 1 or array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"action for {ADVERTISER!r} must be one integer in 0..{num_actions - 1}, got {action!r}")
    value = int(array.reshape(()))
    if not 0 <= value < num_actions:
        raise ValueError(f"action for {ADVERTISER!r} must be in 0..{num_actions - 1}, got {value}")
    return value


def agent_rewards(engagement: Any, revenue: Any, config: JointRecAdsConfig) -> dict[str, Any]:
    """Each agent's reward under ``config.mode`` (module docstring), for floats or arrays alike."""
    if config.mode == "cooperative":
        team = engagement + config.revenue_weight * revenue
        return {RECOMMENDER: team, ADVERTISER: team}
    return {RECOMMENDER: engagement, ADVERTISER: revenue}


@dataclass
class JointStepResult:
    observations: dict[str, np.ndarray]  # per agent (B, d) float32 (JointRecAdsBatch.observations)
    rewards: dict[str, np.ndarray]  # per agent (B,)
    engagement: np.ndarray  # (B,)
    revenue: np.ndarray  # (B,)
    terminated: np.ndarray  # (B,) bool
    truncated: np.ndarray  # (B,) bool
    info: dict[str, np.ndarray]  # active, ad_shown, ad_slot, invalid_action, components
    sim_result: StepResult  # the simulator's own step (its info: true utility, satisfaction, ...)


class JointRecAdsBatch:
    """The rules of the joint problem, once, for B users stepped at once: the ad-load cap, the
    advertiser's features and mask, the global state and the rewards. :class:`JointRecAdsEnv`
    is its B = 1 adapter; data collection and evaluation (``marl_rec.agents.multiagent_data``)
    drive it with large B. Flat observations per agent: ``"recommender"`` the simulator
    observation; ``"advertiser"`` the global ``state()`` (simulator observation, ``AD_FEATURES``,
    the ad candidates' bid × p̂(ad click), the action mask as 0/1 floats in ``mask_columns``). An advertiser action the mask forbids
    is served as "no ad" and flagged (``invalid_action="noop"``) or raises before anything
    changes (``"raise"``). Users whose session ended stay frozen (zero reward) until
    :meth:`reset_users` replaces them."""

    def __init__(self, sim: UserSimulator, config: JointRecAdsConfig | None = None) -> None:
        self.sim, self.config = sim, config or JointRecAdsConfig()
        c = sim.config
        self.num_ad_actions = c.slate_size + 1
        self.rec_obs_dim = c.obs_dim
        self.state_dim = c.obs_dim + len(AD_FEATURES) + c.num_ad_candidates + self.num_ad_actions
        self.mask_columns = (self.state_dim - self.num_ad_actions, self.state_dim)
        # the session's ad budget: the ads an always-advertising advertiser gets under the cap
        shown = 0
        for served in range(c.max_requests):
            shown += bool(ad_allowed(shown, served, self.config.max_ad_share, self.config.max_ads_per_session))
        self.ad_budget = shown
        self.obs_dims = {RECOMMENDER: self.rec_obs_dim, ADVERTISER: self.state_dim}
        self.action_specs = {RECOMMENDER: ActionSpec("continuous", dim=int(sim.action_dim)),
                             ADVERTISER: ActionSpec("discrete", num_actions=self.num_ad_actions)}

    # -------------------------------------------------------------- episode
    def reset(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        self.sim_obs = self.sim.reset(batch_size, rng)
        self.ads_shown = np.zeros(batch_size, dtype=np.int64)
        self.requests = np.zeros(batch_size, dtype=np.int64)
        self.last_ad_request = np.zeros(batch_size, dtype=np.int64)  # request count at the last ad (0: none)
        return self.observations()

    def reset_users(self, mask: np.ndarray) -> dict[str, np.ndarray]:
        """Replace the users in ``mask`` with fresh ones (counters reset); all observations."""
        self.sim_obs = self.sim.reset_users(mask)
        for counter in (self.ads_shown, self.requests, self.last_ad_request):
            counter[mask] = 0
        return self.observations()

    @property
    def done(self) -> np.ndarray:
        return self.sim.done

    # ---------------------------------------------------------- observations
    def action_mask(self) -> np.ndarray:
        """(B, K + 1) int8: the advertiser actions allowed on the next request."""
        mask = np.zeros((len(self.requests), self.num_ad_actions), dtype=np.int8)
        mask[:, 0] = 1
        mask[:, 1:] = ad_allowed(self.ads_shown, self.requests, self.config.max_ad_share,
                                 self.config.max_ads_per_session)[:, None]
        return mask

    def ad_features(self) -> np.ndarray:
        """(B, 3 + A) ``AD_FEATURES`` (ad share so far, ad budget left, requests since the last ad)
        and the request's A ad candidates' bid × p̂(ad click) (``UserSimulator.ad_candidate_values``)."""
        share = self.ads_shown / np.maximum(self.requests, 1)
        budget = (self.ad_budget - self.ads_shown) / self.ad_budget if self.ad_budget > 0 else \
            np.zeros(len(self.requests))
        since = (self.requests - self.last_ad_request) / self.sim.config.max_requests
        return np.concatenate([np.clip(np.stack([share, budget, since], axis=1), 0.0, 1.0),
                               self.sim.ad_candidate_values()], axis=1)

    def state(self) -> np.ndarray:
        """(B, state_dim) float32: the global state of every user."""
        return np.concatenate([self.sim_obs, self.ad_features(), self.action_mask()], axis=1).astype(np.float32)

    def observations(self) -> dict[str, np.ndarray]:
        return {RECOMMENDER: self.sim_obs.copy(), ADVERTISER: self.state()}

    # ------------------------------------------------------------------ step
    def step(self, rec_action: np.ndarray, ad_action: np.ndarray) -> JointStepResult:
        """One request for every user: fusion actions (B, action_dim) and advertiser actions (B,) in 0..K."""
        b, k = len(self.requests), self.num_ad_actions
        ad_action = np.asarray(ad_action)
        if ad_action.shape != (b,) or not np.issubdtype(ad_action.dtype, np.integer):
            raise ValueError(f"advertiser actions must be integers of shape ({b},), got {ad_action.dtype} "
                             f"{ad_action.shape}")
        if ad_action.size and (ad_action.min() < 0 or ad_action.max() >= k):
            raise ValueError(f"advertiser actions must be in 0..{k - 1}, got values in "
                             f"[{ad_action.min()}, {ad_action.max()}]")
        active = ~self.sim.done
        invalid = (self.action_mask()[np.arange(b), ad_action] == 0) & active
        if invalid.any() and self.config.invalid_action == "raise":
            row = int(np.flatnonzero(invalid)[0])
            raise ValueError(f"advertiser action {int(ad_action[row])} of user {row} violates the ad-load cap "
                             f"({self.ads_shown[row]} ads in {self.requests[row]} requests, max_ad_share="
                             f"{self.config.max_ad_share}, max_ads_per_session={self.config.max_ads_per_session})")
        slot = np.where(invalid, 0, ad_action)
        result = self.sim.step(rec_action, slot)
        self.sim_obs = result.observation
        shown = result.info["ad_shown"]
        self.requests += active
        self.ads_shown += shown
        self.last_ad_request[shown] = self.requests[shown]
        engagement, revenue = result.reward, result.info["ad_revenue"]
        rewards = agent_rewards(engagement, revenue, self.config)
        components = np.concatenate([result.info["components"], engagement[:, None], revenue[:, None]], axis=1)
        info = {"active": active, "ad_shown": shown, "ad_slot": np.where(shown, slot, 0), "invalid_action": invalid,
                "components": components}
        return JointStepResult(self.observations(), rewards, engagement, revenue, result.terminated,
                               result.truncated, info, result)


class JointRecAdsEnv(ParallelEnv):
    """PettingZoo Parallel env with agents ``"recommender"`` and ``"advertiser"``."""

    metadata = {"name": "joint_rec_ads_v0", "render_modes": RENDER_MODES, "render_fps": RENDER_FPS,
                "is_parallelizable": True}

    def __init__(self, config: JointRecAdsConfig | None = None, simulator: SimulatorConfig | None = None,
                 render_mode: str | None = None, **overrides: Any) -> None:
        env_kwargs, sim_kwargs = split_overrides(overrides, JointRecAdsConfig, SimulatorConfig)
        if env_kwargs and config is not None:
            raise ValueError(f"pass either a JointRecAdsConfig or its options {sorted(env_kwargs)}, not both")
        if sim_kwargs and simulator is not None:
            raise ValueError(f"pass either a SimulatorConfig or its options {sorted(sim_kwargs)}, not both")
        self.config = config or JointRecAdsConfig(**env_kwargs)
        self.sim_config = simulator or SimulatorConfig(**sim_kwargs)
        self.sim = UserSimulator(self.sim_config)
        self._recorder = RequestRecorder(self.sim, self.metadata["name"], render_mode)
        self.render_mode = render_mode
        self.possible_agents = [RECOMMENDER, ADVERTISER]
        self.agents: list[str] = []
        c = self.sim_config
        self.num_ad_actions = c.slate_size + 1
        rec_obs, rec_act = make_spaces(c)
        ad_features = c.obs_dim + len(AD_FEATURES) + c.num_ad_candidates
        self.observation_spaces = {
            RECOMMENDER: rec_obs,
            ADVERTISER: gymnasium.spaces.Dict({
                "observation": gymnasium.spaces.Box(0.0, 1.0, (ad_features,), np.float32),
                "action_mask": gymnasium.spaces.Box(0, 1, (self.num_ad_actions,), np.int8),
            }),
        }
        self.action_spaces = {RECOMMENDER: rec_act, ADVERTISER: gymnasium.spaces.Discrete(self.num_ad_actions)}
        self.state_space = gymnasium.spaces.Box(0.0, 1.0, (ad_features + self.num_ad_actions,), np.float32)
        self._core = JointRecAdsBatch(self.sim, self.config)  # the rules, for one user
        self._rng: np.random.Generator | None = None

    @property
    def _ads_shown(self) -> int:
        return int(self._core.ads_shown[0])

    @property
    def _requests(self) -> int:
        return int(self._core.requests[0])

    def observation_space(self, agent: str) -> gymnasium.spaces.Space:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> gymnasium.spaces.Space:
        return self.action_spaces[agent]

    # ------------------------------------------------------------ ad-load cap
    def action_mask(self) -> np.ndarray:
        """(K + 1,) int8: 1 for the advertiser actions allowed on the next request."""
        return self._core.action_mask()[0]

    def _observations(self) -> dict[str, Any]:
        state = self.state()
        return {RECOMMENDER: self._core.sim_obs[0].copy(),
                ADVERTISER: {"observation": state[:self._core.mask_columns[0]].copy(),
                             "action_mask": self.action_mask()}}

    def state(self) -> np.ndarray:
        """Global state: simulator observation, ad-load features and the ad mask (float32)."""
        return self._core.state()[0]

    # --------------------------------------------------------------- episode
    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None or self._rng is None:
            self._rng = np.random.default_rng(seed)
        self._core.reset(1, self._rng)
        self.agents = self.possible_agents[:]
        self._recorder.reset()
        return self._observations(), {agent: {} for agent in self.agents}

    def step(self, actions: dict[str, Any]):
        if not self.agents:
            raise ValueError("step() called after the episode ended; call reset() first")
        if not isinstance(actions, dict) or set(actions) != set(self.possible_agents):
            keys = sorted(actions) if isinstance(actions, dict) else type(actions).__name__
            raise ValueError(f"actions must be a dict with the keys {self.possible_agents}, got {keys}")
        fusion = validate_action(actions[RECOMMENDER], self.action_spaces[RECOMMENDER], RECOMMENDER)
        requested = validate_ad_action(actions[ADVERTISER], self.num_ad_actions)
        invalid = not self.action_mask()[requested]
        if invalid and self.config.invalid_action == "raise":
            raise ValueError(f"advertiser action {requested} violates the ad-load cap (mask "
                             f"{self.action_mask().tolist()}: {self._ads_shown} ads in {self._requests} "
                             f"requests, max_ad_share={self.config.max_ad_share}, "
                             f"max_ads_per_session={self.config.max_ads_per_session})")
        slot = 0 if invalid else requested
        self._recorder.before_step(fusion)
        joint = self._core.step(fusion, np.array([requested]))
        result, info = joint.sim_result, joint.sim_result.info
        ad_shown = bool(joint.info["ad_shown"][0])
        engagement, revenue = float(joint.engagement[0]), float(joint.revenue[0])
        rewards = {agent: float(reward[0]) for agent, reward in joint.rewards.items()}
        if self._recorder.active:
            self._recorder.lines = {
                "advertiser": f"asked for slot {requested}, served {'no ad' if slot == 0 else f'slot {slot}'}"
                              + (" (masked: ad-load cap)" if invalid else "")
                              + f"; revenue {revenue:.3f}; {self._ads_shown} ads in {self._requests} requests "
                              f"(cap {self.config.max_ad_share:g}); next mask {self.action_mask().tolist()}"}
        self._recorder.after_step(result, rewards, ad_slot=slot if ad_shown else 0)
        terminated, truncated = bool(result.terminated[0]), bool(result.truncated[0])
        step_info = {
            "engagement": engagement, "revenue": revenue, "components": info["components"][0].copy(),
            "ad_shown": ad_shown, "ad_click": bool(info["ad_click"][0]), "ad_slot": slot,
            "requested_ad_slot": requested, "invalid_action": invalid,
            "ad_share": self._ads_shown / self._requests,
            "true_utility": float(info["true_utility"][0]), "satisfaction": float(info["satisfaction"][0]),
        }
        agents = self.agents
        if terminated or truncated:
            self.agents = []
        return (self._observations(), rewards, {a: terminated for a in agents},
                {a: truncated for a in agents},
                {a: {**step_info, "components": step_info["components"].copy()} for a in agents})

    def render(self) -> str | np.ndarray | None:
        """The last served request in ``render_mode`` (:mod:`marl_rec.envs.render`)."""
        return self._recorder.render()

    def close(self) -> None:
        return None


def parallel_env(**kwargs: Any) -> JointRecAdsEnv:
    return JointRecAdsEnv(**kwargs)


def raw_env(**kwargs: Any) -> AECEnv:
    """The AEC form, unwrapped: PettingZoo's ``parallel_to_aec_wrapper`` of the Parallel env
    (:class:`marl_rec.envs.fusion_env.ParallelToAEC`)."""
    return ParallelToAEC(JointRecAdsEnv(**kwargs))


def env(**kwargs: Any) -> AECEnv:
    """The AEC form inside PettingZoo's ``OrderEnforcingWrapper`` (the registered AEC form; what
    ``parallel_to_aec`` gives)."""
    return OrderEnforcingWrapper(raw_env(**kwargs))

__all__ = ["JointRecAdsEnv", "JointRecAdsConfig", "JointRecAdsBatch", "JointStepResult", "agent_rewards", "ad_allowed", "validate_ad_action", "AD_FEATURES",
           "RECOMMENDER", "ADVERTISER", "MODES", "parallel_env", "env", "raw_env"]
