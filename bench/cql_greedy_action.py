"""CQL's greedy action, tanh(μ) against the squashed distribution's mean, on the same trained actors.

    python bench/cql_greedy_action.py RUN_FOLDER... --json bench/results/cql_greedy_action.json
    python bench/cql_greedy_action.py --table bench/results/cql_greedy_action.json

Reads every CQL run (``metrics.json`` with ``algo: cql`` and a ``checkpoint.pt``) under the given
folders, restores its final checkpoint and runs the run's own simulated A/B test (its simulator
config, users and seed: the users of its ``true_return``) twice — acting with ``greedy_action``
``"mode"`` (SAC's tanh(μ)) and ``"mean"`` (``TanhGaussianActor.mean_action``), of the actor the run
acted with (the Polyak-averaged one where its ``actor_average_tau`` > 0, recorded per row). The weights are the
same in both arms and the users the same (common random numbers), so the difference is the greedy
action alone. Rows are grouped by dataset and α (mean ± sample std over seeds, and the paired
difference). The arm that the run itself acted with must reproduce its ``true_return``: checked.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from marl_rec.files import write_json  # noqa: E402
from marl_rec.report import scan_runs, seed_std  # noqa: E402

GREEDY = ("mode", "mean")


def cql_runs(folders: list[Path]) -> list[Path]:
    """The CQL runs (every α) under ``folders`` that kept their final checkpoint."""
    return [run for run, metrics in scan_runs(folders).runs
            if str(metrics.get("algo", "")).split("[")[0] == "cql" and (run / "checkpoint.pt").exists()]


def evaluate_run(run: Path) -> dict[str, Any]:
    """The run's A/B test with each greedy action, on its final weights."""
    from omegaconf import OmegaConf

    from marl_rec.checkpoint import load_checkpoint, restore_algorithm
    from marl_rec.experiments.common import learner_spaces, simulator_factory
    from marl_rec.experiments.fusion_offline import ab_test_seed, build_algorithm
    from marl_rec.ope import simulated_ab_test

    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    metrics = json.loads((run / "metrics.json").read_text())
    factory = simulator_factory(cfg)
    obs_dim, action_spec = learner_spaces(factory())
    state = load_checkpoint(run / "checkpoint.pt").get("algorithm")
    # how the run acted, as its checkpoint recorded it (the rec preset has changed since some runs:
    # a field it lacks predates the option — tanh(μ) of the live actor)
    saved = (state or {}).get("config") or {}
    cfg.algo.greedy_action = saved.get("greedy_action", "mode")
    cfg.algo.actor_average_tau = float(saved.get("actor_average_tau", 0.0))
    algorithm, _ = build_algorithm(cfg, obs_dim, action_spec)  # the run's own config
    restore_algorithm(algorithm, state, source=str(run / "checkpoint.pt"))
    row: dict[str, Any] = {"run": str(run), "data": metrics["data"], "seed": metrics["seed"],
                           "cql_alpha": algorithm.config.cql_alpha, "run_true_return": metrics.get("true_return"),
                           "run_greedy_action": algorithm.config.greedy_action,
                           "actor_average_tau": algorithm.config.actor_average_tau}
    for greedy in GREEDY:  # only acting reads greedy_action: the same weights act either way
        algorithm.config = dataclasses.replace(algorithm.config, greedy_action=greedy)
        arm = simulated_ab_test(factory, {"learned": algorithm}, int(cfg.evaluation.ab_users_per_group),
                                seed=ab_test_seed(cfg), gamma=float(cfg.evaluation.gamma))["learned"]
        row[f"true_return_{greedy}"] = arm.undiscounted.value
    return row


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["data"], row["cql_alpha"]), []).append(row)
    out = []
    for (data, alpha), group in sorted(groups.items()):
        mode = np.array([r["true_return_mode"] for r in group])
        mean = np.array([r["true_return_mean"] for r in group])
        out.append({"data": data, "cql_alpha": alpha, "seeds": sorted(r["seed"] for r in group),
                    "mode": float(mode.mean()), "mode_std": seed_std(mode),
                    "mean": float(mean.mean()), "mean_std": seed_std(mean),
                    "difference": float((mean - mode).mean()), "difference_std": seed_std(mean - mode),
                    "mean_higher_in": int((mean > mode).sum())})
    return out


def table(summary: list[dict[str, Any]]) -> str:
    lines = ["| dataset | α | tanh(μ) | squashed mean | difference (paired) | seeds where the mean earns more |",
             "|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['data']} | {s['cql_alpha']:g} | {s['mode']:.1f} ± {s['mode_std']:.1f} | "
                     f"{s['mean']:.1f} ± {s['mean_std']:.1f} | {s['difference']:+.1f} ± {s['difference_std']:.1f} | "
                     f"{s['mean_higher_in']} of {len(s['seeds'])} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="*", type=Path, help="sweep folders holding CQL runs")
    parser.add_argument("--json", type=Path, help="write rows and summary here")
    parser.add_argument("--table", type=Path, help="print the table of a JSON written before, and stop")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(args.table.read_text())["summary"]))
        return
    if not args.folders:
        parser.error("give run folders, or --table JSON")
    torch.set_num_threads(1)
    rows = []
    for run in cql_runs(args.folders):
        row = evaluate_run(run)
        acted = row[f"true_return_{row['run_greedy_action']}"]
        # the arm the run acted with reproduces its A/B test: the same weights, users and code
        if row["run_true_return"] is not None and not np.isclose(acted, row["run_true_return"], rtol=0, atol=1e-9):
            raise SystemExit(f"{row['run']}: its own greedy action earns {acted} here, its true_return is "
                             f"{row['run_true_return']} — not the same policy or users")
        rows.append(row)
        print(f"{row['data']} α={row['cql_alpha']:g} seed {row['seed']}: tanh(μ) {row['true_return_mode']:.1f}, "
              f"mean {row['true_return_mean']:.1f}", flush=True)
    summary = summarise(rows)
    print(table(summary))
    if args.json:
        write_json(args.json, {"command": "python bench/cql_greedy_action.py " + " ".join(map(str, args.folders)),
                               "rows": rows, "summary": summary})


if __name__ == "__main__":
    main()
