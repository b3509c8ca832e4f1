"""bench/reward_learning_seeds.py: reward-learning sweeps summarised over data seeds, issue #17's
bars decided from the numbers, and the findings page showing the tables generated from the
committed JSON."""
import json
from pathlib import Path

import pytest
from bench_scripts import load

ROOT = Path(__file__).resolve().parents[2]
seeds = load("reward_learning_seeds")


def write_run(folder: Path, seed: int, rows: list[dict]) -> None:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(f"- +experiment=reward_learning\n- seed={seed}\n")
    (folder / "metrics.json").write_text(json.dumps({"task": "reward_learning", "rows": rows}))


def rows(uniform: list[float], disagreement: list[float], learned: float, shuffled: float,
         engagement: float) -> list[dict]:
    def pref(name: str, per_seed: list[float]) -> dict:
        return {"method": f"preferences/{name}", "pearson": sum(per_seed) / len(per_seed), "pearson_per_seed": per_seed}

    def arm(name: str, value: float) -> dict:
        return {"method": f"retrain/{name}", "true_return": value, "ratio": value / 50.0}

    return [pref("uniform", uniform), pref("disagreement", disagreement), arm("true_utility", 50.0),
            arm("preferences/disagreement", learned), arm("shuffled", shuffled), arm("engagement", engagement)]


def test_bars_follow_the_numbers(tmp_path: Path) -> None:
    write_run(tmp_path / "0", 0, rows([0.90, 0.88], [0.92, 0.91], 47.0, 40.0, 46.0))
    write_run(tmp_path / "1", 1, rows([0.86, 0.84], [0.85, 0.83], 46.0, 41.0, 47.0))
    summary = seeds.summarise(seeds.load_runs([tmp_path]))
    pref, retrain = summary["preference_bars"], summary["retrain_bars"]
    assert summary["data_seeds"] == [0, 1]
    assert pref["uniform_pearson_mean"] == pytest.approx(0.87) and pref["uniform_pearson_min_single_model"] == 0.84
    assert pref["uniform_meets_0.85"] and pref["disagreement_meets_0.85"]
    # disagreement ahead by 0.025 on seed 0, behind by 0.01 on seed 1: ahead on average, not beyond the spread
    assert pref["disagreement_minus_uniform"]["per_seed"] == pytest.approx([0.025, -0.01])
    assert pref["disagreement_beats_uniform"] and not pref["disagreement_beats_uniform_by_more_than_spread"]
    assert pref["disagreement_ahead_pairs"] == "2 of 4 (ties 0)"
    assert retrain["preferences/disagreement_ratio"] == pytest.approx(0.93)
    assert retrain["preferences/disagreement_meets_ratio_0.9"]
    assert retrain["preferences/disagreement_beats_shuffled_by_more_than_spread"]  # gaps 7 and 5
    assert not retrain["preferences/disagreement_beats_engagement_by_more_than_spread"]  # gaps +1 and -1
    assert "| preferences/uniform | 0.870 ± 0.028 (0.890, 0.850) |" in seeds.markdown(summary)  # ddof = 1


def test_a_run_without_its_seed_or_twice_is_refused(tmp_path: Path) -> None:
    write_run(tmp_path / "a", 0, rows([0.9], [0.9], 1.0, 1.0, 1.0))
    write_run(tmp_path / "b", 0, rows([0.9], [0.9], 1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="two runs of data seed 0"):
        seeds.load_runs([tmp_path])
    with pytest.raises(ValueError, match="no reward_learning metrics.json"):
        seeds.load_runs([tmp_path / "nothing"])


@pytest.mark.parametrize("json_name", ["reward_learning_preferences_3seeds.json", "reward_learning_maxent_3seeds.json",
                                       "reward_learning_retrain_production_3seeds.json",
                                       "reward_learning_retrain_uniform_3seeds.json"])
def test_the_findings_page_shows_the_table_generated_from_the_committed_json(json_name: str) -> None:
    table = seeds.markdown(json.loads((ROOT / "bench" / "results" / "issue17" / json_name).read_text()))
    page = (ROOT / "bench" / "results" / "README.md").read_text()
    assert table in page, (f"bench/results/README.md's table differs from the JSON: paste the output of "
                           f"`python bench/reward_learning_seeds.py --table bench/results/issue17/{json_name}`")
