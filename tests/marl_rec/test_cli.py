"""The Hydra app end to end: composition, a tiny run, a joblib sweep, the report, bad overrides."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import get_method
from hydra_config import compose_config

CONF = Path(__file__).resolve().parents[2] / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
ALGOS = sorted(p.stem for p in (CONF / "algo").glob("*.yaml"))
DATA = sorted(p.stem for p in (CONF / "data").glob("*.yaml"))

# a run small enough for a test: tiny dataset, a few updates, few evaluation users
TINY = ["data=random", "data.num_transitions=1500", "data.batch_users=128", "train.num_updates=40",
        "train.eval_every=20", "train.log_every=10", "train.checkpoint_every=20", "evaluation.num_users=32",
        "evaluation.ab_users_per_group=32", "ope.estimators.fqe.config.num_updates=20",
        "ope.estimators.wdr.config.fqe.num_updates=20", "ope.estimators.cfqe.config.num_updates=20",
        "progress=false"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(experiment: str) -> None:
    cfg = compose_config([f"+experiment={experiment}"])
    assert cfg.task
    assert cfg.seed == 0
    # its task resolves to a module-level run(cfg, run_dir), the one signature of every experiment
    task = get_method(cfg.task)
    assert task.__name__ == "run" and list(inspect.signature(task).parameters) == ["cfg", "run_dir"]


def test_the_algorithm_owns_the_batch_size(tmp_path: Path) -> None:
    """``algo.batch_size=64`` is what the run trains on; ``train.batch_size`` is not a setting."""
    from hydra.errors import ConfigCompositionException

    from marl_rec.experiments.common import learner_spaces, simulator_factory, trainer_config
    from marl_rec.experiments.fusion_offline import build_algorithm
    from marl_rec.trainer import Trainer

    cfg = compose_config(["algo=td3", "algo.batch_size=64"])
    algorithm, _ = build_algorithm(cfg, *learner_spaces(simulator_factory(cfg)()))
    trainer = Trainer(algorithm, _Sampler(), trainer_config(cfg), tmp_path)
    assert trainer.config.batch_size == 64 and algorithm.config.batch_size == 64
    with pytest.raises(ConfigCompositionException, match="batch_size"):
        compose_config(["train.batch_size=64"])


class _Sampler:
    size, device = 10, "cpu"

    def sample(self, batch_size, generator):  # pragma: no cover - the trainer is only built
        raise AssertionError


def test_train_schema_is_trainer_config() -> None:
    """The ``train`` node has TrainerConfig's fields and defaults (less those owned elsewhere)."""
    import dataclasses

    from marl_rec.schema import TRAIN_EXCLUDED
    from marl_rec.trainer import TrainerConfig

    train = compose_config([]).train
    expected = {f.name: f.default for f in dataclasses.fields(TrainerConfig) if f.name not in TRAIN_EXCLUDED}
    assert dict(train) == expected


@pytest.mark.parametrize("algo", ALGOS)
def test_every_algo_composes_with_its_schema(algo: str) -> None:
    cfg = compose_config([f"algo={algo}"])
    assert cfg.algo.name == algo
    assert cfg.algo.preset in ("paper", "rec")


@pytest.mark.parametrize("data", DATA)
def test_every_data_pipeline_composes(data: str) -> None:
    cfg = compose_config([f"data={data}"])
    assert cfg.data.name == data and cfg.data.kind in ("policy", "mixture", "online")


def test_schema_rejects_wrong_type_and_unknown_key() -> None:
    from hydra.errors import ConfigCompositionException
    from omegaconf.errors import ValidationError

    with pytest.raises((ValidationError, ConfigCompositionException), match="actor_lr"):
        compose_config(["algo=bcq", "algo.actor_lr=abc"])
    with pytest.raises(ConfigCompositionException, match="lr"):
        compose_config(["algo=bcq", "algo.lr=0.1"])


def run_cli(args: list[str], cwd: Path, module: str = "marl_rec.cli") -> subprocess.CompletedProcess:
    env = {**os.environ, "MARL_REC_CACHE": str(cwd / "cache"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_wrong_override_fails_with_clear_message(tmp_path: Path) -> None:
    result = run_cli(["algo=nonexistent"], tmp_path)
    assert result.returncode != 0
    assert "nonexistent" in result.stderr and "algo" in result.stderr
    result = run_cli(["algo.critic_lr=abc"], tmp_path)
    assert result.returncode != 0
    assert "critic_lr" in result.stderr


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A joblib multirun of two tiny jobs (td3, bcq): the sweep the report test reads."""
    root = tmp_path_factory.mktemp("sweep")
    result = run_cli(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "algo=td3,bcq",
                      f"hydra.sweep.dir={root / 'multirun'}", *TINY], root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("[marl-rec] done") == 2, result.stdout
    return root / "multirun"


def test_sweep_runs_write_metrics_config_and_tensorboard(sweep: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = sorted(p.parent for p in sweep.rglob("metrics.json"))
    assert len(runs) == 2
    for run in runs:
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["status"] == "completed"
        for key in ("true_return", "behaviour_return", "q_estimate", "ope_fqe", "ope_wdr", "ope_cfqe"):
            assert isinstance(metrics[key], float), key
        assert (run / ".hydra" / "config.yaml").exists()
        assert (run / "checkpoint.pt").exists()
        accumulator = EventAccumulator(str(run), size_guidance={"scalars": 0})
        accumulator.Reload()
        tags = set(accumulator.Tags()["scalars"])
        assert {"eval/return", "eval/q_estimate", "train/recommender/critic_loss"} <= tags, tags


def test_report_on_the_sweep(sweep: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "marl_rec.report", str(sweep)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "| random | bcq | 1 |" in result.stdout and "| random | td3 | 1 |" in result.stdout
    for name in ("report.md", "learning_curves.png", "q_vs_true.png", "ope_vs_true.png"):
        path = sweep / name
        assert path.exists() and path.stat().st_size > 0, name
    assert (sweep / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dataset_cache_is_keyed_by_config_content(tmp_path: Path) -> None:
    import numpy as np

    from marl_rec.envs.simulator import UserSimulator
    from marl_rec.agents.policies import RandomPolicy
    from marl_rec.data import collect
    from marl_rec.pipelines import cached_dataset, config_hash

    builds = []

    def build():
        builds.append(1)
        return collect(UserSimulator(), RandomPolicy(np.random.default_rng(0)), 300,
                       np.random.default_rng(0), batch_size=32)

    spec = {"name": "random", "num_transitions": 300}
    first, path, reused = cached_dataset(tmp_path, "random", config_hash(spec), build)
    again, path_again, reused_again = cached_dataset(tmp_path, "random", config_hash(spec), build)
    assert (reused, reused_again, len(builds)) == (False, True, 1) and path == path_again
    assert np.array_equal(first.rewards, again.rewards)
    changed = config_hash({**spec, "num_transitions": 301})
    assert changed != config_hash(spec)
    _, other_path, reused_other = cached_dataset(tmp_path, "random", changed, build)
    assert not reused_other and other_path != path and len(builds) == 2


def test_help_names_the_app_and_offers_no_schema_bases(tmp_path: Path) -> None:
    result = run_cli(["--help"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("marl-rec is powered by Hydra")
    group_section = result.stdout.split("== Config ==")[0]
    groups = dict(line.split(": ", 1) for line in group_section.splitlines() if line.split(":")[0] in ("algo", "env"))
    assert set(groups["algo"].split(", ")) == set(ALGOS)  # no base_* schema entries
    assert "base_" not in groups["env"] and "fusion" in groups["env"]
