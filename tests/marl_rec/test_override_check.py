"""marl-rec refuses a key its config does not have, with or without "+", naming the nearest
known keys; adding keys stays possible in the free-form groups and hydra's own settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from marl_rec.override_check import unknown_key_error


@pytest.mark.parametrize("argv, key, suggestion", [
    (["+train.num_update=5"], "train.num_update", "train.num_updates"),
    (["train.num_update=5"], "train.num_update", "train.num_updates"),
    (["++train.num_updatez=3"], "train.num_updatez", "train.num_updates"),
    (["+evaluaton.ope=false"], "evaluaton.ope", "evaluation.ope"),
    (["+env.config.num_topic=4"], "env.config.num_topic", "env.config.num_topics"),
    (["algo=td3", "+algo.cql_alpha=1"], "algo.cql_alpha", None),  # a CQL setting on TD3
    (["+sed=3"], "sed", "seed"),
])
def test_unknown_keys_are_refused(argv: list[str], key: str, suggestion: str | None) -> None:
    message = unknown_key_error(argv)
    assert message is not None and f"unknown config key {key!r}" in message
    if suggestion:
        assert f"did you mean {suggestion!r}" in message


@pytest.mark.parametrize("argv", [
    ["train.num_updates=5", "evaluation.ope=false", "env.config.num_topics=4", "seed=3"],
    ["+data.collect_after.sigma=0.1"],  # free-form group: a pipeline option
    ["data=expert", "+data.behaviour.base.extra=1"],
    ["-m", "algo=td3,cql", "algo.cql_alpha=1"],  # the key exists for one of the swept choices
    ["+experiment=cql_alpha", "algo.cql_alpha=2"],  # the experiment selects cql
    ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    ["+experiment=joint_rec_ads", "+env.max_requests=10"],  # env=joint_rec_ads is a _target_ call: free-form
    ["algo=nonexistent"],  # Hydra's own message names the group
    ["--help"],
])
def test_known_and_free_form_keys_pass(argv: list[str]) -> None:
    assert unknown_key_error(argv) is None


def test_the_cli_stops_before_running(tmp_path: Path) -> None:
    env = {**os.environ, "MARL_REC_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-m", "marl_rec.cli", "+train.num_update=5",
                             f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode != 0
    assert "unknown config key 'train.num_update'" in result.stderr and "train.num_updates" in result.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()  # nothing ran
