"""What a learned reward sees, and logged data with the ground truth kept beside it.

What makes the true utility recoverable from logs
    The simulator's true utility of a request is the sum, over the *clicked* items, of
    ``2·quality + 0.4·relevance − sensitivity·clickbait − 0.3``: it depends on which items
    were clicked (a random outcome, not a function of the state and action), on latent
    item attributes and on the user's latent clickbait sensitivity. A reward of the
    observation and action alone can only predict its expectation. What the platform logs
    about the request's outcome — the behaviours (clicks, likes, shares, watch minutes) and,
    with ``collect_with_utility(..., consumed=True)``, what was consumed (the clicked items'
    predicted behaviours, their predicted utility from the negative-feedback model, their
    topics and positions: :func:`consumed_feature_names`) — tells how much was consumed and
    how good it was for this user. :data:`FEATURE_SETS`, each a set of
    :class:`~marl_rec.data.OfflineDataset` columns (so any dataset can be relabelled):
    ``"outcome"`` the logged columns alone, ``"state_action"`` observation and action,
    ``"logged"`` both, ``"transition"`` also the next observation. The user's sensitivity
    stays hidden; :mod:`marl_rec.irl.experiments.reward_learning` prints, as the ceiling, a
    supervised MLP regressed on the true utility from the transition features (held-out
    Pearson 0.97 with what was consumed, 0.76 with the four behaviours alone on the legacy
    world), and the same regression from observation and action alone.

Ground truth
    :func:`collect_with_utility` runs :func:`marl_rec.data.collect` and records the true
    utility of every logged transition in a separate array; the learner never sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from marl_rec.data import OfflineDataset, collect

FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "outcome": ("reward_components",),
    "state_action": ("observations", "actions"),
    "logged": ("observations", "actions", "reward_components"),
    "transition": ("observations", "actions", "reward_components", "next_observations"),
}


def transition_features(dataset: OfflineDataset, feature_set: str = "transition",
                        index: np.ndarray | slice | None = None) -> np.ndarray:
    """(N, F) float32 reward-model inputs of the dataset's transitions (rows ``index``)."""
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"feature_set must be one of {sorted(FEATURE_SETS)}, got {feature_set!r}")
    rows = slice(None) if index is None else index
    parts = []
    for column in FEATURE_SETS[feature_set]:
        value = getattr(dataset, column)
        if value is None:
            raise ValueError(f"feature_set {feature_set!r} needs column {column!r}, which the dataset lacks")
        parts.append(np.asarray(value[rows], dtype=np.float32).reshape(len(value[rows]), -1))
    return np.concatenate(parts, axis=1)


def feature_dim(obs_dim: int, action_dim: int, num_components: int, feature_set: str = "transition") -> int:
    """Width of :func:`transition_features` for the given column widths."""
    return len(feature_columns(obs_dim, action_dim, num_components, feature_set))


def feature_columns(obs_dim: int, action_dim: int, num_components: int, feature_set: str) -> np.ndarray:
    """Where the columns of ``feature_set`` sit in the ``"transition"`` layout (every feature set's
    columns are a subset of it, in the same order): ``transition[:, index]`` is ``feature_set``'s
    features, so one table of transition features scores a reward of any feature set."""
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"feature_set must be one of {sorted(FEATURE_SETS)}, got {feature_set!r}")
    widths = {"observations": obs_dim, "actions": action_dim, "reward_components": num_components,
              "next_observations": obs_dim}
    starts, start = {}, 0
    for column in FEATURE_SETS["transition"]:
        starts[column], start = start, start + widths[column]
    return np.concatenate([np.arange(starts[c], starts[c] + widths[c]) for c in FEATURE_SETS[feature_set]]
                          ).astype(np.int64)


class SimulatorWrapper:
    """Delegates every attribute to a simulator; subclasses change what ``step`` returns,
    and policies that read the simulator's state still work through the wrapper."""

    def __init__(self, sim: Any) -> None:
        self._sim = sim

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sim, name)


#: What the platform knows about what the user consumed on a request (:func:`consumed_features`);
#: then one ``consumed_topic<t>`` count per topic (:func:`consumed_feature_names`).
CONSUMED_FEATURES = ("consumed_items", "consumed_like", "consumed_share", "consumed_watch", "consumed_negative",
                     "consumed_predicted_utility", "consumed_position")
#: The ad a request showed (:func:`ad_features`): whether one was shown, its slate position (1..K,
#: 0 = none), its bid, the predicted ad click it won the auction with, whether it was clicked.
AD_FEATURES = ("ad_shown", "ad_position", "ad_bid", "ad_predicted_click", "ad_click")


def consumed_feature_names(num_topics: int, ads: bool = False) -> tuple[str, ...]:
    """Names of the columns :func:`consumed_features` (and with ``ads`` :func:`ad_features`)
    return, in order: the reward-component names of what a request consumed."""
    if num_topics < 0:
        raise ValueError(f"num_topics must be >= 0, got {num_topics}")
    return (CONSUMED_FEATURES + tuple(f"consumed_topic{t}" for t in range(num_topics))
            + (AD_FEATURES if ads else ()))


def consumed_features(predictions: np.ndarray, predicted_utility: np.ndarray, clicks: np.ndarray,
                      topics: np.ndarray | None = None, num_topics: int = 0) -> np.ndarray:
    """(B, 7 + num_topics) per request, over the items the user clicked: how many, the sums of
    their predicted like / share / watch / negative feedback, of their predicted utility (the
    negative-feedback prediction inverted through its link, ``UserSimulator.predicted_utility``)
    and of their slate position (0 = top), then how many of them belong to each topic.
    ``predictions`` (B, K, 5), ``predicted_utility`` (B, K) and ``topics`` (B, K) of the slate
    shown, ``clicks`` (B, K). All of it is in a platform's own logs: the served slate, the
    model's predictions at serving time, the items' topics, the clicks. The platform's quality /
    clickbait signal of an item *for this user* is its negative-feedback prediction (in
    ``consumed_negative`` and ``consumed_predicted_utility``); the world keeps an item's quality
    and clickbait-ness latent, so no other item-quality score exists to log.

    Why: the true utility of a request is a sum over the *clicked* items; without these
    columns a reward of the logged transition sees only how many clicks there were and the
    next observation's moved averages (the supervised ceiling on the old four behaviours was
    a held-out Pearson of 0.75; ``marl-rec +experiment=reward_learning`` prints the ceiling
    with them). Sums, not one column per slate position, because the utility is a sum over
    the clicked items: a linear reward of the sums can express it."""
    clicks = np.asarray(clicks, np.float64)
    if clicks.ndim != 2:
        raise ValueError(f"clicks must be (B, K), got shape {clicks.shape}")
    b, k = clicks.shape
    predictions, predicted_utility = np.asarray(predictions, np.float64), np.asarray(predicted_utility, np.float64)
    if predictions.shape[:2] != (b, k) or predictions.ndim != 3 or predictions.shape[2] < 5:
        raise ValueError(f"predictions must be (B, K, 5) = ({b}, {k}, 5), got shape {predictions.shape}")
    if predicted_utility.shape != (b, k):
        raise ValueError(f"predicted_utility must be (B, K) = ({b}, {k}), got shape {predicted_utility.shape}")
    parts = [clicks.sum(1, keepdims=True), np.einsum("bk,bkp->bp", clicks, predictions[..., 1:5]),
             (clicks * predicted_utility).sum(1, keepdims=True), (clicks * np.arange(k)).sum(1, keepdims=True)]
    if num_topics:
        if topics is None or np.shape(topics) != (b, k):
            raise ValueError(f"topics must be (B, K) = ({b}, {k}) when num_topics > 0, got "
                             f"{None if topics is None else np.shape(topics)}")
        topics = np.asarray(topics)
        if topics.min() < 0 or topics.max() >= num_topics:
            raise ValueError(f"topics must be in 0..{num_topics - 1}, got values in [{topics.min()}, {topics.max()}]")
        flat = (topics + num_topics * np.arange(b)[:, None]).ravel()
        parts.append(np.bincount(flat, weights=clicks.ravel(), minlength=b * num_topics).reshape(b, num_topics))
    return np.concatenate(parts, axis=1)


def ad_features(sim: Any, ad_slot: np.ndarray | None) -> np.ndarray:
    """(B, 5) :data:`AD_FEATURES` of the ad each request of ``sim``'s batch is about to show with
    ``ad_slot`` (0 = none, j = slate position j): call it *before* ``sim.step(action, ad_slot)``.
    The ad is the auction's winner among the request's ad candidates (the largest bid × p̂(ad
    click), as the simulator serves it); its click is filled in by :func:`ad_click_features`
    from the step's info."""
    b = sim.batch_size
    out = np.zeros((b, len(AD_FEATURES)))
    if ad_slot is None:
        return out
    ad_slot = np.asarray(ad_slot)
    shown = (ad_slot > 0) & ~np.asarray(sim.done, dtype=bool)
    ads, predicted = sim.cand_ads, sim.cand_ad_pred.astype(np.float64)
    best = np.argmax(sim.world.ad_bid[ads] * predicted, axis=1)
    rows = np.arange(b)
    out[:, 0] = shown
    out[:, 1] = np.where(shown, ad_slot, 0)
    out[:, 2] = np.where(shown, sim.world.ad_bid[ads[rows, best]], 0.0)
    out[:, 3] = np.where(shown, predicted[rows, best], 0.0)
    return out


def ad_click_features(features: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    """:func:`ad_features` with the ``ad_click`` column set from a step's ``info``."""
    features = np.array(features, dtype=np.float64)
    features[:, AD_FEATURES.index("ad_click")] = np.asarray(info["ad_click"], dtype=bool)
    return features


class _UtilityRecorder(SimulatorWrapper):
    """Appends ``info["true_utility"]`` to the components column (unless ``true_utility`` is
    False), so :func:`collect` carries it through its row selection and reordering; with
    ``consumed`` the :func:`consumed_features` of every request (with ``ads`` also its
    :func:`ad_features`) go in front of it."""

    def __init__(self, sim: Any, consumed: bool = False, ads: bool = False, true_utility: bool = True) -> None:
        super().__init__(sim)
        if ads and not consumed:
            raise ValueError("ads=True logs the ad's features with what was consumed: set consumed=True")
        self._consumed, self._ads, self._true_utility = consumed, ads, true_utility

    def step(self, action: np.ndarray, ad_slot: np.ndarray | None = None) -> Any:
        if ad_slot is not None and not self._ads and self._consumed:
            raise ValueError("consumed features of requests with ads need ads=True (the ad's own columns)")
        if self._consumed:  # the slate this action shows and the predictions at serving time
            slate = self._sim.rank(np.asarray(action, np.float64))
            predictions = np.take_along_axis(self._sim.cand_pred, slate[..., None], axis=1)
            predicted_utility = np.take_along_axis(self._sim.predicted_utility(), slate, axis=1)
            topics = np.take_along_axis(self._sim.cand_topics, slate, axis=1)
            ads = ad_features(self._sim, ad_slot) if self._ads else None
        result = self._sim.step(action) if ad_slot is None else self._sim.step(action, ad_slot)
        info = dict(result.info)
        parts = [info["components"]]
        if self._consumed:
            # an ad replaces the organic item at its position: info["clicks"] has no click there
            parts.append(consumed_features(predictions, predicted_utility, info["clicks"], topics,
                                           self._sim.config.num_topics))
            if self._ads:
                parts.append(ad_click_features(ads, info))
        if self._true_utility:
            parts.append(np.asarray(info["true_utility"], np.float64)[:, None])
        info["components"] = np.concatenate(parts, axis=1)
        result.info = info
        return result


def logging_consumed(sim: Any) -> SimulatorWrapper:
    """``sim`` whose ``info["components"]`` are what :func:`collect_with_utility` logs with
    ``consumed=True``: the behaviours, then the :func:`consumed_feature_names` columns (no true
    utility). For learners that roll out in the simulator and must see the logs' columns, e.g.
    AIRL's generator when its reward reads the request's outcome."""
    return _UtilityRecorder(sim, consumed=True, true_utility=False)


@dataclass
class LabelledDataset:
    """A logged dataset and the true utility of each of its transitions (evaluation only)."""

    dataset: OfflineDataset
    true_utility: np.ndarray  # (N,) float64

    def split_episodes(self, fraction: float, rng: np.random.Generator) -> tuple[LabelledDataset, LabelledDataset]:
        """Split by whole episodes (users) into (first ``fraction``, rest): held-out data
        never shares a user with training data."""
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}")
        bounds = self.dataset.episode_bounds()
        if len(bounds) < 2:
            raise ValueError("need at least 2 episodes to split")
        order = rng.permutation(len(bounds))
        cut = min(max(1, int(round(fraction * len(bounds)))), len(bounds) - 1)
        return self._subset(bounds[np.sort(order[:cut])]), self._subset(bounds[np.sort(order[cut:])])

    def _subset(self, bounds: np.ndarray) -> LabelledDataset:
        rows = np.concatenate([np.arange(s, e) for s, e in bounds])
        d = self.dataset
        take = lambda a: None if a is None else a[rows]  # noqa: E731
        subset = OfflineDataset(
            observations=d.observations[rows], actions=d.actions[rows], rewards=d.rewards[rows],
            next_observations=d.next_observations[rows], terminals=d.terminals[rows],
            truncations=d.truncations[rows], episode_starts=d.episode_starts[rows],
            action_spec=d.action_spec, behaviour_log_probs=take(d.behaviour_log_probs),
            reward_components=take(d.reward_components), component_names=list(d.component_names),
            metadata=dict(d.metadata))
        return LabelledDataset(subset, self.true_utility[rows])


def collect_with_utility(sim: Any, policy: Callable[[Any, np.ndarray], Any], num_transitions: int,
                         rng: np.random.Generator, batch_size: int = 1024,
                         metadata: dict[str, Any] | None = None, consumed: bool = False) -> LabelledDataset:
    """:func:`marl_rec.data.collect` plus the true utility of every transition, split off
    into :attr:`LabelledDataset.true_utility`. The dataset's components are the four logged
    behaviours, then with ``consumed`` the :func:`consumed_feature_names` columns of each
    request (named columns of ``reward_components``, which the CSV/Parquet log schema reads back
    through ``LoggedSessionSchema.consumed_prefix``: every learned reward of the ``logged`` and
    ``transition`` feature sets sees them)."""
    consumed_names = consumed_feature_names(sim.config.num_topics) if consumed else ()
    names = ("click", "like", "share", "watch") + consumed_names + ("true_utility",)
    logged = collect(_UtilityRecorder(sim, consumed), policy, num_transitions, rng, batch_size,
                     component_names=names, metadata=metadata)
    utility = logged.reward_components[:, -1].astype(np.float64)
    logged.reward_components = np.ascontiguousarray(logged.reward_components[:, :-1])
    logged.component_names = list(names[:-1])
    logged.validate()
    return LabelledDataset(logged, utility)


SLATE_FEATURES = ("slate_click", "slate_like", "slate_share", "slate_watch", "slate_negative",
                  "slate_predicted_utility")


def slate_features(observations: np.ndarray, actions: np.ndarray, config: Any) -> np.ndarray:
    """(N, 6) what the slate each fusion action would show looks like to the platform, from the
    observation alone: the observed candidates (their five predictions, in the observation)
    ranked by the simulator's fused score under the action, and over the top ``slate_size``
    the examination-weighted expected clicks, the expected like / share / watch / negative
    feedback given a click, and the expected *predicted* utility — the negative-feedback
    prediction inverted through its link, as ``UserSimulator.predicted_utility`` does.

    Why: E[utility | s, a] is a sum over the slate of p(click) × the item's utility, and
    which items are on the slate is a sort of the candidates by the action's fused score —
    a function an MLP on the flat observation and action learns badly (measured in
    ``bench/airl_recovery.py``: the supervised ceiling). With every candidate observed
    (``observed_candidates == num_candidates``, the default) the ranking is the
    simulator's own; with fewer, the unobserved candidates are left out."""
    from marl_rec.envs.simulator import NUM_PREDICTIONS, UserSimulator

    m, p = config.observed_candidates, NUM_PREDICTIONS
    if m < config.slate_size:
        raise ValueError(f"slate_features needs observed_candidates >= slate_size ({config.slate_size}), got {m} "
                         f"(the summary-only observation carries no candidates)")
    observations, actions = np.asarray(observations, np.float32), np.asarray(actions, np.float64)
    start = 2 * config.num_topics + 3 * p
    cand = observations[:, start:start + m * p].reshape(len(observations), m, p).astype(np.float64)
    weights = UserSimulator.fusion_weights(actions)  # (N, 5)
    scores = np.einsum("nmp,np->nm", np.log(cand + np.asarray(config.fusion_priors)), weights)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :config.slate_size]
    slate = np.take_along_axis(cand, top[..., None], axis=1)  # (N, K, 5)
    exam = 1.0 / (1.0 + config.position_decay * np.arange(config.slate_size))
    clicks = slate[..., 0] * exam  # expected clicks per position
    negative = np.clip(slate[..., 4], 1e-6, 1 - 1e-6)
    utility = ((config.negative_intercept - np.log(negative / (1 - negative))) / config.negative_utility_slope
               if config.negative_utility_slope > 0 else np.zeros_like(negative))
    out = np.concatenate([clicks.sum(1, keepdims=True), np.einsum("nk,nkp->np", clicks, slate[..., 1:]),
                          (clicks * utility).sum(1, keepdims=True)], axis=1)
    return out.astype(np.float32)


@dataclass
class UtilityProbe:
    """Where a policy acts, the expected true utility of its action and of ``M`` probe
    actions in the same state: the reward r(s, a) = E[utility | s, a] of the MDP, which the
    realised utility (a draw of clicks) is not. Evaluation only.

    observations (N, obs_dim), actions (N, A), expected_utility (N,), probe_actions (N, M, A),
    probe_utility (N, M), realised_utility (N,)."""

    observations: np.ndarray
    actions: np.ndarray
    expected_utility: np.ndarray
    probe_actions: np.ndarray
    probe_utility: np.ndarray
    realised_utility: np.ndarray

    def score(self, reward: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> dict[str, float]:
        """How well ``reward(obs, action) -> (N,)`` recovers E[utility | s, a] here:
        ``epic_expected`` (:func:`~marl_rec.irl.metrics.epic_distance_myopic`: a state-only
        offset, which a myopic demonstrator cannot reveal, cancels), ``pearson_expected`` (raw,
        offset included) and ``pearson_realised`` (with the click draw)."""
        from marl_rec.irl.metrics import epic_distance_myopic, pearson

        n, m, a = self.probe_actions.shape
        r = np.asarray(reward(self.observations, self.actions), np.float64)
        at_probes = np.asarray(reward(np.repeat(self.observations, m, 0), self.probe_actions.reshape(n * m, a)),
                               np.float64).reshape(n, m)
        return {"epic_expected": epic_distance_myopic(r, at_probes, self.expected_utility, self.probe_utility),
                "pearson_expected": pearson(r, self.expected_utility),
                "pearson_realised": pearson(r, self.realised_utility)}


def probe_expected_utility(sim: Any, policy: Callable[[Any, np.ndarray], Any], num_users: int,
                           num_probes: int, rng: np.random.Generator) -> UtilityProbe:
    """One session of ``num_users`` fresh users under ``policy``; at every request the
    expected true utility of the policy's action and of ``num_probes`` uniform actions
    (shared by the batch at that request), from ``sim.slate_expectations``."""
    from marl_rec.agents.policies import grid_slates

    if num_users < 1 or num_probes < 1:
        raise ValueError(f"num_users and num_probes must be >= 1, got {num_users} and {num_probes}")
    obs = sim.reset(num_users, rng)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in UtilityProbe.__dataclass_fields__}
    while not sim.done.all():
        active = ~np.asarray(sim.done, dtype=bool)
        action = np.asarray(policy(sim, obs).action, dtype=np.float64)
        probes = rng.uniform(-1.0, 1.0, (num_probes, sim.action_dim))
        expected = sim.slate_expectations(sim.rank(action), use_true=True)["utility"]
        probe_utility = sim.slate_expectations(grid_slates(sim, probes), use_true=True)["utility"]
        parts["observations"].append(obs[active])
        parts["actions"].append(action[active])
        parts["expected_utility"].append(expected[active])
        parts["probe_actions"].append(np.broadcast_to(probes, (int(active.sum()),) + probes.shape))
        parts["probe_utility"].append(probe_utility[active])
        result = sim.step(action)
        parts["realised_utility"].append(np.asarray(result.info["true_utility"], np.float64)[active])
        obs = result.observation
    return UtilityProbe(**{k: np.concatenate(v).astype(np.float64 if k.endswith("utility") else np.float32)
                           for k, v in parts.items()})


def relabel(dataset: OfflineDataset, rewards: np.ndarray) -> OfflineDataset:
    """A copy of ``dataset`` whose ``rewards`` column is ``rewards`` (the other columns are
    shared, not copied)."""
    rewards = np.asarray(rewards, dtype=np.float32)
    if rewards.shape != dataset.rewards.shape:
        raise ValueError(f"rewards must have shape {dataset.rewards.shape}, got {rewards.shape}")
    if hasattr(dataset, "with_rewards"):
        return dataset.with_rewards(rewards)
    import dataclasses

    return dataclasses.replace(dataset, rewards=rewards)


__all__ = [
    "AD_FEATURES",
    "CONSUMED_FEATURES",
    "FEATURE_SETS",
    "SLATE_FEATURES",
    "LabelledDataset",
    "SimulatorWrapper",
    "UtilityProbe",
    "ad_click_features",
    "ad_features",
    "collect_with_utility",
    "consumed_feature_names",
    "consumed_features",
    "feature_columns",
    "feature_dim",
    "logging_consumed",
    "probe_expected_utility",
    "relabel",
    "slate_features",
    "transition_features",
]
