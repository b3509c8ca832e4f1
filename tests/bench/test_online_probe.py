"""bench/online_probe.py: the overrides it parses, the table of its JSON, and its refusal to probe on
the calibration's own seeds (no training here)."""
import sys

import pytest
from bench_scripts import load

probe = load("online_probe")


def test_overrides_are_python_literals_or_bare_strings() -> None:
    assert probe.parse_override("batch_size=1024") == ("batch_size", 1024)
    assert probe.parse_override("penalty=False") == ("penalty", False)
    assert probe.parse_override("actor_q=mean") == ("actor_q", "mean")
    with pytest.raises(SystemExit, match="FIELD=VALUE"):
        probe.parse_override("batch_size")


def test_table_names_only_the_settings_beyond_the_learner_and_reports_the_last_checkpoint() -> None:
    sac = dict(probe.ONLINE_LEARNERS["sac"].overrides)
    checkpoints = [{"updates": 2000, "mean_return": 111.0, "headroom_share": 0.1},
                   {"updates": 4000, "mean_return": 118.25, "headroom_share": 0.85, "stochastic_return": 109.0}]
    report = {"reference": {"500 users, seed 7": {"best_constant": {"mean_return": 110.5},
                                                  "production": {"mean_return": 119.6}}},
              "rows": {"big": {"learner": "sac", "overrides": {**sac, "batch_size": 1024}, "train_seed": 1,
                               "checkpoints": checkpoints, "result": checkpoints[-1]},
                       "plain": {"learner": "sac", "overrides": {**sac, "actor_hidden": [128, 128]},
                                 "train_seed": 2, "checkpoints": checkpoints[:1], "result": checkpoints[0]}}}
    table = probe.markdown_table(report)
    assert "| big | sac | batch_size=1024 | 1 | 111.0 (2k) / 118.2 (4k) | 109.0 | 0.85 |" in table
    # a JSON list equals the learner's tuple: nothing changed; no stochastic return: a dash
    assert "| plain | sac | as the learner | 2 | 111.0 (2k) | – | 0.10 |" in table
    assert "best constant 110.5, production 119.6" in table


@pytest.mark.parametrize("seeds", [["--eval-seed", "123"], ["--train-seed", "0"]])
def test_the_calibrations_own_seeds_are_refused(seeds, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(sys, "argv", ["online_probe.py", "--label", "x", "--json", str(tmp_path / "p.json"), *seeds])
    with pytest.raises(SystemExit, match="calibration's own"):
        probe.main()


def test_the_reference_constant_and_the_headroom_share_come_from_the_calibration(tmp_path) -> None:
    calibration = tmp_path / "calibration.json"
    calibration.write_text('{"default": {"constants": {"best": {"action": [-1, 0.5, -1, 0]}}}}')
    assert probe.best_constant_action(calibration).tolist() == [-1.0, 0.5, -1.0, 0.0]
    # the committed calibration's best constant is the one the probe's reference rows were measured with
    assert probe.best_constant_action().tolist() == [-1.0, -1.0, -1.0, 0.0]
    assert probe.headroom_share(118.25, 110.5, 119.6) == pytest.approx(0.8516, abs=1e-4)
    assert probe.headroom_share(110.5, 110.5, 119.6) == 0.0 and probe.headroom_share(119.6, 110.5, 119.6) == 1.0
