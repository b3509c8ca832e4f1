"""The hierarchical experiment: behaviour vs flat vs hierarchical offline policies over whole
user lifetimes (``marl-rec +experiment=hierarchical``; the CLI calls :func:`run`).

Per seed: log the lifetimes of ``collection.num_users`` users under the behaviour pair (uniform
random goals, a goal-following short-term policy with truncated-Gaussian noise), build the
three datasets of :mod:`agents.hierarchical`, train the goal-conditioned short-term learner
(with hindsight relabelling), then the long-term learner (semi-MDP, its evaluation hook runs
the trained short-term learner under it) and the flat baseline, and simulate the lifetimes of
the same ``evaluation.ab_users_per_group`` users (common random numbers: the same users and
draws for every policy and seed) under each policy. The table reports, over the seeds,
mean ± std (ddof=1) of lifetime engagement, sessions per user (retention) and mean session
length; ``metrics.json`` holds it with every seed's figures and diagnostics (the learned
goals, the short-term goal error, dataset sizes, timings).

Folders: ``seed<k>/{short_term,long_term,flat}/`` hold each learner's TensorBoard events
(``train/<agent>/...``, ``eval/retention``, ``eval/lifetime_engagement``, ...) and checkpoint;
the run folder's own events hold ``final/<policy>/<metric>`` at step = seed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from agents.hierarchical import (FLAT_AGENT, LONG_TERM_AGENT, SHORT_TERM_AGENT, GoalFollowingPolicy,
                                 HierarchicalAgent, LevelConfig, LifetimeEvaluator, RelabelConfig,
                                 UniformGoalPolicy, collect_lifetimes, discounted_lifetime_returns, flat_dataset,
                                 goal_conditioned_dataset,
                                 greedy, lifetime_metrics, session_level_dataset, train_flat, train_long_term,
                                 train_short_term)
from agents.policies import ConstantPolicy, GaussianNoisePolicy
from envs.hierarchical import GOAL_DIM, HierarchicalInterestEnv, goal_from_action, run_lifetimes
from envs.simulator import UserSimulator
from marl_rec.experiment import write_json
from marl_rec.logging import TensorBoardLogger
from marl_rec.trainer import TrainerConfig

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
    follower_values: tuple[float, ...] = (-1.0, 1.0)  # per-task values of its action grid

    def __post_init__(self) -> None:
        if not isinstance(self.num_users, int) or self.num_users < 1:
            raise ValueError(f"collection.num_users must be an int >= 1, got {self.num_users!r}")
        if not self.behaviour_sigma > 0:
            raise ValueError(f"collection.behaviour_sigma must be > 0, got {self.behaviour_sigma!r}")
        object.__setattr__(self, "follower_values", tuple(float(v) for v in self.follower_values))


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
    constant_reference: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)  # the fixed fusion action of that row

    def __post_init__(self) -> None:
        if not isinstance(self.num_seeds, int) or self.num_seeds < 1:
            raise ValueError(f"agent.num_seeds must be an int >= 1, got {self.num_seeds!r}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"agent.gamma must be in [0, 1], got {self.gamma!r}")

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
            values["constant_reference"] = tuple(float(v) for v in values["constant_reference"])
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


def trainer_config(cfg: DictConfig, seed: int) -> TrainerConfig:
    train = cfg.train
    return TrainerConfig(num_updates=int(train.num_updates), batch_size=int(train.batch_size),
                         eval_every=int(train.eval_every), checkpoint_every=int(train.checkpoint_every),
                         log_every=int(train.log_every), q_divergence_bound=float(train.q_divergence_bound),
                         seed=seed, progress=bool(cfg.progress), device=str(cfg.device))


def run_seed(cfg: DictConfig, settings: HierarchicalExperimentConfig, env: HierarchicalInterestEnv, seed: int,
             run_dir: Path) -> dict[str, Any]:
    """One seed: collect, build the datasets, train the three learners, evaluate every policy."""
    started = time.perf_counter()
    config, sim_config = env.config, env.sim_config
    rng = np.random.default_rng(seed)
    sim = UserSimulator(sim_config, env.sim.world)
    collection = settings.collection
    goal_behaviour = UniformGoalPolicy(rng)
    short_behaviour = GaussianNoisePolicy(GoalFollowingPolicy(collection.follower_weight, collection.follower_values),
                                          collection.behaviour_sigma, rng)
    log = collect_lifetimes(sim, goal_behaviour, short_behaviour, collection.num_users, rng, config)
    timings = {"collect_seconds": time.perf_counter() - started}

    trainer = trainer_config(cfg, seed)
    eval_users, eval_seed = int(cfg.evaluation.num_users), int(cfg.evaluation.seed)
    levels = settings.levels(int(cfg.train.num_updates))
    hparams = {"experiment": "hierarchical", "seed": seed,
               "levels": {name: {k: (str(v) if isinstance(v, (dict, tuple)) else v) for k, v in vars(level).items()}
                          for name, level in levels.items()}}

    # short term: goal-conditioned, with hindsight relabelling; evaluated under the behaviour's
    # random goals (fresh from the evaluation seed at every call)
    started = time.perf_counter()
    short_data = goal_conditioned_dataset(log, settings.relabel, np.random.default_rng(seed + 10_000))
    short_eval = LifetimeEvaluator(sim, config, eval_users, eval_seed, lambda algo: (
        UniformGoalPolicy(np.random.default_rng(eval_seed + 1)), greedy(algo)))
    short_term, _ = train_short_term(short_data, levels[SHORT_TERM_AGENT], trainer, run_dir / SHORT_TERM_AGENT,
                                     [short_eval], hparams)
    timings["short_term_seconds"] = time.perf_counter() - started

    # long term: semi-MDP on the sessions, evaluated with the trained short-term learner under it
    started = time.perf_counter()
    session_data = session_level_dataset(log, levels[LONG_TERM_AGENT].gamma)
    long_eval = LifetimeEvaluator(sim, config, eval_users, eval_seed,
                                  lambda algo: (greedy(algo), greedy(short_term)))
    long_term, _ = train_long_term(session_data, log.length, levels[LONG_TERM_AGENT], trainer,
                                   run_dir / LONG_TERM_AGENT, [long_eval], hparams)
    timings["long_term_seconds"] = time.perf_counter() - started

    # flat baseline: one policy on the request-level data, γ per request across sessions
    started = time.perf_counter()
    flat_data = flat_dataset(log)
    flat_eval = LifetimeEvaluator(sim, config, eval_users, eval_seed, lambda algo: (None, greedy(algo)))
    flat, _ = train_flat(flat_data, levels[FLAT_AGENT], trainer, run_dir / FLAT_AGENT, [flat_eval], hparams)
    timings["flat_seconds"] = time.perf_counter() - started

    # the final comparison: the same users and draws for every policy
    started = time.perf_counter()
    users = int(cfg.evaluation.ab_users_per_group)
    agent = HierarchicalAgent(long_term, short_term)
    behaviour_rng = np.random.default_rng(eval_seed + 1)  # the behaviour pair's own noise
    pairs = {
        "behaviour": (UniformGoalPolicy(behaviour_rng),
                      GaussianNoisePolicy(GoalFollowingPolicy(collection.follower_weight, collection.follower_values),
                                          collection.behaviour_sigma, behaviour_rng)),
        "flat": (None, greedy(flat)),
        "hierarchical": (agent.goal_policy, agent.short_term_policy),
    }
    if settings.references:
        # context: a fixed fusion action, and the learned goals followed by the reference
        # (noise-free) goal follower instead of the learned short-term controller
        pairs["constant_reference"] = (None, ConstantPolicy(list(settings.constant_reference)))
        pairs["learned_goals_follower"] = (agent.goal_policy, GoalFollowingPolicy(collection.follower_weight,
                                                                                   collection.follower_values))
    results: dict[str, dict[str, float]] = {}
    for name, (goal_policy, short_policy) in pairs.items():
        stats = run_lifetimes(short_policy, users, np.random.default_rng(eval_seed), goal_policy, config, sim=sim)
        summary = stats.summary()
        results[name] = {**lifetime_metrics(stats), "retention_se": summary["sessions_se"],
                         "engagement_se": summary["engagement_se"], "churn_rate": summary["churn_rate"]}
    timings["evaluation_seconds"] = time.perf_counter() - started

    # diagnostics: each learner's value estimate at the start of the evaluation users'
    # lifetimes against the discounted lifetime return its policy really earns there (both
    # Σ_t γ^t r_t, t counting requests), and what the long-term learner asks for
    gamma = levels[LONG_TERM_AGENT].gamma
    zero_goal = lambda sim_, obs: np.zeros((obs.shape[0], GOAL_DIM))  # noqa: E731 (the flat policy has none)
    flat_log = collect_lifetimes(sim, zero_goal, lambda sim_, obs: flat.act(obs[:, :-GOAL_DIM]), eval_users,
                                 np.random.default_rng(eval_seed), config)
    hier_log = collect_lifetimes(sim, agent.goal_policy, agent.short_term_policy, eval_users,
                                 np.random.default_rng(eval_seed), config)
    flat_first = np.flatnonzero(np.append(True, flat_log.user[1:] != flat_log.user[:-1]))
    hier_first = np.flatnonzero(np.append(True, hier_log.session_user[1:] != hier_log.session_user[:-1]))
    value_check = {
        "flat_q_estimate": float(flat.q_value(flat_log.observation[flat_first], flat_log.action[flat_first]).mean()),
        "flat_true_discounted_return": float(discounted_lifetime_returns(flat_log, levels[FLAT_AGENT].gamma).mean()),
        "long_term_q_estimate": float(long_term.q_value(hier_log.long_observation[hier_first],
                                                        hier_log.goal_action[hier_first]).mean()),
        "hierarchical_true_discounted_return": float(discounted_lifetime_returns(hier_log, gamma).mean()),
    }
    chosen = goal_from_action(long_term.act(log.long_observation, deterministic=True))
    diagnostics = {**value_check,
        "requests_logged": log.num_requests, "sessions_logged": log.num_sessions,
        "behaviour_sessions_per_user": log.num_sessions / collection.num_users,
        "short_term_transitions": len(short_data),
        "relabelled_sessions": int(short_data.metadata["relabelled_sessions"]),
        "long_term_goal_mean": chosen.mean(0).tolist(), "long_term_goal_std": chosen.std(0).tolist(),
    }
    return {"seed": seed, "results": results, "diagnostics": diagnostics, "timings": timings}


def aggregate(per_seed: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """{policy: {metric: {"mean", "std"}}} over seeds (std with ddof=1; 0 for one seed)."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for policy in per_seed[0]["results"]:
        table[policy] = {}
        for metric in per_seed[0]["results"][policy]:
            values = np.array([s["results"][policy][metric] for s in per_seed], dtype=np.float64)
            table[policy][metric] = {"mean": float(values.mean()),
                                     "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
    return table


def format_table(table: dict[str, dict[str, dict[str, float]]], num_seeds: int) -> str:
    header = f"{'policy':<24}" + "".join(f"{METRIC_TITLES[m]:>24}" for m in METRICS)
    lines = [f"hierarchical experiment: mean ± std over {num_seeds} seed(s)", header, "-" * len(header)]
    for policy, row in table.items():
        cells = "".join(f"{row[m]['mean']:>15.2f} ± {row[m]['std']:<6.2f}" for m in METRICS)
        lines.append(f"{policy:<24}{cells}")
    return "\n".join(lines)


def compare(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Hierarchical minus flat per metric: the mean difference and the seed-to-seed spread
    (the larger of the two policies' std over seeds); the target holds when the difference
    exceeds the spread for lifetime engagement and retention."""
    out: dict[str, Any] = {}
    for metric in ("lifetime_engagement", "retention"):
        hier = np.array([s["results"]["hierarchical"][metric] for s in per_seed])
        flat = np.array([s["results"]["flat"][metric] for s in per_seed])
        ddof = 1 if len(per_seed) > 1 else 0
        spread = float(max(hier.std(ddof=ddof), flat.std(ddof=ddof)))
        out[metric] = {"difference": float(hier.mean() - flat.mean()), "spread": spread,
                       "beats": bool(hier.mean() - flat.mean() > spread)}
    out["target_met"] = all(out[m]["beats"] for m in ("lifetime_engagement", "retention"))
    return out


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """The ``task`` of ``conf/experiment/hierarchical.yaml``: every seed, the table, ``metrics.json``."""
    torch.set_num_threads(int(cfg.torch_threads))
    torch.manual_seed(int(cfg.seed))
    run_dir = Path(run_dir)
    settings = HierarchicalExperimentConfig.from_node(cfg.agent)
    env = instantiate(cfg.env)
    if not isinstance(env, HierarchicalInterestEnv):
        raise ValueError(f"the hierarchical experiment needs env=hierarchical, got {type(env).__name__}")
    started = time.perf_counter()
    per_seed = []
    for offset in range(settings.num_seeds):
        seed = int(cfg.seed) + offset
        result = run_seed(cfg, settings, env, seed, run_dir / f"seed{seed}")
        per_seed.append(result)
        print(f"[hierarchical] seed {seed}: " + ", ".join(
            f"{p} {r['lifetime_engagement']:.1f} eng / {r['retention']:.2f} sess"
            for p, r in result["results"].items()), flush=True)
    table = aggregate(per_seed)
    comparison = compare(per_seed)
    print(format_table(table, settings.num_seeds), flush=True)
    print(f"hierarchical - flat: engagement {comparison['lifetime_engagement']['difference']:+.2f} "
          f"(spread {comparison['lifetime_engagement']['spread']:.2f}), retention "
          f"{comparison['retention']['difference']:+.2f} (spread {comparison['retention']['spread']:.2f}); "
          f"target met: {comparison['target_met']}", flush=True)
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
    write_json(run_dir / "metrics.json", _finite(metrics))
    return metrics


def _finite(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become None, tuples lists."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


__all__ = ["run", "run_seed", "HierarchicalExperimentConfig", "CollectionConfig", "aggregate", "compare",
           "format_table"]
