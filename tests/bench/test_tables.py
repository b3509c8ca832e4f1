"""bench/tables.py: the performance tables of bench/results/README.md are the ones generated from
the committed JSON (bench/results/update_throughput.json, simulator_throughput.json), and the
generator marks a missed target."""
import json
import sys
from pathlib import Path

import pytest
from bench_scripts import load

ROOT = Path(__file__).resolve().parents[2]
tables = load("tables")
sys.path.insert(0, str(ROOT / "bench"))  # tables.simulator_table reads bench/simulator.py's targets


@pytest.mark.parametrize("name, json_name", [("updates", "update_throughput.json"),
                                             ("simulator", "simulator_throughput.json"),
                                             ("parallel", "parallel_collection.json")])
def test_the_findings_page_shows_the_table_generated_from_the_committed_json(name: str, json_name: str) -> None:
    table = tables.TABLES[name](json.loads((ROOT / "bench" / "results" / json_name).read_text()))
    page = (ROOT / "bench" / "results" / "README.md").read_text()
    assert table in page, (f"bench/results/README.md's {name} table differs from the JSON: paste the output of "
                           f"`python bench/tables.py {name} bench/results/{json_name}` over it")


def update_row(name: str, ratio: float, target: float | None) -> dict:
    return {"algorithm": name, "ratio": ratio, "ratio_low": ratio - 0.1, "ratio_high": ratio + 0.2, "target": target}


def test_update_table_marks_a_missed_target_and_keeps_its_order() -> None:
    report = {"rows": [update_row("cql", 1.04, 1.1), update_row("bc+critic", 1.0, None), update_row("bc", 2.5, 1.3)]}
    assert tables.update_table(report).splitlines()[2:] == [
        "| BC | 2.50× (2.40–2.70) | ≥ 1.3 |",
        "| CQL | 1.04× (0.94–1.24) | ≥ 1.1 (not met) |"]


def test_simulator_table_gives_units_other_than_user_steps_and_targets_from_the_benchmark() -> None:
    report = {"figures": [{"name": "FusionRankingEnv (PettingZoo)", "unit": "env steps/s", "cpu": 12_345.6},
                          {"name": "core B=4096", "unit": "user-steps/s", "cpu": 1_200_000.0},
                          {"name": "core B=1", "unit": "user-steps/s", "cpu": 4_000.4}]}
    assert tables.simulator_table(report).splitlines()[2:] == [
        "| batched core, B = 1 | 4,000 | – |",
        "| batched core, B = 4,096 | 1,200,000 | ≥ 1,000,000 |",
        "| `FusionRankingEnv` through the PettingZoo API | 12,346 env steps/s | ≥ 10,000 |"]


def test_parallel_table_judges_the_wall_clock_speedup_against_the_target() -> None:
    def row(speedup: float) -> dict:
        return {"seconds_1_worker": [10.0, 12.0, 11.0], "seconds_2_workers": [6.0, 5.0, 7.0], "speedup_median": speedup,
                "speedup_min": speedup - 0.1, "speedup_max": speedup + 0.1, "cpu_overhead": 0.05,
                "idle_speedup_estimate": 1.9}

    report = {"transitions": 40_000, "ab_users_per_arm": 8_192, "ab_arms": "a vs b", "target": 1.8,
              "rows": {"collection": row(1.85), "ab_test": row(1.5)}}
    assert tables.parallel_table(report).splitlines()[2:] == [
        "| collection, `expert` pipeline, 40,000 transitions | 11.00 s | 6.00 s | 1.85× (1.75–1.95) | +5.0% | 1.90× "
        "| ≥ 1.8 |",
        "| A/B test, 2 arms × 8,192 users (a vs b) | 11.00 s | 6.00 s | 1.50× (1.40–1.60) | +5.0% | 1.90× "
        "| ≥ 1.8 (not met) |"]
