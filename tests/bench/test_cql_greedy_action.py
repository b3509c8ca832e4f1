"""bench/cql_greedy_action.py: the same trained CQL weights act with tanh(μ) and with the squashed
mean on the run's own A/B users; the arm the run acted with reproduces its ``true_return``, and a
run folder that misstates its greedy action is refused."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bench_scripts import load
from hydra_config import compose_config
from omegaconf import OmegaConf

import marl_rec.experiments.fusion_offline as fusion_offline

greedy_bench = load("cql_greedy_action")

TINY = ["algo=cql", "data=random", "data.num_transitions=1500", "data.batch_users=128", "train.num_updates=40",
        "train.eval_every=0", "train.log_every=10", "train.checkpoint_every=40", "evaluation.num_users=16",
        "evaluation.ab_users_per_group=64", "evaluation.ope=false", "progress=false", "algo.bc_warmup_updates=20"]


@pytest.fixture(scope="module")
def cql_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("greedy")
    cfg = compose_config(TINY + [f"cache_dir={root / 'cache'}"])
    run_dir = root / "sweep" / "0_random_cql_seed0"
    fusion_offline.run(cfg, run_dir)
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    return run_dir


def test_both_arms_on_the_runs_own_users(cql_run: Path) -> None:
    row = greedy_bench.evaluate_run(cql_run)
    metrics = json.loads((cql_run / "metrics.json").read_text())
    assert row["run_greedy_action"] == "mean" and row["actor_average_tau"] == 0.001  # the rec preset's
    assert row["true_return_mean"] == pytest.approx(metrics["true_return"], abs=1e-9)
    assert np.isfinite(row["true_return_mode"]) and row["true_return_mode"] != row["true_return_mean"]


def test_a_run_folder_that_does_not_hold_together_is_refused(cql_run: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Metrics that are not this checkpoint's A/B test stop the bench; how the run acted comes from
    its checkpoint, not from the config's preset (which changes with the code): a config that
    states otherwise still reproduces the run."""
    import shutil

    copy = tmp_path / "sweep" / cql_run.name
    shutil.copytree(cql_run, copy)
    metrics = json.loads((copy / "metrics.json").read_text())
    (copy / "metrics.json").write_text(json.dumps({**metrics, "true_return": metrics["true_return"] + 1.0}))
    monkeypatch.setattr("sys.argv", ["cql_greedy_action.py", str(tmp_path / "sweep")])
    with pytest.raises(SystemExit, match="its own greedy action earns"):
        greedy_bench.main()
    cfg = OmegaConf.load(copy / ".hydra" / "config.yaml")
    cfg.algo.greedy_action, cfg.algo.actor_average_tau = "mode", 0.0  # saved: the averaged actor's mean
    OmegaConf.save(cfg, copy / ".hydra" / "config.yaml")
    (copy / "metrics.json").write_text(json.dumps(metrics))
    row = greedy_bench.evaluate_run(copy)
    assert (row["run_greedy_action"], row["actor_average_tau"]) == ("mean", 0.001)
    assert row["true_return_mean"] == pytest.approx(metrics["true_return"], abs=1e-9)


def test_summary_pairs_the_arms_by_seed() -> None:
    rows = [{"data": "expert", "cql_alpha": 5.0, "seed": s, "true_return_mode": m, "true_return_mean": n}
            for s, m, n in ((0, 100.0, 104.0), (1, 110.0, 111.0), (2, 105.0, 104.0))]
    (summary,) = greedy_bench.summarise(rows)
    assert summary["mode"] == pytest.approx(105.0) and summary["mean"] == pytest.approx(106.333333)
    assert summary["difference"] == pytest.approx(4 / 3) and summary["mean_higher_in"] == 2
    assert summary["difference_std"] == pytest.approx(np.std([4.0, 1.0, -1.0], ddof=1))
    assert "| expert | 5 | 105.0 ± 5.0 | 106.3 ± 4.0 | +1.3 ± 2.5 | 2 of 3 |" in greedy_bench.table([summary])
