"""bench/ope_benchmark_diagnosis.py: error vs interval per estimator from an OPE-benchmark run's
rows, the A/B half-widths read from the run's markdown, and the logs' own Monte Carlo value."""
from pathlib import Path

import numpy as np
import pytest
from bench_scripts import load

ROOT = Path(__file__).resolve().parents[2]
diagnosis = load("ope_benchmark_diagnosis")


def row(estimator: str, policy: str, value: float, half: float, truth: float) -> dict:
    return {"estimator": estimator, "policy": policy, "value": value, "ci_low": value - half,
            "ci_high": value + half, "std_error": half / 1.96, "truth": truth,
            "covered": value - half <= truth <= value + half}


def test_the_markdown_truth_table_is_read_as_the_benchmark_writes_it() -> None:
    text = ("| estimator | Spearman |\n|---|---|\n| fqe | 0.900 |\n\n| policy | true value (A/B, 95% CI) |\n|---|---|\n"
            "| random | 79.7 ± 3.3 |\n| td3@300 | -4.0 ± 12.5 |\n")
    assert diagnosis.truth_half_widths(text) == {"random": 3.3, "td3@300": 12.5}


def test_errors_intervals_and_the_truth_noise() -> None:
    rows = [{**row("fqe", "random", 70.0, 4.0, 80.0), "diag_td_loss": 0.04},  # misses by 10, half-width 4
            row("fqe", "a", 48.0, 4.0, 50.0),  # covered
            row("fqe", "b", 95.0, 4.0, 100.0),  # misses by 5; sqrt(4² + 3²) = 5 covers it
            row("is", "random", 0.0, 1.0, 80.0)]  # no interval estimator of interest: left out
    result = diagnosis.diagnose_rows(rows, {"random": 1.0, "a": 1.0, "b": 3.0}, np.array([78.0, 82.0, 80.0, 80.0]))
    assert set(result["estimators"]) == {"fqe"}
    fqe = result["estimators"]["fqe"]
    assert fqe["coverage"] == pytest.approx(1 / 3)
    assert fqe["coverage_with_truth_noise"] == pytest.approx(2 / 3)
    assert fqe["mean_error"] == pytest.approx((-10 - 2 - 5) / 3)
    assert fqe["share_below_truth"] == 1.0
    assert fqe["median_error_over_half_width"] == pytest.approx(5 / 4)
    assert fqe["random_policy"]["z"] == pytest.approx(-10 / (4 / 1.96))
    assert fqe["random_policy"]["diag_td_loss"] == 0.04
    assert result["logged_mc_value"] == 80.0 and result["episodes"] == 4
    assert result["logged_mc_half_width"] == pytest.approx(1.959964 * np.std([78, 82, 80, 80], ddof=1) / 2, rel=1e-5)
    assert "| fqe | 0.33 | 0.67 |" in diagnosis.table(result)
