"""Trainer: logging, evaluation hooks, divergence, refusal to overwrite, resume (in-process
after a crash, and a SIGKILLed subprocess) ending bit-identical to an uninterrupted run."""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from marl_rec.envs.rollout import run_sessions
from marl_rec.algos.base import OfflineAlgorithm
from marl_rec.contracts import ActionSpec, Batch
from marl_rec.checkpoint import CheckpointError, load_checkpoint
from marl_rec.trainer import DivergenceError, SimulatorEvaluator, Trainer, TrainerConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))
from trainer_worker import (assert_states_equal, make_algorithm, small_simulator, synthetic_dataset,  # noqa: E402
                            train)

torch.set_num_threads(1)
WORKER = Path(__file__).resolve().parents[1] / "helpers" / "trainer_worker.py"


def config(**overrides: Any) -> TrainerConfig:
    base = dict(num_updates=200, batch_size=32, eval_every=100, checkpoint_every=100, log_every=50,
                q_divergence_bound=1e6, seed=0, progress=False)
    base.update(overrides)
    return TrainerConfig(**base)


def scalars(run_dir: Path) -> EventAccumulator:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


class ScriptedAlgorithm(OfflineAlgorithm):
    """A one-parameter learner whose metrics are known in closed form: update k reports
    critic_loss = k (tensor), actor_loss = k (float, even k only), q_mean = q_scale * k.
    From update ``nan_from`` on its parameter (and loss) become NaN."""

    name = "scripted"

    def __init__(self, nan_from: int | None = None, q_scale: float = 0.0, q_value_scale: float = 0.0) -> None:
        super().__init__(4, ActionSpec("continuous", dim=4), None, seed=0)
        self.weight = torch.zeros(3)
        self.updates, self.nan_from, self.q_scale, self.q_value_scale = 0, nan_from, q_scale, q_value_scale

    def update(self, batch: Batch) -> dict[str, Any]:
        self.updates += 1
        self.weight += 0.01 * batch.rewards.mean()
        if self.nan_from is not None and self.updates >= self.nan_from:
            self.weight.fill_(math.nan)
        metrics: dict[str, Any] = {"critic_loss": self.weight.sum() * 0 + self.updates,
                                   "q_mean": torch.tensor(self.q_scale * self.updates)}
        if self.updates % 2 == 0:
            metrics["actor_loss"] = float(self.updates)
        return metrics

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return np.zeros((len(obs), 4), np.float32)

    def q_value(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        return np.full(len(obs), self.q_value_scale * self.updates)

    def state_dict(self) -> dict[str, Any]:
        return {"weight": self.weight.clone(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weight, self.updates = state["weight"].clone(), int(state["updates"])


class ScriptedSampler:
    """Sampler protocol: size, device, sample(batch_size, generator)."""

    size, device = 100, torch.device("cpu")

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        rewards = torch.rand(batch_size, generator=generator)
        obs = torch.zeros(batch_size, 4)
        return Batch(obs, torch.zeros(batch_size, 4), rewards, obs, torch.zeros(batch_size))


# --------------------------------------------------------------------- logging
def test_tensorboard_tags_interval_means_hparams_and_final_metrics(tmp_path: Path) -> None:
    calls: list[int] = []

    def ope(algorithm: Any, step: int) -> dict[str, float]:
        calls.append(step)
        return {"ope/fqe": 0.5 * step, "custom": 1.0}

    def late(algorithm: Any, step: int) -> dict[str, float]:
        return {"late": 2.0} if step == 200 else {}  # a tag reported only at some evaluations

    trainer = Trainer(ScriptedAlgorithm(), ScriptedSampler(), config(), tmp_path, evaluators=[ope, late],
                      agent_name="advertiser", hparams={"experiment": {"name": "unit", "sizes": [3, 4]}})
    final = trainer.fit()
    events = scalars(tmp_path)
    tags = set(events.Tags()["scalars"])
    assert {"train/advertiser/critic_loss", "train/advertiser/actor_loss", "train/advertiser/q_mean",
            "ope/fqe", "eval/custom", "time/updates_per_second"} <= tags
    loss = events.Scalars("train/advertiser/critic_loss")
    assert [e.step for e in loss] == [50, 100, 150, 200]
    # mean over each interval: (1..50) -> 25.5, (51..100) -> 75.5; actor_loss only on even updates
    assert [e.value for e in loss] == pytest.approx([25.5, 75.5, 125.5, 175.5])
    assert events.Scalars("train/advertiser/actor_loss")[0].value == pytest.approx(26.0)
    assert [e.step for e in events.Scalars("ope/fqe")] == [100, 200] and calls == [100, 200]
    assert trainer.eval_history["step"] == [100, 200] and trainer.eval_history["ope/fqe"] == [50.0, 100.0]
    assert math.isnan(trainer.eval_history["eval/late"][0]) and trainer.eval_history["eval/late"][1] == 2.0
    assert final["step"] == 200 and final["ope/fqe"] == 100.0 and final["eval/custom"] == 1.0
    assert final["train/advertiser/critic_loss"] == pytest.approx(175.5)
    assert "hparam/ope/fqe" in tags  # add_hparams(..., run_name=".") wrote into this run
    assert events.PluginTagToContent("hparams")  # and the HParams plugin found its summaries
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]  # no timestamped sub-run
    status = json.loads((tmp_path / "trainer_status.json").read_text())
    assert status["status"] == "completed" and status["ope/fqe"] == 100.0


def test_progress_bar_shows_loss_and_return_on_a_tty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    Trainer(ScriptedAlgorithm(), ScriptedSampler(), config(progress=True), tmp_path,
            evaluators=[lambda algorithm, step: {"eval/return": 3.25}]).fit()
    assert "train recommender" in terminal.getvalue() and "loss=" in terminal.getvalue()
    assert "return=3.25" in terminal.getvalue()
    quiet = Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    Trainer(ScriptedAlgorithm(), ScriptedSampler(), config(progress=False), tmp_path / "quiet").fit()
    assert quiet.getvalue() == ""


def test_config_and_input_validation(tmp_path: Path) -> None:
    for field, value in [("num_updates", 0), ("batch_size", 0), ("log_every", 0), ("checkpoint_every", -1),
                         ("eval_every", -1), ("q_divergence_bound", 0.0)]:
        with pytest.raises(ValueError, match=field):
            config(**{field: value})
    with pytest.raises(ValueError, match="obs_dim"):
        Trainer(ScriptedAlgorithm(), synthetic_dataset(num_episodes=2), config(), tmp_path)
    with pytest.raises(ValueError, match="agent_name"):
        Trainer(ScriptedAlgorithm(), ScriptedSampler(), config(), tmp_path, agent_name="a/b")


def test_batch_size_none_trains_on_the_algorithms_batch_size(tmp_path: Path) -> None:
    """The algorithm config owns the batch size: TrainerConfig.batch_size = None samples the
    algorithm's, records that number (checkpoints compare it on resume), and an explicit value wins."""
    sizes: list[int] = []

    class Recording(ScriptedSampler):
        def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
            sizes.append(batch_size)
            return super().sample(batch_size, generator)

    algorithm = ScriptedAlgorithm()
    algorithm.config = SimpleNamespace(batch_size=48)
    trainer = Trainer(algorithm, Recording(), config(batch_size=None, num_updates=3, eval_every=0), tmp_path / "a")
    trainer.fit()
    assert sizes == [48, 48, 48] and trainer.config.batch_size == 48
    sizes.clear()
    Trainer(algorithm, Recording(), config(batch_size=16, num_updates=2, eval_every=0), tmp_path / "b").fit()
    assert sizes == [16, 16]
    with pytest.raises(ValueError, match="TrainerConfig.batch_size is None"):
        Trainer(ScriptedAlgorithm(), ScriptedSampler(), config(batch_size=None), tmp_path / "c")


# ------------------------------------------------------------------ evaluation
def test_simulator_evaluator_matches_rollout_ground_truth_and_is_repeatable() -> None:
    algorithm = make_algorithm("tiny_td3", seed=3)
    evaluator = SimulatorEvaluator(small_simulator, num_users=16, seed=5, gamma=0.9)
    first, second = evaluator(algorithm, 0), evaluator(algorithm, 1)
    assert first == second  # same users, same draws
    sim = small_simulator()
    stats = run_sessions(lambda sim, obs: algorithm.act(obs), 16, np.random.default_rng(5), sim=sim, gamma=0.9)
    assert first["eval/return"] == pytest.approx(stats.returns.mean(), rel=1e-12)
    assert first["eval/discounted_return"] == pytest.approx(stats.discounted_returns.mean(), rel=1e-12)
    assert first["eval/session_length"] == pytest.approx(stats.lengths.mean())
    obs0 = small_simulator().reset(16, np.random.default_rng(5))
    assert first["eval/q_estimate"] == pytest.approx(float(algorithm.q_value(obs0, algorithm.act(obs0)).mean()))
    shared = SimulatorEvaluator(small_simulator(), num_users=16, seed=5, gamma=0.9)  # an instance, reused
    assert shared(algorithm, 0) == first == shared(algorithm, 1)
    with pytest.raises(ValueError, match="num_users"):
        SimulatorEvaluator(small_simulator, num_users=0)
    with pytest.raises(ValueError, match="sim_factory"):
        SimulatorEvaluator(42)


# ------------------------------------------------------------------ divergence
def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(DivergenceError, match=r"non-finite.*last good checkpoint .*update 100") as caught:
        Trainer(ScriptedAlgorithm(nan_from=111), ScriptedSampler(), config(num_updates=400, log_every=40,
                                                                            checkpoint_every=50), tmp_path).fit()
    assert caught.value.step == 120 and caught.value.checkpoint_step == 100
    assert caught.value.metric == "train/recommender/critic_loss"
    checkpoint = load_checkpoint(tmp_path / "checkpoint.pt")
    assert checkpoint["trainer"]["step"] == 100 and torch.isfinite(checkpoint["algorithm"]["state"]["weight"]).all()
    status = json.loads((tmp_path / "trainer_status.json").read_text())
    assert status["status"] == "diverged" and status["step"] == 120


def test_nan_between_log_points_is_caught_before_the_checkpoint(tmp_path: Path) -> None:
    # no log point before the end: only the pre-checkpoint check can see update 141's NaN
    with pytest.raises(DivergenceError) as caught:
        Trainer(ScriptedAlgorithm(nan_from=141), ScriptedSampler(),
                config(num_updates=400, log_every=1000, checkpoint_every=50, eval_every=0), tmp_path).fit()
    assert caught.value.step == 150 and caught.value.checkpoint_step == 100
    assert load_checkpoint(tmp_path / "checkpoint.pt")["trainer"]["step"] == 100


def test_q_estimates_beyond_the_bound_stop_the_run(tmp_path: Path) -> None:
    with pytest.raises(DivergenceError, match="q_divergence_bound") as caught:
        Trainer(ScriptedAlgorithm(q_scale=10.0), ScriptedSampler(), config(q_divergence_bound=1000.0),
                tmp_path / "train").fit()  # q_mean interval means: 255, 755, 1255 -> stops at 150
    assert caught.value.step == 150 and caught.value.metric == "train/recommender/q_mean"
    evaluator = SimulatorEvaluator(small_simulator, num_users=4)
    with pytest.raises(DivergenceError, match="eval/q_estimate") as caught:
        Trainer(ScriptedAlgorithm(q_value_scale=-20.0), ScriptedSampler(), config(q_divergence_bound=3000.0),
                tmp_path / "eval", evaluators=[evaluator]).fit()  # -2000 at 100, -4000 at 200
    assert caught.value.step == 200 and caught.value.checkpoint_step == 100
    inf_bound = Trainer(ScriptedAlgorithm(q_scale=1e9), ScriptedSampler(), config(q_divergence_bound=math.inf),
                        tmp_path / "off").fit()
    assert inf_bound["step"] == 200


# ---------------------------------------------------------------------- resume
def test_fresh_run_refuses_an_existing_checkpoint_and_completed_run_resumes_as_done(tmp_path: Path) -> None:
    final = Trainer(ScriptedAlgorithm(), ScriptedSampler(), config(), tmp_path).fit()
    with pytest.raises(ValueError, match="already holds a checkpoint"):
        Trainer(ScriptedAlgorithm(), ScriptedSampler(), config(), tmp_path).fit()
    algorithm = ScriptedAlgorithm()
    assert Trainer(algorithm, ScriptedSampler(), config(), tmp_path).fit(resume=True) == final
    assert algorithm.updates == 200  # restored, not retrained
    with pytest.raises(CheckpointError, match="batch_size"):
        Trainer(ScriptedAlgorithm(), ScriptedSampler(), config(batch_size=8), tmp_path).fit(resume=True)
    with pytest.raises(CheckpointError, match="dataset of 100"):
        Trainer(make_algorithm(), synthetic_dataset(num_episodes=4), config(), tmp_path).fit(resume=True)
    extended = Trainer.resume(tmp_path, ScriptedAlgorithm(), ScriptedSampler(), num_updates=300)
    assert extended["step"] == 300 and extended["train/recommender/critic_loss"] == pytest.approx(275.5)


class Crash(Exception):
    pass


@pytest.mark.parametrize("algo", ["tiny_td3", "td3", "bcq"])  # tiny_td3: a dropout critic (global RNG)
def test_resume_after_a_crash_is_bit_identical_in_process(tmp_path: Path, algo: str) -> None:
    dataset = synthetic_dataset(num_episodes=16)
    evaluator = SimulatorEvaluator(small_simulator, num_users=4, seed=1)
    cfg = config(num_updates=240, checkpoint_every=70, log_every=30, eval_every=60)
    reference = make_algorithm(algo, seed=0)
    reference_final = Trainer(reference, dataset, cfg, tmp_path / "reference", evaluators=[evaluator]).fit()

    def crash_at_180(algorithm: Any, step: int) -> dict[str, float]:
        if step == 180:
            raise Crash
        return {}

    with pytest.raises(Crash):
        Trainer(make_algorithm(algo, seed=0), dataset, cfg, tmp_path / "run",
                evaluators=[evaluator, crash_at_180]).fit()
    torch.manual_seed(1234)  # the resumed process's global RNG is unrelated; the checkpoint restores it
    resumed = make_algorithm(algo, seed=7)  # different initial weights and generator: all overwritten
    final = Trainer(resumed, dataset, cfg, tmp_path / "run", evaluators=[evaluator]).fit(resume=True)
    assert_states_equal(reference.state_dict(), resumed.state_dict())
    assert final == reference_final
    returns = scalars(tmp_path / "run").Scalars("eval/return")  # dead-process points purged, no duplicates
    assert [e.step for e in returns] == [60, 120, 180, 240]


def _wait_for(predicate: Any, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, f"worker exited early:\n{process.communicate()[1]}"
        assert time.monotonic() < deadline, "worker made no progress"
        time.sleep(0.02)


def _checkpoint_step(run_dir: Path) -> int:
    try:
        return int(load_checkpoint(run_dir / "checkpoint.pt")["trainer"]["step"])
    except CheckpointError:
        return -1


def test_sigkilled_subprocess_resumes_bit_identical(tmp_path: Path) -> None:
    """The worker trains marl_rec's TD3 (32-32) with a simulator evaluator; it is killed twice
    (once at an arbitrary moment, once just after a checkpoint lands) and resumed to the end."""
    num_updates = 600
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = tmp_path / "run"

    def worker(*extra: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(WORKER), str(run), "--num-updates", str(num_updates), *extra],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def kill(process: subprocess.Popen) -> int:
        assert process.poll() is None, "the worker finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait()
        step = _checkpoint_step(run)
        assert 0 < step < num_updates and not (run / "trainer_status.json").exists()
        return step

    first = worker()
    _wait_for(lambda: (run / "checkpoint.pt").exists(), first)
    time.sleep(0.1)
    first_kill = kill(first)
    second = worker("--resume")
    _wait_for(lambda: _checkpoint_step(run) > first_kill, second)
    second_kill = kill(second)
    assert first_kill < second_kill
    final = subprocess.run([sys.executable, str(WORKER), str(run), "--num-updates", str(num_updates), "--resume",
                            "--out", str(tmp_path / "resumed.pt")], capture_output=True, text=True, env=env)
    assert final.returncode == 0, final.stderr
    got = torch.load(tmp_path / "resumed.pt", weights_only=True)
    reference, reference_final = train(tmp_path / "reference", num_updates=num_updates)  # uninterrupted, here
    assert_states_equal(reference.state_dict(), got["state"])
    assert got["final"] == reference_final
    returns = scalars(run).Scalars("eval/return")  # dead processes' points after their checkpoint purged
    assert [e.step for e in returns] == [200, 400, 600]
    assert [e.value for e in returns] == [e.value for e in scalars(tmp_path / "reference").Scalars("eval/return")]
