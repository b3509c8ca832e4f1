"""Speed-up of data collection and of the simulated A/B test on several processes (issue #19).

    .venv/bin/python bench/parallel_collection.py               # 2 workers vs 1, 5 rounds
    .venv/bin/python bench/parallel_collection.py --rounds 3 --transitions 20000

What is timed (wall clock, the quantity parallelism changes): ``build_dataset`` of the ``expert``
pipeline (the production policy with noise, ``--transitions`` transitions on 1,024 users per
worker) with ``num_workers`` 1 and 2, and ``simulated_ab_test`` of two arms (the production
policy and a constant) with ``num_workers`` 1 and 2. Rounds interleave the two settings (order
alternating); the speed-up is the median over rounds of time(1 worker) / time(2 workers), with
its range. The host's load average is printed and saved beside it: on a shared host the second
worker only gets a core when one is free, so the figure is a lower bound of what an idle
machine gives. Writes ``bench/results/parallel_collection.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
from hydra.utils import instantiate
from marl_rec.agents.policies import ConstantPolicy, ProductionPolicy
from marl_rec.envs.simulator import UserSimulator

from marl_rec.ope.ab_test import simulated_ab_test
from marl_rec.pipelines import build_dataset

SIMULATOR = {"_target_": "marl_rec.envs.simulator.UserSimulator"}
EXPERT = {"name": "expert", "kind": "policy", "seed": 0, "batch_users": 1024,
          "behaviour": {"_target_": "marl_rec.agents.policies.GaussianNoisePolicy", "_partial_": True, "sigma": 0.1,
                        "base": {"_target_": "marl_rec.agents.policies.ProductionPolicy"}}}
RESULTS = Path(__file__).resolve().parent / "results" / "parallel_collection.json"


def collection(workers: int, transitions: int) -> float:
    start = time.perf_counter()
    build_dataset({**EXPERT, "num_transitions": transitions, "num_workers": workers}, lambda: instantiate(SIMULATOR),
                  instantiate, 0)
    return time.perf_counter() - start


def ab_test(workers: int, users: int) -> float:
    policies = {"production": ProductionPolicy(), "constant": ConstantPolicy([0.0] * UserSimulator().action_dim)}
    start = time.perf_counter()
    simulated_ab_test(UserSimulator, policies, users, seed=0, num_workers=workers)
    return time.perf_counter() - start


def measure(job, size: int, rounds: int) -> dict[str, object]:
    job(1, max(1, size // 10))  # warm-up: imports, first allocations
    times: dict[int, list[float]] = {1: [], 2: []}
    for index in range(rounds):
        for workers in ((1, 2) if index % 2 == 0 else (2, 1)):
            times[workers].append(job(workers, size))
    ratios = [a / b for a, b in zip(times[1], times[2])]
    return {"speedup_median": statistics.median(ratios), "speedup_min": min(ratios), "speedup_max": max(ratios),
            "seconds_1_worker": times[1], "seconds_2_workers": times[2]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--transitions", type=int, default=40_000)
    parser.add_argument("--users", type=int, default=8_192, help="users per A/B arm")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    rows = {"collection": measure(collection, args.transitions, args.rounds),
            "ab_test": measure(ab_test, args.users, args.rounds)}
    load_after = os.getloadavg()[0]
    print(f"2 workers vs 1 ({os.cpu_count()} CPUs, load average {load_before:.1f} -> {load_after:.1f}, "
          f"{args.rounds} interleaved rounds, wall clock)")
    for name, row in rows.items():
        print(f"{name:11s} speed-up {row['speedup_median']:.2f}x (min {row['speedup_min']:.2f}, max "
              f"{row['speedup_max']:.2f}); 1 worker {np.median(row['seconds_1_worker']):.2f} s, 2 workers "
              f"{np.median(row['seconds_2_workers']):.2f} s (medians)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    payload = {"rows": rows, "rounds": args.rounds, "transitions": args.transitions, "ab_users_per_arm": args.users,
               "cpus": os.cpu_count(), "load_average": [load_before, load_after], "target": 1.8}
    tmp = args.json.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
