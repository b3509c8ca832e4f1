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
    assert "| random | cql | 2 | 50.5 ± 0.7 |" in table  # std over seeds with ddof = 1: 0.707
    assert "| random | cql[cql_alpha=1.0] | 2 | 100.5 ± 0.7 |" in table


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


def _history(steps: int, **curves: list) -> dict:
    base = {"step": list(range(1, steps + 1)), "eval/return": [10.0] * steps,
            "eval/discounted_return": [9.0] * steps, "eval/q_estimate": [8.0] * steps}
    return {"eval": {**base, **curves}}


def test_broken_runs_are_named_and_skipped_and_nothing_stops_the_report(tmp_path: Path) -> None:
    for seed in (0, 1):  # two good runs of (random, cql)
        make_run(tmp_path, f"good{seed}", [f"seed={seed}"], data="random", algo="cql", seed=seed, true_return=50.0,
                 behaviour_return=40.0)
        (tmp_path / f"good{seed}" / "eval_history.json").write_text(json.dumps(_history(3)))
    killed = tmp_path / "killed"  # a run killed before metrics.json: Hydra's config is all there is
    (killed / ".hydra").mkdir(parents=True)
    (killed / ".hydra" / "config.yaml").write_text(
        "task: marl_rec.experiments.fusion_offline.run\nseed: 2\ndata:\n  name: random\nalgo:\n  name: cql\n")
    (killed / ".hydra" / "overrides.yaml").write_text("- seed=2\n")
    make_run(tmp_path, "latin", [], data="random", algo="td3")
    (tmp_path / "latin" / "metrics.json").write_bytes('{"data": "caf\u00e9"}'.encode("latin-1"))
    make_run(tmp_path, "badseed", [], data="random", algo="td3", seed="zero", true_return=1.0)
    make_run(tmp_path, "listy", [], data="random", algo="td3")
    (tmp_path / "listy" / "metrics.json").write_text("[1, 2]")
    make_run(tmp_path, "badyaml", [], data="random", algo="bc", seed=0, true_return=30.0)
    (tmp_path / "badyaml" / ".hydra" / "overrides.yaml").write_text("- [unclosed\n")
    curves = {"truncated": json.dumps(_history(3))[:40], "noreturn": json.dumps({"eval": {"step": [1, 2]}}),
              "ragged": json.dumps(_history(3, **{"eval/q_estimate": [1.0]}))}
    for seed, (name, text) in enumerate(curves.items()):
        make_run(tmp_path, name, [f"seed={seed}"], data="expert", algo="bcq", seed=seed, true_return=70.0,
                 behaviour_return=60.0, q_estimate=80.0, true_value=60.0)
        (tmp_path / name / "eval_history.json").write_text(text)

    table, written = report([tmp_path])
    assert "| random | cql | 2 (+1 incomplete) | 50.0 ± 0.0 |" in table
    assert "| random | bc | 1 | 30.0 |" in table  # read without its overrides, still reported
    assert "| expert | bcq | 3 | 70.0 ± 0.0 |" in table  # curves unreadable, final figures fine
    notes = table[table.index("Runs left out or read in part"):]
    assert "`killed`: incomplete (no metrics.json" in notes
    assert "`latin`: left out: metrics.json is not UTF-8 text" in notes
    assert "`badseed`: left out: metrics.json: seed 'zero' is not an integer" in notes
    assert "`listy`: left out: metrics.json holds a list, not an object" in notes
    assert "`badyaml`: labelled without its overrides: overrides.yaml is not valid YAML" in notes
    assert "`truncated`: no learning curve: eval_history.json is not valid JSON" in notes
    assert "`noreturn`: no learning curve: eval_history.json has no list 'eval/return'" in notes
    assert "`ragged`: no Q-vs-truth curve: eval_history.json: 'eval/q_estimate' has 1 points, 'step' has 3" in notes
    assert (tmp_path / "report.md").read_text() == table + "\n"
    assert {p.name for p in written} >= {"report.md", "learning_curves.png", "q_vs_true.png"}


def test_a_diverged_run_evaluated_at_its_checkpoint_is_in_the_table_not_a_selection_candidate(tmp_path: Path) -> None:
    make_run(tmp_path, "bcq0", ["seed=0", "algo=bcq"], data="imitation", algo="bcq", seed=0, true_return=100.0,
             ope_fqe=80.0, q_estimate=90.0)
    make_run(tmp_path, "td30", ["seed=0", "algo=td3"], data="imitation", algo="td3", seed=0, status="diverged",
             diverged_at=3000, evaluated_update=2000, true_return=84.0, ope_fqe=1e5, q_estimate=2700.0)
    table, _ = report([tmp_path])
    assert "| imitation | td3 | 1 (1 diverged) | 84.0 |" in table
    line = next(row for row in table.splitlines()[::-1] if row.startswith("| imitation | 1 |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2] == "bcq (100.0)" and cells[3] == "bcq (100.0, 0.0)"  # FQE would pick the diverged TD3
