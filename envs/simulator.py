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
    satisfaction in [0, 1] and patience. None of this is observed.

One request (``step``)
    1. *Retrieval* drew ``num_candidates`` items (topics sampled from the user's
       observed profile mixed with uniform) when the previous request ended.
    2. A *multi-task model* predicts, per candidate, p̂(click), p̂(like | click),
       p̂(share | click) and the watched fraction of the duration: the true values with
       Gaussian noise of std ``prediction_noise`` on the logit scale.
    3. *Fusion ranking*: the action a ∈ [-1, 1]^4 (one entry per task, in the order of
       ``TASKS``; values outside are clipped) maps to weights ``w_i = 10 ** a_i``
       (so w ∈ [0.1, 10], always positive, a = 0 is the neutral weight 1), and each
       candidate is scored ``Σ_i w_i · log(p̂_i + β_i)`` with the fixed priors
       ``fusion_priors`` (β). The top ``slate_size`` candidates form the slate. An
       optional ad slot (the advertiser's decision) replaces one slate position with the
       ad that maximises bid × p̂(ad click).
    4. *Responses*, per slate position j with examination probability
       ``1 / (1 + position_decay · j)``: click, then like, share and watch time given
       the click; an ad click for the ad.
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

Observation (float32, all entries in [0, 1], ``OBS_DIM`` = 4·T... see ``observation_names``)
    the user's observed long-term profile (T), an exponential moving average of the
    clicked topics (T), moving averages of click / like / share / watch rates (4), the
    last request's click / like / share / watch rates (4), the mean predicted
    click / like / share / watch of the current candidates (4), and four scalars: the
    request index / ``max_requests``, the ad-load moving average, the session index / 10
    (clipped), and the session's engagement so far / ``max_requests`` (clipped).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import networkx as nx
import numpy as np

TASKS: tuple[str, ...] = ("click", "like", "share", "watch")
NUM_TASKS = len(TASKS)


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
    fusion_priors: tuple[float, ...] = (0.02, 0.02, 0.01, 0.05)  # β per task
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

    def __post_init__(self) -> None:
        positive = ("num_topics", "items_per_topic", "ads_per_topic", "num_candidates",
                    "num_ad_candidates", "slate_size", "max_requests")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"SimulatorConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.slate_size > self.num_candidates:
            raise ValueError(
                f"SimulatorConfig.slate_size ({self.slate_size}) exceeds num_candidates "
                f"({self.num_candidates})")
        for name in ("fusion_priors", "reward_weights"):
            if len(getattr(self, name)) != NUM_TASKS:
                raise ValueError(f"SimulatorConfig.{name} needs {NUM_TASKS} values (one per task "
                                 f"{TASKS}), got {getattr(self, name)}")
        if any(b <= 0 for b in self.fusion_priors):
            raise ValueError(f"SimulatorConfig.fusion_priors must be > 0, got {self.fusion_priors}")

    @property
    def obs_dim(self) -> int:
        return 2 * self.num_topics + 3 * NUM_TASKS + 5

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def observation_names(config: SimulatorConfig) -> list[str]:
    """Name of every observation entry, in order (documentation and dataset metadata)."""
    t = config.num_topics
    return ([f"profile_topic{i}" for i in range(t)] + [f"recent_topic{i}" for i in range(t)]
            + [f"ema_{k}" for k in TASKS] + [f"last_{k}" for k in TASKS]
            + [f"candidates_pred_{k}" for k in TASKS]
            + ["request_fraction", "ad_load", "session_index", "session_engagement",
               "satisfaction_signal"])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out = np.exp(-x)
    out += 1.0
    np.reciprocal(out, out=out)
    return out


@dataclass
class World:
    """The fixed part of the simulation: topic graph, catalogue, ads."""

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
        graph = nx.connected_watts_strogatz_graph(
            t, 2 * config.topic_graph_neighbours if t > 2 * config.topic_graph_neighbours else max(t - 1, 1),
            config.topic_graph_rewire, seed=int(rng.integers(2**31))) if t > 2 else nx.complete_graph(t)
        adjacency = nx.to_numpy_array(graph, nodelist=range(t))
        degree = np.maximum(adjacency.sum(1, keepdims=True), 1.0)
        # after clicking topic u, interest moves 60% to u itself and 40% to its neighbours
        transition = 0.6 * np.eye(t) + 0.4 * adjacency / degree
        if t == 1:
            transition = np.ones((1, 1))
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


class UserSimulator:
    """Batched simulator core. ``reset(B, rng)`` samples B users; ``step`` serves one request each.

    All randomness comes from the generator given to :meth:`reset` (kept as ``self.rng``).
    Users whose session ended stay frozen until :meth:`reset_users` replaces them (data
    collection) or :meth:`start_new_sessions` begins their next session (lifetimes).
    """

    def __init__(self, config: SimulatorConfig | None = None, world: World | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.world = world or World.build(self.config)
        c = self.config
        self.obs_dim = c.obs_dim
        self._log_priors = np.asarray(c.fusion_priors, dtype=np.float32)
        self._reward_weights = np.asarray(c.reward_weights, dtype=np.float64)
        self._examination = 1.0 / (1.0 + c.position_decay * np.arange(c.slate_size))
        self.batch_size = 0
        self.rng: np.random.Generator | None = None
        self.cand_items: np.ndarray | None = None
        # The user-independent part of each item's true logits, linear in the item's quality q
        # and clickbait cb; relevance enters through _relevance_coef. One row per task:
        #   click          -2.6 + 0.8 rel + 4.5 cb + 0.8 q   (clickbait draws clicks)
        #   like | click   -2.5 + 0.4 rel - 3.0 cb + 4.0 q
        #   share | click  -4.0 + 0.5 rel - 2.0 cb + 3.5 q
        #   watched | click -1.0 + 0.5 rel - 3.5 cb + 3.5 q  (fraction of the duration)
        # True utility of an item: 2.0 q + 0.4 rel - sensitivity · cb - 0.3, where each user has
        # a clickbait sensitivity (tolerant users can be "harvested", others not).
        w = self.world
        q, cb = w.item_quality[:, None], w.item_clickbait[:, None]
        intercept = np.array([-2.6, -2.5, -4.0, -1.0])
        self._item_logits = (intercept + q * np.array([0.8, 4.0, 3.5, 3.5])
                             + cb * np.array([4.5, -3.0, -2.0, -3.5])).astype(np.float32)
        self._relevance_coef = np.array([0.8, 0.4, 0.5, 0.5], dtype=np.float32)
        self._item_utility = (2.0 * w.item_quality - 0.3).astype(np.float32)
        self._item_clickbait = w.item_clickbait.astype(np.float32)
        self._item_duration_fraction = (w.item_duration / c.max_duration).astype(np.float32)

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
            "ema": np.zeros((n, NUM_TASKS)),
            "last": np.zeros((n, NUM_TASKS)),
            "ad_load": np.zeros(n),
            "session_engagement": np.zeros(n),
            "satisfaction_signal": np.full(n, 0.5),
            "done": np.zeros(n, dtype=bool),
        }

    def reset(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Sample ``batch_size`` new users, draw their first candidates, return observations."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        self.rng = rng
        self.batch_size = batch_size
        self.state = self._sample_users(batch_size)
        self._retrieve(np.arange(batch_size))
        return self.observe()

    def reset_users(self, mask: np.ndarray) -> np.ndarray:
        """Replace the users selected by ``mask`` with fresh ones; return all observations."""
        index = np.flatnonzero(mask)
        if index.size:
            fresh = self._sample_users(index.size)
            for key, value in fresh.items():
                self.state[key][index] = value
            self._retrieve(index)
        return self.observe()

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
        return self.observe()

    # -------------------------------------------------------------- retrieval
    def _retrieve(self, index: np.ndarray) -> None:
        """Draw candidates for the users in ``index`` and compute true and predicted responses."""
        c, rng, s = self.config, self.rng, self.state
        n, t, k = index.size, c.num_topics, c.num_candidates
        if self.cand_items is None or self.cand_items.shape[0] != self.batch_size:
            b = self.batch_size
            self.cand_items = np.zeros((b, k), dtype=np.int64)
            self.cand_true = np.zeros((b, k, NUM_TASKS), dtype=np.float32)
            self.cand_pred = np.zeros((b, k, NUM_TASKS), dtype=np.float32)
            self.cand_utility = np.zeros((b, k), dtype=np.float32)
        # retrieval: topics from the observed profile and recent topics, mixed with uniform;
        # one searchsorted over all users' CDFs laid end to end (row r occupies [r, r + 1))
        topic_probs = 0.4 * s["profile"][index] + 0.3 * s["recent_topics"][index] + 0.3 / t
        cdf = np.cumsum(topic_probs, axis=1)
        cdf /= cdf[:, -1:]
        offsets = np.arange(n)[:, None]
        flat = (cdf + offsets).ravel()
        u = rng.random((n, k)) + offsets
        topics = np.searchsorted(flat, u.ravel(), side="right").reshape(n, k) - offsets * t
        np.clip(topics, 0, t - 1, out=topics)
        items = topics * c.items_per_topic + rng.integers(0, c.items_per_topic, (n, k))
        relevance = self._relevance(index, topics).astype(np.float32)
        logits = self._item_logits[items] + relevance[..., None] * self._relevance_coef
        true = _sigmoid(logits)
        noise = rng.standard_normal(logits.shape, dtype=np.float32)
        noise *= np.float32(c.prediction_noise)
        noise += logits
        noisy = _sigmoid(noise)
        duration = self._item_duration_fraction[items]
        true[..., 3] *= duration  # watch: watched fraction × duration, normalised to [0, 1]
        noisy[..., 3] *= duration
        sensitivity = s["clickbait_sensitivity"][index].astype(np.float32)[:, None]
        utility = (self._item_utility[items] + np.float32(0.4) * relevance
                   - sensitivity * self._item_clickbait[items])
        if n == self.batch_size:  # everyone: plain assignment, no scatter
            self.cand_items, self.cand_true, self.cand_pred, self.cand_utility = items, true, noisy, utility
        else:
            self.cand_items[index] = items
            self.cand_true[index] = true
            self.cand_pred[index] = noisy
            self.cand_utility[index] = utility

    def _relevance(self, index: np.ndarray, topics: np.ndarray) -> np.ndarray:
        """Relevance of ``topics`` (n, m) for the users in ``index``, net of boredom."""
        s, t = self.state, self.config.num_topics
        interest = 0.6 * s["short_term"][index] + 0.4 * s["long_term"][index]
        rows = np.arange(index.size)[:, None]
        relevance = np.minimum(t * interest[rows, topics] - 1.0, 3.0)
        return relevance - s["boredom"][index][rows, topics]

    # ---------------------------------------------------------------- ranking
    def fusion_weights(self, action: np.ndarray) -> np.ndarray:
        """Map actions in [-1, 1]^4 (clipped) to positive fusion weights ``10 ** a``."""
        return np.power(10.0, np.clip(action, -1.0, 1.0))

    def fused_scores(self, action: np.ndarray) -> np.ndarray:
        """(B, C) fused score of every candidate under the (B, 4) action."""
        log_pred = np.log(self.cand_pred + self._log_priors)
        return np.einsum("bck,bk->bc", log_pred, self.fusion_weights(action))

    def rank(self, action: np.ndarray) -> np.ndarray:
        """(B, K) candidate positions of the slate, best first."""
        k = self.config.slate_size
        scores = self.fused_scores(action)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1)
        return np.take_along_axis(top, order, 1)

    def slate_expectations(self, slate: np.ndarray, use_true: bool = True) -> dict[str, np.ndarray]:
        """Expected behaviours, reward and utility of (B, ..., K) slates of candidate positions
        (true or predicted probabilities; no ads). Used by the reference policies."""
        probs = self.cand_true if use_true else self.cand_pred
        rows = np.arange(self.batch_size).reshape((-1,) + (1,) * (slate.ndim - 1))
        p = probs[rows, slate]  # (B, ..., K, 4)
        exam = self._examination
        click = p[..., 0] * exam
        behaviours = np.stack([click, click * p[..., 1], click * p[..., 2],
                               click * p[..., 3] * self.config.max_duration], axis=-1)
        reward = behaviours.sum(-2) @ self._reward_weights
        utility = (click * self.cand_utility[rows, slate]).sum(-1)
        no_click = np.prod(1.0 - click, axis=-1)
        return {"reward": reward, "utility": utility, "no_click": no_click}

    # ------------------------------------------------------------------- step
    def step(self, action: np.ndarray, ad_slot: np.ndarray | None = None) -> StepResult:
        """Serve one request to every user. ``action``: (B, 4) fusion actions. ``ad_slot``:
        optional (B,) ints, 0 = no ad, j in 1..K = the best ad replaces slate position j.
        Users already done are left unchanged and get zero reward."""
        c, w, rng, s = self.config, self.world, self.rng, self.state
        b, k = self.batch_size, c.slate_size
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (b, NUM_TASKS):
            raise ValueError(f"action must have shape ({b}, {NUM_TASKS}), got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError("action contains NaN or infinite values")
        active = ~s["done"]
        rows = np.arange(b)[:, None]
        slate = self.rank(action)
        items = self.cand_items[rows, slate]
        p = self.cand_true[rows, slate]  # (B, K, 4)
        utility = self.cand_utility[rows, slate]

        # responses
        draws = rng.random((b, k, 3))
        click = draws[..., 0] < p[..., 0] * self._examination
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
                ad_ids, ad_click, revenue, ad_utility = self._serve_ads(has_ad, ad_slot)
                position = np.maximum(ad_slot - 1, 0)
                # the ad takes the organic item's place at that position
                click[has_ad, position[has_ad]] = False
                utility = utility.copy()
                utility[has_ad, position[has_ad]] = 0.0
        like = click & (draws[..., 1] < p[..., 1])
        share = click & (draws[..., 2] < p[..., 2])
        watch = np.where(click, p[..., 3] * c.max_duration, 0.0)
        components = np.stack([click.sum(1), like.sum(1), share.sum(1), watch.sum(1)], axis=1)
        components = components * active[:, None]
        reward = components @ self._reward_weights
        consumed_utility = (click * utility).sum(1) * active

        # dynamics
        any_click = click.any(1)
        delta = c.satisfaction_gain * consumed_utility - c.no_click_penalty * (~any_click)
        delta = delta - c.satisfaction_decay
        if ad_slot is not None:
            delta = delta - has_ad * c.ad_satisfaction_cost * (1.0 + s["ad_fatigue"])
            s["ad_fatigue"] = np.where(active, 0.8 * s["ad_fatigue"] + has_ad, s["ad_fatigue"])
            s["ad_load"] = np.where(active, 0.7 * s["ad_load"] + 0.3 * has_ad, s["ad_load"])
        s["satisfaction"] = np.where(active, np.clip(s["satisfaction"] + delta, 0.0, 1.0),
                                     s["satisfaction"])
        topics = w.item_topic[items]
        clicked_hist = np.zeros((b, c.num_topics))
        np.add.at(clicked_hist, (np.broadcast_to(rows, topics.shape), topics), click)
        n_clicks = clicked_hist.sum(1, keepdims=True)
        clicked_dist = clicked_hist / np.maximum(n_clicks, 1.0)
        drift = (c.interest_drift * (n_clicks > 0) * active[:, None])
        s["short_term"] = (1 - drift) * s["short_term"] + drift * (clicked_dist @ w.topic_transition)
        s["boredom"] = np.where(active[:, None],
                                c.boredom_decay * s["boredom"] + c.boredom_gain * clicked_dist * (n_clicks > 0),
                                s["boredom"])
        s["recent_topics"] = np.where((active & any_click)[:, None],
                                      0.7 * s["recent_topics"] + 0.3 * clicked_dist, s["recent_topics"])
        rates = components / np.array([k, k, k, k * c.max_duration])
        s["last"] = np.where(active[:, None], rates, s["last"])
        s["ema"] = np.where(active[:, None], 0.7 * s["ema"] + 0.3 * rates, s["ema"])
        s["session_engagement"] = s["session_engagement"] + reward
        # what the platform can measure of satisfaction (dwell, skips, "not interested"): noisy
        signal = s["satisfaction"] + c.satisfaction_signal_noise * rng.standard_normal(b)
        s["satisfaction_signal"] = np.where(active, 0.5 * s["satisfaction_signal"] + 0.5 * signal,
                                            s["satisfaction_signal"])
        s["request"] = s["request"] + active

        # leaving
        sat = s["satisfaction"]
        hazard = _sigmoid(c.leave_slope * (c.leave_threshold - sat))
        p_leave = (c.base_leave + (1 - c.base_leave) * hazard) * (1.5 - s["patience"])
        terminated = active & (rng.random(b) < p_leave)
        truncated = active & ~terminated & (s["request"] >= c.max_requests)
        ended = terminated | truncated
        s["lifetime_satisfaction"] = np.where(
            ended, 0.7 * s["lifetime_satisfaction"] + 0.3 * sat, s["lifetime_satisfaction"])
        return_probability = _sigmoid(c.return_slope * (s["lifetime_satisfaction"] - c.return_threshold))
        s["done"] = s["done"] | ended

        live = active & ~ended
        if live.any():
            self._retrieve(np.flatnonzero(live))
        info = {
            "components": components,
            "true_utility": consumed_utility,
            "satisfaction": sat.copy(),
            "ad_shown": has_ad,
            "ad_click": ad_click & has_ad,
            "ad_revenue": revenue,
            "ad_id": ad_ids,
            "slate_items": items,
            "clicks": click,
            "return_probability": np.where(ended, return_probability, 0.0),
            "active": active,
        }
        return StepResult(self.observe(), reward, terminated, truncated, info)

    def _serve_ads(self, has_ad: np.ndarray, ad_slot: np.ndarray):
        """Pick, for each user with an ad, the ad maximising bid × predicted ad-click among
        ``num_ad_candidates`` retrieved ads, and draw its click."""
        c, w, rng = self.config, self.world, self.rng
        b = self.batch_size
        index = np.flatnonzero(has_ad)
        ads = rng.integers(0, w.ad_topic.size, (index.size, c.num_ad_candidates))
        rel = self._relevance(index, w.ad_topic[ads])
        logit = -2.5 + 0.8 * rel + 1.5 * w.ad_quality[ads]
        predicted = _sigmoid(logit + c.prediction_noise * rng.standard_normal(logit.shape))
        best = np.argmax(w.ad_bid[ads] * predicted, axis=1)
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
        ad_utility = np.zeros(b)
        return ad_ids, ad_click, revenue, ad_utility

    # ------------------------------------------------------------ observation
    def observe(self) -> np.ndarray:
        """(B, obs_dim) float32 observation, every entry clipped to [0, 1]."""
        c, s = self.config, self.state
        scalars = np.stack([
            s["request"] / c.max_requests,
            s["ad_load"],
            np.minimum(s["session_index"] / 10.0, 1.0),
            np.minimum(s["session_engagement"] / c.max_requests, 1.0),
            s["satisfaction_signal"],
        ], axis=1)
        obs = np.concatenate([s["profile"], s["recent_topics"], s["ema"], s["last"],
                              self.cand_pred.mean(1), scalars], axis=1)
        return np.clip(obs, 0.0, 1.0).astype(np.float32)

    @property
    def done(self) -> np.ndarray:
        return self.state["done"]
