"""The performance tables of bench/results/README.md, printed from the benchmarks' JSON.

    python bench/tables.py updates bench/results/update_throughput.json      # ours vs d3rlpy
    python bench/tables.py simulator bench/results/simulator_throughput.json  # simulator throughput
    python bench/tables.py parallel bench/results/parallel_collection.json    # 2 worker processes vs 1

``bench/updates.py --json``, ``bench/simulator.py --json`` and ``bench/parallel_collection.py``
write the figures; this script turns them into the markdown tables that the findings page shows,
so a figure there is never typed by hand (tests/bench/test_tables.py checks the page's tables against the committed JSON).
After rerunning a benchmark, paste the printed table over the old one.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

# bench/updates.py's algorithm names -> the table's labels, in the table's order (bc+critic, an
# information row without a target, stays in the JSON and the script's own printout)
UPDATE_LABELS = {"bc": "BC", "td3": "TD3", "bcq": "BCQ (10 sampled actions both sides)", "cql": "CQL",
                 "fqe": "FQE (our whole `fit_fqe`, setup included)"}
# bench/simulator.py's figure names -> the table's labels, in the table's order
SIMULATOR_LABELS = {"core B=1": "batched core, B = 1", "core B=256": "batched core, B = 256",
                    "core B=4096": "batched core, B = 4,096",
                    "core B=4096, 100 candidates": "batched core, B = 4,096, 100 candidates",
                    "random draws alone, B=4096": "its random draws alone (the stream's ceiling), B = 4,096",
                    "random draws alone, B=4096, 100 candidates":
                        "its random draws alone (the stream's ceiling), B = 4,096, 100 candidates",
                    "FusionRankingEnv (PettingZoo)": "`FusionRankingEnv` through the PettingZoo API"}


def _verdict(value: float, target: float | None, text: str) -> str:
    if target is None:
        return "–"
    return f"≥ {text}" + ("" if value >= target else " (not met)")


def update_table(report: dict[str, Any]) -> str:
    """Ours / d3rlpy per algorithm: median ratio over rounds (range over rounds), and the target."""
    rows = {row["algorithm"]: row for row in report["rows"]}
    lines = ["| algorithm | ours / d3rlpy | target |", "|---|---|---|"]
    for name, label in UPDATE_LABELS.items():
        if name in rows:
            row = rows[name]
            ratio = f"{row['ratio']:.2f}× ({row['ratio_low']:.2f}–{row['ratio_high']:.2f})"
            target = row["target"]
            lines.append(f"| {label} | {ratio} | {_verdict(row['ratio'], target, f'{target:.1f}' if target else '')} |")
    return "\n".join(lines)


def simulator_table(report: dict[str, Any]) -> str:
    """Throughput by process CPU time (best round) per workload, and the target of issue #19."""
    from simulator import TARGETS  # bench/simulator.py: one place for the targets

    figures = {figure["name"]: figure for figure in report["figures"]}
    lines = ["| workload | user-steps/s (CPU time) | target (#19) |", "|---|---|---|"]
    for name, label in SIMULATOR_LABELS.items():
        if name in figures:
            figure, target = figures[name], TARGETS.get(name)
            unit = "" if figure["unit"] == "user-steps/s" else f" {figure['unit']}"
            lines.append(f"| {label} | {figure['cpu']:,.0f}{unit} | "
                         f"{_verdict(figure['cpu'], target, f'{target:,.0f}' if target else '')} |")
    return "\n".join(lines)


def parallel_table(report: dict[str, Any]) -> str:
    """2 workers vs 1 (bench/parallel_collection.py): wall clock, the target's measure, and CPU time."""
    labels = {"collection": f"collection, `expert` pipeline, {report['transitions']:,} transitions",
              "ab_test": f"A/B test, 2 arms × {report['ab_users_per_arm']:,} users ({report.get('ab_arms', '')})"}
    header = ("| workload | 1 worker | 2 workers | speed-up (wall clock) | CPU overhead | "
              "speed-up with a core per process | target |")
    lines = [header, "|---|---|---|---|---|---|---|"]
    for name, label in labels.items():
        row, target = report["rows"][name], report["target"]
        lines.append(f"| {label} | {statistics.median(row['seconds_1_worker']):.2f} s | "
                     f"{statistics.median(row['seconds_2_workers']):.2f} s | {row['speedup_median']:.2f}× "
                     f"({row['speedup_min']:.2f}–{row['speedup_max']:.2f}) | {100 * row['cpu_overhead']:+.1f}% | "
                     f"{row['idle_speedup_estimate']:.2f}× | {_verdict(row['speedup_median'], target, f'{target:.1f}')} |")
    return "\n".join(lines)


TABLES = {"updates": update_table, "simulator": simulator_table, "parallel": parallel_table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("table", choices=sorted(TABLES))
    parser.add_argument("json", type=Path, help="the benchmark's JSON (bench/results/*.json)")
    args = parser.parse_args()
    print(TABLES[args.table](json.loads(args.json.read_text())))


if __name__ == "__main__":
    main()
