"""The hierarchical experiment: behaviour vs flat vs hierarchical offline policies over whole
user lifetimes (``marl-rec +experiment=hierarchical``; the CLI calls :func:`run`).

Per seed: log the lifetimes of ``collection.num_users`` users under the behaviour pair (uniform
random goals, a goal-following short-term policy with truncated-Gaussian noise), build the
three datasets of :mod:`marl_rec.agents.hierarchical`, train the goal-conditioned short-term learner
(with hindsight relabelling), then the long-term learner (semi-MDP, its evaluation hook runs
the trained short-term learner under it) and the flat baseline, and simulate the lifetimes of
the same ``evaluation.ab_users_per_group`` users (common random numbers: the same users and
draws for every policy and seed) under each policy, and under the references: the best constant
fusion action (``constant_reference``), the production lookahead (``ProductionPolicy``, which
optimises within a session) and the learned goals followed by the reference goal follower.
The goal space is the env's (``env.goal_space``: ceilings on p̂(click) and p̂(negative) by
default, see :mod:`marl_rec.envs.hierarchical`). :func:`compare` checks issue #17's bars
(``BARS``). The table reports, over the seeds,
mean ± std (ddof=1) of lifetime engagement, sessions per user (retention) and mean session
length; ``metrics.json`` holds it with every seed's figures and diagnostics (the learned
goals, the short-term goal error, each learner's Q at the lifetime start against the
discounted return its policy earns, dataset sizes, timings). Rows that learn nothing
(behaviour, the references) are the same policy on the same users for every seed: std 0.

Folders: ``seed<k>/{short_term,long_term,flat}/`` hold each learner's TensorBoard events
(``train/<agent>/...``, ``eval/retention``, ``eval/lifetime_engagement``, ...) and checkpoint;
the run folder's own events hold ``final/<policy>/<metric>`` at step = seed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from marl_rec.agents.hierarchical import (FLAT_AGENT, LONG_TERM_AGENT, SHORT_TERM_AGENT, GoalFollowingPolicy,
                                 HierarchicalAgent, LevelConfig, LifetimeEvaluator, LifetimeLog, RelabelConfig,
                                 UniformGoalPolicy, collect_lifetimes, discounted_lifetime_returns, flat_dataset,
                                 goal_conditioned_dataset, greedy, lifetime_metrics, session_level_dataset,
                                 train_flat, train_long_term, train_short_term)
from marl_rec.agents.policies import ConstantPolicy, GaussianNoisePolicy, ProductionPolicy
from marl_rec.envs.hierarchical import DEFAULT_GOAL_SPACE, GOAL_DIM, HierarchicalConfig, HierarchicalInterestEnv, goal_from_action, run_lifetimes
from marl_rec.algos.registry import make_config
from marl_rec.envs.simulator import UserSimulator
from marl_rec.experiments.common import (float_tuple, instantiate_checked, trainer_config, validate_evaluation,
                                         validate_train)
from marl_rec.files import write_json
from marl_rec.logging import TensorBoardLogger
from marl_rec.report import difference_vs_spread, format_seed_table, json_safe, seed_table

POLICIES = ("behaviour", "flat", "hierarchical")
METRICS = ("lifetime_engagement", "retention", "session_length")
METRIC_TITLES = {"lifetime_engagement": "lifetime engagement", "retention": "sessions/user",
                 "session_length": "mean session length"}


@dataclass(frozen=True)
class CollectionConfig:
    """The behaviour pair and how many lifetimes it logs."""

    num_users: int = 600
    behaviour_sigma: float = 0.3  # truncated-Gaussian noise of the goal-following short-term policy
    follower_weight: float = 5.0  # its goal-following weight (the env's goal_reward_weight by default)
    follower_values: tuple[float, ...] = (-1.0, 0.0, 1.0)  # per-task values of its action grid

    def __post_init__(self) -> None:
        if isinstance(self.num_users, bool) or not isinstance(self.num_users, int) or self.num_users < 1:
            raise ValueError(f"agent.collection.num_users must be an int >= 1, got {self.num_users!r}")
        if not 0 < self.behaviour_sigma < math.inf:
            raise ValueError(f"agent.collection.behaviour_sigma must be finite and > 0, got {self.behaviour_sigma!r}")
        if not math.isfinite(self.follower_weight):
            raise ValueError(f"agent.collection.follower_weight must be finite, got {self.follower_weight!r}")
        object.__setattr__(self, "follower_values", float_tuple(self.follower_values, "agent.collection.follower_values"))
        if not self.follower_values or not all(math.isfinite(v) for v in self.follower_values):
            raise ValueError(f"agent.collection.follower_values must be finite numbers, got {self.follower_values}")


@dataclass(frozen=True)
class HierarchicalExperimentConfig:
    """The ``agent`` node of ``conf/agent/hierarchical.yaml``. A level whose ``num_updates`` is
    None trains for ``train.num_updates`` (the flat baseline: for both levels' total)."""

    num_seeds: int = 3
    gamma: float = 0.99  # per request, for the flat and the long-term learner (γ^k per session)
    collection: CollectionConfig = field(default_factory=CollectionConfig)
    relabel: RelabelConfig = field(default_factory=RelabelConfig)
    long_term: dict[str, Any] = field(default_factory=dict)
    short_term: dict[str, Any] = field(default_factory=dict)
    flat: dict[str, Any] = field(default_factory=dict)
    references: bool = True  # also evaluate the reference rows (see run_seed), for context
    # the fixed fusion action of the best-constant row: the best of the 81 grid constants on lifetime
    # engagement in the experiment's world (bench/hierarchical_levers.py)
    constant_reference: tuple[float, ...] = (-1.0, -1.0, -1.0, 0.0)

    def __post_init__(self) -> None:
        if isinstance(self.num_seeds, bool) or not isinstance(self.num_seeds, int) or self.num_seeds < 1:
            raise ValueError(f"agent.num_seeds must be an int >= 1, got {self.num_seeds!r}")
        if isinstance(self.gamma, bool) or not isinstance(self.gamma, (int, float)) or not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"agent.gamma must be in (0, 1], got {self.gamma!r}")

    @classmethod
    def from_node(cls, node: Any) -> HierarchicalExperimentConfig:
        """Build from the ``agent`` config node (a DictConfig or dict); unknown keys are errors."""
        values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
        values = {k: v for k, v in values.items() if k != "name"}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown agent option(s) {unknown}; accepted: {sorted(known)}")
        for name, sub in (("collection", CollectionConfig), ("relabel", RelabelConfig)):
            if name in values:
                sub_known = {f.name for f in fields(sub)}
                bad = sorted(set(values[name]) - sub_known)
                if bad:
                    raise ValueError(f"unknown agent.{name} option(s) {bad}; accepted: {sorted(sub_known)}")
                values[name] = sub(**values[name])
        if "constant_reference" in values:
            values["constant_reference"] = float_tuple(values["constant_reference"], "agent.constant_reference")
        return cls(**values)

    def levels(self, default_updates: int) -> dict[str, LevelConfig]:
        """The three :class:`LevelConfig`: a level without ``num_updates`` trains for
        ``default_updates``, except the flat baseline, which then gets the two levels' total
        (the same number of gradient updates on each side of the comparison)."""
        short_term = self.level(SHORT_TERM_AGENT, default_updates)
        long_term = self.level(LONG_TERM_AGENT, default_updates)
        flat = self.level(FLAT_AGENT, short_term.num_updates + long_term.num_updates)
        return {SHORT_TERM_AGENT: short_term, LONG_TERM_AGENT: long_term, FLAT_AGENT: flat}

    def level(self, name: str, default_updates: int) -> LevelConfig:
        """The :class:`LevelConfig` of ``long_term`` / ``short_term`` / ``flat``."""
        spec = dict(getattr(self, name) or {})
        known = {f.name for f in fields(LevelConfig)}
        bad = sorted(set(spec) - known)
        if bad:
            raise ValueError(f"unknown agent.{name} option(s) {bad}; accepted: {sorted(known)}")
        if spec.get("num_updates") is None:
            spec["num_updates"] = default_updates
        spec.setdefault("gamma", self.gamma)
        spec["overrides"] = dict(spec.get("overrides") or {})
        return LevelConfig(**spec)


def behaviour_pair(collection: CollectionConfig, rng: np.random.Generator,
                   goal_space: str = DEFAULT_GOAL_SPACE) -> tuple[UniformGoalPolicy, Any]:
    """The logging pair: uniform random goals, a goal follower (in ``goal_space``) with
    truncated-Gaussian noise."""
    follower = GoalFollowingPolicy(collection.follower_weight, collection.follower_values, goal_space)
    return UniformGoalPolicy(rng), GaussianNoisePolicy(follower, collection.behaviour_sigma, rng)


def train_learners(cfg: DictConfig, settings: HierarchicalExperimentConfig, log: LifetimeLog, sim: UserSimulator,
                   config: HierarchicalConfig, seed: int, run_dir: Path) -> tuple[dict[str, Any], dict[str, float]]:
    """The short-term (goal-conditioned, relabelled), long-term (semi-MDP) and flat learners,
    each with a :class:`LifetimeEvaluator` hook (``eval/retention``, ...). Returns them by
    agent name, with the seconds each took."""
    trainer = trainer_config(cfg, seed)
    eval_users, eval_seed = int(cfg.evaluation.num_users), int(cfg.evaluation.seed)
    levels = settings.levels(int(cfg.train.num_updates))
    hparams = {"experiment": "hierarchical", "seed": seed,
               "levels": {name: {k: (str(v) if isinstance(v, (dict, tuple)) else v) for k, v in vars(level).items()}
                          for name, level in levels.items()}}

    def evaluator(policies: Callable[[Any], tuple[Any, Any]]) -> LifetimeEvaluator:
        return LifetimeEvaluator(sim, config, eval_users, eval_seed, policies)

    learners, seconds = {}, {}
    started = time.perf_counter()  # short term first: the long-term hook runs it under its goals
    data = goal_conditioned_dataset(log, settings.relabel, np.random.default_rng(seed + 10_000))
    learners[SHORT_TERM_AGENT], _ = train_short_term(
        data, levels[SHORT_TERM_AGENT], trainer, run_dir / SHORT_TERM_AGENT,
        [evaluator(lambda algo: (UniformGoalPolicy(np.random.default_rng(eval_seed + 1)), greedy(algo)))], hparams)
    seconds[SHORT_TERM_AGENT] = time.perf_counter() - started
    started = time.perf_counter()
    learners[LONG_TERM_AGENT], _ = train_long_term(
        session_level_dataset(log, levels[LONG_TERM_AGENT].gamma), log.length, levels[LONG_TERM_AGENT], trainer,
        run_dir / LONG_TERM_AGENT, [evaluator(lambda algo: (greedy(algo), greedy(learners[SHORT_TERM_AGENT])))],
        hparams)
    seconds[LONG_TERM_AGENT] = time.perf_counter() - started
    started = time.perf_counter()
    learners[FLAT_AGENT], _ = train_flat(flat_dataset(log), levels[FLAT_AGENT], trainer, run_dir / FLAT_AGENT,
                                         [evaluator(lambda algo: (None, greedy(algo)))], hparams)
    seconds[FLAT_AGENT] = time.perf_counter() - started
    learners["relabelled_sessions"] = int(data.metadata["relabelled_sessions"])
    learners["short_term_transitions"] = len(data)
    return learners, seconds


def value_check(learners: dict[str, Any], sim: UserSimulator, config: HierarchicalConfig, num_users: int,
                seed: int, levels: dict[str, LevelConfig]) -> dict[str, float]:
    """Each learner's value estimate at the start of ``num_users`` lifetimes against the
    discounted lifetime return ``Σ_t γ^t r_t`` (t counting requests) its policy really earns
    there: the flat Q and the long-term (semi-MDP) Q estimate the same quantity."""
    flat, long_term = learners[FLAT_AGENT], learners[LONG_TERM_AGENT]
    agent = HierarchicalAgent(long_term, learners[SHORT_TERM_AGENT])
    no_goal = lambda sim_, obs: np.zeros((obs.shape[0], GOAL_DIM))  # noqa: E731 (the flat policy has none)
    flat_log = collect_lifetimes(sim, no_goal, lambda sim_, obs: flat.act(obs[:, :-GOAL_DIM]), num_users,
                                 np.random.default_rng(seed), config)
    hier_log = collect_lifetimes(sim, agent.goal_policy, agent.short_term_policy, num_users,
                                 np.random.default_rng(seed), config)
    flat_first = np.flatnonzero(np.append(True, flat_log.user[1:] != flat_log.user[:-1]))
    hier_first = np.flatnonzero(np.append(True, hier_log.session_user[1:] != hier_log.session_user[:-1]))
    return {
        "flat_q_estimate": float(flat.q_value(flat_log.observation[flat_first], flat_log.action[flat_first]).mean()),
        "flat_true_discounted_return": float(discounted_lifetime_returns(flat_log, levels[FLAT_AGENT].gamma).mean()),
        "long_term_q_estimate": float(long_term.q_value(hier_log.long_observation[hier_first],
                                                        hier_log.goal_action[hier_first]).mean()),
        "hierarchical_true_discounted_return": float(
            discounted_lifetime_returns(hier_log, levels[LONG_TERM_AGENT].gamma).mean()),
    }


def run_seed(cfg: DictConfig, settings: HierarchicalExperimentConfig, env: HierarchicalInterestEnv, seed: int,
             run_dir: Path) -> dict[str, Any]:
    """One seed: log lifetimes, train the three learners, simulate every policy's lifetimes."""
    started = time.perf_counter()
    config, collection = env.config, settings.collection
    sim = UserSimulator(env.sim_config, env.sim.world)
    rng = np.random.default_rng(seed)
    log = collect_lifetimes(sim, *behaviour_pair(collection, rng, config.goal_space), collection.num_users, rng,
                            config)
    timings = {"collect_seconds": time.perf_counter() - started}
    learners, seconds = train_learners(cfg, settings, log, sim, config, seed, run_dir)
    timings.update({f"{name}_seconds": value for name, value in seconds.items()})

    # the comparison: the same users and draws (evaluation.seed) for every policy
    started = time.perf_counter()
    eval_seed = int(cfg.evaluation.seed)
    agent = HierarchicalAgent(learners[LONG_TERM_AGENT], learners[SHORT_TERM_AGENT])
    pairs = {"behaviour": behaviour_pair(collection, np.random.default_rng(eval_seed + 1), config.goal_space),
             "flat": (None, greedy(learners[FLAT_AGENT])),
             "hierarchical": (agent.goal_policy, agent.short_term_policy)}
    if settings.references:
        # the bars' references: the best constant fusion action (constant_reference) and the
        # production lookahead, which optimises within a session; and, for context, the
        # learned goals followed by the reference (noise-free) goal follower instead of the
        # learned short-term controller
        pairs["constant_reference"] = (None, ConstantPolicy(list(settings.constant_reference)))
        pairs["production"] = (None, ProductionPolicy())
        pairs["learned_goals_follower"] = (agent.goal_policy, GoalFollowingPolicy(
            collection.follower_weight, collection.follower_values, config.goal_space))
    results: dict[str, dict[str, float]] = {}
    for name, (goal_policy, short_policy) in pairs.items():
        stats = run_lifetimes(short_policy, int(cfg.evaluation.ab_users_per_group), np.random.default_rng(eval_seed),
                              goal_policy, config, sim=sim)
        summary = stats.summary()
        results[name] = {**lifetime_metrics(stats), "retention_se": summary["sessions_se"],
                         "engagement_se": summary["engagement_se"], "churn_rate": summary["churn_rate"]}
    timings["evaluation_seconds"] = time.perf_counter() - started

    chosen = goal_from_action(learners[LONG_TERM_AGENT].act(log.long_observation, deterministic=True))
    diagnostics = {
        **value_check(learners, sim, config, int(cfg.evaluation.num_users), eval_seed,
                      settings.levels(int(cfg.train.num_updates))),
        "requests_logged": log.num_requests, "sessions_logged": log.num_sessions,
        "behaviour_sessions_per_user": log.num_sessions / collection.num_users,
        "short_term_transitions": learners["short_term_transitions"],
        "relabelled_sessions": learners["relabelled_sessions"],
        # the goals the long-term learner sets at the logged session starts
        "long_term_goal_mean": chosen.mean(0).tolist(), "long_term_goal_std": chosen.std(0).tolist(),
    }
    return {"seed": seed, "results": results, "diagnostics": diagnostics, "timings": timings}


def format_table(table: dict[str, dict[str, dict[str, float]]], num_seeds: int) -> str:
    return format_seed_table(f"hierarchical experiment: mean ± std over {num_seeds} seed(s)", table,
                             {m: METRIC_TITLES[m] for m in METRICS}, policy_width=24, mean_width=15, std_width=6,
                             digits=2)


# issue #17's bars: the hierarchical learner beats each (policy, metric) here by more than the
# seed spread; the production policy optimises within a session, so only retention is a bar
# against it (its lifetime engagement is reported beside)
BARS: tuple[tuple[str, str], ...] = (
    ("flat", "lifetime_engagement"), ("flat", "retention"),
    ("constant_reference", "lifetime_engagement"), ("constant_reference", "retention"),
    ("production", "retention"))


def compare(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Hierarchical minus each reference of ``BARS`` (those that ran): the mean difference and
    the seed-to-seed spread (the larger of the two policies' std over seeds). ``lifetime_engagement``
    and ``retention`` are the comparison with the flat learner; ``bars`` holds every bar by
    ``"<policy>/<metric>"`` and ``target_met`` says whether all of them hold; ``production_engagement``
    is the engagement difference against the production policy (reported, not a bar)."""
    def values(policy: str, metric: str) -> np.ndarray:
        return np.array([s["results"][policy][metric] for s in per_seed])

    present = set(per_seed[0]["results"])
    out: dict[str, Any] = {m: difference_vs_spread(values("hierarchical", m), values("flat", m))
                           for m in ("lifetime_engagement", "retention")}
    out["bars"] = {f"{policy}/{metric}": difference_vs_spread(values("hierarchical", metric), values(policy, metric))
                   for policy, metric in BARS if policy in present}
    if "production" in present:
        out["production_engagement"] = difference_vs_spread(values("hierarchical", "lifetime_engagement"),
                                                            values("production", "lifetime_engagement"))
    out["target_met"] = all(bar["beats"] for bar in out["bars"].values())
    return out


def validate_settings(cfg: DictConfig, settings: HierarchicalExperimentConfig) -> None:
    """The run's own settings, checked before any lifetime is logged (the ``agent`` node and the
    env are checked when they are built): ``evaluation``, ``train`` and every level's
    :class:`LevelConfig` (its ``num_updates``, ``gamma``, and its algorithm's config with the
    ``overrides``); ValueError or TypeError naming the config key. (This experiment logs its
    lifetimes afresh: no ``cache_dir``.)"""
    validate_evaluation(cfg)
    trainer = validate_train(cfg)
    for name in (SHORT_TERM_AGENT, LONG_TERM_AGENT, FLAT_AGENT):
        try:
            level = settings.level(name, trainer.num_updates)
            make_config(level.algorithm, level.preset, gamma=level.gamma, **level.overrides)
        except (TypeError, ValueError) as error:
            message = str(error).replace("LevelConfig.", f"agent.{name}.")
            raise type(error)(message if f"agent.{name}" in message else f"agent.{name}: {message}") from error


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """The ``task`` of ``conf/experiment/hierarchical.yaml``: every seed, the table, ``metrics.json``."""
    torch.set_num_threads(int(cfg.torch_threads))
    torch.manual_seed(int(cfg.seed))
    run_dir = Path(run_dir)
    settings = HierarchicalExperimentConfig.from_node(cfg.agent)
    # the env and its simulator options (extra keys of ``env``) check their fields: errors name ``env.<field>``
    env = instantiate_checked(cfg.env, {"SimulatorConfig": "env", "HierarchicalConfig": "env"})
    if not isinstance(env, HierarchicalInterestEnv):
        raise ValueError(f"the hierarchical experiment needs env=hierarchical, got {type(env).__name__}")
    validate_settings(cfg, settings)
    started = time.perf_counter()
    per_seed = []
    for offset in range(settings.num_seeds):
        seed = int(cfg.seed) + offset
        result = run_seed(cfg, settings, env, seed, run_dir / f"seed{seed}")
        per_seed.append(result)
        print(f"[hierarchical] seed {seed}: " + ", ".join(
            f"{p} {r['lifetime_engagement']:.1f} eng / {r['retention']:.2f} sess"
            for p, r in result["results"].items()), flush=True)
    table = seed_table(per_seed)
    comparison = compare(per_seed)
    print(format_table(table, settings.num_seeds), flush=True)
    for name, bar in comparison["bars"].items():
        print(f"hierarchical - {name}: {bar['difference']:+.2f} (spread {bar['spread']:.2f}): "
              f"{'met' if bar['beats'] else 'MISSED'}", flush=True)
    print(f"target met: {comparison['target_met']}", flush=True)
    with TensorBoardLogger(run_dir) as logger:
        for result in per_seed:
            logger.log_scalars({f"final/{policy}/{metric}": value for policy, row in result["results"].items()
                                for metric, value in row.items()}, result["seed"])
    metrics = {
        "status": "completed", "task": "hierarchical", "seed": int(cfg.seed), "seeds": [r["seed"] for r in per_seed],
        "env": {"hierarchical": vars(env.config), "simulator": env.sim_config.to_dict()},
        "table": table, "hierarchical_vs_flat": comparison, "per_seed": per_seed,
        "total_seconds": time.perf_counter() - started,
        "true_return": table["hierarchical"]["lifetime_engagement"]["mean"],
    }
    write_json(run_dir / "metrics.json", json_safe(metrics))
    return metrics


__all__ = ["run", "run_seed", "HierarchicalExperimentConfig", "CollectionConfig", "compare", "format_table"]
