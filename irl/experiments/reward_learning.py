"""Run the reward-learning methods on one simulator and measure what they recovered.

:func:`learn_rewards` builds everything from a :class:`RewardLearningConfig` and returns a
list of result rows; :func:`format_table` prints them. :func:`run` is the Hydra experiment
(``marl-rec +experiment=reward_learning``): it instantiates the same dataclasses from
``conf/irl/reward_learning.yaml`` and writes the table and ``metrics.json`` into the run folder. TensorBoard scalars go under ``irl/<method>/…``.

What is compared with what
    - *MaxEnt IRL*: the per-segment topic reward against the segment's mean true long-term
      interest (Pearson, Spearman over the T topics, averaged over segments).
    - *Preferences* and *AIRL*: the learned per-step reward against the realised true
      utility on held-out logged transitions of users never seen in training (Pearson,
      Spearman), held-out preference accuracy (noiseless oracle on held-out segment pairs),
      and EPIC distance to the *supervised reference* — an MLP regressed on the true
      utility from the same transition features, i.e. the best a reward of logged
      features was measured to reach (EPIC needs a reward defined on any transition,
      which the realised utility is not). The reference's own Pearson is printed as the
      ceiling row.
    - *Retrain* (:mod:`marl_rec.irl.retrain`): the held-in logs (or, with ``retrain.data=uniform``,
      fresh logs of uniformly random actions) relabelled with each learned reward
      (the first preference seed's model per selection, AIRL's g), the true utility and
      the controls; the same offline algorithm trained on each; the true-utility return
      of every policy in one simulated A/B test (common random numbers), as a ratio to
      the policy trained on the true utility. The logging policy is the reference arm
      ``retrain/behaviour``. MaxEnt's per-topic reward is not relabelled (see
      :mod:`marl_rec.irl.retrain` for why).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from marl_rec.agents.policies import GaussianNoisePolicy, HeuristicExpertPolicy, ProductionPolicy, RandomPolicy
from marl_rec.envs.simulator import SimulatorConfig, UserSimulator
from marl_rec.irl.airl import AIRL, AIRLConfig
from marl_rec.irl.common import seeded_mlp
from marl_rec.irl.data import (FEATURE_SETS, LabelledDataset, collect_with_utility, feature_columns, logging_consumed,
                               probe_expected_utility, transition_features)
from marl_rec.irl.experts import BoltzmannCuratorPolicy, UtilityGreedyPolicy
from marl_rec.irl.maxent import MaxEntConfig, collect_topic_demonstrations, recover_segment_rewards, segment_users
from marl_rec.irl.metrics import epic_distance, pearson, preference_accuracy, spearman
from marl_rec.irl.preferences import (BradleyTerryRewardModel, OracleConfig, PreferenceConfig, PreferenceOracle,
                             RewardModelConfig, SegmentPool, learn_from_preferences, standardisation,
                             uniform_pairs)
from marl_rec.irl.retrain import RetrainConfig, relabel_and_retrain
from marl_rec.data import OfflineDataset
from marl_rec.files import write_json, write_text


@dataclass
class ReferenceConfig:
    """The supervised reference: an MLP regressed on the true utility (the ceiling row)."""

    hidden: tuple[int, ...] = (128, 128)
    steps: int = 4000
    batch_size: int = 256
    lr: float = 1e-3


METHODS = ("maxent", "preferences", "airl", "retrain")


@dataclass
class RewardLearningConfig:
    seed: int = 0
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    methods: tuple[str, ...] = ("maxent", "preferences", "airl", "retrain")
    # logged data (preferences, evaluation): the noisy engagement expert's logs
    num_transitions: int = 60_000
    behaviour_sigma: float = 0.5
    heldout_fraction: float = 0.3
    # log per request what the platform knows about what was consumed (irl/data.py CONSUMED_FEATURES:
    # the clicked items' predictions, predicted utility, positions) as extra reward components
    log_consumed: bool = True
    # what the preference reward sees: "outcome", the logged columns of the request alone (behaviours and
    # what was consumed); "logged" adds the observation and action, "transition" the next observation too.
    # Measured (disagreement queries, 20,000 transitions): held-out Pearson 0.954 (outcome, data seeds 0-2,
    # bench/results/issue17/reward_learning_preferences_3seeds.json) vs 0.867 (logged) and 0.803 (transition),
    # data seed 0, before the topic columns: 1,000 noisy labels fit 19 inputs better than 220
    feature_set: str = "outcome"
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    # MaxEnt IRL
    maxent: MaxEntConfig = field(default_factory=MaxEntConfig)
    maxent_users: int = 2000
    maxent_sessions: int = 3
    maxent_segments: int = 10
    maxent_per_user: bool = False  # also one reward per user (about 5 minutes on 2 CPU cores)
    # preferences
    segment_length: int = 3
    oracle: OracleConfig = field(default_factory=lambda: OracleConfig(beta=1.0, mistake_rate=0.1))
    preference: PreferenceConfig = field(default_factory=PreferenceConfig)
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    selections: tuple[str, ...] = ("uniform", "disagreement")
    preference_seeds: int = 3
    # AIRL: demonstrations of the soft-optimal curator of the expected true utility (a myopic
    # Boltzmann expert, so AIRL's discount is 0) and g on the slate the action shows; the
    # settings measured in bench/airl_recovery.py
    airl: AIRLConfig = field(default_factory=lambda: AIRLConfig(
        gamma=0.0, slate_features=True, iterations=25, discriminator_steps=100, discriminator_lr=1e-3))
    airl_expert: str = "boltzmann"  # boltzmann | greedy_noise (the utility-greedy curator + Gaussian noise)
    airl_expert_beta: float = 10.0  # boltzmann: a ∝ exp(beta · E[utility | s, a])
    airl_expert_proposals: int = 64  # boltzmann: uniform proposals it resamples from per request (more: closer to exact)
    airl_expert_sigma: float = 0.3  # greedy_noise: the noise
    airl_transitions: int = 20_000
    airl_probe_users: int = 300  # held-out curator users whose E[utility | s, a] scores g (UtilityProbe)
    # evaluation
    heldout_pairs: int = 4000
    epic_transitions: int = 512
    epic_samples: int = 256
    epic_gamma: float = 0.99
    # relabel the held-in logs with each learned reward, retrain offline, A/B test under the true utility
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    log_dir: str | None = None

    def __post_init__(self) -> None:
        unknown = set(self.methods) - set(METHODS)
        if unknown:
            raise ValueError(f"RewardLearningConfig.methods has unknown entries {sorted(unknown)}; "
                             f"choose from {', '.join(METHODS)}")
        if self.airl_expert not in ("boltzmann", "greedy_noise"):
            raise ValueError(f"RewardLearningConfig.airl_expert must be 'boltzmann' or 'greedy_noise', "
                             f"got {self.airl_expert!r}")
        if not 0.0 < self.heldout_fraction < 1.0:
            raise ValueError(f"RewardLearningConfig.heldout_fraction must be in (0, 1), got {self.heldout_fraction}")


# ------------------------------------------------------------------------- helpers
def fit_reference(x: np.ndarray, y: np.ndarray, config: ReferenceConfig, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """Supervised MLP of the true utility on features ``x``; returns its predict function."""
    g = torch.Generator().manual_seed(seed)
    mean, std = x.mean(0), np.maximum(x.std(0), 1e-6)
    net = seeded_mlp(x.shape[1], config.hidden, 1, g)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    xt = torch.as_tensor((x - mean) / std, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.float32)
    for _ in range(config.steps):
        i = torch.randint(len(xt), (config.batch_size,), generator=g)
        loss = torch.nn.functional.mse_loss(net(xt[i]).squeeze(-1), yt[i])
        opt.zero_grad()
        loss.backward()
        opt.step()

    @torch.no_grad()
    def predict(features: np.ndarray) -> np.ndarray:
        return net(torch.as_tensor((features - mean) / std, dtype=torch.float32)).squeeze(-1).double().numpy()

    return predict


class Evaluator:
    """Held-out metrics of a per-transition reward given as ``predict(features)``.

    Features are held in the ``"transition"`` layout; every feature set is a subset of its
    columns (:func:`~marl_rec.irl.data.feature_columns`), so any reward is scored on the same
    transitions and segment pairs."""

    def __init__(self, heldout: LabelledDataset, segment_length: int,
                 reference: Callable[[np.ndarray], np.ndarray], config: RewardLearningConfig,
                 rng: np.random.Generator) -> None:
        self.heldout = d = heldout.dataset
        self.true_utility = heldout.true_utility
        self.features = transition_features(d, "transition")
        self.pool = SegmentPool.from_dataset(heldout, segment_length, "transition")
        self.pairs = uniform_pairs(len(self.pool), config.heldout_pairs, rng)
        truth = PreferenceOracle(OracleConfig(), rng)
        self.pair_labels = truth.label(self.pool.true_rewards[self.pairs[:, 0]], self.pool.true_rewards[self.pairs[:, 1]])
        rows = rng.choice(len(d), min(config.epic_transitions, len(d)), replace=False)
        samples = rng.choice(len(d), min(config.epic_samples, len(d)), replace=False)
        # EPIC's "action" slot carries the action and the logged behaviours: with the
        # observations in front and the next observations behind, that is the transition layout
        act = np.concatenate([d.actions, d.reward_components], 1).astype(np.float32)
        self.epic_args = (d.observations[rows], act[rows], d.next_observations[rows],
                          d.observations[samples], act[samples])
        self.epic_gamma = config.epic_gamma
        self.reference = self._transition_reward(reference, self._columns("transition"))

    def _columns(self, feature_set: str) -> np.ndarray:
        d = self.heldout
        return feature_columns(d.obs_dim, d.actions.shape[1], d.reward_components.shape[1], feature_set)

    @staticmethod
    def _transition_reward(predict: Callable[[np.ndarray], np.ndarray], columns: np.ndarray):
        def reward(obs: np.ndarray, act: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
            return predict(np.concatenate([obs, act, next_obs], 1)[:, columns].astype(np.float32))

        return reward

    def __call__(self, predict: Callable[[np.ndarray], np.ndarray], feature_set: str = "transition",
                 epic: bool = True) -> dict[str, float]:
        columns = self._columns(feature_set)
        r = predict(self.features[:, columns])
        out = {"pearson": pearson(r, self.true_utility), "spearman": spearman(r, self.true_utility)}
        seg = self.pool.features[..., columns]
        seg_returns = predict(seg.reshape(-1, len(columns))).reshape(len(self.pool), -1).sum(1)
        out["preference_accuracy"] = preference_accuracy(seg_returns[self.pairs], self.pair_labels)
        if epic:
            out["epic_to_reference"] = epic_distance(self._transition_reward(predict, columns), self.reference,
                                                     *self.epic_args, gamma=self.epic_gamma)
        return out


class _Logger:
    def __init__(self, log_dir: str | None) -> None:
        self.writer = None
        if log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=log_dir)

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# ---------------------------------------------------------------------------- run
def learn_rewards(config: RewardLearningConfig) -> list[dict[str, Any]]:
    """Every configured method on one simulator; one result row per method variant."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(config.seed)
    logger = _Logger(config.log_dir)
    rows: list[dict[str, Any]] = []
    sim = UserSimulator(config.simulator)

    if "maxent" in config.methods:
        started = time.perf_counter()
        demos = collect_topic_demonstrations(sim, GaussianNoisePolicy(HeuristicExpertPolicy(), config.behaviour_sigma,
                                                                      rng), config.maxent_users, rng,
                                             config.maxent_sessions)
        variants = [(f"maxent/{config.maxent_segments}_segments",
                     segment_users(demos.profile, config.maxent_segments, rng))]
        if config.maxent_per_user:
            variants.append(("maxent/per_user", np.arange(demos.num_users)))
        for name, labels in variants:
            result = recover_segment_rewards(demos, sim.world.graph, labels, config.maxent)
            metrics = result.correlations()
            metrics["teleport"] = result.teleport
            metrics["seconds"] = time.perf_counter() - started
            logger.scalars(f"irl/{name}", metrics, 0)
            rows.append({"method": name, "pearson": metrics["segment_pearson"],
                         "spearman": metrics["segment_spearman"], "seconds": metrics["seconds"],
                         "user_pearson": metrics["user_pearson"],
                         "note": f"vs segment mean long-term interest, {int(metrics['segments'])} segments; "
                                 f"vs each user's own: {metrics['user_pearson']:.3f}"})

    needs_logs = {"preferences", "airl", "retrain"} & set(config.methods)
    # reward name -> the learned reward of every transition of a dataset, for relabelling
    learned: dict[str, Callable[[OfflineDataset], np.ndarray]] = {}
    if needs_logs:
        behaviour = GaussianNoisePolicy(HeuristicExpertPolicy(), config.behaviour_sigma, rng)
        logged = collect_with_utility(sim, behaviour, config.num_transitions, rng, consumed=config.log_consumed)
        train, heldout = logged.split_episodes(1.0 - config.heldout_fraction, rng)
        started = time.perf_counter()
        reference = fit_reference(transition_features(train.dataset, "transition"), train.true_utility,
                                  config.reference, config.seed)
        evaluate = Evaluator(heldout, config.segment_length, reference, config, rng)
        ref_metrics = evaluate(reference, epic=False)
        rows.append({"method": "reference/supervised", "seconds": time.perf_counter() - started,
                     "note": f"MLP regressed on the true utility of {len(train.dataset)} transitions (ceiling)",
                     **ref_metrics})
        logger.scalars("irl/reference", ref_metrics, 0)
        # what the observation and action alone allow (no logged behaviours, no next observation)
        started = time.perf_counter()
        state_action = fit_reference(transition_features(train.dataset, "state_action"), train.true_utility,
                                     config.reference, config.seed)
        sa_metrics = evaluate(state_action, "state_action", epic=False)
        rows.append({"method": "reference/state_action", "seconds": time.perf_counter() - started,
                     "note": "same regression from observation and action only", **sa_metrics})
        logger.scalars("irl/reference_state_action", sa_metrics, 0)

    if "preferences" in config.methods:
        pool = SegmentPool.from_dataset(train, config.segment_length, config.feature_set)
        mean, std = standardisation(pool.features)
        for selection in config.selections:
            per_seed = []
            for seed in range(config.preference_seeds):
                model = BradleyTerryRewardModel(pool.features.shape[-1], config.reward_model, mean, std,
                                                seed=config.seed * 1000 + seed)
                oracle = PreferenceOracle(config.oracle, np.random.default_rng([config.seed, seed, 1]))
                pconfig = PreferenceConfig(**{**asdict(config.preference), "selection": selection})
                tag = f"irl/preferences/{selection}/seed{seed}"
                run_ = learn_from_preferences(
                    pool, oracle, model, pconfig, np.random.default_rng([config.seed, seed, 2]),
                    evaluate=lambda m: evaluate(m.predict, config.feature_set, epic=False),
                    log=lambda entry, q, tag=tag: logger.scalars(tag, entry, q))
                metrics = evaluate(run_.model.predict, config.feature_set)
                metrics["seconds"] = run_.history[-1]["seconds"]
                per_seed.append(metrics)
                if seed == 0:
                    learned[f"preferences/{selection}"] = \
                        lambda data, model=run_.model: model.predict(transition_features(data, config.feature_set))
            summary = {k: float(np.mean([m[k] for m in per_seed])) for k in per_seed[0]}
            logger.scalars(f"irl/preferences/{selection}", summary, config.preference.budget)
            rows.append({"method": f"preferences/{selection}", **summary,
                         "pearson_per_seed": [round(m["pearson"], 3) for m in per_seed],
                         "note": f"{config.preference.budget} queries, beta={config.oracle.beta}, "
                                 f"mistakes={config.oracle.mistake_rate}, mean of {config.preference_seeds} seeds"})

    if "airl" in config.methods:
        def demonstrator() -> Any:
            if config.airl_expert == "boltzmann":
                return BoltzmannCuratorPolicy(config.airl_expert_beta, rng, config.airl_expert_proposals)
            return GaussianNoisePolicy(UtilityGreedyPolicy(), config.airl_expert_sigma, rng)

        expert = collect_with_utility(sim, demonstrator(), config.airl_transitions, rng,
                                      consumed=config.log_consumed)
        probe = probe_expected_utility(sim, demonstrator(), config.airl_probe_users, 16, rng)
        airl = AIRL(sim.obs_dim, expert.dataset.actions.shape[1], expert.dataset.reward_components.shape[1],
                    config.airl, seed=config.seed, simulator_config=config.simulator)
        started = time.perf_counter()
        g_features = config.airl.reward_features
        widths = {"observations": ("obs", sim.obs_dim), "actions": ("action", expert.dataset.actions.shape[1]),
                  "reward_components": ("components", expert.dataset.reward_components.shape[1]),
                  "next_observations": ("next_obs", sim.obs_dim)}

        def airl_predict(features: np.ndarray) -> np.ndarray:
            """g of the Evaluator's feature rows (the columns of ``g_features``, in order)."""
            columns, start = {}, 0
            for name in FEATURE_SETS[g_features]:
                key, width = widths[name]
                columns[key], start = features[:, start:start + width], start + width
            return airl.reward_of(columns)

        def airl_metrics(m: AIRL) -> dict[str, float]:
            out = evaluate(airl_predict, g_features, epic=False)
            if g_features == "state_action":  # E[utility | s, a] is a function of (s, a) only
                out.update(probe.score(lambda obs, action: m.reward_of({"obs": obs, "action": action})))
            return out

        # the generator's transitions carry the logs' columns (what was consumed), as the expert's do
        airl.train(logging_consumed(sim) if config.log_consumed else sim, expert.dataset, rng, evaluate=airl_metrics,
                   log=lambda entry, i: logger.scalars("irl/airl", entry, i))
        metrics = {**airl_metrics(airl), **evaluate(airl_predict, g_features)}
        metrics["seconds"] = time.perf_counter() - started
        metrics["pearson_on_expert_data"] = pearson(airl.reward(expert.dataset), expert.true_utility)
        logger.scalars("irl/airl", metrics, config.airl.iterations)
        rows.append({"method": "airl", **metrics,
                     "note": f"g({g_features}{', slate' if config.airl.slate_features else ''}), "
                             f"{config.airl_expert} demonstrator, gamma={config.airl.gamma:g}, generator trained in "
                             f"the simulator, {config.airl.iterations} iterations; epic_expected/pearson_expected: "
                             f"vs E[utility|s,a] on {config.airl_probe_users} held-out demonstrator users"})
        learned["airl"] = airl.reward

    if "retrain" in config.methods:
        rc = config.retrain
        if rc.data == "heldin":
            retrain_data = train
            behaviour = GaussianNoisePolicy(HeuristicExpertPolicy(), config.behaviour_sigma,
                                            np.random.default_rng([config.seed, 3]))
        else:  # fresh logs, as many transitions as the held-in logs: uniformly random actions, or the
            # production policy with noise (unconfounded: it reads what the learner sees, and it maximises
            # engagement, so the logs hold actions that differ in true utility)
            fresh_rng = np.random.default_rng([config.seed, 5])

            def logging_policy(policy_rng: np.random.Generator) -> Any:
                if rc.data == "uniform":
                    return RandomPolicy(policy_rng)
                return GaussianNoisePolicy(ProductionPolicy(), config.behaviour_sigma, policy_rng)

            retrain_data = collect_with_utility(sim, logging_policy(fresh_rng), len(train.dataset), fresh_rng,
                                                consumed=config.log_consumed)
            behaviour = logging_policy(np.random.default_rng([config.seed, 3]))
        retrain_rows = relabel_and_retrain(
            retrain_data, {name: reward(retrain_data.dataset) for name, reward in learned.items()},
            lambda: UserSimulator(config.simulator), rc, config.seed,
            np.random.default_rng([config.seed, 4]), reference_policies={"behaviour": behaviour},
            log_dir=None if config.log_dir is None else f"{config.log_dir}/retrain")
        for row in retrain_rows:
            name = row.pop("reward")
            logger.scalars(f"irl/retrain/{name}", {k: v for k, v in row.items() if isinstance(v, float)},
                           rc.num_updates)
            trained = (f"{rc.algo}-{rc.preset} on {rc.data} logs, {rc.num_updates} updates x {rc.train_seeds} seed(s)"
                       if name != "behaviour" else "the logging policy, untrained")
            rows.append({"method": f"retrain/{name}", **row,
                         "note": f"{trained}; true return over {rc.eval_users} CRN users"})
    logger.close()
    return rows


RETRAIN_COLUMNS = ["method", "true_return", "ratio", "diff", "diff_ci_low", "diff_ci_high", "session_length",
                   "reward_pearson", "seconds"]


def format_table(rows: list[dict[str, Any]]) -> str:
    """Plain-text tables of the result rows: reward recovery, then retraining (if run)."""
    recovery = [r for r in rows if not r["method"].startswith("retrain/")]
    retrain = [r for r in rows if r["method"].startswith("retrain/")]
    text = _table(recovery, ["method", "pearson", "spearman", "epic_to_reference", "preference_accuracy",
                             "epic_expected", "pearson_expected", "seconds"])
    if retrain:
        text += ("\n\nretrained on the relabelled logs; true return = true utility per session; ratio and diff "
                 "(with its 95% interval) against retrain/true_utility\n" + _table(retrain, RETRAIN_COLUMNS, 13))
    return text


def _table(rows: list[dict[str, Any]], columns: list[str], width: int = 22) -> str:
    lines = ["  ".join(f"{c:>{width}}" if i else f"{c:<28}" for i, c in enumerate(columns))]
    for row in rows:
        cells = []
        for i, c in enumerate(columns):
            value = row.get(c, "")
            text = f"{value:.3f}" if isinstance(value, float) else str(value)
            cells.append(f"{text:>{width}}" if i else f"{text:<28}")
        lines.append("  ".join(cells) + (f"  # {row['note']}" if row.get("note") else ""))
    return "\n".join(lines)


# the config key of each dataclass's fields in ``cfg.irl`` (messages name ``irl.<node>.<field>``)
CONFIG_KEYS = {"RewardLearningConfig": "irl", "SimulatorConfig": "irl.simulator", "ReferenceConfig": "irl.reference",
               "MaxEntConfig": "irl.maxent", "OracleConfig": "irl.oracle", "PreferenceConfig": "irl.preference",
               "RewardModelConfig": "irl.reward_model", "AIRLConfig": "irl.airl", "RetrainConfig": "irl.retrain"}
COUNTS = ("num_transitions", "maxent_users", "maxent_sessions", "maxent_segments", "segment_length",
          "preference_seeds", "airl_transitions", "airl_probe_users", "heldout_pairs", "epic_transitions",
          "epic_samples")


def validate_settings(config: RewardLearningConfig) -> None:
    """The numeric settings of ``cfg.irl`` that its dataclasses do not check themselves, before
    any data is collected: counts >= 1, noise scales finite and > 0, discounts in (0, 1], the
    reference's sizes; ValueError naming the config key (``irl.<field>``). The nested configs
    (simulator, MaxEnt, oracle, preference, reward model, AIRL, retrain) check their own fields
    when they are built."""
    from marl_rec.experiments.common import check_setting

    for name in COUNTS:
        check_setting(config, "irl", name, int, lambda v: v >= 1, "an integer >= 1")
    for name in ("behaviour_sigma", "airl_expert_beta", "airl_expert_sigma"):
        check_setting(config, "irl", name, float, lambda v: v > 0, "a finite number > 0")
    check_setting(config, "irl", "airl_expert_proposals", int, lambda v: v >= 2, "an integer >= 2")
    check_setting(config, "irl", "epic_gamma", float, lambda v: 0.0 < v <= 1.0, "a discount in (0, 1]")
    check_setting(config, "irl", "feature_set", str, lambda v: v in FEATURE_SETS, f"one of {sorted(FEATURE_SETS)}")
    check_setting(config, "irl", "selections", (list, tuple), lambda v: len(v) > 0 and set(v) <= {"uniform", "disagreement"},
                  "a non-empty list of 'uniform' / 'disagreement'")
    reference = config.reference
    for name in ("steps", "batch_size"):
        check_setting(reference, "irl.reference", name, int, lambda v: v >= 1, "an integer >= 1")
    check_setting(reference, "irl.reference", "lr", float, lambda v: v > 0, "a finite number > 0")
    check_setting(reference, "irl.reference", "hidden", (list, tuple),
                  lambda v: all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in v),
                  "a list of integers >= 1")
    retrain = config.retrain
    for name in ("num_updates", "batch_size", "train_seeds", "eval_users", "eval_seed"):  # ints, not just >= bounds
        check_setting(retrain, "irl.retrain", name, int, lambda v: v >= 0, "an integer")
    check_setting(retrain, "irl.retrain", "gamma", float, lambda v: 0.0 < v <= 1.0, "a discount in (0, 1]")


def run(cfg: Any, run_dir: Any) -> dict[str, Any]:
    """The ``marl-rec +experiment=reward_learning`` task: build the config from ``cfg.irl``,
    log TensorBoard events and ``metrics.json`` into the run folder, print the table."""
    import dataclasses
    from pathlib import Path

    from marl_rec.experiments.common import instantiate_checked

    # every setting checked before any data is collected (the dataclasses check their own fields)
    config = instantiate_checked(cfg.irl, CONFIG_KEYS)
    validate_settings(config)
    config = dataclasses.replace(config, log_dir=str(Path(run_dir)), seed=int(cfg.seed))
    rows = learn_rewards(config)
    table = format_table(rows)
    print(table, flush=True)
    write_text(Path(run_dir) / "reward_learning.md", table + "\n")
    write_json(Path(run_dir) / "metrics.json", {"task": "reward_learning", "rows": rows})
    return {"data": "reward_learning", "algo": "irl", "seed": int(cfg.seed)}


if __name__ == "__main__":
    print(format_table(learn_rewards(RewardLearningConfig())))
