"""The dataset cache key of the data pipelines (marl_rec/pipelines.py): it covers what
determines the data (resolved agent preset values, simulator config, behaviour defaults,
format versions), and an unchanged config reuses the saved dataset."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate

from marl_rec.agents.policies import HeuristicExpertPolicy
from marl_rec.envs.simulator import SimulatorConfig
from marl_rec.algos.td3 import TD3Config
from marl_rec import pipelines
from marl_rec.pipelines import build_dataset, cached_dataset, dataset_key, resolve_targets, resolved_pipeline

SIMULATOR = {"_target_": "marl_rec.envs.simulator.UserSimulator",
             "config": {"_target_": "marl_rec.envs.simulator.SimulatorConfig", "max_requests": 5, "items_per_topic": 40,
                        "ads_per_topic": 5}}
ONLINE = {"name": "final_buffer", "kind": "online", "seed": 0, "agent": "td3", "agent_preset": "rec",
          "online_steps": 6, "batch_users": 16, "updates_per_step": 1, "start_steps": 2,
          "exploration_sigma": 0.5, "num_transitions": 0}
EXPERT = {"name": "expert", "kind": "policy", "seed": 0, "num_transitions": 200, "batch_users": 32,
          "behaviour": {"_target_": "marl_rec.agents.policies.GaussianNoisePolicy", "_partial_": True, "sigma": 0.1,
                        "base": {"_target_": "marl_rec.agents.policies.HeuristicExpertPolicy"}}}


def rec_preset_with(monkeypatch: pytest.MonkeyPatch, **changes) -> None:
    """Change TD3's ``rec`` preset *in code*, as an edit of td3.py would."""
    original = TD3Config.rec.__func__
    monkeypatch.setattr(TD3Config, "rec", classmethod(lambda cls: dataclasses.replace(original(cls), **changes)))


def test_key_covers_the_resolved_agent_preset_not_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    key = dataset_key(ONLINE, SIMULATOR)
    assert resolved_pipeline(ONLINE)["agent_config"] == json.loads(json.dumps(dataclasses.asdict(TD3Config.rec())))
    rec_preset_with(monkeypatch, tau=0.01)  # same YAML, preset still named "rec"
    assert dataset_key(ONLINE, SIMULATOR) != key
    monkeypatch.undo()
    assert dataset_key(ONLINE, SIMULATOR) == key
    assert dataset_key({**ONLINE, "agent_overrides": {"tau": 0.01}}, SIMULATOR) != key
    # writing out a value the pipeline would use anyway names the same data
    assert dataset_key({**ONLINE, "agent_overrides": {"tau": TD3Config.rec().tau}}, SIMULATOR) == key
    without_defaults = {k: v for k, v in ONLINE.items() if k not in ("agent", "agent_preset")}
    assert dataset_key(without_defaults, SIMULATOR) == key


def test_sac_agent_is_the_registered_cql_with_the_online_sac_settings() -> None:
    from marl_rec.algos.cql import CQL, CQLConfig
    from marl_rec.algos.online import SAC_OVERRIDES

    sac = {**ONLINE, "agent": "sac"}
    config = resolved_pipeline(sac)["agent_config"]
    expected = dataclasses.replace(CQLConfig.rec(), **SAC_OVERRIDES)
    assert config == json.loads(json.dumps(dataclasses.asdict(expected)))
    assert config["cql_alpha"] == 0.0 and config["backup_entropy"] is True
    # a pipeline's own overrides win over the fixed settings
    assert resolved_pipeline({**sac, "agent_overrides": {"actor_lr": 1e-3}})["agent_config"]["actor_lr"] == 1e-3
    assert dataset_key(sac, SIMULATOR) != dataset_key(ONLINE, SIMULATOR)
    data = build_dataset({**sac, "online_steps": 8, "start_steps": 1}, lambda: instantiate(SIMULATOR), instantiate, 0)
    assert isinstance(pipelines._online_agent(sac, 8, 4, 0), CQL) and len(data) > 0
    assert data.metadata["algorithm"] == "cql"


def test_fujimoto_pipelines_train_the_steady_online_sac() -> None:
    from omegaconf import OmegaConf

    from marl_rec.algos.cql import CQLConfig
    from marl_rec.algos.online import SAC_OVERRIDES, SAC_STEADY_OVERRIDES

    conf = Path(__file__).resolve().parents[2] / "conf" / "data"
    expected = json.loads(json.dumps(dataclasses.asdict(dataclasses.replace(CQLConfig.rec(), **SAC_STEADY_OVERRIDES))))
    for name in ("final_buffer", "concurrent", "imitation"):
        spec = OmegaConf.to_container(OmegaConf.load(conf / f"{name}.yaml"))
        assert spec["agent"] == "sac_steady", name
        config = resolved_pipeline(spec)["agent_config"]
        assert config == expected, name
    # steady: a fixed entropy weight, big batches, an averaged greedy actor; otherwise online SAC
    assert config["learn_entropy_alpha"] is False and config["initial_entropy_alpha"] == 0.05
    assert config["batch_size"] == 1024 and config["actor_average_tau"] == 0.001 and config["penalty"] is False
    kept = [k for k in SAC_OVERRIDES if k not in ("batch_size", "initial_entropy_alpha", "actor_average_tau")]
    assert {k: config[k] for k in kept} == json.loads(json.dumps({k: SAC_OVERRIDES[k] for k in kept}))


def test_key_covers_behaviour_defaults_simulator_and_format_version(monkeypatch: pytest.MonkeyPatch) -> None:
    key = dataset_key(EXPERT, SIMULATOR)
    assert resolved_pipeline(EXPERT)["behaviour"]["base"]["foresight"] == 1.0  # the default, written out
    original_init = HeuristicExpertPolicy.__init__

    def init(self, grid=None, foresight=0.5):  # the default changed in code
        original_init(self, grid, foresight)

    monkeypatch.setattr(HeuristicExpertPolicy, "__init__", init)
    assert dataset_key(EXPERT, SIMULATOR) != key
    monkeypatch.undo()
    assert dataset_key(EXPERT, SIMULATOR) == key

    resolved = resolve_targets(SIMULATOR)["config"]
    assert {f.name for f in dataclasses.fields(SimulatorConfig)} <= set(resolved)  # every field, listed or not
    assert resolved["satisfaction_gain"] == SimulatorConfig().satisfaction_gain
    changed = {**SIMULATOR, "config": {**SIMULATOR["config"], "satisfaction_gain": 0.07}}
    assert dataset_key(EXPERT, changed) != key
    monkeypatch.setattr(pipelines, "DATA_FORMAT_VERSION", pipelines.DATA_FORMAT_VERSION + 1)
    assert dataset_key(EXPERT, SIMULATOR) != key


def test_unchanged_config_reuses_the_cache_and_a_changed_preset_recollects(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builds = []

    def load(spec: dict) -> tuple:
        def build():
            builds.append(spec["name"])
            return build_dataset(spec, lambda: instantiate(SIMULATOR), instantiate, int(spec["seed"]))

        return cached_dataset(tmp_path, spec["name"], dataset_key(spec, SIMULATOR), build)

    first, path, reused = load(ONLINE)
    again, path_again, reused_again = load(dict(ONLINE))
    assert (reused, reused_again, len(builds)) == (False, True, 1) and path_again == path
    np.testing.assert_array_equal(first.actions, again.actions)
    assert 0 < len(first) <= ONLINE["online_steps"] * ONLINE["batch_users"]  # whole buffer, less unfinished

    rec_preset_with(monkeypatch, tau=0.01)
    _, changed_path, reused_changed = load(ONLINE)
    assert not reused_changed and changed_path != path and len(builds) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, changed_path.name])
