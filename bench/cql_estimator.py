"""CQL's soft-maximum estimator and α on the default world (issue #16), measured.

    .venv/bin/python bench/cql_estimator.py                      # about 25 minutes on a loaded 2-core host
    .venv/bin/python bench/cql_estimator.py --table bench/results/cql_estimator.json

CQL (``rec`` preset, the headline study's batch of 256 and 3,000 updates) trains offline on the
headline's cached ``final_buffer`` and ``expert`` datasets (``cache_dir``, built as the CLI builds
them) once per setting: the importance-sampled penalty (the paper preset's estimator) and the
unweighted one (the ``rec`` preset's), at the α values given. Each row: the true return of the
greedy policy (one session for each of ``--users`` users, the same users for every row), its true
discounted value, CQL's Q on those users' initial states and their ratio, the SAC policy's entropy
at the end, the mean first-request action, and the behaviour policy's logged return. One seed:
the rows compare settings, the seed spread is not measured here. Results are written after every
row, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_module  # noqa: E402

from marl_rec.algos.registry import make_algorithm  # noqa: E402
from marl_rec.contracts import ActionSpec  # noqa: E402
from marl_rec.data.dataset import TensorSampler  # noqa: E402
from marl_rec.experiments.common import load_dataset, simulator_factory  # noqa: E402
from marl_rec.files import write_json  # noqa: E402
from marl_rec.schema import register_schemas  # noqa: E402
from marl_rec.trainer import SimulatorEvaluator  # noqa: E402


def table(rows: list[dict]) -> str:
    lines = ["| dataset | estimator | α | true return | true value (γ) | Q | Q / true | entropy | "
             "first-request action (mean) | behaviour (logged) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {'importance-sampled' if r['importance_sampling'] else 'unweighted'} | "
                     f"{r['cql_alpha']:g} | {r['return']:.1f} | {r['discounted_return']:.1f} | {r['q_estimate']:.1f} | "
                     f"{r['q_estimate'] / r['discounted_return']:.2f} | {r['entropy']:.1f} | "
                     f"({', '.join(f'{a:+.2f}' for a in r['first_action'])}) | {r['behaviour_logged_return']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["final_buffer", "expert"])
    parser.add_argument("--settings", nargs="+", default=["is:5", "unweighted:5", "unweighted:1", "unweighted:2"],
                        help="estimator:alpha pairs, estimator one of is / unweighted")
    parser.add_argument("--updates", type=int, default=3000)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default="data_cache", help="dataset cache (the CLI's default)")
    parser.add_argument("--json", default="bench/results/cql_estimator.json")
    parser.add_argument("--table", help="print the table of a JSON written before, and stop")
    args = parser.parse_args()
    if args.table:
        import json
        print(table(json.loads(Path(args.table).read_text())["rows"]))
        return
    settings = []
    for item in args.settings:
        estimator, _, alpha = item.partition(":")
        if estimator not in ("is", "unweighted") or not alpha:
            raise SystemExit(f"--settings: expected estimator:alpha with estimator is/unweighted, got {item!r}")
        settings.append((estimator == "is", float(alpha)))
    torch.set_num_threads(1)
    register_schemas()
    rows: list[dict] = []
    for name in args.datasets:
        with initialize_config_module("marl_rec.conf", version_base="1.3"):
            cfg = compose("config", overrides=["+experiment=fusion_offline", f"data={name}", "algo=cql",
                                               "progress=false", f"cache_dir={os.path.abspath(args.cache_dir)}"])
        dataset, _ = load_dataset(cfg)
        evaluator = SimulatorEvaluator(simulator_factory(cfg), args.users, seed=12345, gamma=float(cfg.evaluation.gamma))
        first_obs = dataset.observations[np.flatnonzero(dataset.episode_starts)]
        for importance_sampling, alpha in settings:
            started = time.process_time()
            algorithm = make_algorithm("cql", dataset.obs_dim, ActionSpec("continuous", dim=4), preset="rec",
                                       seed=args.seed, batch_size=int(cfg.algo.batch_size), cql_alpha=alpha,
                                       importance_sampling=importance_sampling)
            sampler, generator = TensorSampler(dataset), torch.Generator().manual_seed(args.seed)
            for _ in range(args.updates):
                metrics = algorithm.update(sampler.sample(algorithm.config.batch_size, generator))
            result = evaluator(algorithm, args.updates)
            rows.append({"dataset": name, "importance_sampling": importance_sampling, "cql_alpha": alpha,
                         "return": result["eval/return"], "discounted_return": result["eval/discounted_return"],
                         "q_estimate": result["eval/q_estimate"], "entropy": float(metrics["entropy"]),
                         "first_action": np.asarray(algorithm.act(first_obs, deterministic=True)).mean(0).tolist(),
                         "behaviour_logged_return": float(dataset.episode_returns(1.0).mean()),
                         "cpu_seconds": time.process_time() - started})
            write_json(args.json, {"updates": args.updates, "users": args.users, "seed": args.seed,
                                   "batch_size": int(cfg.algo.batch_size), "rows": rows})
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
