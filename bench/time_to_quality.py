"""Time to quality: our BCQ and CQL against d3rlpy's (paper sizes) on one dataset.

    bench/setup_bench_venv.sh                                   # once: .venv-bench with d3rlpy
    .venv-bench/bin/python bench/time_to_quality.py             # about 10 minutes
    .venv-bench/bin/python bench/time_to_quality.py --budget 60 --algos bcq   # shorter
    .venv-bench/bin/python bench/time_to_quality.py --json ttq.json
    .venv-bench/bin/python bench/time_to_quality.py --preset paper   # ours at d3rlpy's sizes too

The dataset is the ``final_buffer`` pipeline's (``conf/data/final_buffer.yaml``: the whole
replay buffer of an online TD3 trained with σ = 0.5), built with our pipeline and cached
exactly as the ``marl-rec`` CLI caches it (``--cache-dir``, default ``data_cache``), then
converted for d3rlpy with ``marl_rec.data.d3rlpy_interop.to_d3rlpy`` (same transitions).

Each learner trains for ``--budget`` seconds of wall-clock *training* time (updates with
their batch sampling, at its config's batch size, one torch thread); at points of its own training clock it
is evaluated on the true return in the simulator (``marl_rec.trainer.SimulatorEvaluator``:
the same seeded users every time, one whole session each; d3rlpy's ``predict`` /
``predict_value`` are wrapped by ``bench/d3rlpy_adapters.D3rlpyPolicy``). Evaluation time is
not counted. Ours and d3rlpy's learner of one algorithm train in alternating slices of
``--slice`` seconds, so both see the same host load. The threshold is 95% of the best return
d3rlpy's learner reached within its budget; the table gives the training time each needed
to first reach it (at the resolution of the evaluation points), the speed-up d3rlpy/ours,
the time from which each stays at or above it to the end of its budget, and the final
returns (last evaluation). CPU time is printed beside the wall time, and a
fixed reference workload (as in ``bench/updates.py``) is timed between slices so that runs
on differently loaded hosts can be compared.

Our learners use the ``--preset`` (default ``rec``: ``make_algorithm(name, ..., preset="rec")``;
the output lists the sizes, rates and batch size each learner trained with). ``--preset paper``
trains ours with exactly d3rlpy's config (same sizes, same settings, CQL without the warm start
d3rlpy lacks): the ratio at equal network sizes, where ``rec`` gives the ratio of our preset
(64-128-unit layers) against d3rlpy at paper sizes — state both. d3rlpy's use
the paper sizes and defaults of our ``paper`` configs with the settings matched as
``bench/d3rlpy_adapters.py`` documents (BCQ: 10 sampled actions, tanh decoder, batch 256;
CQL: 3×256, fixed α = 5, no BC warm start, which d3rlpy's CQL does not have).
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

QUALITY_FRACTION = 0.95
TARGET_SPEEDUP = 3.0


def load_pipeline_dataset(cache_dir: str, data: str = "final_buffer",
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
    """The same action for every user and request (action 0: equal fusion weights, w = 10**0),
    evaluated as a yardstick next to the learners."""

    def __init__(self, action: np.ndarray) -> None:
        self.action = np.asarray(action, dtype=np.float32)

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return np.tile(self.action, (len(obs), 1))

    def q_value(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        return np.full(len(obs), np.nan)


@dataclass
class Learner:
    """One algorithm implementation under training; ``step()`` is one update incl. sampling."""

    label: str
    settings: str  # the sizes and rates it trains with, for the report
    step: Callable[[], None]
    policy: Any  # act(obs, deterministic) / q_value(obs, action)
    eval_points: list[float]  # training seconds at which to evaluate
    budget: float
    wall: float = 0.0  # training time so far
    cpu: float = 0.0
    updates: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.wall >= self.budget

    def train_for(self, seconds: float) -> None:
        """Update until ``seconds`` more training time have passed, or the next evaluation
        point or the budget is reached (at least one update)."""
        stop = min(self.wall + seconds, self.budget, *[p for p in self.eval_points if p > self.wall] or [np.inf])
        wall0, cpu0 = time.perf_counter(), time.process_time()
        while True:
            self.step()
            self.updates += 1
            wall = self.wall + time.perf_counter() - wall0
            if wall >= stop:
                break
        self.wall, self.cpu = wall, self.cpu + time.process_time() - cpu0

    def maybe_evaluate(self, evaluator: SimulatorEvaluator) -> None:
        due = [p for p in self.eval_points if p <= self.wall]
        if due or self.done:
            self.eval_points = [p for p in self.eval_points if p > self.wall]
            metrics = evaluator(self.policy, self.updates)
            self.history.append({"wall": self.wall, "cpu": self.cpu, "updates": self.updates,
                                 "return": metrics["eval/return"], "q_estimate": metrics["eval/q_estimate"]})


def ours(name: str, dataset: OfflineDataset, seed: int, points: list[float], budget: float,
         preset: str = "rec") -> Learner:
    # at paper sizes, ours gets d3rlpy's exact config (see theirs)
    overrides = paper_overrides(name) if preset == "paper" else {}
    algorithm = make_algorithm(name, dataset.obs_dim, dataset.action_spec, preset=preset, seed=seed, **overrides)
    sampler, generator = TensorSampler(dataset), torch.Generator().manual_seed(seed)
    batch_size = algorithm.config.batch_size  # the preset's (a rec preset may choose its own)
    return Learner(f"ours {name} ({preset})", _settings(algorithm.config),
                   lambda: algorithm.update(sampler.sample(batch_size, generator)), algorithm, list(points), budget)


def theirs(name: str, dataset: OfflineDataset, buffer: Any, points: list[float], budget: float) -> Learner:
    from d3rlpy_adapters import D3rlpyPolicy, make_d3rlpy

    config = make_config(name, "paper", **paper_overrides(name))
    algo = make_d3rlpy(name, config, dataset.obs_dim, dataset.action_spec.dim)
    return Learner(f"d3rlpy {name} (paper)", _settings(config),
                   lambda: algo.update(buffer.sample_transition_batch(config.batch_size)), D3rlpyPolicy(algo),
                   list(points), budget)


def paper_overrides(name: str) -> dict[str, Any]:
    """d3rlpy's CQL has no BC warm start: its paper config is ours without one."""
    return {"bc_warmup_updates": 0} if name == "cql" else {}


def _settings(config: Any) -> str:
    """The fields of an algorithm config that set its cost and learning speed, as one line."""
    keys = ("vae_hidden", "actor_hidden", "critic_hidden", "actor_lr", "critic_lr", "vae_lr", "tau", "cql_alpha",
            "num_sampled_actions", "bc_warmup_updates", "batch_size")
    return ", ".join(f"{k}={getattr(config, k)}" for k in keys if hasattr(config, k))


def evaluation_points(budget: float, first: float) -> list[float]:
    """Training times to evaluate at: ``first``, then ×1.5 each (a ×3 speed-up spans almost three
    steps, and late evaluations stay few), below the budget (the budget's end is always evaluated)."""
    points, t = [], first
    while t < budget:
        points.append(round(t, 3))
        t *= 1.5
    return points


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
    algorithm: str
    threshold: float
    d3rlpy_best: float
    ours_time: float | None  # training wall seconds to first reach the threshold (None: never)
    d3rlpy_time: float | None
    ours_cpu: float | None
    d3rlpy_cpu: float | None
    ours_updates: int | None
    d3rlpy_updates: int | None
    speedup: float | None  # d3rlpy_time / ours_time
    ours_sustained: float | None  # training wall seconds from which it stays above the threshold
    d3rlpy_sustained: float | None
    ours_final: float
    d3rlpy_final: float
    ours_history: list[dict[str, float]]
    d3rlpy_history: list[dict[str, float]]


def compare(name: str, ours_history: list[dict[str, float]], d3rlpy_history: list[dict[str, float]]) -> Result:
    """Threshold, first-reaching and sustained times over the evaluations *after* training
    started (the untrained starting point, ``history[0]``, is reported but never counts)."""
    best = max(h["return"] for h in d3rlpy_history[1:])
    threshold = QUALITY_FRACTION * best
    hit_mine, hit_other = first_reaching(ours_history[1:], threshold), first_reaching(d3rlpy_history[1:], threshold)
    kept_mine, kept_other = (first_sustained(ours_history[1:], threshold),
                             first_sustained(d3rlpy_history[1:], threshold))
    speedup = (hit_other["wall"] / hit_mine["wall"]) if hit_mine and hit_other else None
    return Result(name, threshold, best,
                  hit_mine and hit_mine["wall"], hit_other and hit_other["wall"],
                  hit_mine and hit_mine["cpu"], hit_other and hit_other["cpu"],
                  hit_mine and int(hit_mine["updates"]), hit_other and int(hit_other["updates"]), speedup,
                  kept_mine and kept_mine["wall"], kept_other and kept_other["wall"],
                  ours_history[-1]["return"], d3rlpy_history[-1]["return"], ours_history, d3rlpy_history)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algos", nargs="+", choices=("bcq", "cql"), default=["bcq", "cql"])
    parser.add_argument("--data", default="final_buffer", help="pipeline in conf/data/ (default final_buffer)")
    parser.add_argument("--budget", type=float, default=100.0,
                        help="training wall seconds per learner (default 100: about 10 minutes in all)")
    parser.add_argument("--slice", type=float, default=1.0, help="seconds per alternating training slice")
    parser.add_argument("--first-eval", type=float, default=2.0, help="first evaluation point, seconds")
    parser.add_argument("--eval-users", type=int, default=300, help="seeded simulator users per evaluation")
    parser.add_argument("--cache-dir", default="data_cache", help="dataset cache (the CLI's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write results and learning curves to this JSON file")
    parser.add_argument("--preset", choices=("rec", "paper"), default="rec",
                        help="our learners' preset: rec (ours as shipped) or paper (d3rlpy's exact config)")
    args = parser.parse_args()
    if args.budget <= 0 or args.slice <= 0 or args.first_eval <= 0 or args.eval_users < 1:
        raise ValueError("--budget, --slice, --first-eval must be > 0 and --eval-users >= 1")

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

    pairs: dict[str, tuple[Learner, Learner]] = {}
    eval_seconds = 0.0
    for name in args.algos:
        pair = (ours(name, dataset, args.seed, points, args.budget, args.preset),
                theirs(name, dataset, buffer, points, args.budget))
        started = time.perf_counter()
        for learner in pair:  # the untrained starting point: reported, never counted as reaching quality
            learner.history.append({"wall": 0.0, "cpu": 0.0, "updates": 0, **_evaluate(evaluator, learner)})
        eval_seconds += time.perf_counter() - started
        turn = 0
        while not all(learner.done for learner in pair):
            learner = pair[turn % 2] if not pair[turn % 2].done else pair[(turn + 1) % 2]
            reference.rate()
            learner.train_for(args.slice)
            started = time.perf_counter()
            learner.maybe_evaluate(evaluator)
            eval_seconds += time.perf_counter() - started
            turn += 1
        pairs[name] = pair
    results = [compare(name, mine.history, other.history) for name, (mine, other) in pairs.items()]
    total = time.perf_counter() - run_started

    behaviour = info.get("behaviour_return")
    print(f"time to quality on {args.data} ({len(dataset):,} transitions, {dataset.num_episodes:,} episodes; "
          f"dataset {'reused' if info['dataset_reused'] else 'built'} in {info['dataset_seconds']:.0f} s): "
          f"d3rlpy {d3rlpy.__version__}, torch {torch.__version__}, 1 thread, {os.cpu_count()} "
          f"CPUs, load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"budget {args.budget:.0f} s training wall time per learner; evaluation: true return over "
          f"{args.eval_users} seeded users (seed {evaluation['seed']}) at {len(points) + 2} points incl. the "
          f"untrained start; reference workload median {statistics.median(reference.rates):.0f} calls/CPU s")
    print(f"yardsticks on the same users: equal fusion weights (constant action 0) {equal_weights:.2f}; logged "
          f"episodes' mean return {float(np.mean(dataset.episode_returns())):.2f}"
          + ("" if behaviour is None else f"; behaviour agent's last online episodes {behaviour:.2f}"))
    header = (f"{'learner':22s} {'updates':>8s} {'upd/s':>7s} {'t->95% wall':>11s} {'(CPU)':>7s} {'updates':>8s} "
              f"{'start':>7s} {'best':>7s} {'final':>7s}")
    for result, (mine, other) in zip(results, pairs.values()):
        print()
        print(f"{result.algorithm}: threshold {result.threshold:.2f} = {QUALITY_FRACTION:.0%} of d3rlpy's best "
              f"{result.d3rlpy_best:.2f} (after its start)")
        print(header)
        print("-" * len(header))
        for learner, time_wall, time_cpu, count in ((mine, result.ours_time, result.ours_cpu, result.ours_updates),
                                                    (other, result.d3rlpy_time, result.d3rlpy_cpu,
                                                     result.d3rlpy_updates)):
            returns = [h["return"] for h in learner.history]
            reached = (f"{time_wall:10.1f}s {time_cpu:6.1f}s {count:8d}" if time_wall is not None
                       else f"{'not reached':>11s} {'':7s} {'':8s}")
            print(f"{learner.label:22s} {learner.updates:8d} {learner.updates / learner.wall:7.1f} {reached} "
                  f"{returns[0]:7.2f} {max(returns[1:]):7.2f} {returns[-1]:7.2f}")
        for learner in (mine, other):
            print(f"  {learner.label}: {learner.settings}")
        for learner in (mine, other):
            print(f"  curve {learner.label}: " + " ".join(
                f"{h['wall']:.0f}s:{h['return']:.1f}" for h in learner.history))
        start = max(mine.history[0]["return"], other.history[0]["return"], equal_weights)
        if result.d3rlpy_best <= start:
            print(f"  note: d3rlpy's best {result.d3rlpy_best:.2f} is no better than an untrained learner or equal "
                  f"weights ({start:.2f}): training moves these policies towards the logged behaviour, and the "
                  f"threshold measures how soon a learner leaves its initialisation, not learning")
        print(f"  stays >= threshold from (to the end of the budget): ours {_seconds(result.ours_sustained)}, "
              f"d3rlpy {_seconds(result.d3rlpy_sustained)}")
        speedup = "n/a" if result.speedup is None else f"{result.speedup:.1f}x"
        verdict = ("met" if result.speedup is not None and result.speedup >= TARGET_SPEEDUP
                   and result.ours_final >= result.d3rlpy_final else "NOT met")
        print(f"speed-up to 95% (d3rlpy time / ours): {speedup}; final return ours {result.ours_final:.2f} vs "
              f"d3rlpy {result.d3rlpy_final:.2f}; target (>= {TARGET_SPEEDUP:.0f}x, final no worse): {verdict}")
    print(f"\nrun: {total:.0f} s wall in all ({eval_seconds:.0f} s of it evaluating)")
    print("summary: " + "; ".join(
        f"{r.algorithm} {'n/a' if r.speedup is None else f'{r.speedup:.1f}x'} faster to 95% of d3rlpy's best "
        f"(kept from {_seconds(r.ours_sustained)} vs {_seconds(r.d3rlpy_sustained)}), final {r.ours_final:.1f} vs "
        f"{r.d3rlpy_final:.1f}" for r in results)
        + f" (budget {args.budget:.0f} s per learner; equal weights {equal_weights:.1f})")
    if args.json:
        write_json(args.json, {"results": [asdict(r) for r in results], "ours_preset": args.preset,
                               "ours_settings": {name: pair[0].settings for name, pair in pairs.items()},
                               "d3rlpy_settings": {name: pair[1].settings for name, pair in pairs.items()},
                               "data": args.data, "budget_s": args.budget,
                               "eval_users": args.eval_users, "load_average": load_before, "total_s": total,
                               "eval_s": eval_seconds, "equal_weights_return": equal_weights,
                               "reference_rates": reference.rates,
                               "dataset": {k: v for k, v in info.items() if k != "evaluation"}})


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def _evaluate(evaluator: SimulatorEvaluator, learner: Learner) -> dict[str, float]:
    metrics = evaluator(learner.policy, 0)
    return {"return": metrics["eval/return"], "q_estimate": metrics["eval/q_estimate"]}


if __name__ == "__main__":
    main()
