"""Time to quality: our BCQ and CQL against d3rlpy's (paper sizes) on one dataset, by CPU time.

    bench/setup_bench_venv.sh                                    # once: .venv-bench with d3rlpy
    .venv-bench/bin/python bench/time_to_quality.py --algos bcq --json ttq_bcq.json
    .venv-bench/bin/python bench/time_to_quality.py --budget 60 --rec-budget 20   # shorter
    .venv-bench/bin/python bench/time_to_quality.py --preset paper                # equal sizes only

**Dataset** (``--data``, default ``expert``): the ``expert`` pipeline's logs
(``conf/data/expert.yaml``: the production policy, which reads only what the learner observes,
with σ = 0.1 noise), built with our pipeline and cached exactly as the ``marl-rec`` CLI caches it
(``--cache-dir``), then converted for d3rlpy with ``marl_rec.data.d3rlpy_interop.to_d3rlpy``
(same transitions). On the default world an untrained BCQ or CQL acts about like the constant
action 0 (106 on the evaluation users) while the logged episodes earn 125, so a learner must
climb to reach quality. ``final_buffer``'s logged episodes earn 111, too little above the start
for a threshold 10% above it; on the legacy world the untrained start already earned what
training reached, and the ratio measured how soon a learner leaves its initialisation.

**Clock.** Every learner trains for ``--budget`` seconds of *process CPU time* (updates with
their batch sampling, at its config's batch size, one torch thread), in alternating slices of
``--slice`` CPU seconds (ours, then d3rlpy's, round robin), so the share of a loaded host each one
gets cancels; wall time is recorded beside it. At points of its own CPU clock (``--first-eval``,
then ×1.5) each learner is evaluated on the true return in the simulator
(``marl_rec.trainer.SimulatorEvaluator``: the same seeded users every time, one session each;
d3rlpy's ``predict`` / ``predict_value`` are wrapped by ``bench/d3rlpy_adapters.D3rlpyPolicy``).
Evaluation time is not counted. A fixed reference workload (as in ``bench/updates.py``) is timed
between slices, so runs on differently loaded hosts can be compared.

**Quality and threshold rule** (:func:`compare`). The quality threshold is ``--quality`` (95%) of
the best return d3rlpy's learner reached within its budget (after its start). It is *valid* only
if it lies at least ``--min-gain`` (10%) above the untrained policy's return (the better of the
two learners' returns before their first update): below that, reaching it says nothing about
learning. The report gives each side's CPU time to first reach the threshold (at the resolution
of the evaluation points), the speed-up d3rlpy/ours, the CPU time from which each stays at or
above it to the end of its budget, and the final returns (last evaluation). The target
(``TARGET_SPEEDUP``) is met when the threshold is valid, ours is ≥ 3× faster and its final return
is no lower than d3rlpy's.

**Sizes** (``--preset``, default both): ``paper`` trains ours with exactly d3rlpy's config (same
network sizes, batch size and settings, CQL without the BC warm start d3rlpy lacks): the
*per-size* ratio. ``rec`` trains ours as shipped (``make_algorithm(name, ..., preset="rec")``:
64–128-unit layers, τ = 0.05) against d3rlpy at paper sizes: the *preset* ratio. Each comparison
records whether the network sizes are equal (``equal_network_sizes``). With both presets, each
algorithm's three learners (ours rec, ours paper, d3rlpy) take turns and share one d3rlpy run.
d3rlpy's settings are matched as ``bench/d3rlpy_adapters.py`` documents (BCQ: 10 sampled
actions, tanh decoder — or with ``--d3rlpy-bcq-decoder linear`` d3rlpy's own linear output, and
then ours at paper sizes too — batch 256; CQL: 3×256, fixed α = 5, no BC warm start). Ours as
shipped (``rec``) has the linear output either way.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from marl_rec.algos.registry import make_algorithm, make_config  # noqa: E402
from marl_rec.data.d3rlpy_interop import to_d3rlpy  # noqa: E402
from marl_rec.data.dataset import OfflineDataset, TensorSampler  # noqa: E402
from marl_rec.files import write_json  # noqa: E402
from marl_rec.trainer import SimulatorEvaluator  # noqa: E402
from updates import Reference  # noqa: E402

QUALITY_FRACTION = 0.95  # the quality target: this fraction of d3rlpy's best return
MIN_GAIN = 0.10  # the threshold must lie this far above the untrained return to measure learning
TARGET_SPEEDUP = 3.0
SIZE_FIELDS = ("vae_hidden", "actor_hidden", "critic_hidden", "batch_size")  # what sets the cost


def load_pipeline_dataset(cache_dir: str, data: str = "expert",
                          ) -> tuple[OfflineDataset, Callable[[], Any], dict[str, Any]]:
    """The dataset of pipeline ``conf/data/<data>.yaml`` (built once, then reused from the cache
    exactly as the CLI does), a simulator factory and the evaluation settings, from the
    project's Hydra configs."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from marl_rec.experiments.common import load_dataset, simulator_factory
    from marl_rec.schema import register_schemas

    register_schemas()
    with initialize_config_module(config_module="marl_rec.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"data={data}", f"cache_dir={cache_dir}"])
    dataset, info = load_dataset(cfg)
    info["evaluation"] = OmegaConf.to_container(cfg.evaluation)
    info["behaviour_return"] = dataset.metadata.get("online_final_return")  # online pipelines record it
    return dataset, simulator_factory(cfg), info


# ------------------------------------------------------------------ learners


class ConstantAction:
    """The same action for every user and request (action 0: every fusion weight 10**0 relative
    to the fixed click weight), evaluated as a yardstick next to the learners."""

    def __init__(self, action: np.ndarray) -> None:
        self.action = np.asarray(action, dtype=np.float32)

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return np.tile(self.action, (len(obs), 1))

    def q_value(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        return np.full(len(obs), np.nan)


@dataclass
class Learner:
    """One algorithm implementation under training; ``step()`` is one update incl. sampling.
    Its clock is the process CPU time spent in its own updates."""

    label: str
    config: Any  # the algorithm config it trains with (ours; for d3rlpy the matched one of ours)
    step: Callable[[], None]
    policy: Any  # act(obs, deterministic) / q_value(obs, action)
    eval_points: list[float]  # training CPU seconds at which to evaluate
    budget: float  # training CPU seconds
    cpu: float = 0.0  # training CPU time so far: the clock
    wall: float = 0.0  # training wall time so far, for the report
    updates: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.cpu >= self.budget

    @property
    def settings(self) -> str:
        return _settings(self.config)

    def train_for(self, seconds: float) -> None:
        """Update until ``seconds`` more CPU time have passed, or the next evaluation point or
        the budget is reached (at least one update)."""
        stop = min(self.cpu + seconds, self.budget, *[p for p in self.eval_points if p > self.cpu] or [np.inf])
        wall0, cpu0 = time.perf_counter(), time.process_time()
        while True:
            self.step()
            self.updates += 1
            cpu = self.cpu + time.process_time() - cpu0
            if cpu >= stop:
                break
        self.cpu, self.wall = cpu, self.wall + time.perf_counter() - wall0

    def evaluate(self, evaluator: SimulatorEvaluator) -> None:
        metrics = evaluator(self.policy, self.updates)
        self.history.append({"cpu": self.cpu, "wall": self.wall, "updates": self.updates,
                             "return": metrics["eval/return"], "q_estimate": metrics["eval/q_estimate"]})

    def maybe_evaluate(self, evaluator: SimulatorEvaluator) -> None:
        due = [p for p in self.eval_points if p <= self.cpu]
        if due or self.done:
            self.eval_points = [p for p in self.eval_points if p > self.cpu]
            self.evaluate(evaluator)


def ours(name: str, dataset: OfflineDataset, seed: int, points: list[float], budget: float,
         preset: str = "rec", bcq_decoder: str = "tanh") -> Learner:
    # at paper sizes, ours gets d3rlpy's exact config (see theirs), its BCQ decoder output included
    overrides = paper_overrides(name, bcq_decoder) if preset == "paper" else {}
    algorithm = make_algorithm(name, dataset.obs_dim, dataset.action_spec, preset=preset, seed=seed, **overrides)
    sampler, generator = TensorSampler(dataset), torch.Generator().manual_seed(seed)
    batch_size = algorithm.config.batch_size  # the preset's (a rec preset may choose its own)
    return Learner(f"ours {name} ({preset})", algorithm.config,
                   lambda: algorithm.update(sampler.sample(batch_size, generator)), algorithm, list(points), budget)


def theirs(name: str, dataset: OfflineDataset, buffer: Any, points: list[float], budget: float,
           bcq_decoder: str = "tanh") -> Learner:
    from d3rlpy_adapters import D3rlpyPolicy, make_d3rlpy

    config = make_config(name, "paper", **paper_overrides(name, bcq_decoder))
    algo = make_d3rlpy(name, config, dataset.obs_dim, dataset.action_spec.dim, bcq_decoder=bcq_decoder)
    label = f"d3rlpy {name} (paper)" if name != "bcq" or bcq_decoder == "tanh" else f"d3rlpy {name} (paper, linear decoder)"
    return Learner(label, config,
                   lambda: algo.update(buffer.sample_transition_batch(config.batch_size)), D3rlpyPolicy(algo),
                   list(points), budget)


def paper_overrides(name: str, bcq_decoder: str = "tanh") -> dict[str, Any]:
    """d3rlpy's CQL has no BC warm start: its paper config is ours without one. BCQ's VAE output
    (``vae_output``) is the one d3rlpy's BCQ is given (``--d3rlpy-bcq-decoder``)."""
    if name == "cql":
        return {"bc_warmup_updates": 0}
    return {"vae_output": bcq_decoder} if name == "bcq" else {}


def _settings(config: Any) -> str:
    """The fields of an algorithm config that set its cost and learning speed, as one line."""
    keys = ("vae_hidden", "vae_output", "actor_hidden", "critic_hidden", "actor_lr", "critic_lr", "vae_lr", "tau",
            "cql_alpha", "num_sampled_actions", "bc_warmup_updates", "batch_size")
    return ", ".join(f"{k}={getattr(config, k)}" for k in keys if hasattr(config, k))


def network_sizes(config: Any) -> dict[str, Any]:
    """The layer sizes and batch size of an algorithm config (:data:`SIZE_FIELDS` it has): two
    learners with equal ``network_sizes`` do the same arithmetic per update."""
    return {k: getattr(config, k) for k in SIZE_FIELDS if hasattr(config, k)}


def evaluation_points(budget: float, first: float, factor: float = 1.5) -> list[float]:
    """Training times to evaluate at: ``first``, then ×``factor`` each (a ×3 speed-up spans almost
    three steps at 1.5, and late evaluations stay few), below the budget (the budget's end is
    always evaluated)."""
    if first <= 0 or factor <= 1:
        raise ValueError(f"evaluation_points needs first > 0 and factor > 1, got first={first}, factor={factor}")
    points, t = [], first
    while t < budget:
        points.append(round(t, 3))
        t *= factor
    return points


# ------------------------------------------------------------------ the comparison (pure: tested on synthetic curves)


def first_reaching(history: list[dict[str, float]], threshold: float) -> dict[str, float] | None:
    """The first evaluation at or above ``threshold``."""
    return next((h for h in history if h["return"] >= threshold), None)


def first_sustained(history: list[dict[str, float]], threshold: float) -> dict[str, float] | None:
    """The first evaluation from which every later one (to the end of the budget) stays at or
    above ``threshold``: quality reached and kept, not touched once on the way elsewhere."""
    for index, entry in enumerate(history):
        if all(later["return"] >= threshold for later in history[index:]):
            return entry
    return None


@dataclass
class Result:
    """One algorithm, ours (one preset) against d3rlpy. Times are training CPU seconds."""

    algorithm: str
    ours_preset: str
    equal_network_sizes: bool  # True: the per-size ratio; False: the preset ratio
    ours_sizes: dict[str, Any]
    d3rlpy_sizes: dict[str, Any]
    untrained_return: float  # the better of the two learners' returns before their first update
    threshold_floor: float  # (1 + min_gain) × untrained_return
    d3rlpy_best: float  # after its start
    threshold: float  # quality_fraction × d3rlpy_best
    threshold_valid: bool  # threshold >= threshold_floor: reaching it needs learning
    ours_cpu: float | None  # CPU seconds to first reach the threshold (None: never)
    d3rlpy_cpu: float | None
    ours_wall: float | None  # the same moment in training wall seconds
    d3rlpy_wall: float | None
    ours_updates: int | None
    d3rlpy_updates: int | None
    speedup: float | None  # d3rlpy_cpu / ours_cpu
    ours_sustained: float | None  # CPU seconds from which it stays at or above the threshold
    d3rlpy_sustained: float | None
    ours_best: float
    ours_final: float
    d3rlpy_final: float
    final_no_worse: bool  # ours_final >= d3rlpy_final
    target_met: bool  # threshold valid, speedup >= TARGET_SPEEDUP and final no worse
    ours_history: list[dict[str, float]]
    d3rlpy_history: list[dict[str, float]]


def compare(name: str, ours_history: list[dict[str, float]], d3rlpy_history: list[dict[str, float]],
            ours_config: Any = None, d3rlpy_config: Any = None, ours_preset: str = "paper",
            quality_fraction: float = QUALITY_FRACTION, min_gain: float = MIN_GAIN,
            target_speedup: float = TARGET_SPEEDUP) -> Result:
    """Threshold, first-reaching and sustained times of two learning curves (``history[0]`` is
    each learner's untrained start: it sets the floor and never counts as reaching quality).
    Each history entry has ``cpu``, ``wall``, ``updates`` and ``return``."""
    if len(ours_history) < 2 or len(d3rlpy_history) < 2:
        raise ValueError("compare needs each history to hold the untrained start and >= 1 evaluation after it")
    if not 0 < quality_fraction <= 1 or min_gain < 0:
        raise ValueError(f"compare needs 0 < quality_fraction <= 1 and min_gain >= 0, got {quality_fraction}, "
                         f"{min_gain}")
    untrained = max(ours_history[0]["return"], d3rlpy_history[0]["return"])
    floor = (1.0 + min_gain) * untrained
    best = max(h["return"] for h in d3rlpy_history[1:])
    threshold = quality_fraction * best
    hit_mine, hit_other = first_reaching(ours_history[1:], threshold), first_reaching(d3rlpy_history[1:], threshold)
    kept_mine, kept_other = (first_sustained(ours_history[1:], threshold),
                             first_sustained(d3rlpy_history[1:], threshold))
    speedup = (hit_other["cpu"] / hit_mine["cpu"]) if hit_mine and hit_other else None
    ours_final, d3rlpy_final = ours_history[-1]["return"], d3rlpy_history[-1]["return"]
    ours_sizes = network_sizes(ours_config) if ours_config is not None else {}
    d3rlpy_sizes = network_sizes(d3rlpy_config) if d3rlpy_config is not None else {}
    valid = threshold >= floor
    return Result(
        name, ours_preset, bool(ours_sizes) and ours_sizes == d3rlpy_sizes, ours_sizes, d3rlpy_sizes,
        untrained, floor, best, threshold, valid,
        hit_mine and hit_mine["cpu"], hit_other and hit_other["cpu"],
        hit_mine and hit_mine["wall"], hit_other and hit_other["wall"],
        hit_mine and int(hit_mine["updates"]), hit_other and int(hit_other["updates"]), speedup,
        kept_mine and kept_mine["cpu"], kept_other and kept_other["cpu"],
        max(h["return"] for h in ours_history[1:]), ours_final, d3rlpy_final, ours_final >= d3rlpy_final,
        valid and speedup is not None and speedup >= target_speedup and ours_final >= d3rlpy_final,
        ours_history, d3rlpy_history)


# ------------------------------------------------------------------ the run


def train_in_turns(learners: list[Learner], slice_seconds: float, evaluator: SimulatorEvaluator,
                   reference: Reference) -> float:
    """Train ``learners`` round robin, ``slice_seconds`` of CPU each turn, evaluating each at its
    points, until every one has spent its budget. Returns the seconds spent evaluating."""
    eval_seconds = 0.0
    started = time.perf_counter()
    for learner in learners:  # the untrained starting point: reported, never counted as reaching quality
        learner.evaluate(evaluator)
    eval_seconds += time.perf_counter() - started
    turn = 0
    while not all(learner.done for learner in learners):
        learner = learners[turn % len(learners)]
        turn += 1
        if learner.done:
            continue
        reference.rate()
        learner.train_for(slice_seconds)
        started = time.perf_counter()
        learner.maybe_evaluate(evaluator)
        eval_seconds += time.perf_counter() - started
    return eval_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algos", nargs="+", choices=("bcq", "cql"), default=["bcq", "cql"])
    parser.add_argument("--data", default="expert", help="pipeline in conf/data/ (default expert)")
    parser.add_argument("--budget", type=float, default=150.0,
                        help="training CPU seconds per learner (default 150)")
    parser.add_argument("--rec-budget", type=float,
                        help="training CPU seconds of ours as shipped (rec preset; default --budget): a shorter "
                             "budget saves CPU where the rec learner reaches quality early, and its final return "
                             "is then compared after less training than d3rlpy's")
    parser.add_argument("--slice", type=float, default=1.0, help="CPU seconds per alternating training slice")
    parser.add_argument("--first-eval", type=float, default=2.0, help="first evaluation point, CPU seconds")
    parser.add_argument("--eval-users", type=int, default=300, help="seeded simulator users per evaluation")
    parser.add_argument("--quality", type=float, default=QUALITY_FRACTION,
                        help="quality threshold as a fraction of d3rlpy's best return (default 0.95)")
    parser.add_argument("--min-gain", type=float, default=MIN_GAIN,
                        help="the threshold is valid only this fraction above the untrained return (default 0.10)")
    parser.add_argument("--cache-dir", default="data_cache", help="dataset cache (the CLI's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write results and learning curves to this JSON file")
    parser.add_argument("--preset", nargs="+", choices=("paper", "rec"), default=["paper", "rec"],
                        help="our learners' preset(s): paper (d3rlpy's exact config: the per-size ratio) and/or "
                             "rec (ours as shipped: the preset ratio); default both, sharing one d3rlpy run")
    parser.add_argument("--d3rlpy-bcq-decoder", choices=("tanh", "linear"), default="tanh",
                        help="d3rlpy BCQ's VAE decoder output: tanh (matched to Fujimoto's and ours, default) or "
                             "linear (d3rlpy as it ships); bench/d3rlpy_adapters.make_d3rlpy")
    args = parser.parse_args()
    rec_budget = args.budget if args.rec_budget is None else args.rec_budget
    if min(args.budget, rec_budget, args.slice, args.first_eval) <= 0 or args.eval_users < 1:
        raise ValueError("--budget, --rec-budget, --slice, --first-eval must be > 0 and --eval-users >= 1")
    if not 0 < args.quality <= 1 or args.min_gain < 0:
        raise ValueError(f"--quality must be in (0, 1] and --min-gain >= 0, got {args.quality}, {args.min_gain}")
    presets = list(dict.fromkeys(args.preset))

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", module="gym")
    import d3rlpy

    d3rlpy.seed(args.seed)  # d3rlpy samples from the global torch/numpy RNGs
    run_started = time.perf_counter()
    load_before = os.getloadavg()[0]
    dataset, sim_factory, info = load_pipeline_dataset(args.cache_dir, args.data)
    buffer = to_d3rlpy(dataset)
    evaluation = info["evaluation"]
    evaluator = SimulatorEvaluator(sim_factory, args.eval_users, int(evaluation["seed"]), float(evaluation["gamma"]))
    equal_weights = evaluator(ConstantAction(np.zeros(dataset.action_spec.dim)), 0)["eval/return"]
    points = evaluation_points(args.budget, args.first_eval)
    reference = Reference()

    groups: dict[str, list[Learner]] = {}  # per algorithm: ours per preset, then d3rlpy's
    eval_seconds = 0.0
    for name in args.algos:
        budgets = {"paper": args.budget, "rec": rec_budget}
        learners = [ours(name, dataset, args.seed, evaluation_points(budgets[preset], args.first_eval),
                         budgets[preset], preset, args.d3rlpy_bcq_decoder) for preset in presets]
        learners.append(theirs(name, dataset, buffer, points, args.budget, args.d3rlpy_bcq_decoder))
        eval_seconds += train_in_turns(learners, args.slice, evaluator, reference)
        groups[name] = learners
    results = [compare(name, mine.history, learners[-1].history, mine.config, learners[-1].config, preset,
                       args.quality, args.min_gain)
               for name, learners in groups.items() for preset, mine in zip(presets, learners[:-1])]
    total = time.perf_counter() - run_started

    behaviour = info.get("behaviour_return")
    logged = float(np.mean(dataset.episode_returns()))
    print(f"time to quality on {args.data} ({len(dataset):,} transitions, {dataset.num_episodes:,} episodes; "
          f"dataset {'reused' if info['dataset_reused'] else 'built'} in {info['dataset_seconds']:.0f} s): "
          f"d3rlpy {d3rlpy.__version__}, torch {torch.__version__}, 1 thread, {os.cpu_count()} "
          f"CPUs, load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"budget {args.budget:.0f} s training CPU time per learner (ours rec: {rec_budget:.0f} s), slices of "
          f"{args.slice:g} s; evaluation: true "
          f"return over {args.eval_users} seeded users (seed {evaluation['seed']}) at {len(points) + 2} points incl. "
          f"the untrained start; reference workload median {statistics.median(reference.rates):.0f} calls/CPU s")
    print(f"yardsticks on the same users: constant action 0 {equal_weights:.2f}; logged episodes' mean return "
          f"{logged:.2f}" + ("" if behaviour is None else f"; behaviour agent's last online episodes {behaviour:.2f}"))
    print(f"threshold rule: {args.quality:.0%} of d3rlpy's best return, valid if >= (1 + {args.min_gain:g}) x the "
          f"untrained return; target: ours >= {TARGET_SPEEDUP:g}x faster (CPU time to first reach it), final return "
          "no worse")
    header = (f"{'learner':20s} {'updates':>8s} {'upd/CPU s':>9s} {'t->q CPU':>9s} {'(wall)':>7s} {'updates':>8s} "
              f"{'start':>7s} {'best':>7s} {'final':>7s}")
    for name, learners in groups.items():
        other = learners[-1]
        print(f"\n{name}:")
        print(header)
        print("-" * len(header))
        rows = [(learner, r.ours_cpu, r.ours_wall, r.ours_updates)
                for learner, r in zip(learners, (r for r in results if r.algorithm == name))]
        first = next(r for r in results if r.algorithm == name)  # d3rlpy's times are the same in each result
        rows.append((other, first.d3rlpy_cpu, first.d3rlpy_wall, first.d3rlpy_updates))
        for learner, time_cpu, time_wall, count in rows:
            returns = [h["return"] for h in learner.history]
            reached = (f"{time_cpu:8.1f}s {time_wall:6.1f}s {count:8d}" if time_cpu is not None
                       else f"{'not reached':>9s} {'':7s} {'':8s}")
            print(f"{learner.label:20s} {learner.updates:8d} {learner.updates / learner.cpu:9.1f} {reached} "
                  f"{returns[0]:7.2f} {max(returns[1:]):7.2f} {returns[-1]:7.2f}")
        for learner in learners:
            print(f"  {learner.label}: {learner.settings}")
        for learner in learners:
            print(f"  curve {learner.label} (CPU s:return): " + " ".join(
                f"{h['cpu']:.0f}:{h['return']:.1f}" for h in learner.history))
        for result in (r for r in results if r.algorithm == name):
            speedup = "n/a" if result.speedup is None else f"{result.speedup:.2f}x"
            kind = "per-size ratio (equal networks)" if result.equal_network_sizes else "preset ratio"
            print(f"  ours ({result.ours_preset}) vs d3rlpy, {kind}: threshold {result.threshold:.2f} = "
                  f"{args.quality:.0%} of d3rlpy's best {result.d3rlpy_best:.2f}; floor {result.threshold_floor:.2f} "
                  f"= (1 + {args.min_gain:g}) x untrained {result.untrained_return:.2f}: "
                  f"{'valid' if result.threshold_valid else 'NOT valid (below the floor)'}")
            print(f"    speed-up to quality (d3rlpy CPU time / ours): {speedup}; stays >= threshold from ours "
                  f"{_seconds(result.ours_sustained)}, d3rlpy {_seconds(result.d3rlpy_sustained)}; final return ours "
                  f"{result.ours_final:.2f} vs d3rlpy {result.d3rlpy_final:.2f}; target: "
                  f"{'met' if result.target_met else 'NOT met'}")
    print(f"\nrun: {total:.0f} s wall in all ({eval_seconds:.0f} s of it evaluating)")
    print("summary: " + "; ".join(
        f"{r.algorithm} {r.ours_preset} {'n/a' if r.speedup is None else f'{r.speedup:.2f}x'} faster to "
        f"{r.threshold:.1f} ({'valid' if r.threshold_valid else 'invalid'}), final {r.ours_final:.1f} vs "
        f"{r.d3rlpy_final:.1f}" for r in results) + f" (budget {args.budget:.0f} CPU s per learner, ours rec "
        f"{rec_budget:.0f})")
    if args.json:
        write_json(args.json, {
            "results": [asdict(r) for r in results], "ours_presets": presets, "data": args.data,
            "clock": "process CPU time of each learner's updates (batch sampling included)",
            "budget_cpu_s": args.budget, "rec_budget_cpu_s": rec_budget, "slice_cpu_s": args.slice,
            "threshold_rule": {"quality_fraction": args.quality, "min_gain": args.min_gain,
                               "untrained": "max of the learners' returns before their first update",
                               "target_speedup": TARGET_SPEEDUP},
            "settings": {learner.label: learner.settings for learners in groups.values() for learner in learners},
            "updates_per_cpu_s": {learner.label: learner.updates / learner.cpu
                                  for learners in groups.values() for learner in learners},
            "eval_users": args.eval_users, "eval_seed": evaluation["seed"], "seed": args.seed,
            "load_average": [load_before, os.getloadavg()[0]], "total_s": total, "eval_s": eval_seconds,
            "constant_action_0_return": equal_weights, "logged_episode_return": logged,
            "reference_rates": reference.rates, "versions": {"d3rlpy": d3rlpy.__version__, "torch": torch.__version__},
            "d3rlpy_bcq_decoder": args.d3rlpy_bcq_decoder, "command": " ".join(sys.argv),
            "dataset": {k: v for k, v in info.items() if k != "evaluation"}})


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


if __name__ == "__main__":
    main()
