"""The multi-agent experiment: behaviour vs independent vs centralised (CTDE) offline learners
for the recommender and the advertiser (``marl-rec +experiment=joint_rec_ads``; the CLI calls
:func:`run`).

Per seed: log a :class:`~marl_rec.data.multiagent.MultiAgentDataset` with the behaviour pair
(hand-tuned constant fusion weights with truncated-Gaussian noise, random ad insertion within
the cap; ``collection``) on the batched simulator, train the independent learners (one
registered algorithm per agent, each on its own table) and the centralised learner
(:class:`marl_rec.agents.ctde.CentralisedLearner`: critics over the global state and the joint
action — in cooperative mode with ``centralised.decomposed`` an engagement and a revenue critic
weighted (1, λ), else one team critic —, CQL penalty on the joint action, per-agent actors), and
simulate the sessions of the
same ``evaluation.ab_users_per_group`` users under each policy pair (common random numbers).
The table gives mean ± std (ddof=1) over the seeds of the team return (engagement + λ·revenue
per session), engagement, ad revenue, session length and ad load.

The default behaviour recommender uses constant weights rather than the heuristic expert: the
expert picks actions from the true (hidden) user state, so in its data the logged action and
the return are confounded through state the learners never observe; Q(s, a) learned from it
rewarded myopic, click-heavy actions and both learners fell below the behaviour pair (measured
while building this experiment; ``collection.recommender_base: heuristic`` reproduces it).

Then the λ sweep: the first seed's data relabelled with every ``frontier.revenue_weights`` value
(the components are stored, nothing is collected again), the chosen learners trained on each,
and their engagement and revenue plotted against the behaviour's: ``frontier.png``.

Folders: ``seed<k>/independent/{recommender,advertiser}/`` and ``seed<k>/centralised/`` hold
each Trainer's TensorBoard events (``train/recommender/critic_loss``,
``train/advertiser/critic_loss``, ``train/centralised/...``) and checkpoint; every policy
folder (``seed<k>/<policy>/``) gets its final ``eval/team_return``, ``eval/engagement``,
``eval/revenue``, ``eval/session_length``, ``eval/ad_load`` (the centralised learner's also
during training); ``frontier/lambda<λ>/`` the sweep's runs; ``metrics.json`` everything.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from marl_rec.agents.ctde import CentralisedConfig, CentralisedLearner
from marl_rec.agents.independent import IndependentLearners, LearnerSpec
from marl_rec.agents.multiagent_data import (AGENTS, RandomAdPolicy, collect_joint, evaluate_joint,
                                    relabel)
from marl_rec.agents.policies import ConstantPolicy, GaussianNoisePolicy, HeuristicExpertPolicy
from marl_rec.envs.joint_rec_ads import ADVERTISER, RECOMMENDER, JointRecAdsBatch, JointRecAdsConfig, JointRecAdsEnv
from marl_rec.envs.simulator import SimulatorConfig, UserSimulator
from marl_rec.algos.registry import make_config
from marl_rec.data.multiagent import FORMAT_VERSION as MULTIAGENT_FORMAT_VERSION
from marl_rec.data.multiagent import JointSampler, MultiAgentDataset
from marl_rec.pipelines import DATA_FORMAT_VERSION, cached_dataset, config_hash
from marl_rec.experiments.common import (check_cache_dir, float_tuple, instantiate_checked, trainer_config,
                                         validate_evaluation, validate_train)
from marl_rec.files import save_figure, write_json
from marl_rec.logging import TensorBoardLogger
from marl_rec.report import difference_vs_spread, format_seed_table, json_safe, seed_table
from marl_rec.trainer import Trainer

POLICIES = ("behaviour", "independent", "centralised")
LEARNERS = ("independent", "centralised")
METRICS = ("team_return", "engagement", "revenue", "session_length", "ad_load")
METRIC_TITLES = {"team_return": "team return", "engagement": "engagement", "revenue": "ad revenue",
                 "session_length": "session length", "ad_load": "ad load"}


@dataclass(frozen=True)
class CollectionConfig:
    """The behaviour pair and how much it logs."""

    num_transitions: int = 60_000
    batch_users: int = 1024
    # the behaviour recommender: "constant" (hand-tuned fusion weights, the industry default)
    # or "heuristic" (the expert that reads the true user state: its data confounds Q(s, a),
    # because it picks actions with information the learners never see)
    recommender_base: str = "constant"
    constant_action: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)
    recommender_sigma: float = 0.5  # truncated-Gaussian noise around the base recommender
    ad_probability: float = 5 / 6  # P(ad) when the cap allows one, at a uniformly random allowed slot
    per_seed: bool = True  # a fresh dataset per seed (False: the first seed's for all)

    def __post_init__(self) -> None:
        for name in ("num_transitions", "batch_users"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"agent.collection.{name} must be an int >= 1, got {value!r}")
        object.__setattr__(self, "constant_action", float_tuple(self.constant_action, "agent.collection.constant_action"))
        if self.recommender_base not in ("constant", "heuristic"):
            raise ValueError(f"agent.collection.recommender_base must be 'constant' or 'heuristic', got "
                             f"{self.recommender_base!r}")
        if len(self.constant_action) != 4 or any(not abs(v) <= 1 for v in self.constant_action):
            raise ValueError(f"agent.collection.constant_action must be 4 values in [-1, 1], "
                             f"got {self.constant_action}")
        if not 0 < self.recommender_sigma < math.inf:
            raise ValueError(f"agent.collection.recommender_sigma must be finite and > 0, got {self.recommender_sigma!r}")
        if not 0.0 <= self.ad_probability <= 1.0:
            raise ValueError(f"agent.collection.ad_probability must be in [0, 1], got {self.ad_probability!r}")


@dataclass(frozen=True)
class FrontierConfig:
    """The λ sweep: learners trained on relabelled data for every revenue weight."""

    revenue_weights: tuple[float, ...] = (0.0, 2.0, 4.0, 8.0, 16.0)
    learners: tuple[str, ...] = ("centralised",)
    num_updates: int | None = None  # None: train.num_updates

    def __post_init__(self) -> None:
        object.__setattr__(self, "revenue_weights", float_tuple(self.revenue_weights, "agent.frontier.revenue_weights"))
        object.__setattr__(self, "learners", tuple(self.learners))
        if any(not math.isfinite(v) or v < 0 for v in self.revenue_weights):
            raise ValueError(f"agent.frontier.revenue_weights must be finite and >= 0, got {self.revenue_weights}")
        bad = sorted(set(self.learners) - set(LEARNERS))
        if bad:
            raise ValueError(f"agent.frontier.learners: unknown {bad}; choose from {list(LEARNERS)}")
        if self.num_updates is not None and (isinstance(self.num_updates, bool) or self.num_updates < 1):
            raise ValueError(f"agent.frontier.num_updates must be None or >= 1, got {self.num_updates!r}")


@dataclass(frozen=True)
class JointExperimentConfig:
    """The ``agent`` node of ``conf/agent/joint_rec_ads.yaml``.

    ``gamma`` is given to every learner (unless its ``overrides`` set one); ``independent``
    maps each agent to a :class:`LearnerSpec` (``algorithm``, ``preset``, ``overrides``);
    ``centralised`` is ``{preset, overrides}`` of :class:`CentralisedConfig`."""

    num_seeds: int = 3
    gamma: float = 0.99
    collection: CollectionConfig = field(default_factory=CollectionConfig)
    independent: dict[str, Any] = field(default_factory=lambda: {
        RECOMMENDER: {"algorithm": "bcq"}, ADVERTISER: {"algorithm": "discrete_bcq"}})
    centralised: dict[str, Any] = field(default_factory=dict)
    frontier: FrontierConfig = field(default_factory=FrontierConfig)

    def __post_init__(self) -> None:
        if isinstance(self.num_seeds, bool) or not isinstance(self.num_seeds, int) or self.num_seeds < 1:
            raise ValueError(f"agent.num_seeds must be an int >= 1, got {self.num_seeds!r}")
        if isinstance(self.gamma, bool) or not isinstance(self.gamma, (int, float)) or not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"agent.gamma must be in (0, 1], got {self.gamma!r}")
        missing = sorted(set(AGENTS) - set(self.independent))
        if missing:
            raise ValueError(f"agent.independent needs a learner for {missing}")
        self.learner_specs()  # validates them
        self.centralised_config()

    @classmethod
    def from_node(cls, node: Any) -> JointExperimentConfig:
        """Build from the ``agent`` node (DictConfig or dict); unknown keys are errors."""
        values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
        values = {k: v for k, v in values.items() if k != "name"}
        _check_keys("agent", values, cls)
        for name, sub in (("collection", CollectionConfig), ("frontier", FrontierConfig)):
            if name in values:
                _check_keys(f"agent.{name}", values[name], sub)
                values[name] = sub(**values[name])
        return cls(**values)

    def learner_specs(self) -> dict[str, LearnerSpec]:
        specs = {}
        for agent, spec in self.independent.items():
            spec = dict(spec or {})
            _check_keys(f"agent.independent.{agent}", spec, LearnerSpec)
            overrides = {"gamma": self.gamma, **dict(spec.get("overrides") or {})}
            overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
            specs[agent] = LearnerSpec(spec.get("algorithm", ""), spec.get("preset", "rec"), overrides)
            make_config(specs[agent].algorithm, specs[agent].preset, **overrides)  # validates early
        return specs

    def decomposed(self, mode: str = "cooperative") -> bool:
        """``centralised.decomposed`` in cooperative mode: the centralised learner trains an
        engagement critic (discount ``gamma``) and a revenue critic (discount
        ``centralised.revenue_gamma``) on the mixed mode's rewards; the advertiser's actor follows
        engagement + λ·revenue of them (``CentralisedConfig.team_weights``), the recommender's its
        engagement critic (``continuous_own_critic``)."""
        value = dict(self.centralised or {}).get("decomposed", False)
        if not isinstance(value, bool):
            raise ValueError(f"agent.centralised.decomposed must be a bool, got {value!r}")
        return value and mode == "cooperative"

    def centralised_config(self, mode: str = "cooperative", revenue_weight: float = 0.0) -> CentralisedConfig:
        """The CTDE config; ``shared_critic`` follows ``mode`` (one team critic when cooperative,
        a critic per agent when mixed) unless the overrides set it. Decomposed (cooperative
        only): a critic per agent, weighted (1, ``revenue_weight``) for the actors."""
        spec = dict(self.centralised or {})
        bad = sorted(set(spec) - {"preset", "overrides", "decomposed", "revenue_gamma"})
        if bad:
            raise ValueError(f"unknown agent.centralised option(s) {bad}; accepted: ['decomposed', 'overrides', "
                             f"'preset', 'revenue_gamma']")
        revenue_gamma = spec.get("revenue_gamma", 0.0)
        if isinstance(revenue_gamma, bool) or not isinstance(revenue_gamma, (int, float)) or not 0 <= revenue_gamma <= 1:
            raise ValueError(f"agent.centralised.revenue_gamma must be in [0, 1], got {revenue_gamma!r}")
        preset = spec.get("preset", "rec")
        if preset not in ("paper", "rec"):
            raise ValueError(f"agent.centralised.preset must be 'paper' or 'rec', got {preset!r}")
        gamma = dict(spec.get("overrides") or {}).get("gamma", self.gamma)
        derived = ({"shared_critic": False, "team_weights": (1.0, float(revenue_weight)),
                    "critic_gammas": (gamma, float(revenue_gamma)), "continuous_own_critic": True}
                   if self.decomposed(mode) else {"shared_critic": mode == "cooperative"})
        overrides = {"gamma": self.gamma, **derived, **dict(spec.get("overrides") or {})}
        base = CentralisedConfig() if preset == "paper" else CentralisedConfig.rec()
        _check_keys("agent.centralised.overrides", overrides, CentralisedConfig)
        values = {**{f.name: getattr(base, f.name) for f in fields(CentralisedConfig)}, **overrides}
        return CentralisedConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _check_keys(where: str, values: Any, cls: type) -> None:
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be a mapping, got {type(values).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {where} option(s) {unknown}; accepted: {sorted(known)}")


# ------------------------------------------------------------------------ pieces
def behaviour_policies(collection: CollectionConfig, rng: np.random.Generator, num_ad_actions: int) -> dict[str, Any]:
    """The logging pair: the base recommender with truncated-Gaussian noise, random ad insertion."""
    base = (ConstantPolicy(list(collection.constant_action)) if collection.recommender_base == "constant"
            else HeuristicExpertPolicy())
    return {RECOMMENDER: GaussianNoisePolicy(base, collection.recommender_sigma, rng),
            ADVERTISER: RandomAdPolicy(collection.ad_probability, rng, num_ad_actions)}


def joint_dataset(cfg: DictConfig, collection: CollectionConfig, sim_config: SimulatorConfig,
                  joint_config: JointRecAdsConfig, seed: int) -> tuple[MultiAgentDataset, dict[str, Any]]:
    """The behaviour pair's dataset for ``seed``, cached in ``cache_dir`` by a content hash of
    the collection, environment and simulator configs (all resolved dataclasses), the seed and
    the format versions."""
    spec = {"kind": "joint_rec_ads", "collection": vars(collection), "seed": seed,
            "data_format_version": DATA_FORMAT_VERSION, "storage_format_version": MULTIAGENT_FORMAT_VERSION}
    key = config_hash(spec, vars(joint_config), sim_config.to_dict())

    def build() -> MultiAgentDataset:
        env = JointRecAdsBatch(UserSimulator(sim_config), joint_config)
        rng = np.random.default_rng(seed)
        return collect_joint(env, behaviour_policies(collection, rng, env.num_ad_actions),
                             collection.num_transitions, rng, collection.batch_users,
                             metadata={"pipeline": "joint_rec_ads", "seed": seed})

    started = time.perf_counter()
    dataset, path, reused = cached_dataset(str(cfg.cache_dir), "joint_rec_ads", key, build, MultiAgentDataset.load)
    info = {"dataset_path": str(path), "dataset_reused": reused, "dataset_seconds": time.perf_counter() - started,
            "dataset_transitions": len(dataset), "dataset_episodes": dataset.num_episodes}
    return dataset, info


class JointEvaluator:
    """Trainer hook: the centralised learner's decentralised policies in the batched simulator,
    ``num_users`` seeded users (the same at every call); logged as ``eval/<metric>``."""

    def __init__(self, sim_config: SimulatorConfig, joint_config: JointRecAdsConfig, num_users: int, seed: int) -> None:
        self.env = JointRecAdsBatch(UserSimulator(sim_config), joint_config)
        self.num_users, self.seed = num_users, seed

    def __call__(self, algorithm: Any, step: int) -> dict[str, float]:
        summary = evaluate_joint(self.env, algorithm.policies(), self.num_users, self.seed).summary(
            self.env.config.revenue_weight)
        return {f"eval/{k}": v for k, v in summary.items() if k in METRICS}


def train_learners(cfg: DictConfig, settings: JointExperimentConfig, dataset: MultiAgentDataset,
                   sim_config: SimulatorConfig, joint_config: JointRecAdsConfig, seed: int, run_dir: Path,
                   learners: tuple[str, ...] = LEARNERS, num_updates: int | None = None) -> dict[str, Any]:
    """Train the requested learners on ``dataset``; returns {name: object with ``policies()``}."""
    trainer = trainer_config(cfg, seed, num_updates)
    out: dict[str, Any] = {}
    if "independent" in learners:
        independent = IndependentLearners.for_dataset(dataset, settings.learner_specs(), seed, str(cfg.device))
        independent.fit(dataset, trainer, run_dir / "independent")
        out["independent"] = independent
    if "centralised" in learners:
        # decomposed: the critics learn engagement and revenue apart (the stored components)
        data = relabel(dataset, "mixed", joint_config.revenue_weight) if settings.decomposed(joint_config.mode) \
            else dataset
        centralised = CentralisedLearner.for_dataset(data, settings.centralised_config(
            joint_config.mode, joint_config.revenue_weight), seed, str(cfg.device))
        evaluator = JointEvaluator(sim_config, joint_config, int(cfg.evaluation.num_users), int(cfg.evaluation.seed))
        Trainer(centralised, JointSampler(data, str(cfg.device)), trainer, run_dir / "centralised",
                [evaluator], agent_name="centralised",
                hparams={"experiment": "joint_rec_ads", "seed": seed,
                         "revenue_weight": joint_config.revenue_weight, "mode": joint_config.mode}).fit(resume=True)
        out["centralised"] = centralised
    return out


def evaluate_policies(cfg: DictConfig, pairs: dict[str, dict[str, Any]], sim_config: SimulatorConfig,
                      joint_config: JointRecAdsConfig) -> dict[str, dict[str, float]]:
    """Every policy pair on the same ``evaluation.ab_users_per_group`` users (same seed)."""
    env = JointRecAdsBatch(UserSimulator(sim_config), joint_config)
    users, seed = int(cfg.evaluation.ab_users_per_group), int(cfg.evaluation.seed) + 1
    return {name: evaluate_joint(env, policies, users, seed).summary(joint_config.revenue_weight)
            for name, policies in pairs.items()}


def run_seed(cfg: DictConfig, settings: JointExperimentConfig, sim_config: SimulatorConfig,
             joint_config: JointRecAdsConfig, seed: int, data_seed: int, run_dir: Path) -> dict[str, Any]:
    """One seed: the dataset, both learners, the final evaluation of the three policy pairs."""
    timings: dict[str, float] = {}
    dataset, data_info = joint_dataset(cfg, settings.collection, sim_config, joint_config, data_seed)
    dataset = relabel(dataset, joint_config.mode, joint_config.revenue_weight)
    started = time.perf_counter()
    learners = train_learners(cfg, settings, dataset, sim_config, joint_config, seed, run_dir)
    timings["train_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    behaviour_rng = np.random.default_rng(int(cfg.evaluation.seed) + 2 + seed)  # the behaviour pair's own noise
    pairs = {"behaviour": behaviour_policies(settings.collection, behaviour_rng, sim_config.slate_size + 1),
             **{name: learner.policies() for name, learner in learners.items()}}
    results = evaluate_policies(cfg, pairs, sim_config, joint_config)
    timings["evaluation_seconds"] = time.perf_counter() - started
    step = int(cfg.train.num_updates)
    for name, summary in results.items():
        with TensorBoardLogger(run_dir / name) as logger:
            logger.log_scalars({f"eval/{k}": v for k, v in summary.items()}, step)
    return {"seed": seed, "data_seed": data_seed, "results": results, "data": data_info, "timings": timings}


def format_table(table: dict[str, dict[str, dict[str, float]]], num_seeds: int, revenue_weight: float) -> str:
    title = (f"joint_rec_ads (team return = engagement + {revenue_weight:g} x revenue per session): "
             f"mean ± std over {num_seeds} seed(s)")
    return format_seed_table(title, table, {m: METRIC_TITLES[m] for m in METRICS}, policy_width=13, mean_width=12,
                             std_width=5, digits=3)


def compare(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """The target on the team return: centralised minus independent against the seed-to-seed
    spread (the larger std over seeds of the two), and both learners against the behaviour."""
    def values(policy: str) -> np.ndarray:
        return np.array([s["results"][policy]["team_return"] for s in per_seed])

    cen, ind, beh = values("centralised"), values("independent"), values("behaviour")
    learners = difference_vs_spread(cen, ind)
    out = {"centralised_minus_independent": learners["difference"], "spread": learners["spread"],
           "centralised_beats_independent": learners["beats"],
           "centralised_minus_behaviour": float(cen.mean() - beh.mean()),
           "independent_minus_behaviour": float(ind.mean() - beh.mean()),
           "per_seed_centralised_minus_independent": (cen - ind).tolist()}
    out["both_beat_behaviour"] = bool(out["centralised_minus_behaviour"] > 0 and out["independent_minus_behaviour"] > 0)
    out["target_met"] = out["centralised_beats_independent"] and out["both_beat_behaviour"]
    return out


def run_frontier(cfg: DictConfig, settings: JointExperimentConfig, sim_config: SimulatorConfig,
                 joint_config: JointRecAdsConfig, run_dir: Path,
                 first_seed: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train ``frontier.learners`` on the first seed's data relabelled for every λ; evaluate
    engagement and revenue (the behaviour pair, which does not depend on λ, once). At the
    experiment's own λ the first seed's results (``first_seed``) are reused when they were
    trained as the sweep would train them (same data and number of updates)."""
    frontier = settings.frontier
    seed = int(cfg.seed)
    dataset, _ = joint_dataset(cfg, settings.collection, sim_config, joint_config, seed)
    points: dict[str, list[dict[str, float]]] = {name: [] for name in frontier.learners}
    reusable = (first_seed is not None and first_seed["data_seed"] == seed
                and frontier.num_updates in (None, int(cfg.train.num_updates)))
    if reusable:
        behaviour = first_seed["results"]["behaviour"]
    else:
        behaviour_rng = np.random.default_rng(int(cfg.evaluation.seed) + 2 + seed)
        behaviour = evaluate_policies(cfg, {"behaviour": behaviour_policies(
            settings.collection, behaviour_rng, sim_config.slate_size + 1)}, sim_config, joint_config)["behaviour"]
    for weight in frontier.revenue_weights:
        config = JointRecAdsConfig(**{**vars(joint_config), "revenue_weight": weight})
        if reusable and weight == joint_config.revenue_weight:
            results = {name: first_seed["results"][name] for name in frontier.learners}
        else:
            learners = train_learners(cfg, settings, relabel(dataset, config.mode, weight), sim_config, config,
                                      seed, run_dir / f"lambda{weight:g}", frontier.learners, frontier.num_updates)
            results = evaluate_policies(cfg, {n: learner.policies() for n, learner in learners.items()},
                                        sim_config, config)
        for name, summary in results.items():
            points[name].append({"revenue_weight": weight, **summary})
        print(f"[joint_rec_ads] frontier λ={weight:g}: " + ", ".join(
            f"{n} engagement {r['engagement']:.2f} revenue {r['revenue']:.3f}" for n, r in results.items()),
            flush=True)
    return {"points": points, "behaviour": behaviour}


def plot_frontier(frontier: dict[str, Any], path: Path) -> Path:
    """Engagement against ad revenue per session, one line per learner across λ (annotated),
    the behaviour pair as a star. Written atomically (temp file, then rename)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.8))
    for name, points in frontier["points"].items():
        revenue = [p["revenue"] for p in points]
        engagement = [p["engagement"] for p in points]
        axes.plot(revenue, engagement, marker="o", label=f"{name} (λ sweep)")
        for p in points:
            axes.annotate(f"λ={p['revenue_weight']:g}", (p["revenue"], p["engagement"]), textcoords="offset points",
                          xytext=(4, 4), fontsize=8)
    behaviour = frontier["behaviour"]
    axes.plot([behaviour["revenue"]], [behaviour["engagement"]], marker="*", markersize=14, linestyle="none",
              color="black", label="behaviour")
    axes.set_xlabel("ad revenue per session")
    axes.set_ylabel("engagement per session")
    axes.set_title("Engagement–revenue frontier (JointRecAds, offline learners)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    save_figure(figure, path, dpi=120)
    plt.close(figure)
    return path


def validate_settings(cfg: DictConfig) -> None:
    """The run's own settings, checked before any data is collected (the ``agent`` node and the
    env are checked when they are built): ``cache_dir`` created and writable, ``evaluation``,
    ``train``; ValueError or TypeError naming the config key."""
    check_cache_dir(cfg.cache_dir)
    validate_evaluation(cfg)
    validate_train(cfg)


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """The ``task`` of ``conf/experiment/joint_rec_ads.yaml``: every seed, the table, the λ
    sweep and its plot, ``metrics.json``."""
    torch.set_num_threads(int(cfg.torch_threads))
    torch.manual_seed(int(cfg.seed))
    run_dir = Path(run_dir)
    settings = JointExperimentConfig.from_node(cfg.agent)
    # the env and its simulator options (extra keys of ``env``) check their fields: errors name ``env.<field>``
    env = instantiate_checked(cfg.env, {"SimulatorConfig": "env", "JointRecAdsConfig": "env"})
    if not isinstance(env, JointRecAdsEnv):
        raise ValueError(f"the joint_rec_ads experiment needs env=joint_rec_ads, got {type(env).__name__}")
    joint_config, sim_config = env.config, env.sim_config
    validate_settings(cfg)
    started = time.perf_counter()
    per_seed = []
    for offset in range(settings.num_seeds):
        seed = int(cfg.seed) + offset
        data_seed = seed if settings.collection.per_seed else int(cfg.seed)
        result = run_seed(cfg, settings, sim_config, joint_config, seed, data_seed, run_dir / f"seed{seed}")
        per_seed.append(result)
        print(f"[joint_rec_ads] seed {seed}: " + ", ".join(
            f"{p} team {r['team_return']:.2f} (eng {r['engagement']:.2f}, rev {r['revenue']:.3f})"
            for p, r in result["results"].items()), flush=True)
    table = seed_table(per_seed)
    comparison = compare(per_seed)
    print(format_table(table, settings.num_seeds, joint_config.revenue_weight), flush=True)
    print(f"centralised - independent: {comparison['centralised_minus_independent']:+.3f} team return (seed-to-seed "
          f"spread {comparison['spread']:.3f}); vs behaviour: centralised "
          f"{comparison['centralised_minus_behaviour']:+.3f}, independent "
          f"{comparison['independent_minus_behaviour']:+.3f};"
          f" target met: {comparison['target_met']}", flush=True)
    with TensorBoardLogger(run_dir) as logger:
        for result in per_seed:
            logger.log_scalars({f"final/{policy}/{metric}": value for policy, row in result["results"].items()
                                for metric, value in row.items()}, result["seed"])
    frontier_started = time.perf_counter()
    frontier = run_frontier(cfg, settings, sim_config, joint_config, run_dir / "frontier", per_seed[0]) \
        if settings.frontier.revenue_weights else None
    figure = plot_frontier(frontier, run_dir / "frontier.png") if frontier else None
    metrics = {
        "status": "completed", "task": "joint_rec_ads", "seed": int(cfg.seed), "seeds": [r["seed"] for r in per_seed],
        "env": {"joint_rec_ads": vars(joint_config), "simulator": sim_config.to_dict()},
        "table": table, "centralised_vs_independent": comparison, "per_seed": per_seed,
        "frontier": frontier, "frontier_plot": str(figure) if figure else None,
        "frontier_seconds": time.perf_counter() - frontier_started,
        "total_seconds": time.perf_counter() - started,
        "true_return": table["centralised"]["team_return"]["mean"],
        "behaviour_return": table["behaviour"]["team_return"]["mean"],
    }
    write_json(run_dir / "metrics.json", json_safe(metrics))
    return metrics


__all__ = ["run", "run_seed", "run_frontier", "plot_frontier", "JointExperimentConfig", "CollectionConfig",
           "FrontierConfig", "JointEvaluator", "compare", "format_table", "train_learners"]
