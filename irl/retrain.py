"""Relabel and retrain: does a policy trained offline on a learned reward earn the true return?

Given logged transitions with the true utility kept beside them (a
:class:`~marl_rec.irl.data.LabelledDataset`), :func:`relabel_and_retrain` trains the *same* offline
algorithm — same preset, same seeds, same number of updates, same data — once per reward:

- ``true_utility``: the simulator's true utility of every logged transition (the reference);
- every learned reward passed in (the preference model, AIRL's g, ...);
- controls: ``engagement`` (the logged, hand-weighted click/like/share/watch sum the field
  optimises), ``shuffled`` (the true utility permuted across transitions: the right
  distribution, no information about which transition earned it) and ``true_centred``
  (the true utility minus its mean: what an additive constant does, see below);

then runs every trained policy (greedy, ``act(deterministic=True)``) and any reference
policies (e.g. the logging policy) in one simulated A/B test under the **true utility**:
:func:`marl_rec.ope.simulated_ab_test` with common random numbers (user i is the same
seeded user in every arm) on a :class:`TrueUtilityView` of the simulator, whose reward is
``info["true_utility"]``. The metric is ``ratio = true return of the policy trained on
the reward / true return of the policy trained on the true utility`` (undiscounted session
return, mean over users; with ``train_seeds > 1`` the per-user returns are averaged over
the training seeds first), with the paired per-user difference and its 95% interval.

Standardising a learned reward (:func:`standardise_reward`)
    Preference (Bradley–Terry) rewards are identified only up to a positive affine map
    ``a·r + b``: segments of equal length are compared, so ``b`` cancels. The scale ``a``
    does not change the optimal policy (only the step sizes the algorithm sees); the
    offset ``b`` does whenever the policy decides how long an episode lasts — here users
    leave when their satisfaction falls, so ``b > 0`` pays the policy per request served
    (a survival bonus) and ``b < 0`` pays it to end sessions. No choice of ``b`` is
    neutral, so it is anchored where the data itself fixes a zero: a request on which the
    user clicked nothing consumed nothing, and both the true utility and the logged
    engagement are exactly 0 on it. ``shift="no_click"`` (the default) subtracts the
    learned reward's mean over the logged no-click transitions (observable: the click
    count is a logged column); ``"mean"`` centres it over all transitions (z-scoring);
    ``"none"`` keeps the model's own offset (for a BT model, its untrained bias). Then
    every reward is scaled to the standard deviation of the logged engagement reward, the
    scale the ``rec`` presets were tuned on. The standardised reward is invariant to any
    positive affine transform of the input (tested). The references are never shifted:
    ``true_utility`` and ``engagement`` already have that zero and are only rescaled (a
    positive scale keeps their optimal policies). ``true_centred`` — the true utility
    z-scored as ``shift="mean"`` would do — measures what the constant costs.

Measured: on the experiment's own (confounded) logs no reward retrains well; on uniform logs
every reward, even a shuffled one, lands near the reference — bench/results/README.md
("Relabel and retrain: measured") has the figures.

MaxEnt IRL is not relabelled
    Its reward is a per-topic *state* reward of a user segment over the topic-graph MDP
    (the long-term interest), identified up to a constant. A logged transition records
    neither which topics were clicked nor the user's segment (both would have to be
    reconstructed from the observation's topic profile and the change of its recent-topic
    average), and the topic reward stands only for the relevance part of the utility
    (``0.4·relevance`` beside ``2·quality − sensitivity·clickbait``), so a relabelled
    dataset would say nothing about item quality — the part that separates utility from
    engagement. This mapping is left undone rather than built on guesses.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from marl_rec.irl.data import LabelledDataset, SimulatorWrapper, relabel
from marl_rec.irl.metrics import pearson
from marl_rec.algos.registry import ALGORITHMS, PRESETS, make_algorithm
from marl_rec.data import OfflineDataset
from marl_rec.ope import ABArm, simulated_ab_test
from marl_rec.ope.estimate import normal_estimate
from marl_rec.trainer import Trainer, TrainerConfig

SHIFTS = ("no_click", "mean", "none")
DATA = ("heldin", "uniform", "production")
CONTROLS = ("engagement", "shuffled", "true_centred")
REFERENCE = "true_utility"


@dataclass
class RetrainConfig:
    """One offline algorithm, trained identically on every reward, and the A/B test after it."""

    # heldin: the experiment's held-in logs | uniform: logs of uniformly random actions | production: logs of the
    # production policy (reads only what the platform sees) with the experiment's Gaussian noise
    data: str = "heldin"
    algo: str = "bcq"
    preset: str = "rec"
    algo_overrides: dict[str, Any] = field(default_factory=dict)  # extra config fields, e.g. tiny nets in tests
    num_updates: int = 2000
    batch_size: int = 0  # 0: the algorithm config's batch size
    train_seeds: int = 1  # policies per reward (seeds seed .. seed + train_seeds - 1)
    shift: str = "no_click"  # where a learned reward's zero goes: no_click | mean | none
    controls: tuple[str, ...] = CONTROLS
    eval_users: int = 2000  # simulated users per arm (common random numbers)
    eval_seed: int = 10007
    gamma: float = 0.99  # for the discounted value reported beside the return

    def __post_init__(self) -> None:
        if self.algo not in ALGORITHMS:
            raise ValueError(f"RetrainConfig.algo must be one of {sorted(ALGORITHMS)}, got {self.algo!r}")
        if self.preset not in PRESETS:
            raise ValueError(f"RetrainConfig.preset must be one of {PRESETS}, got {self.preset!r}")
        if self.data not in DATA:
            raise ValueError(f"RetrainConfig.data must be one of {DATA}, got {self.data!r}")
        if self.shift not in SHIFTS:
            raise ValueError(f"RetrainConfig.shift must be one of {SHIFTS}, got {self.shift!r}")
        unknown = set(self.controls) - set(CONTROLS)
        if unknown:
            raise ValueError(f"RetrainConfig.controls has unknown entries {sorted(unknown)}; choose from {CONTROLS}")
        for name in ("num_updates", "train_seeds"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"RetrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_users < 2:
            raise ValueError(f"RetrainConfig.eval_users must be >= 2 (for an interval), got {self.eval_users}")
        if self.batch_size < 0:
            raise ValueError(f"RetrainConfig.batch_size must be >= 0 (0: the algorithm's), got {self.batch_size}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"RetrainConfig.gamma must be in [0, 1], got {self.gamma}")


# ------------------------------------------------------------------------- rewards
def standardise_reward(rewards: np.ndarray, no_click: np.ndarray, scale: float, shift: str = "no_click") -> np.ndarray:
    """Affine-normalise a learned reward (module docstring): subtract its mean over the
    ``no_click`` transitions (``shift="no_click"``), over all of them (``"mean"``) or
    nothing (``"none"``), then scale it to standard deviation ``scale``. float32."""
    rewards = np.asarray(rewards, dtype=np.float64)
    no_click = np.asarray(no_click, dtype=bool)
    if rewards.ndim != 1 or no_click.shape != rewards.shape:
        raise ValueError(f"rewards and no_click must both be (N,), got {rewards.shape} and {no_click.shape}")
    if not np.all(np.isfinite(rewards)):
        raise ValueError("rewards must be finite")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    if shift == "no_click":
        if not no_click.any():
            raise ValueError("shift='no_click' needs at least one logged transition without a click")
        rewards = rewards - rewards[no_click].mean()
    elif shift == "mean":
        rewards = rewards - rewards.mean()
    elif shift != "none":
        raise ValueError(f"shift must be one of {SHIFTS}, got {shift!r}")
    spread = rewards.std()
    if not spread > 0:
        raise ValueError("a constant reward cannot be standardised (its standard deviation is 0)")
    return (rewards * (scale / spread)).astype(np.float32)


def no_click_mask(dataset: OfflineDataset) -> np.ndarray:
    """(N,) True where the logged click count is 0 (the true utility and engagement are 0 there)."""
    if dataset.reward_components is None or "click" not in dataset.component_names:
        raise ValueError(f"the dataset needs a 'click' reward component, has {dataset.component_names}")
    return dataset.reward_components[:, dataset.component_names.index("click")] == 0


def reward_variants(data: LabelledDataset, learned: Mapping[str, np.ndarray], config: RetrainConfig,
                    rng: np.random.Generator) -> dict[str, np.ndarray]:
    """{name: (N,) float32 training reward}: the reference, the standardised learned rewards
    and the configured controls, all at the logged engagement's standard deviation."""
    d = data.dataset
    no_click = no_click_mask(d)
    scale = float(np.std(d.rewards))
    truth = np.asarray(data.true_utility, dtype=np.float64)
    variants = {REFERENCE: standardise_reward(truth, no_click, scale, "none")}  # rescaled only
    for name, rewards in learned.items():
        if name in variants or name in CONTROLS:
            raise ValueError(f"learned reward name {name!r} clashes with a reference or control row")
        variants[name] = standardise_reward(rewards, no_click, scale, config.shift)
    if "engagement" in config.controls:
        variants["engagement"] = standardise_reward(d.rewards, no_click, scale, "none")
    if "shuffled" in config.controls:
        variants["shuffled"] = standardise_reward(rng.permutation(truth), no_click, scale, config.shift)
    if "true_centred" in config.controls:
        variants["true_centred"] = standardise_reward(truth, no_click, scale, "mean")
    return variants


# ---------------------------------------------------------------------- evaluation
class TrueUtilityView(SimulatorWrapper):
    """A simulator whose ``step`` reward is ``info["true_utility"]`` (the engagement it
    replaces moves to ``info["engagement"]``); everything else is delegated."""

    def step(self, action: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        result = self._sim.step(action, *args, **kwargs)
        info = dict(result.info)
        info["engagement"] = result.reward
        return dataclasses.replace(result, reward=np.asarray(info["true_utility"], dtype=np.float64), info=info)


def return_ratio(value: float, reference: float) -> float:
    """``value / reference``; NaN when the reference return is not positive (a ratio of
    returns only reads as "fraction of the reference" against a positive one)."""
    return float(value / reference) if reference > 0 else float("nan")


def summarise(arms: Mapping[str, list[ABArm]], reference: str = REFERENCE,
              confidence: float = 0.95) -> dict[str, dict[str, float]]:
    """Per row of ``arms`` (name -> the arms of its training seeds, all on the same CRN
    users): mean true return and value, session length, ratio to ``reference`` and the
    paired per-user difference with its interval."""
    if reference not in arms:
        raise ValueError(f"the reference row {reference!r} is missing from {sorted(arms)}")

    def per_user(name: str, column: str) -> np.ndarray:
        values = [getattr(arm, column) for arm in arms[name]]
        if len({v.shape for v in values}) != 1:
            raise ValueError(f"arms of {name!r} have different numbers of users")
        return np.mean(values, axis=0)

    ref_returns = per_user(reference, "returns")
    out = {}
    for name in arms:
        returns = per_user(name, "returns")
        if returns.shape != ref_returns.shape:
            raise ValueError(f"{name!r} was evaluated on {returns.size} users, {reference!r} on {ref_returns.size}")
        diff = normal_estimate(returns - ref_returns, confidence, f"{name}-{reference}")
        out[name] = {"true_return": float(returns.mean()),
                     "true_value": float(per_user(name, "discounted_returns").mean()),
                     "session_length": float(per_user(name, "session_lengths").mean()),
                     "ratio": return_ratio(float(returns.mean()), float(ref_returns.mean())),
                     "ratio_per_seed": [return_ratio(a.undiscounted.value, r.undiscounted.value)
                                        for a, r in zip(arms[name], arms[reference])],
                     "diff": diff.value, "diff_ci_low": diff.ci_low, "diff_ci_high": diff.ci_high}
    return out


# ------------------------------------------------------------------------ training
def train_policy(dataset: OfflineDataset, rewards: np.ndarray, config: RetrainConfig, seed: int,
                 run_dir: str | Path) -> Any:
    """``config.algo`` trained on ``dataset`` relabelled with ``rewards`` by the offline
    :class:`~marl_rec.trainer.Trainer` (TensorBoard ``train/recommender/...`` and the final
    checkpoint in ``run_dir``, divergence checks); returns the trained algorithm."""
    algorithm = make_algorithm(config.algo, dataset.obs_dim, dataset.action_spec, preset=config.preset,
                               seed=seed, **config.algo_overrides)
    batch_size = config.batch_size or int(getattr(algorithm.config, "batch_size", 256))
    trainer_config = TrainerConfig(num_updates=config.num_updates, batch_size=batch_size, eval_every=0,
                                   checkpoint_every=config.num_updates, log_every=min(500, config.num_updates),
                                   seed=seed, progress=False)
    Trainer(algorithm, relabel(dataset, rewards), trainer_config, run_dir).fit(resume=False)
    return algorithm


def relabel_and_retrain(data: LabelledDataset, learned: Mapping[str, np.ndarray], sim_factory: Callable[[], Any],
                        config: RetrainConfig, seed: int, rng: np.random.Generator,
                        reference_policies: Mapping[str, Any] | None = None,
                        log_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Train ``config.algo`` on ``data`` once per reward (the true utility, every
    ``learned`` reward — name -> (N,) values on ``data``'s transitions, unstandardised —
    and the controls), A/B-test the policies and ``reference_policies`` (name -> policy,
    untrained, e.g. the logging policy) under the true utility on ``sim_factory()``
    simulators, and return one row per reward and reference (see :func:`summarise`), plus
    ``reward_pearson`` (the training reward against the true utility) and ``seconds``.
    Trainer runs go to ``log_dir/<name>/seed<k>`` (a temporary folder when None)."""
    for name, rewards in learned.items():
        if np.shape(rewards) != np.shape(data.true_utility):
            raise ValueError(f"learned reward {name!r} has shape {np.shape(rewards)}, the data has "
                             f"{np.shape(data.true_utility)} transitions")
    variants = reward_variants(data, learned, config, rng)
    reference_policies = dict(reference_policies or {})
    clash = set(reference_policies) & set(variants)
    if clash:
        raise ValueError(f"reference policy names {sorted(clash)} clash with reward rows")
    seeds = [seed + k for k in range(config.train_seeds)]
    policies: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="retrain-") as scratch:
        root = Path(log_dir) if log_dir is not None else Path(scratch)
        for name, rewards in variants.items():
            started = time.perf_counter()
            for k in seeds:
                policies[f"{name}#{k}"] = train_policy(data.dataset, rewards, config, k, root / name / f"seed{k}")
            seconds[name] = time.perf_counter() - started
    arms_by_name = simulated_ab_test(lambda: TrueUtilityView(sim_factory()), {**policies, **reference_policies},
                                     config.eval_users, seed=config.eval_seed, gamma=config.gamma)
    grouped: dict[str, list[ABArm]] = {name: [arms_by_name[f"{name}#{k}"] for k in seeds] for name in variants}
    # an untrained reference policy is one arm, compared with every training seed's reference
    grouped.update({name: [arms_by_name[name]] * len(seeds) for name in reference_policies})
    summary = summarise(grouped)
    rows = []
    for name, metrics in summary.items():
        row = {"reward": name, **metrics}
        if name in variants:
            row["reward_pearson"] = pearson(variants[name], data.true_utility)
            row["seconds"] = seconds[name]
        rows.append(row)
    return rows


__all__ = ["SHIFTS", "DATA", "CONTROLS", "REFERENCE", "RetrainConfig", "standardise_reward", "no_click_mask",
           "reward_variants", "TrueUtilityView", "return_ratio", "summarise", "train_policy",
           "relabel_and_retrain"]
