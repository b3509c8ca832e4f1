"""bench/headline.py: the headline table and issue #16's bars are computed from the runs as stated
(seed statistics, margins against the best constant and the behaviour policy, TD3's
overestimation, the imitation dataset's distinct actions), the reference rows come from the
runs' own A/B test, and the committed table is the one generated from the committed JSON."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bench_scripts import load

ROOT = Path(__file__).resolve().parents[2]
headline = load("headline")


def write_run(root: Path, algo: str, data: str, seed: int, true_return: float, behaviour: float,
              q: float = 50.0, value: float = 50.0) -> None:
    folder = root / f"{data}_{algo}_seed{seed}"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({
        "status": "completed", "algo": algo, "data": data, "seed": seed, "true_return": true_return,
        "behaviour_return": behaviour, "q_estimate": q, "true_value": value}))


def rows_of(tmp_path: Path, spec: list[tuple]) -> dict:
    for args in spec:
        write_run(tmp_path, *args)
    return headline.learner_rows(headline.scan_runs([tmp_path]).runs)


def test_seed_statistics_use_ddof_one_and_keep_the_seeds(tmp_path: Path) -> None:
    rows = rows_of(tmp_path, [("bcq", "random", s, r, 100.0) for s, r in enumerate([110.0, 112.0, 117.0])])
    cell = rows["bcq"]["random"]
    assert cell["seeds"] == [0, 1, 2]
    assert cell["true_return"]["mean"] == pytest.approx(113.0)
    assert cell["true_return"]["std"] == pytest.approx(np.std([110.0, 112.0, 117.0], ddof=1))
    assert headline.cell_text(cell["true_return"]) == "113.0 ± 3.6"
    assert headline.cell_text(cell["true_return"], full=4) == "113.0 ± 3.6 (3 seeds)"
    assert headline.cell_text({"mean": 90.04, "std": 0.0, "seeds": 1}) == "90.0 (1 seed)"
    assert headline.cell_text({"mean": 90.04, "std": 0.0, "seeds": 2}, diverged=1) == "90.0 ± 0.0 (+ 1 diverged)"
    assert headline.cell_text(None, diverged=3) == "diverged (3 of 3)"
    assert (headline.cell_text({"mean": 89.3, "std": 0.0, "seeds": 3}, diverged=3, at_checkpoint=3)
            == "89.3 ± 0.0 (3 diverged: at the last good checkpoint)")


def test_a_diverged_run_is_counted_not_averaged(tmp_path: Path) -> None:
    write_run(tmp_path, "td3", "imitation", 0, 100.0, 106.0)
    folder = tmp_path / "imitation_td3_seed1"
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps({"status": "diverged", "algo": "td3", "data": "imitation",
                                                     "seed": 1, "behaviour_return": 106.0}))
    cell = headline.learner_rows(headline.scan_runs([tmp_path]).runs)["td3"]["imitation"]
    assert cell["seeds"] == [0, 1] and cell["diverged_seeds"] == [1] and cell["checkpoint_seeds"] == {}
    assert cell["true_return"]["seeds"] == 1 and cell["true_return"]["mean"] == 100.0


def test_a_diverged_run_evaluated_at_its_last_good_checkpoint_is_averaged_and_named(tmp_path: Path) -> None:
    write_run(tmp_path, "td3", "imitation", 0, 100.0, 106.0)
    folder = tmp_path / "imitation_td3_seed1"
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps({
        "status": "diverged", "algo": "td3", "data": "imitation", "seed": 1, "behaviour_return": 106.0,
        "diverged_at": 3000, "evaluated_update": 2000, "true_return": 90.0, "true_value": 75.0, "q_estimate": 750.0}))
    cell = headline.learner_rows(headline.scan_runs([tmp_path]).runs)["td3"]["imitation"]
    assert cell["diverged_seeds"] == [1] and cell["checkpoint_seeds"] == {1: 2000}
    assert cell["true_return"]["seeds"] == 2 and cell["true_return"]["mean"] == 95.0
    assert cell["q_over_true"]["mean"] == pytest.approx((1.0 + 10.0) / 2)  # 50 / 50 and 750 / 75


def test_a_seed_passed_twice_is_refused(tmp_path: Path) -> None:
    write_run(tmp_path / "a", "bcq", "random", 0, 110.0, 100.0)
    write_run(tmp_path / "b", "bcq", "random", 0, 111.0, 100.0)
    with pytest.raises(SystemExit, match="more than once"):
        headline.learner_rows(headline.scan_runs([tmp_path]).runs)


def test_bars_judge_margins_against_the_seed_spread(tmp_path: Path) -> None:
    spec = []
    for data in headline.DATASETS:
        for seed, noise in enumerate([-1.0, 0.0, 1.0]):
            # BCQ: 120 ± 1 everywhere (above the constant 115 by more than its spread, above behaviour 118)
            spec.append(("bcq", data, seed, 120.0 + noise, 118.0))
            # CQL: 116 ± 2 — above 115 but not by more than its spread; below behaviour on every dataset
            spec.append(("cql", data, seed, 116.0 + 2 * noise, 118.0))
        # TD3: Q three times its true value and below behaviour on `random` only
        for seed in range(3):
            q = 150.0 if data == "random" else 60.0
            spec.append(("td3", data, seed, 90.0 if data == "random" else 125.0, 118.0, q, 50.0))
    rows = rows_of(tmp_path, spec)
    verdict = headline.judge(rows, best_constant=115.0, imitation={"distinct": 2})
    assert all(v["beats"] for v in verdict["above_best_constant"]["bcq"].values())
    assert not any(v["beats"] for v in verdict["above_best_constant"]["cql"].values())
    assert verdict["above_best_constant"]["cql"]["random"]["margin"] == pytest.approx(1.0)
    assert verdict["above_best_constant"]["cql"]["random"]["spread"] == pytest.approx(2.0)
    assert verdict["td3_datasets_meeting_bar"] == ["random"]
    assert verdict["bars"] == {"bcq_cql_above_best_constant_on_3_datasets": False,
                               "bcq_cql_at_or_above_behaviour_on_every_dataset": False,
                               "td3_overestimates_2x_below_behaviour": True,
                               "imitation_not_one_action": True}
    assert not headline.judge(rows, 115.0, {"distinct": 1})["bars"]["imitation_not_one_action"]
    q_lines = headline.q_table({"learners": rows}).splitlines()
    assert q_lines[0] == "| learner | " + " | ".join(headline.DATASETS) + " |"
    assert q_lines[2].startswith("| TD3 | 1.20 | 1.20 | 1.20 | 3.00 |")
    # a learner missing a dataset cannot meet "every dataset"
    del rows["cql"]["expert"]
    rows["cql"] = {d: rows["bcq"][d] for d in rows["cql"]}
    assert not headline.judge(rows, 115.0, None)["bars"]["bcq_cql_at_or_above_behaviour_on_every_dataset"]


def test_distinct_actions_counts_rounded_rows(tmp_path: Path) -> None:
    np.save(tmp_path / "actions.npy", np.array([[-1.0, 0.5], [-1.0, 0.5], [-1.0, 0.50001], [0.2, 0.1]], np.float32))
    found = headline.distinct_actions(str(tmp_path))
    assert found["rows"] == 4 and found["distinct"] == 2
    assert headline.distinct_actions(str(tmp_path / "missing")) is None


def test_reference_rows_run_the_constants_and_production_on_the_runs_users() -> None:
    setting = {"simulator": {"_target_": "marl_rec.envs.simulator.UserSimulator",
                             "config": {"_target_": "marl_rec.envs.simulator.SimulatorConfig", "max_requests": 4}},
               "users_per_group": 6, "seed": 11, "gamma": 0.99}
    calibration = {"default": {"constants": {"finalists": [{"action": [-1.0, -1.0, -1.0, 0.0]},
                                                           {"action": [1.0, 1.0, 1.0, 1.0]}]}}}
    first = headline.reference_rows(setting, calibration)
    assert set(first["arms"]) == {"constant [-1.0, -1.0, -1.0, 0.0]", "constant [1.0, 1.0, 1.0, 1.0]",
                                  "constant [0.0, 0.0, 0.0, 0.0]", "production"}
    constants = {n: a["return"] for n, a in first["arms"].items() if n.startswith("constant")}
    assert first["best_constant_return"] == max(constants.values())
    assert first == headline.reference_rows(setting, calibration)  # the same users: the same numbers


def test_committed_table_is_generated_from_the_committed_json() -> None:
    report = json.loads((ROOT / "bench" / "results" / "headline.json").read_text())
    for page, tables in ((ROOT / "README.md", [headline.table(report, variants=False)]),
                         (ROOT / "bench" / "results" / "README.md", [headline.table(report), headline.q_table(report)])):
        for generated in tables:
            assert generated in page.read_text(), (
                f"{page.name}'s headline tables differ from the JSON: paste the output of "
                "`python bench/headline.py --table bench/results/headline.json`")


def test_behaviour_row_leaves_out_the_deploy_loops_grown_datasets(tmp_path: Path) -> None:
    rows = rows_of(tmp_path, [("bcq", "random", 0, 110.0, 100.0), ("bcq_ee", "random", 0, 111.0, 108.0),
                              ("cql", "random", 0, 105.0, 100.0)])
    report = {"learners": rows, "references": {"arms": {"constant [0.0]": {"return": 101.0}},
                                               "best_constant": "constant [0.0]", "production_return": 120.0}}
    lines = headline.table(report).splitlines()
    assert lines[2] == "| best constant ([0.0]) | 101.0 |" and lines[3] == "| production policy (no noise) | 120.0 |"
    assert lines[4] == "| behaviour policy | 100.0 |"
    assert lines[5:] == ["| BCQ | 110.0 |", "| BCQ-EE (2 deploy rounds) | 111.0 |", "| CQL (`rec` preset, α = 5) | 105.0 |"]


def test_selected_cql_picks_the_alpha_of_highest_conservative_fqe_per_seed(tmp_path: Path) -> None:
    def run(folder: str, alpha: float | None, data: str, seed: int, true: float, estimate: float | None,
            status: str = "completed") -> None:
        path = tmp_path / folder
        path.mkdir()
        metrics = {"status": status, "algo": "cql", "data": data, "seed": seed, "behaviour_return": 100.0,
                   "true_return": true, "ope_cfqe": estimate, "q_estimate": 2 * true, "true_value": true}
        (path / "metrics.json").write_text(json.dumps(metrics))
        if alpha is not None:  # the sweep's runs carry their α as a Hydra override, the preset's do not
            (path / ".hydra").mkdir()
            (path / ".hydra" / "overrides.yaml").write_text(f"- algo.cql_alpha={alpha}\n")

    run("p0", None, "random", 0, 104.0, 80.0)
    run("a0", 1.0, "random", 0, 110.0, 85.0)      # seed 0: α = 1 has the higher estimate
    run("p1", None, "random", 1, 106.0, 84.0)
    run("a1", 1.0, "random", 1, 101.0, 83.0)      # seed 1: the preset's run has it
    run("d2", 1.0, "random", 2, 0.0, None, "diverged")
    run("p2", None, "random", 2, 103.0, 70.0)     # seed 2: the diverged α cannot be picked
    run("e0", None, "expert", 0, 110.0, 90.0)     # one α only: nothing to select
    runs = headline.scan_runs([tmp_path]).runs
    cells = headline.selected_cql_cells(runs)
    assert set(cells) == {"random"}
    cell = cells["random"]
    assert cell["picks"] == ["cql[cql_alpha=1.0]", "cql", "cql"] and cell["seeds"] == [0, 1, 2]
    assert cell["true_return"]["mean"] == pytest.approx((110.0 + 106.0 + 103.0) / 3)
    assert cell["q_over_true"]["mean"] == pytest.approx(2.0)
    rows = headline.learner_rows(runs)
    rows[headline.SELECTED_CQL] = cells
    verdict = headline.judge(rows, best_constant=105.0, imitation=None)
    assert verdict["above_best_constant"][headline.SELECTED_CQL]["random"]["margin"] == pytest.approx(1.333, abs=1e-3)
    assert "bcq_cql_selected_at_or_above_behaviour_on_every_dataset" in verdict["bars"]


def test_readme_form_of_the_table_leaves_out_the_alpha_variants(tmp_path: Path) -> None:
    rows = rows_of(tmp_path, [("bcq", "random", 0, 110.0, 100.0), ("cql", "random", 0, 105.0, 100.0)])
    rows["cql[cql_alpha=1.0]"] = rows["cql"]
    report = {"learners": rows, "references": {"arms": {"constant [0.0]": {"return": 101.0}},
                                               "best_constant": "constant [0.0]", "production_return": 120.0}}
    assert headline.table(report).splitlines()[-1] == "| *CQL α = 1.0* | 105.0 |"
    assert "α = 1.0" not in headline.table(report, variants=False)
