"""Throughput of the batched user simulator and of FusionRankingEnv (torch-free, one process).

    .venv/bin/python bench/simulator.py            # the table (about a minute)
    .venv/bin/python bench/simulator.py --quick    # fewer rounds, smoke run
    .venv/bin/python bench/simulator.py --json out.json

Figures:
- core user-steps/s at B = 1, 256, 4096: ``UserSimulator.step`` on a full batch, replacing
  every user whose session ended (``reset_users``), i.e. the data-collection workload; a
  user-step is one request served to one user. Actions are fixed random fusion actions.
- env steps/s: ``FusionRankingEnv.step`` through the PettingZoo Parallel API (and the
  Gymnasium view), resetting at the end of each episode (resets are inside the timing).
- the random stream's ceiling: the same generator calls as one ``step`` of the full batch
  (the uniforms behind each candidate's topic, item and Box–Muller prediction noise, the ads,
  the responses, the satisfaction signal) and nothing else, in user-steps/s. Any implementation
  that gives the simulator's results (the same draws) is slower than this.
- ``--baseline``: the speed-up over the simulator as it was before issue #19's work (the frozen
  copy in tests/helpers/frozen_simulator.py, which gives bit-identical results): each core and
  PettingZoo workload timed on both, alternating, by CPU time; the median ratio over the rounds.
- ``--profile``: where the time of a step goes at B = 4,096 (cProfile by process CPU time, 32 and
  100 candidates, users replaced as above): each stage's share of the total, into the JSON.

A shared host makes timings noisy, so each figure is measured in rounds and keeps its
fastest round, timed two ways: by this process's CPU time (``time.process_time``: it leaves
out the time spent waiting for a CPU, so on a loaded host it approximates an idle one; the
benchmark is single-threaded, so on an idle host the two agree) and by the wall clock. Every
round alternates with a fixed reference workload (numpy ufuncs and a gather, what the simulator
spends its time on), and the table prints each figure per reference unit (CPU time
both), a ratio that stays comparable across hosts and loads. BLAS is pinned to one thread
(like the tests), and the process must not import torch.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from marl_rec.envs.fusion_env import AGENT, FusionRankingEnv, FusionRankingGymEnv  # noqa: E402
from marl_rec.envs.simulator import NUM_PREDICTIONS, NUM_TASKS, SimulatorConfig, UserSimulator  # noqa: E402

TARGETS = {"core B=4096": 1_000_000.0, "core B=4096, 100 candidates": 400_000.0,  # issue #19
           "FusionRankingEnv (PettingZoo)": 10_000.0}


@dataclass
class Figure:
    name: str
    unit: str
    cpu: float  # best round, by process CPU time
    wall: float  # best round, by wall clock
    wall_median: float  # median round, by wall clock
    reference: float  # reference units per CPU second, best round
    per_reference: float  # cpu / reference


class Reference:
    """A fixed numpy job timed beside each figure, made of what the simulator spends its time
    on (no BLAS): exp, log and add over 2^18 float32 and a random gather of 2^16 rows of 4.
    One call is one reference unit."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.x = rng.random(1 << 18, dtype=np.float32) + 0.5
        self.out = np.empty_like(self.x)
        self.table = rng.random((2000, 4), dtype=np.float32)
        self.index = rng.integers(0, 2000, 1 << 16)
        self.gathered = np.empty((1 << 16, 4), dtype=np.float32)

    def __call__(self) -> None:
        np.exp(self.x, out=self.out)
        np.log(self.out, out=self.out)
        self.out += self.x
        self.table.take(self.index, axis=0, out=self.gathered, mode="clip")


def timed(work: Callable[[], int]) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, count) of one call of ``work``."""
    cpu, wall = time.process_time(), time.perf_counter()
    count = work()
    return time.process_time() - cpu, time.perf_counter() - wall, count


def measure(name: str, unit: str, make_work: Callable[[], Callable[[], int]], reference: Reference,
            rounds: int, reference_calls: int) -> Figure:
    """Alternate reference and workload ``rounds`` times; keep the fastest round of each."""
    work = make_work()
    work()  # warm-up: buffers, caches

    def run_reference() -> int:
        for _ in range(reference_calls):
            reference()
        return reference_calls

    cpu_rates, wall_rates, reference_rates = [], [], []
    for _ in range(rounds):
        cpu, _, count = timed(run_reference)
        reference_rates.append(count / max(cpu, 1e-9))
        cpu, wall, count = timed(work)
        cpu_rates.append(count / max(cpu, 1e-9))
        wall_rates.append(count / wall)
    best_cpu, best_reference = max(cpu_rates), max(reference_rates)
    return Figure(name, unit, best_cpu, max(wall_rates), float(np.median(wall_rates)), best_reference,
                  best_cpu / best_reference)


def core_work(batch: int, steps: int, simulator: type = UserSimulator,
              **config: int) -> Callable[[], Callable[[], int]]:
    def make() -> Callable[[], int]:
        sim = simulator(SimulatorConfig(**config))
        rng = np.random.default_rng(0)
        sim.reset(batch, rng)
        actions = np.random.default_rng(1).uniform(-1.0, 1.0, (16, batch, NUM_TASKS))

        def work() -> int:
            for i in range(steps):
                result = sim.step(actions[i % 16])
                ended = result.terminated | result.truncated
                if ended.any():
                    sim.reset_users(ended)
            return steps * batch

        return work

    return make


def draws_work(batch: int, steps: int, **config: int) -> Callable[[], Callable[[], int]]:
    """The random draws of ``steps`` full-batch steps, as UserSimulator makes them, and nothing else."""
    c = SimulatorConfig(**config)

    def make() -> Callable[[], int]:
        rng = np.random.default_rng(0)
        uniform = np.empty((batch, c.num_candidates))
        noise = np.empty(batch * c.num_candidates * NUM_PREDICTIONS, dtype=np.float32)
        ad_noise = np.empty((batch, c.num_ad_candidates), dtype=np.float32)
        responses = np.empty((batch, 4 * c.slate_size + 1))
        num_ads = c.num_topics * c.ads_per_topic

        def work() -> int:
            for _ in range(steps):
                rng.random(out=uniform)  # topics
                rng.random(out=uniform)  # items within their topic
                rng.random(out=noise, dtype=np.float32)  # Box–Muller's uniforms for the predictions' noise
                rng.integers(0, num_ads, ad_noise.shape)
                rng.standard_normal(out=ad_noise, dtype=np.float32)
                rng.random(out=responses)  # clicks, likes, shares, negative feedback, leaving
                rng.standard_normal(batch)  # the satisfaction signal's noise
            return steps * batch

        return work

    return make


#: the stages of a step that --profile reports: (label, cProfile function name, time counted)
PROFILE_STAGES = (("retrieval (_retrieve)", "_retrieve", "cumulative"),
                  ("  of which Box–Muller noise", "standard_normal_f32", "cumulative"),
                  ("observation (_write_observation)", "_write_observation", "cumulative"),
                  ("ranking (rank)", "rank", "cumulative"),
                  ("numpy argsort", "<method 'argsort' of 'numpy.ndarray' objects>", "own"),
                  ("numpy take (gathers)", "<method 'take' of 'numpy.ndarray' objects>", "own"))


def profile_step(batch: int, steps: int, **config: int) -> dict[str, float]:
    """Share of a step's CPU time per stage (PROFILE_STAGES) over ``steps`` steps with replacement."""
    import cProfile
    import pstats

    work = core_work(batch, steps, **config)()
    work()
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    work()
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # (file, line, name) -> (calls, primitive, own, cumulative, callers)
    total = max(entry[3] for key, entry in stats.items() if key[2] == "work")
    shares = {}
    for label, name, kind in PROFILE_STAGES:
        entries = [entry for key, entry in stats.items() if key[2] == name or f"<{key[2][1:-1]}>" == name]
        shares[label] = sum(entry[2 if kind == "own" else 3] for entry in entries) / total
    shares["CPU ms per step"] = total / steps * 1e3
    return shares


def env_work(steps: int, gym: bool = False, simulator: type = UserSimulator) -> Callable[[], Callable[[], int]]:
    def make() -> Callable[[], int]:
        actions = np.random.default_rng(1).uniform(-1.0, 1.0, (64, NUM_TASKS)).astype(np.float32)
        if gym:
            env = FusionRankingGymEnv()
            env.reset(seed=0)

            def work() -> int:
                for i in range(steps):
                    _, _, terminated, truncated, _ = env.step(actions[i % 64])
                    if terminated or truncated:
                        env.reset()
                return steps
        else:
            env = FusionRankingEnv()
            env.sim = simulator(env.config)
            env.reset(seed=0)

            def work() -> int:
                for i in range(steps):
                    env.step({AGENT: actions[i % 64]})
                    if not env.agents:
                        env.reset()
                return steps

        return work

    return make


def baseline_ratios(plan: list[tuple[str, Callable[..., Callable[[], Callable[[], int]]]]],
                    rounds: int) -> list[dict[str, float | str]]:
    """Current / frozen pre-#19 simulator throughput per workload, alternating rounds by CPU time."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
    from frozen_simulator import FrozenSimulator

    rows = []
    for name, workload in plan:
        old, new = workload(FrozenSimulator)(), workload(UserSimulator)()
        old()  # warm-up: buffers, caches
        new()
        ratios = []
        for _ in range(rounds):
            (old_cpu, _, _), (new_cpu, _, _) = timed(old), timed(new)
            ratios.append(old_cpu / max(new_cpu, 1e-9))
        rows.append({"name": name, "speedup": float(np.median(ratios)), "low": min(ratios), "high": max(ratios),
                     "rounds": rounds})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 short rounds per figure (smoke run)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per figure (default 7)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--baseline", action="store_true",
                        help="also time the frozen pre-#19 simulator against the current one (into the JSON)")
    parser.add_argument("--profile", action="store_true", help="also profile a step at B = 4,096 (into the JSON)")
    args = parser.parse_args()
    rounds, scale = (2, 0.2) if args.quick else (args.rounds, 1.0)
    if rounds < 1:
        raise ValueError(f"--rounds must be >= 1, got {rounds}")
    reference = Reference()
    steps = lambda n: max(1, int(n * scale))  # noqa: E731
    plan = [
        ("core B=1", "user-steps/s", core_work(1, steps(1500))),
        ("core B=256", "user-steps/s", core_work(256, steps(60))),
        ("core B=4096", "user-steps/s", core_work(4096, steps(12))),
        ("core B=4096, 100 candidates", "user-steps/s", core_work(4096, steps(6), num_candidates=100)),
        ("random draws alone, B=4096", "user-steps/s", draws_work(4096, steps(12))),
        ("random draws alone, B=4096, 100 candidates", "user-steps/s",
         draws_work(4096, steps(6), num_candidates=100)),
        ("FusionRankingEnv (PettingZoo)", "env steps/s", env_work(steps(1500))),
        ("FusionRankingGymEnv", "env steps/s", env_work(steps(1500), gym=True)),
    ]
    figures = [measure(name, unit, make, reference, rounds, max(1, int(40 * scale))) for name, unit, make in plan]
    baseline = baseline_ratios([
        ("core B=1", lambda sim: core_work(1, steps(1500), simulator=sim)),
        ("core B=4096", lambda sim: core_work(4096, steps(12), simulator=sim)),
        ("core B=4096, 100 candidates", lambda sim: core_work(4096, steps(6), simulator=sim, num_candidates=100)),
        ("FusionRankingEnv (PettingZoo)", lambda sim: env_work(steps(1500), simulator=sim)),
    ], max(rounds, 5)) if args.baseline else None
    profile = {f"{candidates} candidates": profile_step(4096, steps(12), num_candidates=candidates)
               for candidates in (32, 100)} if args.profile else None
    assert "torch" not in sys.modules, "the simulator benchmark must not import torch"

    print(f"marl-rec simulator benchmark: numpy {np.__version__}, Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, best of {rounds} rounds, "
          f"BLAS threads {os.environ['OPENBLAS_NUM_THREADS']}, torch not imported")
    header = (f"{'workload':30s} {'unit':13s} {'CPU time':>10s} {'wall':>10s} {'wall med.':>10s} "
              f"{'ref/CPU s':>9s} {'per ref':>8s}")
    print(header)
    print("-" * len(header))
    for f in figures:
        target = TARGETS.get(f.name)
        mark = "" if target is None else f"  target {target:,.0f}: {'met' if f.cpu >= target else 'NOT met'}"
        print(f"{f.name:30s} {f.unit:13s} {f.cpu:10,.0f} {f.wall:10,.0f} {f.wall_median:10,.0f} "
              f"{f.reference:9,.0f} {f.per_reference:8,.1f}{mark}")
    for row in baseline or []:
        print(f"{row['name']}: {row['speedup']:.2f}x the pre-#19 simulator (median of {row['rounds']} alternating "
              f"rounds, range {row['low']:.2f}-{row['high']:.2f})")
    for workload, shares in (profile or {}).items():
        print(f"profile, B = 4096, {workload}: " + ", ".join(
            f"{label.strip()} {share:.1f}" if label.startswith("CPU") else f"{label.strip()} {share:.0%}"
            for label, share in shares.items()))
    if args.json:
        payload = {"figures": [asdict(f) for f in figures], "numpy": np.__version__, "rounds": rounds,
                   "load_average": os.getloadavg()[0]}
        if baseline is not None:
            payload["speedup_over_pre_19"] = baseline
        if profile is not None:
            payload["profile"] = profile
        args.json.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=args.json.parent, delete=False, suffix=".tmp") as handle:
            json.dump(payload, handle, indent=2)
        os.replace(handle.name, args.json)


if __name__ == "__main__":
    main()
