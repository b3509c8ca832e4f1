"""The OPE estimator benchmark (``+experiment=ope_benchmark``) end to end at a tiny budget:
every policy is estimated by every estimator, the saved summary agrees with metrics
recomputed from the saved per-policy rows, and the outputs are written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from marl_rec.experiments.common import load_dataset
from marl_rec.experiments.ope_benchmark import run
from hydra_config import compose_config

ESTIMATOR_UPDATES = ["ope.estimators.fqe.config.num_updates=30",
                     "ope.estimators.conservative_fqe.config.num_updates=30",
                     "ope.estimators.dr.config.fqe.num_updates=30",
                     "ope.estimators.wdr.config.fqe.num_updates=30"]


def test_ope_benchmark_tiny_run(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    cfg = compose_config(["+experiment=ope_benchmark", f"cache_dir={tmp_path / 'cache'}",
                          "data.num_transitions=2000", "data.batch_users=128", "ope.targets.bc_updates=20",
                          "ope.targets.algorithms=[td3,bcq]", "ope.targets.checkpoint_steps=[5,20]",
                          "evaluation.ab_users_per_group=64", *ESTIMATOR_UPDATES])
    out = run(cfg, tmp_path)
    dataset, _ = load_dataset(cfg)  # the run's logs, from the cache it wrote

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    rows = json.loads((tmp_path / "ope_rows.json").read_text())
    policies = {"random", "constant_neutral", "constant_quality", "constant_clicks", "bc@20",
                "td3@5", "td3@20", "bcq@5", "bcq@20"}
    assert set(metrics["truth"]) == policies and metrics["num_policies"] == len(policies)
    estimators = set(cfg.ope.estimators)
    assert {row["estimator"] for row in rows} == estimators
    for name in estimators:
        mine = [row for row in rows if row["estimator"] == name]
        assert {row["policy"] for row in mine} == policies
        assert all(row["truth"] == metrics["truth"][row["policy"]] for row in mine)
        summary = next(s for s in metrics["summary"] if s["estimator"] == name)
        values = np.array([row["value"] for row in mine])
        truths = np.array([row["truth"] for row in mine])
        assert np.isfinite(values).all(), (name, values)
        if np.ptp(values) > 0:
            assert np.isclose(summary["spearman"], spearmanr(values, truths).statistic)
        else:  # a constant estimate ranks nothing
            assert np.isnan(summary["spearman"])
        rel = np.abs(values - truths) / np.abs(truths)
        assert np.isclose(summary["median_rel_error"], np.median(rel), equal_nan=True)
        assert np.isclose(summary["fraction_below_truth"], np.mean(values < truths))
        floor = min(0.0, float(dataset.rewards.min())) / (1 - cfg.evaluation.gamma)
        low = np.where(truths > 0, max(floor, 0.0), floor)  # 0 when the truth is positive: IS collapses there
        off_floor = (values < truths) & (values > low + 0.5 * (truths - low))
        assert np.isclose(summary["fraction_below_truth_off_floor"], np.mean(off_floor))
        covered = [row["ci_low"] <= row["truth"] <= row["ci_high"] for row in mine]
        assert np.isclose(summary["ci_coverage"], np.mean(covered))
    # the true values separate the policies (the benchmark needs clearly different quality)
    assert np.ptp(list(metrics["truth"].values())) > 5.0
    text = (tmp_path / "ope_benchmark.md").read_text()
    assert all(f"| {name} |" in text for name in estimators)
    assert (tmp_path / "ope_benchmark.png").stat().st_size > 0
    assert out["best_estimator"] in estimators
