"""marl-rec-report on hand-made run folders: hyperparameter variants get their own rows, and
the policy-selection table picks by each estimate and reports the regret it measures."""

from __future__ import annotations

import json
from pathlib import Path

from marl_rec.report import find_runs, report


def make_run(root: Path, name: str, overrides: list[str], **metrics: float | str | int) -> None:
    folder = root / name
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (folder / "metrics.json").write_text(json.dumps({"status": "completed", **metrics}))


def test_runs_differing_in_an_algo_override_are_separate_rows(tmp_path: Path) -> None:
    common = ["data.num_transitions=1500"]  # shared by every run: labels nothing
    for seed in (0, 1):
        make_run(tmp_path, f"a{seed}", common + [f"seed={seed}"], data="random", algo="cql", seed=seed,
                 true_return=50.0 + seed)
        make_run(tmp_path, f"b{seed}", common + [f"seed={seed}", "algo.cql_alpha=1.0"], data="random",
                 algo="cql", seed=seed, true_return=100.0 + seed)
    labels = sorted((m["data"], m["algo"]) for _, m in find_runs([tmp_path]))
    assert labels == [("random", "cql")] * 2 + [("random", "cql[cql_alpha=1.0]")] * 2
    table, _ = report([tmp_path])
    assert "| random | cql | 2 | 50.5 ± 0.5 |" in table
    assert "| random | cql[cql_alpha=1.0] | 2 | 100.5 ± 0.5 |" in table


def test_policy_selection_picks_the_highest_estimate_per_seed(tmp_path: Path) -> None:
    # seed 0: FQE ranks the worse learner first (regret 30); seed 1: it ranks the better one first
    rows = {("bcq", 0): (90.0, 70.0), ("td3", 0): (60.0, 80.0), ("bcq", 1): (94.0, 75.0), ("td3", 1): (50.0, 40.0)}
    for (algo, seed), (true_return, fqe) in rows.items():
        make_run(tmp_path, f"{algo}{seed}", [f"seed={seed}", f"algo={algo}"], data="expert", algo=algo, seed=seed,
                 true_return=true_return, ope_fqe=fqe, q_estimate=true_return)
    table, _ = report([tmp_path])
    line = next(row for row in table.splitlines()[::-1] if row.startswith("| expert | 2 |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2] == "bcq (90.0), bcq (94.0)"
    assert cells[3] == "td3, bcq (77.0, 15.0)"  # FQE: mean return (60 + 94) / 2, mean regret (30 + 0) / 2
    assert cells[4] == "–"  # no run has WDR
    assert cells[6] == "bcq, bcq (92.0, 0.0)"  # own Q = true return here
