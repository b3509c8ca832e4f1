"""Summarise ``marl-rec -m +experiment=reward_learning seed=0,1,2`` runs over their data seeds, with
issue #17's bars checked from the numbers.

    .venv/bin/python bench/reward_learning_seeds.py SWEEP_DIR... --out bench/results/issue17/X.json
    .venv/bin/python bench/reward_learning_seeds.py --table bench/results/issue17/X.json

Reads every ``metrics.json`` under the folders (one per data seed; a run's rows are
``irl/experiments/reward_learning.py``'s), and writes per method the per-seed values and their
mean ± std (the sample std over data seeds, ddof = 1), plus:

- ``preference_bars``: Pearson with the true utility on held-out users ≥ 0.85 for each query
  selection (mean, and the smallest single model over data × preference seeds); disagreement
  vs uniform at equal budget (the per-data-seed difference of the means, its mean and std, and
  in how many of the data × preference seed pairs disagreement is ahead);
- ``retrain_bars`` (when retrain rows exist): each learned reward's ratio to the true-utility
  policy ≥ 0.9; the shuffled control below each learned reward by more than the seed spread (the
  std over data seeds of the paired per-seed gap); each learned reward above the
  engagement-trained policy on true return, by more than the seed spread.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from marl_rec.report import seed_std

ROOT = Path(__file__).resolve().parents[1]
PREFERENCE_BAR = 0.85
RATIO_BAR = 0.9


def load_runs(folders: list[Path]) -> dict[int, dict[str, dict[str, Any]]]:
    """{data seed: {method: row}} from every metrics.json under ``folders``."""
    runs: dict[int, dict[str, dict[str, Any]]] = {}
    for folder in folders:
        for file in sorted(Path(folder).rglob("metrics.json")):
            payload = json.loads(file.read_text())
            if payload.get("task") != "reward_learning":
                continue
            overrides = file.parent / ".hydra" / "overrides.yaml"
            seed = None
            if overrides.is_file():
                for line in overrides.read_text().splitlines():
                    if line.strip().startswith("- seed="):
                        seed = int(line.split("=", 1)[1])
            if seed is None:
                raise ValueError(f"{file}: cannot tell its seed (no '- seed=' in {overrides})")
            if seed in runs:
                raise ValueError(f"two runs of data seed {seed} under {folders}")
            runs[seed] = {row["method"]: row for row in payload["rows"]}
    if not runs:
        raise ValueError(f"no reward_learning metrics.json under {folders}")
    return runs


def _stats(values: list[float]) -> dict[str, Any]:
    return {"mean": float(np.mean(values)), "std": seed_std(values), "per_seed": [float(v) for v in values]}


def summarise(runs: dict[int, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    seeds = sorted(runs)
    methods = [m for m in runs[seeds[0]] if all(m in runs[s] for s in seeds)]
    keys = ("pearson", "spearman", "preference_accuracy", "epic_to_reference", "true_return", "ratio")
    table = {m: {k: _stats([runs[s][m][k] for s in seeds]) for k in keys
                 if all(isinstance(runs[s][m].get(k), (int, float)) for s in seeds)} for m in methods}
    out: dict[str, Any] = {"data_seeds": seeds, "methods": table}
    pref = {sel: f"preferences/{sel}" for sel in ("uniform", "disagreement") if f"preferences/{sel}" in table}
    if pref:
        bars: dict[str, Any] = {}
        for sel, method in pref.items():
            singles = [p for s in seeds for p in runs[s][method].get("pearson_per_seed", [runs[s][method]["pearson"]])]
            bars[f"{sel}_pearson_mean"] = table[method]["pearson"]["mean"]
            bars[f"{sel}_pearson_min_single_model"] = float(min(singles))
            bars[f"{sel}_meets_{PREFERENCE_BAR}"] = bool(table[method]["pearson"]["mean"] >= PREFERENCE_BAR)
        if len(pref) == 2:
            gaps = [runs[s][pref["disagreement"]]["pearson"] - runs[s][pref["uniform"]]["pearson"] for s in seeds]
            pairs = [(d, u) for s in seeds for d, u in zip(runs[s][pref["disagreement"]]["pearson_per_seed"],
                                                            runs[s][pref["uniform"]]["pearson_per_seed"])]
            bars["disagreement_minus_uniform"] = _stats(gaps)
            bars["disagreement_ahead_pairs"] = f"{sum(d > u for d, u in pairs)} of {len(pairs)} (ties {sum(d == u for d, u in pairs)})"
            bars["disagreement_beats_uniform"] = bool(np.mean(gaps) > 0)
            bars["disagreement_beats_uniform_by_more_than_spread"] = bool(np.mean(gaps) > seed_std(gaps))
        out["preference_bars"] = bars
    learned = [m for m in methods if m.startswith("retrain/") and m.split("/", 1)[1].split("/")[0] in
               ("preferences", "airl")]
    if learned and "retrain/true_utility" in table:
        bars = {}

        def gap(a: str, b: str) -> dict[str, Any]:
            return _stats([runs[s][a]["true_return"] - runs[s][b]["true_return"] for s in seeds])

        for method in learned:
            name = method.split("/", 1)[1]
            bars[f"{name}_ratio"] = table[method]["ratio"]["mean"]
            bars[f"{name}_meets_ratio_{RATIO_BAR}"] = bool(table[method]["ratio"]["mean"] >= RATIO_BAR)
            for control in ("shuffled", "engagement"):
                if f"retrain/{control}" in table:
                    g = gap(method, f"retrain/{control}")
                    bars[f"{name}_minus_{control}"] = g
                    bars[f"{name}_beats_{control}_by_more_than_spread"] = bool(g["mean"] > g["std"])
        if "retrain/shuffled" in table:
            g = gap("retrain/true_utility", "retrain/shuffled")
            bars["true_utility_minus_shuffled"] = g
        out["retrain_bars"] = bars
    return out


def markdown(summary: dict[str, Any]) -> str:
    """The per-method table (mean ± std over data seeds, per-seed values) and the bars."""
    lines = [f"data seeds {summary['data_seeds']}", "",
             "| method | Pearson | preference accuracy | EPIC to reference | true return | ratio |", "|---|---|---|---|---|---|"]

    def cell(entry: dict[str, Any] | None) -> str:
        if entry is None:
            return ""
        per = ", ".join(f"{v:.3f}" for v in entry["per_seed"])
        return f"{entry['mean']:.3f} ± {entry['std']:.3f} ({per})"

    for method, stats in summary["methods"].items():
        lines.append(f"| {method} | {cell(stats.get('pearson'))} | {cell(stats.get('preference_accuracy'))} | "
                     f"{cell(stats.get('epic_to_reference'))} | {cell(stats.get('true_return'))} | "
                     f"{cell(stats.get('ratio'))} |")
    def show(value: Any) -> str:
        if isinstance(value, dict):
            return cell(value)
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    for name in ("preference_bars", "retrain_bars"):
        if name in summary:
            lines += ["", f"{name}:"] + [f"- {k}: {show(v)}" for k, v in summary[name].items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="*", type=Path, help="sweep or run folders of +experiment=reward_learning")
    parser.add_argument("--out", type=Path, help="the summary JSON to write")
    parser.add_argument("--table", type=Path, help="print the markdown of this summary JSON and stop")
    parser.add_argument("--command", default="", help="the sweep command, recorded in the JSON")
    args = parser.parse_args()
    if args.table is not None:
        print(markdown(json.loads(args.table.read_text())))
        return
    if not args.folders or args.out is None:
        parser.error("give the sweep folders and --out (or --table JSON)")
    sys.path.insert(0, str(ROOT))
    from marl_rec.files import write_json

    summary = {"command": args.command, **summarise(load_runs(args.folders))}
    write_json(args.out, summary)
    print(markdown(summary))


if __name__ == "__main__":
    main()
