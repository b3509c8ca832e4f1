"""The multi-agent experiments check every setting before any work: a bad value fails the run
with the config key in the message before a single transition or lifetime is logged
(joint_rec_ads.validate_settings / hierarchical.validate_settings, built from
marl_rec.experiments.common's checks)."""

from __future__ import annotations

from pathlib import Path

import pytest

import marl_rec.agents.experiments.hierarchical as hierarchical
import marl_rec.agents.experiments.joint_rec_ads as joint_rec_ads
from hydra_config import compose_config
from run_settings import assert_refused_before_work, reached

COMMON = [  # the settings every experiment reads, and how a bad value is reported
    ("evaluation.ab_users_per_group=1", r"evaluation.ab_users_per_group=1: must be an integer >= 2"),
    ("evaluation.num_users=0", r"evaluation.num_users=0: must be an integer >= 1"),
    ("evaluation.seed=-3", r"evaluation.seed=-3: must be an integer >= 0"),
    ("evaluation.gamma=2", r"evaluation.gamma=2.0: must be a discount in \[0, 1\]"),
    ("train.num_updates=0", r"train.num_updates must be >= 1, got 0"),
    ("train.q_divergence_bound=nan", r"train.q_divergence_bound must be > 0, got nan"),
    ("train.eval_every=-1", r"train.eval_every must be >= 0"),
    ("+env.leave_slope=nan", r"env.leave_slope must be finite, got nan"),
    ("agent.gamma=0", r"agent.gamma must be in \(0, 1\], got 0"),
    ("agent.gamma=nan", r"agent.gamma must be in \(0, 1\], got nan"),
    ("agent.num_seeds=0", r"agent.num_seeds must be an int >= 1, got 0"),
    (None, None),  # a valid run: reaches the collection (the sentinel)
]
JOINT = COMMON + [
    ("agent.collection.num_transitions=0", r"agent.collection.num_transitions must be an int >= 1, got 0"),
    ("agent.collection.recommender_sigma=nan", r"agent.collection.recommender_sigma must be finite and > 0"),
    ("agent.collection.constant_action=[nan,0,0,0]", r"agent.collection.constant_action must be 4 values in \[-1, 1\]"),
    ("agent.collection.constant_action=[a,0,0,0]", r"agent.collection.constant_action must be a list of numbers"),
    ("agent.frontier.num_updates=0", r"agent.frontier.num_updates must be None or >= 1, got 0"),
    ("env.revenue_weight=-1", r"env.revenue_weight must be finite and >= 0"),
    ("cache_dir=FILE/cache", r"cache_dir=.*file/cache: not a writable folder"),
]
HIERARCHICAL = COMMON + [
    ("agent.collection.num_users=0", r"agent.collection.num_users must be an int >= 1, got 0"),
    ("agent.collection.behaviour_sigma=inf", r"agent.collection.behaviour_sigma must be finite and > 0, got inf"),
    ("agent.collection.follower_weight=nan", r"agent.collection.follower_weight must be finite, got nan"),
    ("agent.collection.follower_values=[1,x]", r"agent.collection.follower_values must be a list of numbers"),
    ("agent.short_term.num_updates=0", r"agent.short_term.num_updates must be an int >= 1, got 0"),
    ("agent.short_term.gamma=2", r"agent.short_term.gamma must be in \[0, 1\], got 2"),
    ("+agent.flat.overrides.batch_size=-1", r"agent.flat: .*batch_size must be an integer >= 1, got -1"),
    ("+agent.long_term.overrides.bogus=1", r"agent.long_term: unknown .* field\(s\) \['bogus'\]"),
    ("env.max_requests=0", r"env.max_requests must be in \[1, "),
]


def _run_until_collection(module, collector: str, experiment: str, override: str | None, message: str | None,
                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module, collector, reached)
    (tmp_path / "file").write_text("not a folder")
    overrides = [f"+experiment={experiment}", f"cache_dir={tmp_path / 'cache'}"]
    if override is not None:
        overrides.append(override.replace("FILE", str(tmp_path / "file")))
    cfg = compose_config(overrides)
    assert_refused_before_work(module.run, cfg, tmp_path / "run", message)


@pytest.mark.parametrize("override, message", JOINT)
def test_joint_rec_ads_checks_its_settings_before_collecting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            override: str | None, message: str | None) -> None:
    _run_until_collection(joint_rec_ads, "collect_joint", "joint_rec_ads", override, message, tmp_path, monkeypatch)


def test_joint_rec_ads_creates_its_cache_dir_before_collecting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run_until_collection(joint_rec_ads, "collect_joint", "joint_rec_ads", None, None, tmp_path, monkeypatch)
    assert (tmp_path / "cache").is_dir()


@pytest.mark.parametrize("override, message", HIERARCHICAL)
def test_hierarchical_checks_its_settings_before_collecting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           override: str | None, message: str | None) -> None:
    _run_until_collection(hierarchical, "collect_lifetimes", "hierarchical", override, message, tmp_path, monkeypatch)
