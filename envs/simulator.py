"""The batched user simulator: one numpy core that steps B users at once.

Everything in marl-rec that touches a "user" runs on this module: the PettingZoo
environments are thin B = 1 adapters over it, and data collection drives it directly
with large B. It imports no torch.

World (fixed by ``SimulatorConfig.world_seed``)
    A topic graph over T topics (a connected Watts–Strogatz graph built with networkx),
    ``items_per_topic`` items per topic, each with a latent ``quality`` in [0, 1], a
    ``clickbait`` score in [0, 1] (raises p(click), lowers satisfaction) and a
    ``duration`` in minutes; and an ads inventory (items with a ``bid`` per click).

Users (sampled from the ``numpy.random.Generator`` given to :meth:`reset`)
    long-term interest over topics (Dirichlet), a short-term interest that drifts along
    graph edges with what they click, per-topic boredom (repetition), ad fatigue,
    satisfaction in [0, 1], patience and a clickbait sensitivity (uniform on
    ``clickbait_sensitivity``: how much clickbait lowers an item's utility for this user).
    None of this is observed; the sensitivity shows in the user's history through the
    negative-feedback rates (``ema_negative``, ``last_negative``).

True utility (evaluation only, and the negative-feedback task's link)
    of item i for user u: ``2.0 q_i - 0.3 - sensitivity_u · cb_i + 0.4 rel_u(topic_i)``, with
    q the item's quality, cb its clickbait-ness and rel the topic's relevance for the user
    net of boredom.

One request (``step``)
    1. *Retrieval* drew ``num_candidates`` items (topics sampled from the user's
       observed profile mixed with uniform) when the previous request ended.
    2. A *multi-task model* predicts, per candidate, the five ``PREDICTED_TASKS``:
       p̂(click), p̂(like | click), p̂(share | click), the watched fraction of the duration
       and p̂(negative): the probability of negative feedback ("not interested", a skip) on
       an examined impression, whose true logit is
       ``negative_intercept - negative_utility_slope · utility`` — it rises with clickbait ×
       the user's sensitivity and with low quality. Every prediction is the true logit plus
       independent Gaussian noise of std ``prediction_noise``, so p̂(negative) reveals an
       item's utility for this user with errors independent of the click model's
       (:meth:`UserSimulator.predicted_utility` inverts it; R² 0.92 with the truth on the
       reference world). ``SimulatorConfig.legacy()`` sets the slope to 0: the task then
       carries nothing (the world before issue #16).
    3. *Fusion ranking*: the action a ∈ [-1, 1]^4 (``ACTION_TASKS``: like, share, watch,
       negative; values outside are clipped) sets the weights relative to the click weight,
       which is fixed at 1: ``w = (1, 10 ** a_like, 10 ** a_share, 10 ** a_watch,
       -10 ** a_negative)`` (``FUSION_WEIGHT_BASE`` = 10, so |w| ∈ [0.1, 10]; a = 0 is the neutral weight 1, negative
       feedback lowers the score). Each candidate is scored ``Σ_i w_i · log(p̂_i + β_i)``
       with the fixed priors ``fusion_priors`` (β, one per predicted task). With the click
       weight fixed there is no redundant overall scale: every direction of the action box
       changes the ranking. The top ``slate_size`` candidates form the slate. An optional
       ad slot (the advertiser's decision) replaces one slate position with the ad that
       maximises bid × p̂(ad click).
    4. *Responses*, per slate position j with examination probability
       ``1 / (1 + position_decay · j)``: click, then like, share and watch time given
       the click; negative feedback (independent of the click); an ad click for the ad.
       ``info["negative_feedback"]`` counts the negative feedback (not part of the reward).
    5. *Reward* (engagement) = Σ ``reward_weights`` · (clicks, likes, shares, watch
       minutes). The per-behaviour components, the ad revenue, and the *true utility*
       of what the user consumed go to ``info`` (never the observation).
    6. *Dynamics*: satisfaction moves with the true utility of clicked items (clickbait
       and ads lower it, an empty slate lowers it), boredom grows on the clicked topics,
       the short-term interest drifts to the clicked topics' graph neighbourhood.
    7. *Leaving*: the user leaves (``terminated``) with probability
       ``base_leave + (1 - base_leave) · sigmoid(leave_slope · (leave_threshold - s))``
       scaled down by patience — it rises as satisfaction s falls. The session is
       truncated after ``max_requests`` requests.
    8. *Retention*: when a session ends, the user returns for another session with
       probability ``sigmoid(return_slope · (lifetime_satisfaction - return_threshold))``
       (``info["return_probability"]``) where lifetime satisfaction is an average of
       end-of-session satisfaction over the user's sessions. :meth:`start_new_sessions`
       begins the next session for the users who came back (used by the hierarchical
       environment).

Observation (float32, every entry in [0, 1]; ``obs_dim`` = 2·T + 20 + 5·M, names in
:func:`observation_names`) — what the ranking system knows at decision time:
    the user summary — the user's observed long-term profile (T), an exponential moving
    average of the clicked topics (T), moving averages of click / like / share / watch /
    negative-feedback rates (5), the last request's rates (5), the mean prediction of each
    task over the current candidates (5) — then this request's candidates: the top
    M = min(``observed_candidates``, ``num_candidates``) candidates by p̂(click), best first, each with its five
    predictions (5·M; a fixed-size, order-canonical encoding any MLP client can read) —
    and five scalars, always last: the request index / ``max_requests``, the ad-load moving
    average, the session index / 10 (clipped), the session's engagement so far /
    ``max_requests`` (clipped), and a noisy moving average of satisfaction (what the
    platform measures: dwell, skips, "not interested"; clipped). ``observed_candidates=0``
    is the summary-only observation (``summary_dim`` entries). Why fixed-size candidate
    features rather than a permutation-invariant encoder: every client (SB3, Tianshou, RLlib)
    and every algorithm's MLP reads them unchanged, and behaviour cloning on the production
    policy's logs recovers that policy from them (125.9 vs its 126.6 session return,
    ``bench/observation_encoding.py``); a DeepSets / attention encoder was not built.

Randomness and speed
    Every draw comes from the generator passed to :meth:`UserSimulator.reset`, so a seed
    fixes the trajectories of a batch. The numbers drawn depend on the batch size (a user
    simulated alone and the same user inside a batch see different draws, from the same
    distributions). Large Gaussian draws use Box–Muller on float32 uniforms
    (:func:`standard_normal_f32`), about 3x faster than numpy's ziggurat here.
    The hot arrays (candidates × tasks) are float32; the per-user state is float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import networkx as nx
import numpy as np

from marl_rec.envs.config_checks import Range, check_fields

#: The engagement behaviours: the reward components, in order (``info["components"]``).
TASKS: tuple[str, ...] = ("click", "like", "share", "watch")
NUM_TASKS = len(TASKS)
#: What the multi-task model predicts per candidate: the engagement behaviours and negative
#: feedback ("not interested" / a skip on an examined impression).
PREDICTED_TASKS: tuple[str, ...] = TASKS + ("negative",)
NUM_PREDICTIONS = len(PREDICTED_TASKS)
#: The tasks whose fusion weight the action sets; the click weight is fixed at 1, so every
#: direction of the action box changes the ranking (no redundant overall scale).
ACTION_TASKS: tuple[str, ...] = ("like", "share", "watch", "negative")
ACTION_DIM = len(ACTION_TASKS)
#: |w_i| = FUSION_WEIGHT_BASE ** a_i for a_i in [-1, 1]: weights from 1/10 to 10 times the click
#: weight. (Base 100, the weight ratios the former w = 10 ** a on every task reached, was measured:
#: the best constant gains more from the wider range than the production lookahead does —
#: production 1.09x the best constant at base 100 vs 1.135x at base 10, 2,000 users, seed 123.)
FUSION_WEIGHT_BASE = 10.0


#: The ranges of SimulatorConfig's fields (their types are checked from the annotations, every
#: float must be finite). Upper bounds on sizes keep a typo from allocating the machine away.
SIMULATOR_RANGES: dict[str, Range] = {
    "world_seed": Range(0, 2**63 - 1),
    "num_topics": Range(1, 4096),  # the topic transition matrix is num_topics²
    "topic_graph_neighbours": Range(1, 4096),
    "items_per_topic": Range(1, None), "ads_per_topic": Range(1, None),  # and MAX_CATALOGUE in total
    "num_candidates": Range(1, 10_000), "num_ad_candidates": Range(1, 10_000), "slate_size": Range(1, 10_000),
    "max_requests": Range(1, 1_000_000),
    "observed_candidates": Range(0, 10_000),
    **{name: Range(0.0, 1.0) for name in ("topic_graph_rewire", "base_leave", "boredom_decay", "interest_drift")},
    **{name: Range(0.0) for name in ("prediction_noise", "position_decay", "satisfaction_gain", "no_click_penalty",
                                     "ad_satisfaction_cost", "satisfaction_decay", "boredom_gain",
                                     "ad_revenue_scale", "satisfaction_signal_noise")},
    "max_duration": Range(0.0, low_open=True),
    "fusion_priors": Range(0.0, low_open=True),  # each β: log(p̂ + β) must stay finite
}
#: The most items (and ads) the world holds: num_topics × items_per_topic.
MAX_CATALOGUE = 5_000_000


@dataclass(frozen=True)
class SimulatorConfig:
    """Every constant of the simulated world and its users. Defaults are the reference world."""

    world_seed: int = 0
    num_topics: int = 8
    topic_graph_neighbours: int = 2  # Watts–Strogatz k/2: each topic links to 2 on each side
    topic_graph_rewire: float = 0.2
    items_per_topic: int = 250
    ads_per_topic: int = 25
    num_candidates: int = 32
    num_ad_candidates: int = 8
    slate_size: int = 5
    max_requests: int = 50
    prediction_noise: float = 0.5  # std of the multi-task model's logit error
    fusion_priors: tuple[float, ...] = (0.02, 0.02, 0.01, 0.05, 0.02)  # β per predicted task
    reward_weights: tuple[float, ...] = (1.0, 0.5, 1.0, 0.25)  # click, like, share, watch minute
    position_decay: float = 0.25
    max_duration: float = 4.0  # minutes; durations are clipped to it
    # user dynamics
    satisfaction_gain: float = 0.06  # per unit of consumed utility
    no_click_penalty: float = 0.03
    ad_satisfaction_cost: float = 0.04
    satisfaction_decay: float = 0.004  # per request: the session wears on
    boredom_gain: float = 0.35
    boredom_decay: float = 0.85
    interest_drift: float = 0.15
    base_leave: float = 0.01
    leave_threshold: float = 0.35
    leave_slope: float = 10.0
    return_threshold: float = 0.45
    return_slope: float = 8.0
    ad_revenue_scale: float = 1.0
    clickbait_sensitivity: tuple[float, float] = (0.5, 4.5)  # uniform range over users
    satisfaction_signal_noise: float = 0.15
    # negative feedback: logit of p(not interested | examined) = intercept - slope · utility, where
    # utility is the item's true utility for this user (quality, clickbait × the user's
    # sensitivity, relevance); slope 0 makes the prediction task carry no information (legacy)
    negative_intercept: float = -2.0
    negative_utility_slope: float = 1.5
    # observation: how many of the request's candidates (the top ones by predicted click) are
    # observed with their predicted behaviours; 0 = the user summary only
    observed_candidates: int = 32

    @classmethod
    def legacy(cls, **overrides: Any) -> SimulatorConfig:
        """The world before issue #16: the platform's predictions carry no signal of an item's
        utility for the user (negative feedback is noise around a constant) and the agent
        observes the user summary only. The action parametrisation is the current one."""
        return cls(**{"negative_utility_slope": 0.0, "observed_candidates": 0, **overrides})

    def __post_init__(self) -> None:
        # every field: its annotated type (Hydra / YAML lists become tuples, so the config stays
        # hashable and frozen), finite, and in its range of SIMULATOR_RANGES (a new field is
        # covered by its type; give it a range there)
        check_fields(self, SIMULATOR_RANGES)
        for items, per_item in (("items_per_topic", "item"), ("ads_per_topic", "ad")):
            total = self.num_topics * getattr(self, items)
            if total > MAX_CATALOGUE:
                raise ValueError(f"SimulatorConfig: num_topics × {items} = {total:,} {per_item}s exceeds the "
                                 f"catalogue limit of {MAX_CATALOGUE:,} (the world keeps several float64 "
                                 f"arrays per {per_item} in memory)")
        sensitivity = self.clickbait_sensitivity
        if len(sensitivity) != 2 or not 0.0 <= sensitivity[0] <= sensitivity[1]:
            raise ValueError("SimulatorConfig.clickbait_sensitivity must be a range (low, high) with "
                             f"0 <= low <= high, got {self.clickbait_sensitivity}")
        if self.slate_size > self.num_candidates:
            raise ValueError(
                f"SimulatorConfig.slate_size ({self.slate_size}) exceeds num_candidates "
                f"({self.num_candidates})")
        for name in ("reward_weights",):
            if len(getattr(self, name)) != NUM_TASKS:
                raise ValueError(f"SimulatorConfig.{name} needs {NUM_TASKS} values (one per task "
                                 f"{TASKS}), got {getattr(self, name)}")
        if len(self.fusion_priors) != NUM_PREDICTIONS:
            raise ValueError(f"SimulatorConfig.fusion_priors needs {NUM_PREDICTIONS} values (one per predicted "
                             f"task {PREDICTED_TASKS}), got {self.fusion_priors}")
        if self.observed_candidates < 0:
            raise ValueError(f"SimulatorConfig.observed_candidates must be >= 0, got {self.observed_candidates}")

    @property
    def obs_dim(self) -> int:
        return 2 * self.num_topics + 3 * NUM_PREDICTIONS + NUM_PREDICTIONS * self.num_observed_candidates + 5

    @property
    def num_observed_candidates(self) -> int:
        """Candidates in the observation: ``observed_candidates``, at most ``num_candidates``."""
        return min(self.observed_candidates, self.num_candidates)

    @property
    def summary_dim(self) -> int:
        """Entries of the user summary (the observation without the candidates' predictions)."""
        return 2 * self.num_topics + 3 * NUM_PREDICTIONS + 5

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def observation_names(config: SimulatorConfig) -> list[str]:
    """Name of every observation entry, in order (documentation and dataset metadata)."""
    t = config.num_topics
    return ([f"profile_topic{i}" for i in range(t)] + [f"recent_topic{i}" for i in range(t)]
            + [f"ema_{k}" for k in PREDICTED_TASKS] + [f"last_{k}" for k in PREDICTED_TASKS]
            + [f"candidates_pred_{k}" for k in PREDICTED_TASKS]
            + [f"candidate{j}_pred_{k}" for j in range(config.num_observed_candidates) for k in PREDICTED_TASKS]
            + ["request_fraction", "ad_load", "session_index", "session_engagement",
               "satisfaction_signal"])


def all_finite(array: np.ndarray) -> bool:
    """Whether every entry of ``array`` is finite (no NaN or inf). Small arrays (one user's action)
    are checked as Python floats: a numpy reduction costs more than the check there."""
    if array.size <= 64:
        return all(map(math.isfinite, array.ravel().tolist()))
    return bool(np.isfinite(array).all())


def _sigmoid(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Logistic function in three in-place passes (``out`` may be ``x`` itself)."""
    return _reciprocal_one_plus_exp(np.negative(x, out=out))


def _reciprocal_one_plus_exp(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(x)) in place: the logistic function of -x, bit for bit ``_sigmoid(-x)``."""
    np.exp(x, out=x)
    x += 1.0
    return np.reciprocal(x, out=x)


# Below this many variates numpy's ziggurat is cheaper (one call); above, Box–Muller on
# float32 uniforms is about 3x faster here (every step is a SIMD ufunc: log, sqrt, sin, cos).
_BOX_MULLER_MIN = 4096


def standard_normal_f32(rng: np.random.Generator, out: np.ndarray,
                        scratch: np.ndarray | None = None) -> np.ndarray:
    """Fill the contiguous float32 array ``out`` with N(0, 1) variates and return it.

    Large draws use Box–Muller on float32 uniforms, exact in distribution except that |z|
    is capped at sqrt(-2 ln 2^-24) ≈ 5.77 (probability 8e-9). ``scratch`` (float32, at least
    half the size of ``out``) avoids a temporary.
    """
    flat = out.reshape(-1)
    half = flat.size // 2
    if flat.size < _BOX_MULLER_MIN:
        return rng.standard_normal(out=out, dtype=np.float32)
    rng.random(out=flat, dtype=np.float32)
    radius, angle = flat[:half], flat[half:2 * half]
    np.subtract(np.float32(1.0), radius, out=radius)  # uniform on (0, 1]
    np.log(radius, out=radius)
    radius *= np.float32(-2.0)
    np.sqrt(radius, out=radius)
    angle *= np.float32(2.0 * np.pi)
    cosine = np.cos(angle, out=None if scratch is None else scratch.reshape(-1)[:half])
    np.sin(angle, out=angle)
    angle *= radius
    radius *= cosine
    if flat.size > 2 * half:  # odd size: one more variate
        flat[-1] = rng.standard_normal(dtype=np.float32)
    return out


@dataclass
class World:
    """The fixed part of the simulation: topic graph, catalogue, ads.

    Items are laid out topic-major: item ``i`` belongs to topic ``i // items_per_topic``
    (ads likewise with ``ads_per_topic``); retrieval relies on it.
    """

    graph: nx.Graph
    topic_transition: np.ndarray  # (T, T) row-stochastic: where interest drifts after a click
    item_topic: np.ndarray  # (N,) int
    item_quality: np.ndarray  # (N,)
    item_clickbait: np.ndarray  # (N,)
    item_duration: np.ndarray  # (N,) minutes
    ad_topic: np.ndarray  # (M,) int
    ad_quality: np.ndarray  # (M,)
    ad_bid: np.ndarray  # (M,) revenue per click

    @staticmethod
    def build(config: SimulatorConfig) -> World:
        rng = np.random.default_rng(config.world_seed)
        t = config.num_topics
        graph_seed = int(rng.integers(2**31))
        if t <= 3:  # too few topics for a small-world graph: all topics are neighbours
            graph = nx.complete_graph(t)
        else:
            # Watts–Strogatz needs 2 <= k < T; with few topics it degrades to a ring or clique
            k = min(2 * config.topic_graph_neighbours, t - 1)
            graph = nx.connected_watts_strogatz_graph(t, k, config.topic_graph_rewire,
                                                      seed=graph_seed)
        adjacency = nx.to_numpy_array(graph, nodelist=range(t))
        degree = adjacency.sum(1, keepdims=True)
        # after clicking topic u, interest moves 60% to u itself and 40% to its neighbours
        # (all of it stays on u when u has no neighbour, i.e. T = 1)
        transition = np.where(degree > 0, 0.6 * np.eye(t) + 0.4 * adjacency / np.maximum(degree, 1.0),
                              np.eye(t))
        n = t * config.items_per_topic
        m = t * config.ads_per_topic
        return World(
            graph=graph,
            topic_transition=transition,
            item_topic=np.repeat(np.arange(t), config.items_per_topic),
            item_quality=rng.beta(1.2, 1.2, n),
            item_clickbait=rng.beta(0.6, 1.2, n),
            item_duration=np.clip(rng.lognormal(0.0, 0.5, n), 0.2, config.max_duration),
            ad_topic=np.repeat(np.arange(t), config.ads_per_topic),
            ad_quality=rng.beta(2.0, 3.0, m),
            ad_bid=rng.lognormal(0.0, 0.5, m),
        )


@dataclass
class StepResult:
    """What one batched request returns; every array has leading dimension B."""

    observation: np.ndarray  # (B, obs_dim) float32
    reward: np.ndarray  # (B,) engagement
    terminated: np.ndarray  # (B,) bool: the user left
    truncated: np.ndarray  # (B,) bool: max_requests reached
    info: dict[str, np.ndarray] = field(default_factory=dict)


# state entries a request changes (restored for users already done, see ``step``)
_STEP_KEYS = ("satisfaction", "ad_fatigue", "ad_load", "short_term", "boredom", "recent_topics",
              "last", "ema", "session_engagement", "satisfaction_signal", "request",
              "lifetime_satisfaction")


class UserSimulator:
    """Batched simulator core. ``reset(B, rng)`` samples B users; ``step`` serves one request each.

    All randomness comes from the generator given to :meth:`reset` (kept as ``self.rng``).
    Users whose session ended stay frozen until :meth:`reset_users` replaces them (data
    collection) or :meth:`start_new_sessions` begins their next session (lifetimes).

    Candidate arrays (rows = users, refreshed in place after each request): ``cand_items`` (B, C)
    item ids, ``cand_pred`` (B, C, 4) the multi-task model's predictions,
    ``cand_log_pred`` (B, C, 4) = log(cand_pred + β) (the fusion-ranking features),
    ``cand_true`` (B, C, 4) the true probabilities (computed on first access), and
    ``cand_utility`` (B, C) the true utility of each candidate for its user.
    """

    def __init__(self, config: SimulatorConfig | None = None, world: World | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.world = world or World.build(self.config)
        c, w = self.config, self.world
        if w.item_topic.shape != (c.num_topics * c.items_per_topic,) or \
                w.ad_topic.shape != (c.num_topics * c.ads_per_topic,):
            raise ValueError("world does not match the config: expected "
                             f"{c.num_topics * c.items_per_topic} items and "
                             f"{c.num_topics * c.ads_per_topic} ads, got {w.item_topic.shape[0]} "
                             f"and {w.ad_topic.shape[0]}")
        self.obs_dim = c.obs_dim
        self.action_dim = ACTION_DIM  # fusion actions in [-1, 1]: what learners size their action space by
        self._log_priors = np.asarray(c.fusion_priors, dtype=np.float32)
        self._reward_weights = np.asarray(c.reward_weights, dtype=np.float64)
        self._examination = 1.0 / (1.0 + c.position_decay * np.arange(c.slate_size))
        self._rate_scale = 1.0 / np.array([c.slate_size] * 3 + [c.slate_size * c.max_duration])
        self._negative_rate_scale = 1.0 / c.slate_size
        self._rate_scale_list = self._rate_scale.tolist()  # the one-user path's Python floats
        # the one-user path's ranking weights, negated (the click's stays -1; see _step_one)
        self._negative_weights_one = np.full(NUM_PREDICTIONS, -1.0, dtype=np.float32)
        self.batch_size = 0
        self.rng: np.random.Generator | None = None
        self.state: dict[str, np.ndarray] = {}
        self._cand: dict[str, np.ndarray] = {}
        self._pending_ads = None
        self._single_user_path = True  # B = 1 takes the lean path (False: the batched one; tests)
        # The user-independent part of each item's true logits, linear in the item's quality q
        # and clickbait cb; relevance enters through _relevance_coef. One row per task:
        #   click          -2.6 + 0.8 rel + 4.5 cb + 0.8 q   (clickbait draws clicks)
        #   like | click   -2.5 + 0.4 rel - 3.0 cb + 4.0 q
        #   share | click  -4.0 + 0.5 rel - 2.0 cb + 3.5 q
        #   watched | click -1.0 + 0.5 rel - 3.5 cb + 3.5 q  (fraction of the duration)
        # True utility of an item: 2.0 q + 0.4 rel - sensitivity · cb - 0.3, where each user has
        # a clickbait sensitivity (tolerant users can be "harvested", others not).
        # The fifth task, negative feedback, is user-dependent: its logit
        #   negative       negative_intercept - negative_utility_slope · utility
        # is filled in per candidate once the utility is known (its column here is 0).
        q, cb = w.item_quality[:, None], w.item_clickbait[:, None]
        intercept = np.array([-2.6, -2.5, -4.0, -1.0, 0.0])
        self._item_logits = (intercept + q * np.array([0.8, 4.0, 3.5, 3.5, 0.0])
                             + cb * np.array([4.5, -3.0, -2.0, -3.5, 0.0])).astype(np.float32)
        self._relevance_coef = np.array([0.8, 0.4, 0.5, 0.5, 0.0], dtype=np.float32)
        self._item_utility = (2.0 * w.item_quality - 0.3).astype(np.float32)
        self._item_clickbait = w.item_clickbait.astype(np.float32)
        self._item_duration_fraction = (w.item_duration / c.max_duration).astype(np.float32)
        self._log_priors_tiled = np.tile(self._log_priors, c.num_candidates)  # (C·4,) flat rows
        self._click_examination = np.ones((c.slate_size, 3), dtype=np.float32)
        self._click_examination[:, 0] = self._examination  # p(click) is scaled by examination
        self._uniform_cdf = (0.3 / c.num_topics) * np.arange(1, c.num_topics + 1)
        self._ad_topic = w.ad_topic
        self._ad_logit_base = (-2.5 + 1.5 * w.ad_quality).astype(np.float32)  # + 0.8 relevance
        self._inverse_max_bid = 1.0 / float(w.ad_bid.max())

    # ------------------------------------------------------------------ users
    def _sample_users(self, n: int) -> dict[str, np.ndarray]:
        c, rng = self.config, self.rng
        t = c.num_topics
        long_term = rng.dirichlet(np.full(t, 0.5), n)
        # the platform's profile of the user: a noisy, smoothed view of the long-term interest
        profile = 0.7 * long_term + 0.3 * rng.dirichlet(np.ones(t), n)
        return {
            "long_term": long_term,
            "profile": profile,
            "short_term": long_term.copy(),
            "boredom": np.zeros((n, t)),
            "satisfaction": np.clip(rng.normal(0.65, 0.1, n), 0.3, 1.0),
            "patience": rng.uniform(0.5, 1.0, n),
            # how much clickbait hurts this user: tolerant users can be "harvested", others not
            "clickbait_sensitivity": rng.uniform(c.clickbait_sensitivity[0], c.clickbait_sensitivity[1], n),
            "ad_fatigue": np.zeros(n),
            "lifetime_satisfaction": np.full(n, 0.6),
            "session_index": np.zeros(n, dtype=np.int64),
            "request": np.zeros(n, dtype=np.int64),
            "recent_topics": profile.copy(),
            "ema": np.zeros((n, NUM_PREDICTIONS)),
            "last": np.zeros((n, NUM_PREDICTIONS)),
            "ad_load": np.zeros(n),
            "session_engagement": np.zeros(n),
            "satisfaction_signal": np.full(n, 0.5),
            "done": np.zeros(n, dtype=bool),
        }

    def reset(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Sample ``batch_size`` new users, draw their first candidates, return observations."""
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        c = self.config
        self.rng = rng
        self.batch_size = b = int(batch_size)
        self._rows = np.arange(b)[:, None]
        self._candidate_offsets = self._rows * c.num_candidates
        self._topic_offsets = self._rows * c.num_topics
        self.state = self._sample_users(b)
        self._buffers: dict[str, np.ndarray] = {}
        self._cand = self._empty_candidates(b)
        self._pending_ads: tuple[np.ndarray, np.ndarray] | None = None  # see _retrieve_one
        self._cand_true: np.ndarray | None = None
        # the last observation built, kept by the simulator (callers get copies): replacing a few
        # users rebuilds only their rows
        self._obs = np.empty((b, self.obs_dim), dtype=np.float32)
        self._retrieve(None)
        return self.observe()

    def reset_users(self, mask: np.ndarray) -> np.ndarray:
        """Replace the users selected by ``mask`` with fresh ones; return all observations (the
        other users' rows are those of the last observation built, see :meth:`observe`)."""
        index = np.flatnonzero(mask)
        if index.size:
            fresh = self._sample_users(index.size)
            for key, value in fresh.items():
                self.state[key][index] = value
            self._retrieve(index)
        return self._observe_rows(index)

    def start_new_sessions(self, mask: np.ndarray) -> np.ndarray:
        """Begin the next session for the users in ``mask`` (who came back): the gap between
        sessions restores part of satisfaction, resets boredom and the short-term interest,
        and keeps the long-term state. Returns all observations."""
        s, index = self.state, np.flatnonzero(mask)
        if index.size:
            s["satisfaction"][index] = 0.5 * s["satisfaction"][index] + 0.5 * np.clip(
                s["lifetime_satisfaction"][index] + 0.1, 0.0, 1.0)
            s["boredom"][index] *= 0.3
            s["short_term"][index] = 0.5 * s["short_term"][index] + 0.5 * s["long_term"][index]
            s["ad_fatigue"][index] = 0.0
            s["session_index"][index] += 1
            for key in ("request", "session_engagement", "ad_load"):
                s[key][index] = 0
            s["done"][index] = False
            self._retrieve(index)
        return self._observe_rows(index)

    # -------------------------------------------------------------- retrieval
    def _empty_candidates(self, n: int) -> dict[str, np.ndarray]:
        c = self.config
        shape, f32 = (n, c.num_candidates), np.float32
        return {"items": np.zeros(shape, np.int64), "topics": np.zeros(shape, np.int64),
                "logits": np.zeros(shape + (NUM_PREDICTIONS,), f32), "pred": np.zeros(shape + (NUM_PREDICTIONS,), f32),
                "log_pred": np.zeros(shape + (NUM_PREDICTIONS,), f32), "utility": np.zeros(shape, f32),
                "duration": np.zeros(shape, f32), "pred_mean": np.zeros((n, NUM_PREDICTIONS), f32),
                "ads": np.zeros((n, c.num_ad_candidates), np.int64),
                "ad_logit": np.zeros((n, c.num_ad_candidates), f32), "ad_pred": np.zeros((n, c.num_ad_candidates), f32)}

    def _scratch(self, name: str, shape: tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
        """A reusable work array (the leading rows of a buffer kept for the whole batch).
        Fresh large arrays cost page faults (about 1.3 µs per 4 KiB here) that take longer
        than the arithmetic done on them, so the hot path writes into these."""
        buf = self._buffers.get(name)
        if buf is None or buf.shape[0] < shape[0] or buf.shape[1:] != shape[1:] or buf.dtype != dtype:
            buf = self._buffers[name] = np.empty((max(shape[0], self.batch_size),) + shape[1:], dtype)
        return buf[:shape[0]]

    @staticmethod
    def _no_scratch(name: str, shape: tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
        return np.empty(shape, dtype)

    def _relevance_table(self, index: np.ndarray | None, scratch: Any = None) -> np.ndarray:
        """(n, T) relevance of every topic for the users in ``index`` (None: all), net of
        boredom: min(T · interest - 1, 3) - boredom, interest = 0.6 short-term + 0.4 long-term."""
        s, t = self.state, self.config.num_topics
        scratch = scratch or self._no_scratch
        short, long_, boredom = (s[key] if index is None else s[key].take(
            index, axis=0, out=scratch(key, (index.size, t), np.float64), mode="clip")
            for key in ("short_term", "long_term", "boredom"))
        table = np.multiply(short, 0.6 * t, out=scratch("relevance_table", short.shape, np.float64))
        table += np.multiply(long_, 0.4 * t, out=scratch("relevance_tmp", short.shape, np.float64))
        table -= 1.0
        np.minimum(table, 3.0, out=table)
        table -= boredom
        return table

    def _retrieve(self, index: np.ndarray | None) -> None:
        """Draw candidates for the users in ``index`` (None: everyone, written in place into
        the candidate arrays) and compute their true logits, noisy predictions and utilities."""
        if self.batch_size == 1 and self._single_user_path:
            return self._retrieve_one()
        c, rng, s = self.config, self.rng, self.state
        t, k = c.num_topics, c.num_candidates
        buf = self._scratch
        if index is None:  # everyone: write straight into the candidate arrays
            out = self._cand
            profile, recent, sensitivity = s["profile"], s["recent_topics"], s["clickbait_sensitivity"]
        else:  # some users: compute in work arrays, scatter at the end
            out = {key: buf(f"candidates_{key}", (index.size,) + value.shape[1:], value.dtype)
                   for key, value in self._cand.items()}
            profile, recent, sensitivity = (s[key].take(index, axis=0, out=buf(key, (index.size,) + s[key].shape[1:],
                                                                             np.float64), mode="clip")
                                            for key in ("profile", "recent_topics", "clickbait_sensitivity"))
        n = profile.shape[0]
        # retrieval: topics from the observed profile and recent topics, mixed with uniform,
        # by inverse CDF (topic = number of CDF entries <= u)
        cdf = np.multiply(profile, 0.4, out=buf("cdf", (n, t), np.float64))
        cdf += np.multiply(recent, 0.3, out=buf("cdf_tmp", (n, t), np.float64))
        np.cumsum(cdf, axis=1, out=cdf)
        cdf += self._uniform_cdf
        cdf /= cdf[:, -1:]
        u = rng.random(out=buf("uniform", (n, k), np.float64))
        topics = out["topics"]
        if n >= 64 and t <= 16:  # T - 1 vectorised comparisons beat a binary search
            count, above = buf("count", (n, k), np.int8), buf("above", (n, k), np.bool_)
            count.fill(0)
            for j in range(t - 1):
                count += np.greater_equal(u, cdf[:, j:j + 1], out=above)
            np.copyto(topics, count)
        else:  # one binary search over all users' CDFs laid end to end (row r in [r, r + 1])
            offsets = np.arange(n)[:, None]
            found = np.searchsorted((cdf + offsets).ravel(), (u + offsets).ravel(), side="right")
            np.minimum(found.reshape(n, k) - offsets * t, t - 1, out=topics)
        # the item within its topic: floor(items_per_topic · u') for a fresh uniform u'
        items = np.multiply(topics, c.items_per_topic, out=out["items"])
        offset = rng.random(out=u)
        offset *= c.items_per_topic
        np.add(items, offset, out=items, casting="unsafe")  # int + float in [0, m) truncates
        # relevance depends on (user, topic) only: build the (n, T) table, then gather
        user_topic = np.add(topics, self._topic_offsets[:n], out=buf("user_topic", (n, k), np.int64))
        table = buf("relevance_table32", (n, t))
        np.copyto(table, self._relevance_table(index, buf))
        relevance = table.take(user_topic, out=buf("relevance", (n, k)), mode="clip")
        logits = self._item_logits.take(items, axis=0, out=out["logits"], mode="clip")  # (n, C, 5)
        # the relevance term of each (user, topic), gathered per candidate; filled column by column
        # (a broadcast over a last axis of 5 runs numpy's inner loop 5 elements at a time)
        table_logits = buf("table_logits", (n, t, NUM_PREDICTIONS))
        for task, coef in enumerate(self._relevance_coef):
            np.multiply(table, coef, out=table_logits[..., task])
        logits += table_logits.reshape(-1, NUM_PREDICTIONS).take(
            user_topic, axis=0, out=buf("relevance_logits", logits.shape), mode="clip")
        # true utility of each candidate for its user, then the negative-feedback logit from it
        utility = self._item_clickbait.take(items, out=out["utility"], mode="clip")
        utility *= -sensitivity.astype(np.float32)[:, None]
        work = buf("utility_tmp", (n, k))
        utility += self._item_utility.take(items, out=work, mode="clip")
        utility += np.multiply(relevance, np.float32(0.4), out=work)
        np.multiply(utility, np.float32(-c.negative_utility_slope), out=work)
        work += np.float32(c.negative_intercept)
        logits[..., 4] = work
        # sigmoid(logits + noise · z), its negation folded into the first passes as in _retrieve_one
        pred = standard_normal_f32(rng, out["pred"], buf("normal", (n * k * NUM_PREDICTIONS // 2,)))
        pred *= np.float32(-c.prediction_noise)
        pred -= logits
        _reciprocal_one_plus_exp(pred)
        duration = self._item_duration_fraction.take(items, out=out["duration"], mode="clip")
        pred[..., 3] *= duration  # watch: watched fraction × duration, normalised to [0, 1]
        log_pred = out["log_pred"]
        np.add(pred.reshape(n, -1), self._log_priors_tiled, out=log_pred.reshape(n, -1))
        np.log(log_pred, out=log_pred)
        np.einsum("nck->nk", pred, out=out["pred_mean"])
        out["pred_mean"] *= np.float32(1.0 / k)
        # the ad auction's retrieval: num_ad_candidates ads drawn uniformly, their true ad-click
        # logits (-2.5 + 0.8 relevance + 1.5 ad quality) and the ad-click model's predictions
        ads = out["ads"]
        ads[...] = rng.integers(0, self.world.ad_topic.size, ads.shape)
        ad_logit = out["ad_logit"]
        table.take(np.add(self._ad_topic.take(ads), self._topic_offsets[:n], out=buf("ad_topic", ads.shape, np.int64)),
                   out=ad_logit, mode="clip")
        ad_logit *= np.float32(0.8)
        ad_logit += self._ad_logit_base.take(ads)
        ad_pred = standard_normal_f32(rng, out["ad_pred"])
        ad_pred *= np.float32(-c.prediction_noise)
        ad_pred -= ad_logit
        _reciprocal_one_plus_exp(ad_pred)
        if index is not None:
            for key, value in out.items():
                self._cand[key][index] = value
        self._cand_true = None

    cand_items = property(lambda self: self._cand["items"], doc="(B, C) candidate item ids")
    cand_topics = property(lambda self: self._cand["topics"], doc="(B, C) candidate topics")
    cand_pred = property(lambda self: self._cand["pred"],
                         doc="(B, C, 5) the multi-task model's predicted click / like / share / watch / negative")
    cand_log_pred = property(lambda self: self._cand["log_pred"],
                             doc="(B, C, 5) log(cand_pred + β): the fusion-ranking features")
    cand_utility = property(lambda self: self._cand["utility"],
                            doc="(B, C) true utility of each candidate for its user (evaluation only)")
    cand_ads = property(lambda self: self._cand["ads"], doc="(B, num_ad_candidates) this request's ad candidates' ids")

    @property
    def cand_ad_pred(self) -> np.ndarray:
        """(B, num_ad_candidates) their predicted ad-click probabilities (p̂, the auction's)"""
        self._finish_ads_one()
        return self._cand["ad_pred"]

    @property
    def cand_true(self) -> np.ndarray:
        """(B, C, 5) true click / like / share / watched-fraction×duration / negative-feedback
        probabilities of the candidates (evaluation and the oracle policy only; computed on
        first access)."""
        if self._cand_true is None:
            true = _sigmoid(self._cand["logits"])
            true[..., 3] *= self._cand["duration"]
            self._cand_true = true
        return self._cand_true

    def ad_candidate_values(self) -> np.ndarray:
        """(B, num_ad_candidates) float32 in [0, 1]: bid × p̂(ad click) of this request's ad
        candidates — what the ad auction ranks by — best first, divided by the largest bid of
        the inventory (the advertiser's observation of the ads it could serve)."""
        value = self.world.ad_bid[self._cand["ads"]] * self.cand_ad_pred
        value.sort(axis=1)
        return (value[:, ::-1] * self._inverse_max_bid).astype(np.float32)

    # ---------------------------------------------------------------- ranking
    @staticmethod
    def fusion_weights(action: np.ndarray) -> np.ndarray:
        """Map actions (..., 4) in [-1, 1] (clipped) to the signed fusion weights (..., 5) of the
        predicted tasks: click 1, like / share / watch ``10 ** a``, negative ``-10 ** a``
        (``FUSION_WEIGHT_BASE``)."""
        action = np.asarray(action)
        weights = np.empty(action.shape[:-1] + (NUM_PREDICTIONS,), dtype=np.float64)
        weights[..., 0] = 1.0
        np.power(FUSION_WEIGHT_BASE, np.maximum(np.minimum(action, 1.0), -1.0), out=weights[..., 1:])
        weights[..., 4] *= -1.0
        return weights

    def fused_scores(self, action: np.ndarray) -> np.ndarray:
        """(B, C) fused score ``Σ_i w_i · log(p̂_i + β_i)`` of every candidate under the (B, 4) action
        (``w`` from :meth:`fusion_weights`)."""
        weights = self.fusion_weights(action).astype(np.float32)
        return np.matmul(self.cand_log_pred, weights[:, :, None])[..., 0]

    def rank(self, action: np.ndarray) -> np.ndarray:
        """(B, K) candidate positions of the slate, best first."""
        negative_weights = self.fusion_weights(action).astype(np.float32)
        np.negative(negative_weights, out=negative_weights)
        scores = np.matmul(self.cand_log_pred, negative_weights[:, :, None],
                           out=self._scratch("scores", (self.batch_size, self.config.num_candidates, 1)))
        return np.argsort(scores[..., 0], axis=1)[:, :self.config.slate_size]

    def predicted_utility(self) -> np.ndarray:
        """(B, C) each candidate's utility for its user as the platform can estimate it: the
        negative-feedback prediction inverted through its link,
        ``(negative_intercept - logit p̂(negative)) / negative_utility_slope`` (0 where the slope
        is 0: the prediction then carries no utility). Its error is the prediction's own noise."""
        c = self.config
        if c.negative_utility_slope == 0.0:
            return np.zeros(self._cand["pred"].shape[:2])
        p = np.clip(self._cand["pred"][..., 4].astype(np.float64), 1e-6, 1 - 1e-6)
        return (c.negative_intercept - np.log(p / (1.0 - p))) / c.negative_utility_slope

    def slate_expectations(self, slate: np.ndarray, use_true: bool = True,
                           utility: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Expected reward, consumed utility, negative feedback and probability of no click of
        (B, ..., K) slates of candidate positions (true or predicted probabilities; no ads).
        ``utility``: (B, C) per-candidate utilities to use instead of the true ones (a policy's
        estimate). Used by the reference policies. Every term is linear in the examination
        probability, so it is computed once per candidate and gathered per slate position."""
        probs = (self.cand_true if use_true else self.cand_pred).astype(np.float64)
        c = self.config
        clicked = probs[..., 0]  # (B, C) p(click) if examined
        rw = self._reward_weights
        reward = clicked * (rw[0] + rw[1] * probs[..., 1] + rw[2] * probs[..., 2]
                            + rw[3] * c.max_duration * probs[..., 3])
        utility = clicked * (self.cand_utility if utility is None else utility)
        flat = slate + self._candidate_offsets.reshape((-1,) + (1,) * (slate.ndim - 1))
        exam = self._examination
        no_click = 1.0 - clicked.take(flat) * exam
        return {"reward": reward.take(flat) @ exam, "utility": utility.take(flat) @ exam,
                "negative": probs[..., 4].take(flat) @ exam, "no_click": np.prod(no_click, axis=-1)}

    # ------------------------------------------------------------------- step
    def step(self, action: np.ndarray, ad_slot: np.ndarray | None = None) -> StepResult:
        """Serve one request to every user. ``action``: (B, 4) fusion actions (clipped to
        [-1, 1]). ``ad_slot``: optional (B,) ints, 0 = no ad, j in 1..K = the best ad replaces
        slate position j. Users already done are left unchanged and get zero reward. The
        state arrays are updated in place. Every user served gets the candidates of the next
        request (also a user who just left: the final observation describes the next request)."""
        c, w, rng, s = self.config, self.world, self.rng, self.state
        b, k, t = self.batch_size, c.slate_size, c.num_topics
        buf = self._scratch
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (b, ACTION_DIM):
            raise ValueError(f"action must have shape ({b}, {ACTION_DIM}), got {action.shape}")
        if not all_finite(action):
            raise ValueError("action contains NaN or infinite values")
        if b == 1 and self._single_user_path and ad_slot is None and not s["done"][0]:
            return self._step_one(action)
        active = ~s["done"]
        all_active = bool(active.all())
        if not all_active:  # users already done: remember their state, restore it below
            frozen = np.flatnonzero(s["done"])
            saved = {key: s[key][frozen] for key in _STEP_KEYS}

        slate = self.rank(action)
        flat = np.add(slate, self._candidate_offsets, out=buf("flat", (b, k), np.int64))
        items = self.cand_items.take(flat)
        p = self._cand["logits"].reshape(-1, NUM_PREDICTIONS).take(
            flat, axis=0, out=buf("p", (b, k, NUM_PREDICTIONS)), mode="clip")
        _sigmoid(p, out=p)  # (B, K, 5) true probabilities of the slate
        p[..., 3] *= self._cand["duration"].take(flat)
        utility = self.cand_utility.take(flat)

        # responses: click (examination × p(click)), then like and share given the click
        # and negative feedback on an examined impression (clicked or not)
        draws = rng.random(out=buf("draws", (b, 4 * k + 1), np.float64))
        threshold = np.multiply(p[..., :3], self._click_examination, out=buf("threshold", (b, k, 3)))
        responses = np.less(draws[:, :3 * k].reshape(b, k, 3), threshold, out=buf("responses", (b, k, 3), np.bool_))
        negative = np.less(draws[:, 3 * k:4 * k], p[..., 4] * self._examination, out=buf("negative", (b, k), np.bool_))
        if not all_active:
            responses &= active[:, None, None]
            negative &= active[:, None]
        has_ad = np.zeros(b, dtype=bool)
        ad_click = np.zeros(b, dtype=bool)
        revenue = np.zeros(b)
        ad_ids = np.full(b, -1, dtype=np.int64)
        if ad_slot is not None:
            ad_slot = np.asarray(ad_slot)
            if ad_slot.shape != (b,):
                raise ValueError(f"ad_slot must have shape ({b},), got {ad_slot.shape}")
            if np.any((ad_slot < 0) | (ad_slot > k)):
                raise ValueError(f"ad_slot values must be in 0..{k}, got {np.unique(ad_slot)}")
            has_ad = (ad_slot > 0) & active
            if has_ad.any():
                ad_ids, ad_click, revenue = self._serve_ads(has_ad, ad_slot)
                # the ad takes the organic item's place at that position
                responses[has_ad, ad_slot[has_ad] - 1] = False
                negative[has_ad, ad_slot[has_ad] - 1] = False
        click = responses[..., 0]
        responses[..., 1] &= click
        responses[..., 2] &= click
        counts = responses[:, 0].astype(np.uint8)  # summed over positions by hand: a reduction
        for j in range(1, k):                      # over the middle axis is 5x slower
            counts += responses[:, j]
        components = np.empty((b, NUM_TASKS))
        components[:, :3] = counts
        components[:, 3] = np.einsum("bk,bk->b", p[..., 3], click) * c.max_duration
        reward = components @ self._reward_weights
        consumed_utility = np.einsum("bk,bk->b", utility, click, dtype=np.float64)

        # dynamics
        n_clicks = components[:, 0]
        any_click = n_clicks > 0
        delta = c.satisfaction_gain * consumed_utility
        delta -= c.no_click_penalty * ~any_click + c.satisfaction_decay
        if ad_slot is not None:
            delta -= has_ad * c.ad_satisfaction_cost * (1.0 + s["ad_fatigue"])
            s["ad_fatigue"] *= 0.8
            s["ad_fatigue"] += has_ad
            s["ad_load"] *= 0.7
            s["ad_load"] += 0.3 * has_ad
        sat = s["satisfaction"]
        sat += delta
        np.clip(sat, 0.0, 1.0, out=sat)
        topic_index = np.add(self.cand_topics.take(flat), self._topic_offsets, out=buf("topic_index", (b, k), np.int64))
        clicked = np.bincount(topic_index.ravel(), weights=click.ravel(), minlength=b * t).reshape(b, t)
        clicked /= np.maximum(n_clicks, 1.0)[:, None]  # distribution of clicked topics (0 if none)
        work = buf("dynamics", (b, t), np.float64)
        np.einsum("bt,tu->bu", clicked, w.topic_transition, out=work)  # where interest drifts
        work -= s["short_term"]
        work *= (c.interest_drift * any_click)[:, None]
        s["short_term"] += work
        s["boredom"] *= c.boredom_decay
        s["boredom"] += np.multiply(clicked, c.boredom_gain, out=work)
        np.subtract(clicked, s["recent_topics"], out=work)
        work *= (0.3 * any_click)[:, None]
        s["recent_topics"] += work
        negative_count = np.count_nonzero(negative, axis=1).astype(np.float64)
        np.multiply(components, self._rate_scale, out=s["last"][:, :NUM_TASKS])
        np.multiply(negative_count, self._negative_rate_scale, out=s["last"][:, NUM_TASKS])
        s["ema"] *= 0.7
        s["ema"] += 0.3 * s["last"]
        s["session_engagement"] += reward
        # what the platform can measure of satisfaction (dwell, skips, "not interested"): noisy
        signal = s["satisfaction_signal"]
        signal *= 0.5
        signal += 0.5 * (sat + c.satisfaction_signal_noise * rng.standard_normal(b))
        s["request"] += 1

        # leaving
        hazard = _sigmoid(c.leave_slope * (c.leave_threshold - sat))
        p_leave = (c.base_leave + (1 - c.base_leave) * hazard) * (1.5 - s["patience"])
        terminated = draws[:, -1] < p_leave
        truncated = ~terminated & (s["request"] >= c.max_requests)
        if not all_active:
            terminated &= active
            truncated &= active
            for key, values in saved.items():
                s[key][frozen] = values
            reward *= active
            consumed_utility *= active
            components *= active[:, None]
            negative_count *= active
        ended = terminated | truncated
        return_probability = np.zeros(b)
        if ended.any():
            lifetime = s["lifetime_satisfaction"]
            lifetime[ended] = 0.7 * lifetime[ended] + 0.3 * sat[ended]
            return_probability[ended] = _sigmoid(c.return_slope * (lifetime[ended] - c.return_threshold))
            s["done"] |= ended
        # the next request's candidates for every user served now, also those who just left:
        # their final observation shows the request they would have seen next
        if all_active:
            self._retrieve(None)
        elif active.any():
            self._retrieve(np.flatnonzero(active))
        info = {
            "components": components,
            "negative_feedback": negative_count,
            "true_utility": consumed_utility,
            "satisfaction": sat.copy(),
            "ad_shown": has_ad,
            "ad_click": ad_click,
            "ad_revenue": revenue,
            "ad_id": ad_ids,
            "slate_items": items,
            "clicks": click.copy(),
            "return_probability": return_probability,
            "active": active,
        }
        return StepResult(self.observe(), reward, terminated, truncated, info)

    # ------------------------------------------------- one user (B = 1, the PettingZoo envs)
    # The same arithmetic as ``_retrieve`` and ``step``, in the same order and with the same
    # draws, written for one user with Python scalars where numpy calls would cost more than
    # the work (a numpy call costs about 1 µs). tests/envs/test_simulator.py checks that both
    # paths produce the same trajectories.
    def _retrieve_one(self) -> None:
        c, rng, s, cand = self.config, self.rng, self.state, self._cand
        t, k = c.num_topics, c.num_candidates
        cdf = (0.4 * s["profile"][0] + 0.3 * s["recent_topics"][0]).cumsum()
        cdf += self._uniform_cdf
        cdf /= cdf[-1]
        topics = np.minimum(cdf.searchsorted(rng.random(k), side="right"), t - 1)
        offset = rng.random(k)
        offset *= c.items_per_topic
        items = topics * c.items_per_topic + offset.astype(np.int64)
        table = s["short_term"][0] * (0.6 * t)
        table += s["long_term"][0] * (0.4 * t)
        table -= 1.0
        np.minimum(table, 3.0, out=table)
        # the last pass in float64, written to float32: table.astype(float32) after the subtraction
        table = np.subtract(table, s["boredom"][0], out=np.empty(t, np.float32))
        relevance = table.take(topics)
        logits = self._item_logits.take(items, axis=0)
        logits += relevance[:, None] * self._relevance_coef  # = (table[:, None] · coef)[topics], bit for bit
        utility = self._item_clickbait.take(items)
        utility *= np.float32(-s["clickbait_sensitivity"][0])
        utility += self._item_utility.take(items)
        utility += np.float32(0.4) * relevance
        negative_logit = np.multiply(utility, np.float32(-c.negative_utility_slope), out=logits[:, 4])
        negative_logit += np.float32(c.negative_intercept)
        # sigmoid(logits + noise · z) with the sigmoid's negation folded into the first two passes:
        # z · (-noise) - logits is -(z · noise + logits) bit for bit (rounding is symmetric)
        pred = rng.standard_normal((k, NUM_PREDICTIONS), dtype=np.float32)
        pred *= np.float32(-c.prediction_noise)
        pred -= logits
        _reciprocal_one_plus_exp(pred)
        duration = self._item_duration_fraction.take(items)
        pred[:, 3] *= duration
        cand["items"], cand["topics"], cand["logits"] = items[None], topics[None], logits[None]
        cand["pred"], cand["duration"], cand["utility"] = pred[None], duration[None], utility[None]
        # the ad auction's retrieval: its draws now (the stream's order), its predictions when they
        # are first read (_finish_ads_one): the env without an ad slot never reads them
        cand["ads"] = rng.integers(0, self.world.ad_topic.size, c.num_ad_candidates)[None]
        self._pending_ads = (table, rng.standard_normal(c.num_ad_candidates, dtype=np.float32))
        cand["log_pred"] = np.log(pred + self._log_priors)[None]
        cand["pred_mean"] = np.einsum("ck->k", pred)[None] * np.float32(1.0 / k)
        self._cand_true = None

    def _finish_ads_one(self) -> None:
        """The ad candidates' true logits and predictions that ``_retrieve_one`` left pending
        (the arithmetic of ``_retrieve`` on its draws); called before they are read."""
        if self._pending_ads is None:
            return
        (table, ad_pred), self._pending_ads = self._pending_ads, None
        ads = self._cand["ads"][0]
        ad_logit = table.take(self._ad_topic.take(ads))
        ad_logit *= np.float32(0.8)
        ad_logit += self._ad_logit_base.take(ads)
        ad_pred *= np.float32(-self.config.prediction_noise)
        ad_pred -= ad_logit
        self._cand["ad_logit"] = ad_logit[None]
        self._cand["ad_pred"] = _reciprocal_one_plus_exp(ad_pred)[None]

    def _step_one(self, action: np.ndarray) -> StepResult:
        """``step`` for a batch of one live user without an ad (``action``: validated (1, ACTION_DIM))."""
        c, w, rng, s, cand = self.config, self.world, self.rng, self.state, self._cand
        k = c.slate_size
        # rank's float32 weights, negated: (-1, -10 ** a_like, -10 ** a_share, -10 ** a_watch, 10 ** a_negative)
        weights = self._negative_weights_one
        np.power(FUSION_WEIGHT_BASE, np.maximum(np.minimum(action[0], 1.0), -1.0), out=weights[1:])
        np.negative(weights[1:NUM_TASKS], out=weights[1:NUM_TASKS])
        slate = (cand["log_pred"][0] @ weights).argsort()[:k]
        items = cand["items"][0].take(slate)
        p = cand["logits"][0].take(slate, axis=0)
        _sigmoid(p, out=p)
        p[:, 3] *= cand["duration"][0].take(slate)
        utility = cand["utility"][0].take(slate)
        # responses as in step (click, then like and share given the click; negative feedback on an
        # examined impression), compared as Python floats: the same float64 comparisons
        draws = rng.random(4 * k + 1)
        u = draws.tolist()
        thresholds = (p[:, :3] * self._click_examination).tolist()  # float32 products, as in step
        negative_thresholds = (p[:, 4] * self._examination).tolist()
        click_list, likes, shares = [], 0, 0
        for j, (p_click, p_like, p_share) in enumerate(thresholds):
            clicked = u[3 * j] < p_click
            click_list.append(clicked)
            if clicked:
                likes += u[3 * j + 1] < p_like
                shares += u[3 * j + 2] < p_share
        negative_count = float(sum(x < y for x, y in zip(u[3 * k:4 * k], negative_thresholds)))
        click = np.array(click_list)
        n_clicks = float(sum(click_list))
        watch = float(np.einsum("k,k->", p[:, 3], click) * c.max_duration)
        components = np.array([[n_clicks, float(likes), float(shares), watch]])
        reward = components @ self._reward_weights
        consumed = float(np.einsum("k,k->", utility, click, dtype=np.float64))

        any_click = n_clicks > 0
        delta = c.satisfaction_gain * consumed - (c.no_click_penalty * (not any_click) + c.satisfaction_decay)
        sat = min(max(float(s["satisfaction"][0]) + delta, 0.0), 1.0)
        s["satisfaction"][0] = sat
        boredom = s["boredom"][0]
        boredom *= c.boredom_decay
        if any_click:  # (with no click every term below adds zero)
            clicked = np.bincount(cand["topics"][0].take(slate), weights=click, minlength=c.num_topics)
            clicked /= n_clicks
            short = s["short_term"][0]
            short += (np.einsum("t,tu->u", clicked, w.topic_transition) - short) * c.interest_drift
            recent = s["recent_topics"][0]
            recent += (clicked - recent) * 0.3
            boredom += clicked * c.boredom_gain
        # the rates and their moving averages as Python floats: the same float64 operations
        last = [n_clicks * self._rate_scale_list[0], likes * self._rate_scale_list[1],
                shares * self._rate_scale_list[2], watch * self._rate_scale_list[3],
                negative_count * self._negative_rate_scale]
        s["last"][0] = last
        s["ema"][0] = [e * 0.7 + 0.3 * x for e, x in zip(s["ema"][0].tolist(), last)]
        s["session_engagement"][0] += reward[0]
        signal = float(s["satisfaction_signal"][0]) * 0.5 + 0.5 * (
            sat + c.satisfaction_signal_noise * rng.standard_normal())
        s["satisfaction_signal"][0] = signal
        request = int(s["request"][0]) + 1
        s["request"][0] = request

        hazard = 1.0 / (1.0 + math.exp(-c.leave_slope * (c.leave_threshold - sat)))
        p_leave = (c.base_leave + (1 - c.base_leave) * hazard) * (1.5 - float(s["patience"][0]))
        terminated = u[-1] < p_leave
        truncated = not terminated and request >= c.max_requests
        return_probability = 0.0
        if terminated or truncated:
            lifetime = 0.7 * float(s["lifetime_satisfaction"][0]) + 0.3 * sat
            s["lifetime_satisfaction"][0] = lifetime
            return_probability = 1.0 / (1.0 + math.exp(-c.return_slope * (lifetime - c.return_threshold)))
            s["done"][0] = True
        self._retrieve_one()
        info = {
            "components": components,
            "negative_feedback": np.array([negative_count]),
            "true_utility": np.array([consumed]),
            "satisfaction": np.array([sat]),
            "ad_shown": np.zeros(1, dtype=bool),
            "ad_click": np.zeros(1, dtype=bool),
            "ad_revenue": np.zeros(1),
            "ad_id": np.array([-1], dtype=np.int64),
            "slate_items": items[None],
            "clicks": click[None],
            "return_probability": np.array([return_probability]),
            "active": np.array([True]),
        }
        return StepResult(self.observe(), reward, np.array([terminated]), np.array([truncated]), info)

    def _serve_ads(self, has_ad: np.ndarray, ad_slot: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pick, for each user with an ad, the ad maximising bid × predicted ad-click among the
        request's ``num_ad_candidates`` retrieved ads, and draw its click. Returns (B,) ad ids (-1: none),
        ad clicks and revenue."""
        c, w, rng = self.config, self.world, self.rng
        b = self.batch_size
        self._finish_ads_one()
        index = np.flatnonzero(has_ad)
        ads, logit = self._cand["ads"][index], self._cand["ad_logit"][index].astype(np.float64)
        best = np.argmax(w.ad_bid[ads] * self._cand["ad_pred"][index], axis=1)
        chosen = ads[np.arange(index.size), best]
        exam = self._examination[ad_slot[index] - 1]
        p_click = _sigmoid(logit[np.arange(index.size), best]) * exam
        clicked = rng.random(index.size) < p_click
        ad_ids = np.full(b, -1, dtype=np.int64)
        ad_ids[index] = chosen
        ad_click = np.zeros(b, dtype=bool)
        ad_click[index] = clicked
        revenue = np.zeros(b)
        revenue[index] = clicked * w.ad_bid[chosen] * c.ad_revenue_scale
        return ad_ids, ad_click, revenue

    # ------------------------------------------------------------ observation
    def observe(self) -> np.ndarray:
        """(B, obs_dim) float32 observation, every entry clipped to [0, 1] (layout: module docstring).

        A fresh array the caller owns. The simulator keeps its own copy of the last observation
        built (by this method, :meth:`reset` or :meth:`step`), and :meth:`reset_users` and
        :meth:`start_new_sessions` rebuild only the rows of the users they change: state written
        from outside the simulator shows in their result only after a call of this method."""
        if self.batch_size == 1 and self._single_user_path:
            observation = self._observation_one()
            self._obs[0] = observation
            return observation[None]
        self._write_observation(None)
        return self._obs.copy()

    def _observation_one(self) -> np.ndarray:
        """``_write_observation`` for a batch of one user: the (obs_dim,) row in one concatenation
        (each numpy call costs more than its work here), the scalars as Python floats."""
        c, s, cand = self.config, self.state, self._cand
        parts = [s["profile"][0], s["recent_topics"][0], s["ema"][0], s["last"][0], cand["pred_mean"][0]]
        if c.num_observed_candidates:
            pred = cand["pred"][0]
            order = np.negative(pred[:, 0]).argsort()[:c.num_observed_candidates]
            parts.append(pred.take(order, axis=0).ravel())
        parts.append([float(s["request"][0]) * (1.0 / c.max_requests), float(s["ad_load"][0]),
                      float(s["session_index"][0]) * 0.1, float(s["session_engagement"][0]) * (1.0 / c.max_requests),
                      float(s["satisfaction_signal"][0])])
        observation = np.concatenate(parts, dtype=np.float32, casting="same_kind")
        np.maximum(observation, 0.0, out=observation)
        return np.minimum(observation, 1.0, out=observation)

    def _observe_rows(self, index: np.ndarray) -> np.ndarray:
        """The observation after the users in ``index`` changed: their rows rebuilt, the others
        kept from the last observation built."""
        if index.size == self.batch_size:
            return self.observe()
        if index.size:
            self._write_observation(index)
        return self._obs.copy()

    def _write_observation(self, index: np.ndarray | None) -> None:
        """Build the observation rows of the users in ``index`` (None: all) into ``self._obs``."""
        c, s = self.config, self.state
        if index is None:
            obs, row = self._obs, lambda value: value
        else:
            obs, row = self._scratch("observation_rows", (index.size, self.obs_dim)), lambda value: value[index]
        n = obs.shape[0]
        t2, p = 2 * c.num_topics, NUM_PREDICTIONS
        obs[:, :c.num_topics] = row(s["profile"])
        obs[:, c.num_topics:t2] = row(s["recent_topics"])
        obs[:, t2:t2 + p] = row(s["ema"])
        obs[:, t2 + p:t2 + 2 * p] = row(s["last"])
        obs[:, t2 + 2 * p:t2 + 3 * p] = row(self._cand["pred_mean"])
        end = obs.shape[1] - 5
        obs[:, end] = row(s["request"]) * (1.0 / c.max_requests)
        obs[:, end + 1] = row(s["ad_load"])
        obs[:, end + 2] = row(s["session_index"]) * 0.1
        obs[:, end + 3] = row(s["session_engagement"]) * (1.0 / c.max_requests)
        obs[:, end + 4] = row(s["satisfaction_signal"])
        m = c.num_observed_candidates
        if m:  # the top m candidates by predicted click, each with its five predictions (in [0, 1])
            pred = row(self._cand["pred"])
            order = np.argsort(np.negative(pred[..., 0]), axis=1)[:, :m]
            order += self._candidate_offsets[:n]  # flat row of each chosen candidate
            top = pred.reshape(-1, p).take(order, axis=0, mode="clip")
            obs[:, t2 + 3 * p:end] = top.reshape(n, m * p)
        # the summary parts can leave [0, 1] (clipped); the predictions never do, so for one user
        # (where each numpy call costs more than its work) the whole row is clipped in two calls
        for part in (obs,) if n == 1 else (obs[:, :t2 + 3 * p], obs[:, end:]):
            np.maximum(part, 0.0, out=part)
            np.minimum(part, 1.0, out=part)
        if index is not None:
            self._obs[index] = obs

    @property
    def done(self) -> np.ndarray:
        return self.state["done"]
