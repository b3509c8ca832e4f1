"""Every setting of a run is checked before any work: a bad value fails the run with the config
key in the message before the data is logged or anything trains (the experiment preamble,
marl_rec.experiments.common.validate_run)."""

from __future__ import annotations

from pathlib import Path

import pytest

import marl_rec.experiments.fusion_offline as fusion_offline
from hydra_config import compose_config
from run_settings import assert_refused_before_work, reached
from marl_rec.experiments.common import check_cache_dir, validate_run


@pytest.mark.parametrize("override, message", [
    ("evaluation.ab_users_per_group=1", r"evaluation.ab_users_per_group=1: must be an integer >= 2"),
    ("evaluation.gamma=2", r"evaluation.gamma=2.0: must be a discount in \[0, 1\]"),
    ("evaluation.gamma=nan", r"evaluation.gamma=nan: must be a discount"),
    ("evaluation.num_users=0", r"evaluation.num_users=0: must be an integer >= 1"),
    ("evaluation.seed=-3", r"evaluation.seed=-3: must be an integer >= 0"),
    ("train.num_updates=0", r"train.num_updates must be >= 1, got 0"),
    ("train.q_divergence_bound=nan", r"train.q_divergence_bound must be > 0, got nan"),
    ("train.eval_every=-1", r"train.eval_every must be >= 0"),
    ("algo.batch_size=-1", r"batch_size must be an integer >= 1, got -1"),
    ("env.config.leave_slope=nan", r"env.config.leave_slope must be finite, got nan"),
    ("env.config.world_seed=-1", r"env.config.world_seed must be in \[0, "),
    ("data=random", None),  # a valid run: reaches the data (the sentinel below)
    ("data.num_transitions=0", None),  # unused by the default online pipeline: fine
])
def test_bad_settings_fail_before_the_data_is_logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     override: str, message: str | None) -> None:
    monkeypatch.setattr(fusion_offline, "load_dataset", reached)
    cfg = compose_config([override, f"cache_dir={tmp_path / 'cache'}", "evaluation.ope=false"])
    assert_refused_before_work(fusion_offline.run, cfg, tmp_path / "run", message)


def test_data_settings_are_checked_for_the_pipelines_that_use_them(tmp_path: Path) -> None:
    cfg = compose_config(["data=random", "data.num_transitions=0", f"cache_dir={tmp_path}"])
    with pytest.raises(ValueError, match=r"data.num_transitions=0: must be an integer >= 1"):
        validate_run(cfg)
    cfg = compose_config(["data.online_steps=0", f"cache_dir={tmp_path}"])
    with pytest.raises(ValueError, match=r"data.online_steps=0: must be an integer >= 1"):
        validate_run(cfg)


def test_cache_dir_is_created_and_must_be_writable(tmp_path: Path) -> None:
    created = check_cache_dir(tmp_path / "a" / "b")
    assert created.is_dir() and list(created.iterdir()) == []  # the probe file is gone
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ValueError, match=r"cache_dir=.*file/cache: not a writable folder"):
        check_cache_dir(tmp_path / "file" / "cache")
    cfg = compose_config([f"cache_dir={tmp_path / 'file' / 'cache'}"])
    with pytest.raises(ValueError, match="cache_dir="):
        validate_run(cfg)


def test_the_schema_refuses_a_mistyped_simulator_setting_at_parse_time() -> None:
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="num_topics"):
        compose_config(["env.config.num_topics=abc"])
    with pytest.raises(ConfigCompositionException, match="items_per_topic"):
        compose_config(["env.config.items_per_topic=1e9"])
