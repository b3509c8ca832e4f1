"""The headline study's table and issue #16's bars on it, from the runs' ``metrics.json``.

    python bench/headline.py runs/fusion_offline runs/cql_alpha --json bench/results/headline.json
    python bench/headline.py --table bench/results/headline.json    # the markdown table only

Reads every run of the sweeps (``marl_rec.report.scan_runs``: the learner rows, CQL α variants
labelled ``cql[cql_alpha=1.0]``) and adds reference rows measured here on the runs' own
simulated A/B test — the same simulator config, users per arm and seed, so the same users
(common random numbers) as every learner's ``true_return``:

- the best constant: the finalists of ``bench/calibration.py``'s screen of 81 constants
  (``bench/results/calibration.json``) and the neutral a = 0, each run here; the best of them
  on these users is the row (picking the best on the evaluation users favours the constant);
- the production policy without noise (``ProductionPolicy``; the ``expert`` pipeline logs it
  with σ = 0.1 noise).

The bars (issue #16, item 6) are judged from the same numbers: BCQ and CQL above the best
constant by more than their seed spread (std over seeds, ddof = 1) on ≥ 3 datasets; BCQ and CQL
at or above the behaviour policy on every dataset (every pipeline's logging policy acts on what
the learner observes, or on nothing); TD3's Q ≥ 2× its true value with a return below the
behaviour policy on ≥ 1 dataset; the ``imitation`` dataset has more than one distinct action.
Given the CQL α sweep too (``+experiment=cql_alpha``), a row "CQL (α picked per seed by
conservative FQE)" takes, per dataset and seed, the CQL run of every α with the highest
conservative-FQE estimate (no simulator involved), and the two BCQ/CQL bars are judged again
with it (``..._selected_...`` in ``bars``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from marl_rec.files import write_json  # noqa: E402
from marl_rec.report import scan_runs, seed_std  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DATASETS = ("final_buffer", "concurrent", "imitation", "random", "expert")
LEARNERS = {"ddpg": "DDPG", "td3": "TD3", "bcq": "BCQ", "bcq_ee": "BCQ-EE (2 deploy rounds)",
            "bcq_re": "BCQ-RE (random exploration only)", "cql": "CQL (`rec` preset, α = 5)", "uwac": "UWAC"}
CONSERVATIVE = ("bcq", "cql")
# CQL with its α picked per dataset and seed by an OPE estimate among the sweep's α (needs the
# cql_alpha sweep): conservative FQE, the estimator whose picks were nearest the best learner
SELECTED_CQL, SELECTOR = "cql_selected", "ope_cfqe"
LEARNERS[SELECTED_CQL] = "CQL (α picked per seed by conservative FQE)"
# BCQ-EE/RE deploy and log again: their runs' behaviour return is that of the grown dataset, not
# of the pipeline's logs, so the table's behaviour row leaves them out
DEPLOY_LOOP = ("bcq_ee", "bcq_re")


def seed_stats(values: list[float]) -> dict[str, float]:
    """Mean, std over seeds (``marl_rec.report.seed_std``: ddof = 1) and the number of seeds."""
    array = np.asarray(values, dtype=np.float64)
    return {"mean": float(array.mean()), "std": seed_std(array), "seeds": len(array)}


def learner_rows(runs: list[tuple[Path, dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{algo label: {dataset: stats of true_return, behaviour_return, Q / true value}} over seeds."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for _, metrics in runs:
        if metrics.get("status") in ("completed", "diverged"):
            grouped.setdefault((metrics["algo"], metrics["data"]), []).append(metrics)
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for (algo, data), runs_here in sorted(grouped.items()):
        seeds = sorted(m["seed"] for m in runs_here)
        if len(set(seeds)) != len(seeds):
            raise SystemExit(f"headline: {algo} on {data} has seed(s) {seeds} more than once: pass each sweep once")
        rows.setdefault(algo, {})[data] = cell_of(runs_here)
    return rows


def cell_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One table cell from its runs' metrics: seeds, diverged seeds, and the stats over seeds of
    behaviour return, true return and Q / true value. A run whose training diverged is averaged in
    where it was evaluated at its last good checkpoint (``evaluated_update``, listed in
    ``checkpoint_seeds``), else counted only (no checkpoint before it: no evaluation)."""
    members = [m for m in runs if "true_return" in m and (m.get("status") == "completed" or (
        m.get("status") == "diverged" and "evaluated_update" in m))]
    cell: dict[str, Any] = {"seeds": sorted(m["seed"] for m in runs),
                            "diverged_seeds": [m["seed"] for m in runs if m.get("status") == "diverged"],
                            "checkpoint_seeds": {m["seed"]: m["evaluated_update"] for m in members
                                                 if m.get("status") == "diverged"},
                            "behaviour_return": seed_stats([m["behaviour_return"] for m in runs])}
    if members:
        cell["true_return"] = seed_stats([m["true_return"] for m in members])
    ratios = [m["q_estimate"] / m["true_value"] for m in members
              if m.get("q_estimate") is not None and m.get("true_value", 0) > 0]
    if ratios:
        cell["q_over_true"] = seed_stats(ratios)
    return cell


def selected_cql_cells(runs: list[tuple[Path, dict[str, Any]]], key: str = SELECTOR) -> dict[str, dict[str, Any]]:
    """{dataset: cell} of CQL with α chosen, per dataset and seed, as the run of highest ``key``
    among that seed's CQL runs (``cql`` and its ``cql[cql_alpha=...]`` variants) — the choice made
    without the simulator. Only where a seed has more than one α; runs without the estimate
    (diverged) cannot be picked. The cell records the picks."""
    by_cell: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for _, metrics in runs:
        if metrics["algo"] == "cql" or metrics["algo"].startswith("cql["):
            by_cell.setdefault((metrics["data"], metrics["seed"]), []).append(metrics)
    picked: dict[str, list[dict[str, Any]]] = {}
    for (data, _), members in sorted(by_cell.items()):
        scored = [m for m in members if m.get("status") == "completed" and m.get(key) is not None]
        if len(members) > 1 and scored:
            picked.setdefault(data, []).append(max(scored, key=lambda m: m[key]))
    return {data: {**cell_of(picks), "picks": [m["algo"] for m in picks], "selector": key}
            for data, picks in picked.items()}


def evaluation_setting(run: Path) -> dict[str, Any]:
    """The simulator node and A/B settings of a run (its ``.hydra/config.yaml``)."""
    from omegaconf import OmegaConf

    from marl_rec.experiments.fusion_offline import ab_test_seed

    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    return {"simulator": OmegaConf.to_container(cfg.simulator, resolve=True),
            "users_per_group": int(cfg.evaluation.ab_users_per_group),
            "seed": ab_test_seed(cfg), "gamma": float(cfg.evaluation.gamma)}


def reference_rows(setting: dict[str, Any], calibration: dict[str, Any]) -> dict[str, Any]:
    """The best constant (of the calibration's finalists and a = 0) and the production policy on
    the runs' A/B users."""
    from hydra.utils import instantiate

    from marl_rec.agents.policies import ConstantPolicy, ProductionPolicy
    from marl_rec.ope import simulated_ab_test

    constants = [tuple(f["action"]) for f in calibration["default"]["constants"]["finalists"]] + [(0.0,) * 4]
    arms: dict[str, Any] = {f"constant {list(a)}": ConstantPolicy(np.array(a)) for a in dict.fromkeys(constants)}
    arms["production"] = ProductionPolicy()
    results = simulated_ab_test(lambda: instantiate(setting["simulator"]), arms, setting["users_per_group"],
                                seed=setting["seed"], gamma=setting["gamma"])
    values = {name: {"return": arm.undiscounted.value, "ci_low": arm.undiscounted.ci_low,
                     "ci_high": arm.undiscounted.ci_high, "session_length": float(arm.session_lengths.mean())}
              for name, arm in results.items()}
    best = max((name for name in values if name.startswith("constant")), key=lambda n: values[n]["return"])
    return {"arms": values, "best_constant": best, "best_constant_return": values[best]["return"],
            "production_return": values["production"]["return"]}


def distinct_actions(dataset_path: str | None) -> dict[str, Any] | None:
    """How many distinct actions (rounded to 1e-3) a cached dataset logged, and their spread."""
    if not dataset_path or not (Path(dataset_path) / "actions.npy").exists():
        return None
    actions = np.load(Path(dataset_path) / "actions.npy")
    return {"rows": int(len(actions)), "distinct": int(len(np.unique(actions.round(3), axis=0))),
            "std_per_entry": [round(float(s), 4) for s in actions.std(0)],
            "mean_per_entry": [round(float(m), 4) for m in actions.mean(0)]}


def judge(rows: dict[str, dict[str, dict[str, Any]]], best_constant: float,
          imitation: dict[str, Any] | None) -> dict[str, Any]:
    """Issue #16's bars on the study (see the module docstring)."""
    above_constant, at_behaviour = {}, {}
    for algo in CONSERVATIVE + ((SELECTED_CQL,) if SELECTED_CQL in rows else ()):
        above_constant[algo], at_behaviour[algo] = {}, {}
        for data, cell in rows.get(algo, {}).items():
            if "true_return" not in cell:  # every seed diverged: no return to compare
                above_constant[algo][data] = {"margin": None, "spread": None, "beats": False}
                at_behaviour[algo][data] = {"margin": None, "spread": None, "at_or_above": False}
                continue
            mean, std = cell["true_return"]["mean"], cell["true_return"]["std"]
            above_constant[algo][data] = {"margin": mean - best_constant, "spread": std,
                                          "beats": bool(mean - best_constant > std)}
            behaviour = cell["behaviour_return"]["mean"]
            at_behaviour[algo][data] = {"margin": mean - behaviour, "spread": std, "at_or_above": bool(mean >= behaviour)}
    td3 = {data: {"q_over_true": cell.get("q_over_true", {}).get("mean"),
                  "return": cell["true_return"]["mean"], "behaviour": cell["behaviour_return"]["mean"],
                  "diverged_seeds": cell["diverged_seeds"]}
           for data, cell in rows.get("td3", {}).items() if "true_return" in cell}
    td3_hits = [d for d, v in td3.items() if v["q_over_true"] is not None and v["q_over_true"] >= 2.0
                and v["return"] < v["behaviour"]]
    def above_on_3(learners: tuple[str, ...]) -> bool:
        return all(sum(v["beats"] for v in above_constant[a].values()) >= 3 for a in learners)

    def at_behaviour_everywhere(learners: tuple[str, ...]) -> bool:
        return all(len(at_behaviour[a]) == len(DATASETS) and all(v["at_or_above"] for v in at_behaviour[a].values())
                   for a in learners)

    bars = {
        "bcq_cql_above_best_constant_on_3_datasets": above_on_3(CONSERVATIVE),
        "bcq_cql_at_or_above_behaviour_on_every_dataset": at_behaviour_everywhere(CONSERVATIVE),
        "td3_overestimates_2x_below_behaviour": bool(td3_hits),
        "imitation_not_one_action": imitation is not None and imitation["distinct"] > 1,
    }
    if SELECTED_CQL in rows:  # the same two bars with CQL's α chosen by OPE
        selected = ("bcq", SELECTED_CQL)
        bars["bcq_cql_selected_above_best_constant_on_3_datasets"] = above_on_3(selected)
        bars["bcq_cql_selected_at_or_above_behaviour_on_every_dataset"] = at_behaviour_everywhere(selected)
    return {"bars": bars, "above_best_constant": above_constant, "at_or_above_behaviour": at_behaviour,
            "td3": td3, "td3_datasets_meeting_bar": td3_hits, "imitation_actions": imitation}


def cell_text(stats: dict[str, float] | None, full: int = 3, diverged: int = 0, at_checkpoint: int = 0) -> str:
    """``mean ± std``; a cell with fewer than ``full`` seeds says how many it has, how many diverged
    with no evaluation (not averaged), and how many of its seeds diverged and were evaluated at
    their last good checkpoint (averaged in)."""
    unevaluated = diverged - at_checkpoint
    if stats is None:
        return f"diverged ({diverged} of {diverged})" if diverged else "–"
    text = f"{stats['mean']:.1f} ± {stats['std']:.1f}" if stats["seeds"] > 1 else f"{stats['mean']:.1f}"
    notes = [f"{stats['seeds']} seed{'s' if stats['seeds'] > 1 else ''}"] if stats["seeds"] + unevaluated < full else []
    notes += [f"+ {unevaluated} diverged"] if unevaluated else []
    notes += [f"{at_checkpoint} diverged: at the last good checkpoint"] if at_checkpoint else []
    return f"{text} ({', '.join(notes)})" if notes else text


def table(report: dict[str, Any], variants: bool = True) -> str:
    """The markdown table: reference rows, then the learners (CQL's α variants in italics; left
    out with ``variants=False``, the README's form)."""
    rows, refs = report["learners"], report["references"]
    datasets = [d for d in DATASETS if any(d in cells for cells in rows.values())]
    lines = ["| learner | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
    constant = refs["arms"][refs["best_constant"]]["return"]
    lines.append(f"| best constant ({refs['best_constant'].removeprefix('constant ')}) | "
                 + " | ".join(f"{constant:.1f}" for _ in datasets) + " |")
    lines.append("| production policy (no noise) | " + " | ".join(f"{refs['production_return']:.1f}" for _ in datasets)
                 + " |")
    behaviour = []
    for data in datasets:
        cells = [cells[data] for algo, cells in rows.items() if data in cells and algo not in DEPLOY_LOOP]
        behaviour.append(f"{np.mean([c['behaviour_return']['mean'] for c in cells]):.1f}" if cells else "–")
    lines.append("| behaviour policy | " + " | ".join(behaviour) + " |")
    ordered = [a for a in LEARNERS if a in rows] + (sorted(a for a in rows if a not in LEARNERS) if variants else [])
    full = max(len(cell["seeds"]) for cells in rows.values() for cell in cells.values())
    for algo in ordered:
        label = LEARNERS.get(algo, f"*{algo.replace('cql[cql_alpha=', 'CQL α = ').rstrip(']')}*")
        cells = [rows[algo].get(d, {}) for d in datasets]
        lines.append(f"| {label} | " + " | ".join(
            cell_text(c.get("true_return"), full, len(c.get("diverged_seeds", [])), len(c.get("checkpoint_seeds", {})))
            if c else "–" for c in cells) + " |")
    return "\n".join(lines)


def q_table(report: dict[str, Any]) -> str:
    """Q estimate / true discounted value per learner and dataset, mean over the seeds that have it."""
    rows = report["learners"]
    datasets = [d for d in DATASETS if any(d in cells for cells in rows.values())]
    lines = ["| learner | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
    for algo in [a for a in LEARNERS if a in rows]:
        cells = [rows[algo].get(d, {}).get("q_over_true") for d in datasets]
        lines.append(f"| {LEARNERS[algo]} | " + " | ".join(f"{c['mean']:.2f}" if c else "–" for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="*", type=Path, help="the sweeps' folders (runs/fusion_offline, ...)")
    parser.add_argument("--json", type=Path, help="write the report here (bench/results/headline.json)")
    parser.add_argument("--table", type=Path, help="print the table of a report written before, and stop")
    parser.add_argument("--calibration", type=Path, default=RESULTS / "calibration.json")
    args = parser.parse_args()
    if args.table is not None:
        report = json.loads(args.table.read_text())
        print(table(report) + "\n\nQ estimate / true value:\n\n" + q_table(report)
              + "\n\nREADME.md's form (no α variants):\n\n" + table(report, variants=False))
        return
    if not args.folders:
        parser.error("give the sweeps' folders (or --table REPORT)")
    start = time.perf_counter()
    scan = scan_runs(args.folders)
    if not scan.runs:
        raise SystemExit(f"headline: no runs under {[str(f) for f in args.folders]}")
    rows = learner_rows(scan.runs)
    if selected := selected_cql_cells(scan.runs):
        rows[SELECTED_CQL] = selected
    settings = {json.dumps(evaluation_setting(run), sort_keys=True) for run, _ in scan.runs}
    if len(settings) != 1:
        raise SystemExit("headline: the runs were evaluated in different simulators or A/B tests; "
                         "pass sweeps of one study")
    setting = json.loads(settings.pop())
    references = reference_rows(setting, json.loads(args.calibration.read_text()))
    imitation_runs = [m for _, m in scan.runs if m["data"] == "imitation"]
    imitation = distinct_actions(imitation_runs[0].get("dataset_path")) if imitation_runs else None
    report = {"command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
              "runs": len(scan.runs), "incomplete": [str(run) for run, _ in scan.incomplete],
              "evaluation": {k: v for k, v in setting.items() if k != "simulator"},
              "references": references, "learners": rows,
              **judge(rows, references["best_constant_return"], imitation),
              "seconds": round(time.perf_counter() - start, 1)}
    print(table(report) + "\n\nQ estimate / true value:\n\n" + q_table(report))
    print(json.dumps(report["bars"], indent=1))
    if args.json is not None:
        write_json(args.json, report)


if __name__ == "__main__":
    main()
