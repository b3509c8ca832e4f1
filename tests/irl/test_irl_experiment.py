"""The reward-learning run end to end on a small budget, its TensorBoard tags, and its config."""

import dataclasses
import importlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from marl_rec.envs.simulator import SimulatorConfig
from marl_rec.irl.airl import AIRLConfig
from marl_rec.irl.experiments.reward_learning import ReferenceConfig, RewardLearningConfig, format_table, learn_rewards
from marl_rec.irl.maxent import MaxEntConfig
from marl_rec.irl.metrics import pearson
from marl_rec.irl.preferences import PreferenceConfig
from marl_rec.irl.retrain import RetrainConfig

torch.set_num_threads(1)
CONF = Path(__file__).resolve().parents[2] / "conf" / "irl" / "reward_learning.yaml"


def _plain(value):
    """dataclass -> nested dict with tuples as lists (how the YAML spells them)."""
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


class _PearsonRecorder:
    """Stands in for ``marl_rec.irl.metrics.pearson`` in the modules that score rewards and keeps
    each call's inputs, so a reported correlation can be set against the same reward values
    shuffled (the control) on the run's own data."""

    def __init__(self) -> None:
        self.calls: list[tuple[np.ndarray, np.ndarray, float]] = []

    def __call__(self, x, y) -> float:
        value = pearson(x, y)
        self.calls.append((np.array(x, dtype=np.float64), np.array(y, dtype=np.float64), value))
        return value

    def inputs_of(self, value: float) -> tuple[np.ndarray, np.ndarray]:
        matches = [call[:2] for call in self.calls if call[2] == value]
        assert matches, f"no recorded Pearson call returned {value}"
        return matches[-1]


def _shuffled(calls: list[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator, draws: int = 200) -> np.ndarray:
    """The control: the mean Pearson over ``calls`` with each reward shuffled against its truth,
    ``draws`` times. A result above all of them passes a permutation test at p < 1 / (draws + 1)."""
    return np.array([np.mean([pearson(rng.permutation(x), y) for x, y in calls]) for _ in range(draws)])


def test_yaml_instantiates_to_the_dataclass_defaults():
    config = instantiate(OmegaConf.load(CONF))
    assert isinstance(config, RewardLearningConfig)
    assert isinstance(config.simulator, SimulatorConfig) and isinstance(config.airl, AIRLConfig)
    assert _plain(config) == _plain(RewardLearningConfig())


def test_small_run_reports_every_method_and_logs_tensorboard(tmp_path, monkeypatch):
    recorder = _PearsonRecorder()
    # every module that computes a reported Pearson (spearman in metrics calls it too)
    for module in ("marl_rec.irl.metrics", "marl_rec.irl.maxent", "marl_rec.irl.experiments.reward_learning"):
        monkeypatch.setattr(importlib.import_module(module), "pearson", recorder)
    config = RewardLearningConfig(
        simulator=SimulatorConfig(items_per_topic=40, ads_per_topic=2, max_requests=20),
        num_transitions=3000, maxent_users=150, maxent_sessions=2, maxent_segments=3,
        maxent=MaxEntConfig(iterations=60), preference_seeds=1,
        preference=PreferenceConfig(budget=60, queries_per_round=30),
        # the experiment's AIRL set-up, small: 6 iterations are the fewest at which g correlated with
        # E[utility | s, a] (0.41-0.57 over seeds 0-2; 2 iterations: -0.5)
        airl=dataclasses.replace(RewardLearningConfig().airl, iterations=6, users_per_iteration=32,
                                 reward_hidden=(32,), potential_hidden=(32,), policy_hidden=(32,)),
        airl_transitions=2000, airl_probe_users=40, reference=ReferenceConfig(hidden=(32,), steps=100),
        heldout_pairs=300,
        epic_transitions=64, epic_samples=32, log_dir=str(tmp_path),
        retrain=RetrainConfig(num_updates=20, algo_overrides={"vae_hidden": (16,), "actor_hidden": (16,),
                                                              "critic_hidden": (16,)},
                              controls=("engagement",), eval_users=50))
    rows = learn_rewards(config)
    methods = [r["method"] for r in rows]
    assert methods == ["maxent/3_segments", "reference/supervised", "reference/state_action", "preferences/uniform",
                       "preferences/disagreement", "airl", "retrain/true_utility", "retrain/preferences/uniform",
                       "retrain/preferences/disagreement", "retrain/airl", "retrain/engagement",
                       "retrain/behaviour"]
    # against the control: each learned reward correlates with the truth more than every one of 200
    # shufflings of its own values on the same held-out data does (MaxEnt: the mean over its segments)
    rng = np.random.default_rng(0)
    maxent_segments = int(rows[0]["note"].split(" segments")[0].rsplit(" ", 1)[-1])
    scored = {"maxent/3_segments": [call[:2] for call in recorder.calls[:maxent_segments]]}
    assert np.mean([call[2] for call in recorder.calls[:maxent_segments]]) == rows[0]["pearson"]
    for row in rows[1:6]:
        scored[row["method"]] = [recorder.inputs_of(row["pearson"])]
    # AIRL is also scored against E[utility | s, a] of held-out demonstrator users
    scored["airl/expected"] = [recorder.inputs_of(rows[5]["pearson_expected"])]
    reported = {**{r["method"]: r["pearson"] for r in rows[:6]}, "airl/expected": rows[5]["pearson_expected"]}
    for method, calls in scored.items():
        control = _shuffled(calls, rng)
        assert reported[method] > control.max(), (method, reported[method], control.max())
    assert all(np.isfinite(row["seconds"]) for row in rows[:6])
    retrained = {r["method"]: r for r in rows[6:]}
    assert retrained["retrain/true_utility"]["ratio"] == 1.0 and retrained["retrain/true_utility"]["diff"] == 0.0
    for row in retrained.values():
        assert np.isfinite(row["true_return"]) and row["session_length"] > 0
        assert row["diff_ci_low"] <= row["diff"] <= row["diff_ci_high"]
    # the relabelled preference reward is the model's prediction on the held-in logs: it tracks the truth
    assert retrained["retrain/preferences/uniform"]["reward_pearson"] > 0.1
    for row in rows[3:6]:
        assert 0.0 <= row["epic_to_reference"] <= 1.0
    # against chance (the control): the preference models order held-out pairs better than a coin
    # by more than 2 standard errors of 300 pairs
    for row in rows[3:5]:
        assert row["preference_accuracy"] > 0.5 + 2 * (0.25 / 300) ** 0.5, row
    # the supervised reference, trained on the truth, must beat chance clearly
    assert rows[1]["pearson"] > 0.4
    table = format_table(rows)
    assert "preferences/disagreement" in table and "epic_to_reference" in table
    assert "retrain/airl" in table and "ratio" in table

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
    events.Reload()
    tags = events.Tags()["scalars"]
    for tag in ("irl/maxent/3_segments/segment_pearson", "irl/preferences/uniform/seed0/pearson",
                "irl/preferences/disagreement/pearson", "irl/airl/discriminator_loss", "irl/airl/pearson",
                "irl/reference/pearson", "irl/retrain/true_utility/true_return", "irl/retrain/airl/ratio",
                "irl/retrain/behaviour/diff"):
        assert tag in tags, tag
    steps = [e.step for e in events.Scalars("irl/preferences/uniform/seed0/pearson")]
    assert steps == [30, 60]  # one point per round, at the number of queries spent


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="methods"):
        learn_rewards(RewardLearningConfig(methods=("maxent", "gail")))
    with pytest.raises(ValueError, match="shift"):
        RetrainConfig(shift="median")


@pytest.mark.parametrize("data", ["uniform", "production"])
def test_retrain_alone_on_fresh_logs(data):
    """``retrain.data=uniform`` / ``production``: fresh logs of random actions / of the production policy
    with noise; the logging policy is the reference arm."""
    config = RewardLearningConfig(
        simulator=SimulatorConfig(items_per_topic=40, ads_per_topic=2, max_requests=20), methods=("retrain",),
        num_transitions=1500, reference=ReferenceConfig(hidden=(16,), steps=20), heldout_pairs=100,
        epic_transitions=16, epic_samples=16,
        retrain=RetrainConfig(data=data, num_updates=10, controls=("shuffled",), eval_users=20,
                              algo_overrides={"vae_hidden": (8,), "actor_hidden": (8,), "critic_hidden": (8,)}))
    rows = {r["method"]: r for r in learn_rewards(config)}
    assert [m for m in rows if m.startswith("retrain/")] == ["retrain/true_utility", "retrain/shuffled",
                                                              "retrain/behaviour"]
    assert f"{data} logs" in rows["retrain/true_utility"]["note"]
    # the behaviour row is measured against the reference arm on the same users: its ratio and
    # its paired difference are the reference row's return recombined with its own
    behaviour, reference = rows["retrain/behaviour"], rows["retrain/true_utility"]
    if reference["true_return"] > 0:
        assert behaviour["ratio"] == pytest.approx(behaviour["true_return"] / reference["true_return"])
    else:
        assert np.isnan(behaviour["ratio"])
    assert behaviour["diff"] == pytest.approx(behaviour["true_return"] - reference["true_return"])
    assert behaviour["diff_ci_low"] <= behaviour["diff"] <= behaviour["diff_ci_high"]
    with pytest.raises(ValueError, match="data"):
        RetrainConfig(data="expert")
