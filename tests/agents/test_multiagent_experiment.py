"""The joint_rec_ads Hydra experiment: composition, option checking, and a tiny end-to-end run
through ``python -m marl_rec.cli +experiment=joint_rec_ads``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from marl_rec.agents.experiments.joint_rec_ads import JointExperimentConfig
from marl_rec.schema import register_schemas

# a run small enough for a test: short sessions, a small world, a few updates, tiny networks
TINY = ["agent.num_seeds=2", "agent.collection.num_transitions=600", "agent.collection.batch_users=64",
        "+env.max_requests=10", "+env.items_per_topic=40", "+env.ads_per_topic=6",
        "train.num_updates=20", "train.eval_every=10", "train.log_every=10", "train.checkpoint_every=10",
        "+agent.centralised.overrides.batch_size=32", "+agent.independent.recommender.overrides.batch_size=32",
        "+agent.independent.advertiser.overrides.batch_size=32", "evaluation.num_users=16", "evaluation.ab_users_per_group=48",
        "agent.frontier.revenue_weights=[0.0,4.0]",
        "+agent.centralised.overrides.critic_hidden=[16,16]", "+agent.centralised.overrides.actor_hidden=[16,16]",
        "+agent.independent.recommender.overrides.vae_hidden=[16,16]",
        "+agent.independent.recommender.overrides.actor_hidden=[16,16]",
        "+agent.independent.recommender.overrides.critic_hidden=[16,16]",
        "+agent.independent.advertiser.overrides.q_hidden=[16,16]",
        "+agent.independent.advertiser.overrides.imitation_hidden=[16,16]"]


def compose_config(overrides: list[str]):
    GlobalHydra.instance().clear()
    register_schemas()
    with initialize_config_module(config_module="marl_rec.conf", version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def test_experiment_config_composes_and_parses():
    cfg = compose_config(["+experiment=joint_rec_ads"])
    assert cfg.task == "marl_rec.agents.experiments.joint_rec_ads.run"
    assert cfg.env._target_ == "marl_rec.envs.joint_rec_ads.JointRecAdsEnv" and cfg.simulator is None
    settings = JointExperimentConfig.from_node(cfg.agent)
    assert settings.num_seeds == 3
    assert settings.learner_specs()["advertiser"].algorithm == "discrete_bcq"
    assert settings.learner_specs()["recommender"].overrides["gamma"] == settings.gamma
    # cooperative: the committed config decomposes the team critic into engagement and revenue critics
    assert settings.decomposed() and settings.centralised_config("cooperative", 4.0).team_weights == (1.0, 4.0)
    assert settings.centralised_config().actor_q_weight == 10.0  # the measured BC weight, not the preset's 2.5
    assert not settings.centralised_config("mixed").shared_critic  # one critic per agent, own rewards
    assert 4.0 in settings.frontier.revenue_weights
    mixed = compose_config(["+experiment=joint_rec_ads", "env.mode=mixed", "env.revenue_weight=8"])
    assert mixed.env.mode == "mixed" and mixed.env.revenue_weight == 8


def test_decomposed_centralised_learner_weighs_an_engagement_and_a_revenue_critic():
    cfg = compose_config(["+experiment=joint_rec_ads", "agent.centralised.revenue_gamma=0.5", "agent.gamma=0.9"])
    settings = JointExperimentConfig.from_node(cfg.agent)
    assert settings.decomposed() and not settings.decomposed("mixed")
    config = settings.centralised_config("cooperative", 4.0)
    assert not config.shared_critic and config.team_weights == (1.0, 4.0) and config.critic_gammas == (0.9, 0.5)
    assert config.continuous_own_critic
    mixed = settings.centralised_config("mixed", 4.0)  # mixed mode: each agent its own critic and discount
    assert not mixed.shared_critic and mixed.team_weights is None and mixed.critic_gammas is None
    plain = JointExperimentConfig.from_node(compose_config(["+experiment=joint_rec_ads",
                                                            "agent.centralised.decomposed=false"]).agent)
    assert not plain.decomposed() and plain.centralised_config("cooperative", 4.0).shared_critic
    from omegaconf import OmegaConf

    node = OmegaConf.to_container(cfg.agent)
    with pytest.raises(ValueError, match="agent.centralised.decomposed"):
        JointExperimentConfig.from_node({**node, "centralised": {**node["centralised"], "decomposed": "yes"}})
    with pytest.raises(ValueError, match="agent.centralised.revenue_gamma"):
        JointExperimentConfig.from_node({**node, "centralised": {**node["centralised"], "revenue_gamma": 2.0}})


def test_bad_agent_options_are_rejected_by_name():
    cfg = compose_config(["+experiment=joint_rec_ads"])
    from omegaconf import OmegaConf

    node = OmegaConf.to_container(cfg.agent)
    with pytest.raises(ValueError, match="unknown agent option.*'learning_rate'"):
        JointExperimentConfig.from_node({**node, "learning_rate": 1.0})
    with pytest.raises(ValueError, match="recommender_sigma"):
        JointExperimentConfig.from_node({**node, "collection": {**node["collection"], "recommender_sigma": 0}})
    with pytest.raises(ValueError, match="unknown algorithm"):
        JointExperimentConfig.from_node({**node, "independent": {**node["independent"],
                                                                 "advertiser": {"algorithm": "nope"}}})
    with pytest.raises(ValueError, match="agent.centralised.overrides.*'lr'"):
        JointExperimentConfig.from_node({**node, "centralised": {"overrides": {"lr": 1.0}}})
    with pytest.raises(ValueError, match="frontier.learners"):
        JointExperimentConfig.from_node({**node, "frontier": {"learners": ["oracle"]}})


def test_tiny_run_through_the_cli(tmp_path: Path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "MARL_REC_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "marl_rec.cli", "+experiment=joint_rec_ads", *TINY,
                             f"hydra.run.dir={run_dir}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mean ± std over 2 seed(s)" in result.stdout and "centralised - independent" in result.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["seeds"] == [0, 1]
    for policy in ("behaviour", "independent", "centralised"):
        row = metrics["table"][policy]
        for metric in ("team_return", "engagement", "revenue", "session_length", "ad_load"):
            # the table is the mean ± std (ddof=1) of the per-seed results it reports next to it
            values = [result["results"][policy][metric] for result in metrics["per_seed"]]
            assert row[metric]["mean"] == pytest.approx(sum(values) / 2)
            assert row[metric]["std"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5)
        if policy != "behaviour":  # each seed logs its own dataset: the learners differ between seeds
            assert row["team_return"]["std"] > 0.0
        assert row["ad_load"]["mean"] <= 0.25 + 1e-9  # the cap holds for every policy
    assert set(metrics["centralised_vs_independent"]) >= {"spread", "target_met", "centralised_minus_independent"}
    assert [p["revenue_weight"] for p in metrics["frontier"]["points"]["centralised"]] == [0.0, 4.0]
    figure = run_dir / "frontier.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the dataset is cached and reused by the second seed's frontier
    assert len(list((tmp_path / "cache").glob("joint_rec_ads-*"))) == 2

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def tags(folder: Path) -> set[str]:
        accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        accumulator.Reload()
        return set(accumulator.Tags()["scalars"])

    seed0 = run_dir / "seed0"
    assert "train/recommender/critic_loss" in tags(seed0 / "independent" / "recommender")
    assert "train/advertiser/critic_loss" in tags(seed0 / "independent" / "advertiser")
    centralised = tags(seed0 / "centralised")
    assert {"train/centralised/critic_loss", "train/centralised/recommender_actor_loss", "eval/revenue",
            "eval/team_return"} <= centralised
    assert {"eval/revenue", "eval/engagement", "eval/ad_load"} <= tags(seed0 / "independent")
    assert "final/centralised/team_return" in tags(run_dir)


def test_decomposed_centralised_learner_trains_on_the_reward_components(tmp_path: Path):
    """``centralised.decomposed``: the learner gets the mixed mode's rewards (engagement for the
    recommender's critic, revenue for the advertiser's) and weighs them (1, λ); it still trains
    and evaluates on the cooperative team objective."""
    from marl_rec.agents.experiments.joint_rec_ads import joint_dataset, train_learners
    from marl_rec.agents.multiagent_data import relabel
    from marl_rec.experiments.common import instantiate_checked

    cfg = compose_config(["+experiment=joint_rec_ads", *TINY, f"cache_dir={tmp_path / 'cache'}"])
    settings = JointExperimentConfig.from_node(cfg.agent)
    env = instantiate_checked(cfg.env, {"SimulatorConfig": "env", "JointRecAdsConfig": "env"})
    dataset, _ = joint_dataset(cfg, settings.collection, env.sim_config, env.config, 0)
    team = relabel(dataset, "cooperative", 4.0)
    learner = train_learners(cfg, settings, team, env.sim_config, env.config, 0, tmp_path / "run",
                             ("centralised",))["centralised"]
    assert learner.critic_names == ["recommender", "advertiser"] and learner.config.team_weights == (1.0, 4.0)
    assert learner.num_updates == 20
    # the critics' targets: revenue per request for the advertiser's, engagement for the recommender's
    status = json.loads((tmp_path / "run" / "centralised" / "trainer_status.json").read_text())
    revenue, engagement = (status[f"train/centralised/{agent}_target_mean"] for agent in ("advertiser", "recommender"))
    assert revenue < 0.5 < engagement, (revenue, engagement)
