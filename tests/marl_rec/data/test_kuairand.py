"""KuaiRand logs -> OfflineDataset: sessions cut by a time gap, history features without leakage,
per-behaviour reward components, the random-exposure rows as an evaluation log with propensities.
The tests write small files with KuaiRand's header; nothing is downloaded."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from marl_rec.data.kuairand import COMPONENTS, KUAIRAND_COLUMNS, STATE_FEATURES, KuaiRandConfig, from_kuairand

MINUTE = 60_000


def row(user, video, minute, click=0, like=0, hate=0, play_ms=0, duration_ms=60_000, rand=0, tab=1, **extra):
    values = dict(user_id=user, video_id=video, date=20220408, hourmin=1500, time_ms=1_649_000_000_000 + minute * MINUTE,
                  is_click=click, is_like=like, is_follow=0, is_comment=0, is_forward=0, is_hate=hate, long_view=0,
                  play_time_ms=play_ms, duration_ms=duration_ms, profile_stay_time=0, comment_stay_time=0,
                  is_profile_enter=0, is_rand=rand, tab=tab)
    values.update(extra)
    return values


def write(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(KUAIRAND_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    return path


# user 7: a session of 3 rows, a 40-minute gap (the user left), a session of 2 rows (log ends);
# user 9: one session of 2 rows. Rows are shuffled in the file: time orders them.
ROWS = [
    row(7, 100, 0, click=1, like=1, play_ms=30_000),
    row(7, 101, 1, click=1, play_ms=60_000, rand=1),
    row(7, 102, 2, hate=1),
    row(7, 103, 42, click=1, rand=1, play_ms=6_000),
    row(7, 100, 43),
    row(9, 104, 5, click=1, rand=1),
    row(9, 101, 6, like=1),
]


def test_sessions_rewards_and_history(tmp_path):
    path = write(tmp_path / "log_standard_sample.csv", ROWS[::-1])
    config = KuaiRandConfig(session_gap_minutes=30)
    data = from_kuairand(path, config)
    # 3 sessions; the truncated ones (user 7's second, user 9's) lose their last row (no next state)
    assert data.metadata["num_sessions"] == 3 and data.metadata["dropped_rows"] == 2
    assert len(data.rewards) == 5
    assert data.terminals.tolist() == [False, False, True, False, False]  # user 7 left after minute 2
    assert data.episode_starts.tolist() == [True, False, False, True, True]
    videos = np.array(data.metadata["video_ids"])[data.actions]
    assert videos.tolist() == [100, 101, 102, 103, 104]
    names = list(COMPONENTS)
    assert data.component_names == names
    first = dict(zip(names, data.reward_components[0]))
    assert first["click"] == 1 and first["like"] == 1 and first["play_minutes"] == pytest.approx(0.5)
    weights = np.array([config.reward_weights[n] for n in names])
    np.testing.assert_allclose(data.rewards, data.reward_components @ weights, rtol=1e-6)
    assert data.rewards[2] == pytest.approx(-1.0)  # a hate, nothing else
    # history features: the session's earlier rows only (no leakage of the row's own feedback)
    history_click = data.observations[:, list(STATE_FEATURES).index("history_click")]
    assert history_click[0] == 0 and history_click[3] == 0  # session starts
    assert history_click[1] == pytest.approx(0.2) and history_click[2] == pytest.approx(0.8 * 0.2 + 0.2)
    position = data.observations[:, list(STATE_FEATURES).index("session_position")]
    assert position[:3] * config.max_position == pytest.approx([0, 1, 2])
    np.testing.assert_array_equal(data.next_observations[0], data.observations[1])


def test_random_rows_are_an_evaluation_log_with_uniform_propensities(tmp_path):
    path = write(tmp_path / "log_random_sample.csv", ROWS)
    data = from_kuairand(path, KuaiRandConfig(rows="random", random_pool_size=50))
    np.testing.assert_allclose(data.behaviour_log_probs, np.log(1 / 50))
    assert set(np.array(data.metadata["video_ids"])[data.actions]) <= {101, 103, 104}
    # history comes from every row of the session, not only the random ones
    history_like = data.observations[:, list(STATE_FEATURES).index("history_like")]
    assert history_like[0] == pytest.approx(0.2)  # video 101 follows a liked video 100
    default_pool = from_kuairand(path, KuaiRandConfig(rows="random"))
    np.testing.assert_allclose(default_pool.behaviour_log_probs, np.log(1 / 3))  # 3 distinct random videos
    standard = from_kuairand(path, KuaiRandConfig(rows="standard"))
    assert standard.behaviour_log_probs is None


def test_bad_files_raise_errors_naming_the_problem(tmp_path):
    with pytest.raises(ValueError, match=r"column 'is_click', row \d+ .*: 2 is not 0 or 1"):
        from_kuairand(write(tmp_path / "a.csv", [row(1, 1, 0, click=2), row(1, 2, 1)]))
    with open(tmp_path / "b.csv", "w") as f:
        f.write("user_id,video_id,time_ms\n1,2,3\n")
    with pytest.raises(ValueError, match="missing column"):
        from_kuairand(tmp_path / "b.csv")
    with pytest.raises(ValueError, match="rows must be one of"):
        KuaiRandConfig(rows="biased")
    with pytest.raises(ValueError, match="unknown component"):
        KuaiRandConfig(reward_weights={"clicks": 1.0})
