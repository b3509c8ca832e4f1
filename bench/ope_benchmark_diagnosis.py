"""Why the OPE benchmark's FQE / DR intervals cover the truth as often as they do: error vs
interval, from one `+experiment=ope_benchmark` run folder (no new fitting).

    .venv/bin/python bench/ope_benchmark_diagnosis.py RUN_DIR --json bench/results/ope_benchmark_diagnosis.json

Per estimator with an interval (FQE, DR, WDR, conservative FQE), per target policy: the error
(estimate − A/B truth), the interval's half-width, the error in units of the estimator's
standard error (z) and of the half-width, and whether the interval still misses the truth once
the truth's own A/B sampling error is added in quadrature. Summary: coverage, median |z|, the
share of policies the estimator puts below the truth (a shared sign means bias, not noise).

The uniform logging policy is itself a target (``random``): for it the logs' own discounted
returns are an unbiased Monte Carlo estimate of its value with no distribution shift, so
FQE's error there is its function-approximation / optimisation bias alone.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf
from scipy.stats import norm

from marl_rec.experiments.common import load_dataset
from marl_rec.files import write_json

INTERVAL_ESTIMATORS = ("fqe", "dr", "wdr", "conservative_fqe")


def truth_half_widths(markdown: str) -> dict[str, float]:
    """The A/B test's 95% half-width per policy, from the run's ope_benchmark.md table."""
    return {m.group(1): float(m.group(3)) for m in re.finditer(r"^\| (\S+) \| ([-\d.]+) ± ([\d.]+) \|$", markdown, re.MULTILINE)}


def diagnose(run_dir: Path) -> dict[str, Any]:
    """The diagnosis of one run folder (its rows, its A/B table and its logs, from the cache)."""
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    dataset, info = load_dataset(cfg)
    out = diagnose_rows(json.loads((run_dir / "ope_rows.json").read_text()),
                        truth_half_widths((run_dir / "ope_benchmark.md").read_text()),
                        dataset.episode_returns(float(cfg.evaluation.gamma)))
    return {"run_dir": str(run_dir), "dataset": info["dataset"], "transitions": len(dataset), **out}


def diagnose_rows(rows: list[dict[str, Any]], truth_hw: dict[str, float], logged_returns: np.ndarray) -> dict[str, Any]:
    """``rows``: the run's ope_rows.json; ``truth_hw``: the A/B half-width per policy;
    ``logged_returns``: the discounted return of every logged episode."""
    z95 = float(norm.ppf(0.975))
    returns = np.asarray(logged_returns, dtype=np.float64)
    out: dict[str, Any] = {"episodes": len(returns), "logged_mc_value": float(returns.mean()),
                           "logged_mc_half_width": z95 * float(returns.std(ddof=1) / np.sqrt(len(returns))),
                           "estimators": {}}
    for name in INTERVAL_ESTIMATORS:
        mine = [r for r in rows if r["estimator"] == name]
        if not mine:
            continue
        policies = []
        for r in mine:
            half = (r["ci_high"] - r["ci_low"]) / 2.0
            se = r.get("std_error") or half / z95
            t_hw = truth_hw.get(r["policy"], 0.0)
            policies.append({
                "policy": r["policy"], "truth": r["truth"], "truth_half_width": t_hw, "value": r["value"],
                "error": r["value"] - r["truth"], "half_width": half, "std_error": se,
                "z": (r["value"] - r["truth"]) / se if se > 0 else float("inf"),
                "error_over_half_width": abs(r["value"] - r["truth"]) / half if half > 0 else float("inf"),
                "covered": bool(r["covered"]),
                # the truth is itself an A/B estimate: widen by its half-width in quadrature
                "covered_with_truth_noise": bool(abs(r["value"] - r["truth"]) <= np.hypot(half, t_hw)),
                # the estimator's own diagnostics (FQE's td_loss, DR's max_log_weight, ...)
                **{k: v for k, v in r.items() if k.startswith("diag_")},
            })
        errors = np.array([p["error"] for p in policies])
        out["estimators"][name] = {
            "coverage": float(np.mean([p["covered"] for p in policies])),
            "coverage_with_truth_noise": float(np.mean([p["covered_with_truth_noise"] for p in policies])),
            "median_abs_z": float(np.median(np.abs([p["z"] for p in policies]))),
            "median_error_over_half_width": float(np.median([p["error_over_half_width"] for p in policies])),
            "median_half_width": float(np.median([p["half_width"] for p in policies])),
            "median_abs_error": float(np.median(np.abs(errors))),
            "mean_error": float(errors.mean()),
            "share_below_truth": float(np.mean(errors < 0)),
            "random_policy": next((p for p in policies if p["policy"] == "random"), None),
            "policies": policies,
        }
    return out


def table(result: dict[str, Any]) -> str:
    logs = (f"logs: {result.get('dataset', '?')}, {result.get('transitions', '?')} transitions, "
            f"{result['episodes']} episodes; their own discounted return (the uniform policy's value, no shift): "
            f"{result['logged_mc_value']:.1f} ± {result['logged_mc_half_width']:.1f}")
    header = ("| estimator | coverage | + truth's A/B error | median |error| | median half-width | "
              "median |error| / half-width | mean error | share below truth | on `random` (truth) |")
    lines = [logs, "", header, "|---|---|---|---|---|---|---|---|---|"]
    for name, s in result["estimators"].items():
        rp = s["random_policy"]
        on_random = f"{rp['value']:.1f} ± {rp['half_width']:.1f} ({rp['truth']:.1f})" if rp else "–"
        lines.append(f"| {name} | {s['coverage']:.2f} | {s['coverage_with_truth_noise']:.2f} | "
                     f"{s['median_abs_error']:.1f} | {s['median_half_width']:.1f} | "
                     f"{s['median_error_over_half_width']:.1f} | {s['mean_error']:+.1f} | "
                     f"{s['share_below_truth']:.2f} | {on_random} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="an +experiment=ope_benchmark run folder")
    parser.add_argument("--json", type=Path, help="write the diagnosis here")
    parser.add_argument("--table", action="store_true", help="RUN_DIR is a JSON this script wrote: print its table")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(args.run_dir.read_text())))
        return
    result = diagnose(args.run_dir)
    if args.json:
        write_json(args.json, result)
    print(table(result))


if __name__ == "__main__":
    main()
