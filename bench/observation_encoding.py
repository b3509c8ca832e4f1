"""Does an MLP on the flat observation see what the production policy acts on? (issue #16)

    .venv/bin/python bench/observation_encoding.py        # bench/results/observation_encoding.json

The production policy (``ProductionPolicy``) reads the request's candidates' predictions and the
observation. Behaviour cloning (``bc``, ``rec`` preset) on its logs (truncated-Gaussian noise
σ = 0.1, ``--transitions`` transitions, seed 0) is trained on two observations of the same world
— the default one (the user summary + the top candidates' five predictions, a fixed-size,
order-canonical encoding) and the summary-only one (``observed_candidates=0``) — and evaluated
greedily on ``--users`` users (seed 123). The better the observation carries what the policy
acts on, the closer the clone's return to the production policy's. This is the measurement
behind the choice of fixed-size candidate features over a permutation-invariant encoder: the
clone on the flat features is compared with the policy itself.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from marl_rec.agents.policies import GaussianNoisePolicy, ProductionPolicy  # noqa: E402
from marl_rec.algos.registry import make_algorithm  # noqa: E402
from marl_rec.data import TensorSampler, collect  # noqa: E402
from marl_rec.envs.rollout import run_sessions  # noqa: E402
from marl_rec.envs.simulator import SimulatorConfig, UserSimulator  # noqa: E402
from marl_rec.files import write_json  # noqa: E402


def clone(config: SimulatorConfig, transitions: int, updates: int, users: int) -> dict:
    sim = UserSimulator(config)
    rng = np.random.default_rng(0)
    data = collect(sim, GaussianNoisePolicy(ProductionPolicy(), 0.1, rng), transitions, rng, batch_size=512)
    algo = make_algorithm("bc", data.obs_dim, data.action_spec, "rec", seed=0)
    sampler = TensorSampler(data)
    started = time.perf_counter()
    for _ in range(updates):
        algo.update(sampler.sample(algo.config.batch_size, algo.generator))
    seconds = time.perf_counter() - started
    stats = run_sessions(lambda s, obs: algo.act(obs, deterministic=True), users, np.random.default_rng(123), sim=sim)
    return {"obs_dim": config.obs_dim, "transitions": len(data), "updates": updates, "train_seconds": round(seconds, 1),
            "mean_return": round(float(stats.returns.mean()), 2),
            "return_se": round(float(stats.returns.std(ddof=1) / np.sqrt(users)), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transitions", type=int, default=30_000)
    parser.add_argument("--updates", type=int, default=3000)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "observation_encoding.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    report = {"command": "python bench/observation_encoding.py " + " ".join(sys.argv[1:])}
    sim = UserSimulator(SimulatorConfig())
    production = run_sessions(ProductionPolicy(), args.users, np.random.default_rng(123), sim=sim).returns
    report["production"] = {"mean_return": round(float(production.mean()), 2),
                            "return_se": round(float(production.std(ddof=1) / np.sqrt(args.users)), 2)}
    for name, config in (("bc_candidates", SimulatorConfig()), ("bc_summary_only", SimulatorConfig(observed_candidates=0))):
        report[name] = clone(config, args.transitions, args.updates, args.users)
        print(name, report[name], flush=True)
    write_json(args.json, report)
    print(f"wrote {args.json}: production {report['production']}")


if __name__ == "__main__":
    main()
