"""Speed-up of data collection and of the simulated A/B test on several processes (issue #19).

    .venv/bin/python bench/parallel_collection.py               # 2 workers vs 1, 5 rounds
    .venv/bin/python bench/parallel_collection.py --rounds 3 --transitions 20000

What is timed (wall clock, the quantity parallelism changes): ``build_dataset`` of the ``expert``
pipeline (the production policy with noise, ``--transitions`` transitions on 1,024 users in all)
with ``num_workers`` 1 and 2, and ``simulated_ab_test`` of two arms of about equal cost (the
production policy and a candidate: the production policy with noise σ = 0.1) with ``num_workers``
1 and 2 (the A/B test runs an arm per process: an arm that costs more than the others bounds its
speed-up, e.g. production vs a constant, 6 to 1 in CPU time, gives at most 1.17x; ``--ab-constant``
times that pair). Rounds interleave the two settings (order alternating);
the speed-up is the median over rounds of time(1 worker) / time(2 workers), with its range. The
host's load average is printed and saved beside it: on a shared host the second worker only gets
a core when one is free, so the wall-clock figure is a lower bound of what an idle machine gives.

CPU time shows the cost of the processes even under load. Each call records this process's CPU
time, its workers' (``RUSAGE_CHILDREN``: fork, the job, handing back the result, exit) and each
job's own (measured inside the job). From the medians over rounds:
- ``cpu_overhead``: (this process + workers, 2 workers) / (this process, 1 worker) - 1, the CPU
  that the second process costs beyond the work itself;
- ``idle_speedup_estimate``: CPU(1 worker) / (this process's CPU + the longest job + its share of
  the workers' overhead, 2 workers): the speed-up if each process had a core of its own, with
  this process's part (setting up, receiving, concatenating) counted as serial. The A/B test's
  jobs are its arms, so an arm that costs more than the other bounds it.
Writes ``bench/results/parallel_collection.json``.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from marl_rec.agents.policies import (
    ConstantPolicy,
    GaussianNoisePolicy,
    ProductionPolicy,
)
from marl_rec.envs.simulator import UserSimulator

import marl_rec.ope.ab_test
import marl_rec.parallel
import marl_rec.pipelines
from marl_rec.files import write_json
from marl_rec.ope.ab_test import simulated_ab_test
from marl_rec.pipelines import build_dataset

SIMULATOR = {"_target_": "marl_rec.envs.simulator.UserSimulator"}
EXPERT = {"name": "expert", "kind": "policy", "seed": 0, "batch_users": 1024,
          "behaviour": {"_target_": "marl_rec.agents.policies.GaussianNoisePolicy", "_partial_": True, "sigma": 0.1,
                        "base": {"_target_": "marl_rec.agents.policies.ProductionPolicy"}}}
RESULTS = Path(__file__).resolve().parent / "results" / "parallel_collection.json"


_job_cpu: list[float] = []  # CPU seconds of each job of the last map_jobs call, measured inside the job


def _timed_map_jobs(task: Callable[[int], Any], num_jobs: int, num_workers: int = 1) -> list[Any]:
    """marl_rec.parallel.map_jobs, also recording each job's own CPU time in ``_job_cpu``."""
    def timed(index: int) -> tuple[Any, float]:
        start = time.process_time()
        result = task(index)
        return result, time.process_time() - start

    out = marl_rec.parallel.map_jobs(timed, num_jobs, num_workers)
    _job_cpu[:] = [cpu for _, cpu in out]
    return [result for result, _ in out]



def _workers_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the finished (joined) worker processes
    return usage.ru_utime + usage.ru_stime


def clocked(run: Callable[[], object]) -> dict[str, Any]:
    _job_cpu.clear()
    wall, cpu, workers = time.perf_counter(), time.process_time(), _workers_cpu()
    run()
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
            "workers_cpu": _workers_cpu() - workers, "job_cpu": list(_job_cpu)}


def collection(workers: int, transitions: int) -> dict[str, Any]:
    return clocked(lambda: build_dataset({**EXPERT, "num_transitions": transitions, "num_workers": workers},
                                         lambda: instantiate(SIMULATOR), instantiate, 0))


def ab_test(workers: int, users: int, constant_arm: bool = False) -> dict[str, Any]:
    candidate = (ConstantPolicy([0.0] * UserSimulator().action_dim) if constant_arm
                 else GaussianNoisePolicy(ProductionPolicy(), 0.1, np.random.default_rng(1)))
    policies = {"production": ProductionPolicy(), "candidate": candidate}
    return clocked(lambda: simulated_ab_test(UserSimulator, policies, users, seed=0, num_workers=workers))


def measure(job, size: int, rounds: int) -> dict[str, object]:
    job(1, max(1, size // 10))  # warm-up: imports, first allocations
    calls: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for index in range(rounds):
        for workers in ((1, 2) if index % 2 == 0 else (2, 1)):
            calls[workers].append(job(workers, size))
    ratios = [a["wall"] / b["wall"] for a, b in zip(calls[1], calls[2])]
    one = statistics.median(c["cpu"] for c in calls[1])
    parent = statistics.median(c["cpu"] for c in calls[2])
    workers_cpu = statistics.median(c["workers_cpu"] for c in calls[2])
    longest = statistics.median(max(c["job_cpu"]) for c in calls[2])
    jobs = statistics.median(sum(c["job_cpu"]) for c in calls[2])
    return {"speedup_median": statistics.median(ratios), "speedup_min": min(ratios), "speedup_max": max(ratios),
            "seconds_1_worker": [c["wall"] for c in calls[1]], "seconds_2_workers": [c["wall"] for c in calls[2]],
            "cpu_1_worker": one, "cpu_2_workers_parent": parent, "cpu_2_workers_workers": workers_cpu,
            "cpu_2_workers_jobs": jobs, "cpu_2_workers_longest_job": longest,
            "cpu_overhead": (parent + workers_cpu) / one - 1.0,
            "idle_speedup_estimate": one / (parent + longest + max(0.0, workers_cpu - jobs) / 2),
            "calls": calls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--transitions", type=int, default=40_000)
    parser.add_argument("--users", type=int, default=8_192, help="users per A/B arm")
    parser.add_argument("--ab-constant", action="store_true", help="A/B arms: production vs a constant")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    # the pipelines and the A/B test call map_jobs through these names
    marl_rec.pipelines.map_jobs = marl_rec.ope.ab_test.map_jobs = _timed_map_jobs
    load_before = os.getloadavg()[0]
    rows = {"collection": measure(collection, args.transitions, args.rounds),
            "ab_test": measure(functools.partial(ab_test, constant_arm=args.ab_constant), args.users, args.rounds)}
    load_after = os.getloadavg()[0]
    print(f"2 workers vs 1 ({os.cpu_count()} CPUs, load average {load_before:.1f} -> {load_after:.1f}, "
          f"{args.rounds} interleaved rounds; medians over rounds)")
    for name, row in rows.items():
        print(f"{name:11s} wall-clock speed-up {row['speedup_median']:.2f}x (min {row['speedup_min']:.2f}, max "
              f"{row['speedup_max']:.2f}); 1 worker {np.median(row['seconds_1_worker']):.2f} s, 2 workers "
              f"{np.median(row['seconds_2_workers']):.2f} s")
        print(f"{'':11s} CPU: 1 worker {row['cpu_1_worker']:.2f} s; 2 workers: this process "
              f"{row['cpu_2_workers_parent']:.2f} s + workers {row['cpu_2_workers_workers']:.2f} s (jobs "
              f"{row['cpu_2_workers_jobs']:.2f} s, longest {row['cpu_2_workers_longest_job']:.2f} s): overhead "
              f"{100 * row['cpu_overhead']:+.1f}%, speed-up with a core per process {row['idle_speedup_estimate']:.2f}x")
    payload = {"rows": rows, "rounds": args.rounds, "transitions": args.transitions, "ab_users_per_arm": args.users,
               "ab_arms": "production vs " + ("a constant" if args.ab_constant else "production + noise 0.1"),
               "cpus": os.cpu_count(), "load_average": [load_before, load_after], "target": 1.8}
    write_json(args.json, payload)


if __name__ == "__main__":
    main()
