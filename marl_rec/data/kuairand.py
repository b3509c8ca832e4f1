"""KuaiRand interaction logs (Gao et al., CIKM 2022) as an :class:`OfflineDataset`, in one call.

``from_kuairand(path)`` reads a KuaiRand log file (``log_standard_*.csv``, ``log_random_*.csv``;
CSV or Parquet) with the columns ``KUAIRAND_COLUMNS`` and returns the dataset:

- **sessions**: a user's rows sorted by ``time_ms``, cut where two consecutive rows are more
  than ``session_gap_minutes`` apart. A session that ends at a gap ends because the user left
  (*terminal*); the user's last session in the file ends at the log window (*truncated*).
- **state** (``STATE_FEATURES``; known when the video is shown — nothing of this row's
  feedback): the position in the session, the hour of day, the video's duration, the ``tab``,
  and per feedback signal an exponential moving average (decay ``history_decay``) of the
  session's earlier rows — the user's observed state.
- **action**: the video shown, as a discrete index into ``metadata["video_ids"]``.
- **reward components** (``COMPONENTS``, kept as ``reward_components``): the 11 feedback
  signals, with ``play_time_ms`` in minutes and the stay times in seconds; **reward** =
  ``reward_weights`` · components (default: the engagement signals +1, ``is_hate`` -1, a
  minute watched 0.25).
- **rows**: ``"all"``, ``"standard"`` (``is_rand == 0``: the recommender's own exposures; the
  logging policy is unknown, so no propensities) or ``"random"`` (``is_rand == 1``: videos
  shown uniformly at random from a pool, the unbiased evaluation log; each row's propensity
  is ``1 / random_pool_size``, stored as ``behaviour_log_probs``; without a pool size the
  number of distinct videos among the file's random rows is used). Sessions and history
  features are built from every row of the file before the rows are selected.

Malformed input raises ``ValueError`` naming the column and row, as
:func:`marl_rec.data.logs.from_logged_sessions` (which builds the dataset) does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from marl_rec.data.dataset import OfflineDataset
from marl_rec.data.logs import LoggedSessionSchema, _numeric, _open_table, from_logged_sessions

KUAIRAND_COLUMNS: tuple[str, ...] = (
    "user_id", "video_id", "date", "hourmin", "time_ms", "is_click", "is_like", "is_follow", "is_comment",
    "is_forward", "is_hate", "long_view", "play_time_ms", "duration_ms", "profile_stay_time",
    "comment_stay_time", "is_profile_enter", "is_rand", "tab")
FEEDBACK: tuple[str, ...] = ("is_click", "is_like", "is_follow", "is_comment", "is_forward", "is_hate",
                             "long_view", "play_time_ms", "profile_stay_time", "comment_stay_time",
                             "is_profile_enter")
# component name <- (column, scale): play time in minutes, stay times in seconds
COMPONENTS: dict[str, tuple[str, float]] = {
    "click": ("is_click", 1.0), "like": ("is_like", 1.0), "follow": ("is_follow", 1.0),
    "comment": ("is_comment", 1.0), "forward": ("is_forward", 1.0), "hate": ("is_hate", 1.0),
    "long_view": ("long_view", 1.0), "play_minutes": ("play_time_ms", 1 / 60000),
    "profile_stay_seconds": ("profile_stay_time", 1 / 1000), "comment_stay_seconds": ("comment_stay_time", 1 / 1000),
    "profile_enter": ("is_profile_enter", 1.0)}
_BINARY = ("click", "like", "follow", "comment", "forward", "hate", "long_view", "profile_enter")
STATE_FEATURES: tuple[str, ...] = (
    ("session_position", "hour_of_day", "duration_minutes", "tab")
    + tuple(f"history_{name}" for name in _BINARY) + ("history_play_fraction",))
ROWS = ("all", "standard", "random")


def default_reward_weights() -> dict[str, float]:
    return {"click": 1.0, "like": 1.0, "follow": 1.0, "comment": 1.0, "forward": 1.0, "hate": -1.0,
            "long_view": 1.0, "play_minutes": 0.25, "profile_stay_seconds": 0.0, "comment_stay_seconds": 0.0,
            "profile_enter": 0.0}


@dataclass
class KuaiRandConfig:
    """How a KuaiRand log becomes a dataset (module docstring)."""

    session_gap_minutes: float = 30.0
    rows: str = "all"
    random_pool_size: int | None = None
    reward_weights: dict[str, float] = field(default_factory=default_reward_weights)
    history_decay: float = 0.8
    max_position: int = 200  # session_position = min(position, max_position) / max_position
    max_duration_minutes: float = 10.0  # duration_minutes is clipped to this, then scaled to [0, 1]

    def __post_init__(self) -> None:
        if not self.session_gap_minutes > 0:
            raise ValueError(f"KuaiRandConfig.session_gap_minutes must be > 0, got {self.session_gap_minutes!r}")
        if self.rows not in ROWS:
            raise ValueError(f"KuaiRandConfig.rows must be one of {ROWS}, got {self.rows!r}")
        if self.random_pool_size is not None and self.random_pool_size < 1:
            raise ValueError(f"KuaiRandConfig.random_pool_size must be >= 1, got {self.random_pool_size!r}")
        unknown = sorted(set(self.reward_weights) - set(COMPONENTS))
        if unknown:
            raise ValueError(f"KuaiRandConfig.reward_weights: unknown component(s) {unknown}; "
                             f"components are {list(COMPONENTS)}")
        if not 0.0 <= self.history_decay < 1.0:
            raise ValueError(f"KuaiRandConfig.history_decay must be in [0, 1), got {self.history_decay!r}")
        if self.max_position < 1 or not self.max_duration_minutes > 0:
            raise ValueError("KuaiRandConfig.max_position must be >= 1 and max_duration_minutes > 0")


def _sessions(user: np.ndarray, time_ms: np.ndarray, gap_ms: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row order (by user, then time), session index per ordered row, and whether each ordered
    row is the last of its user."""
    order = np.lexsort((time_ms, user))
    user, time_ms = user[order], time_ms[order]
    new_user = np.ones(len(order), dtype=bool)
    new_user[1:] = user[1:] != user[:-1]
    new_session = new_user.copy()
    new_session[1:] |= (time_ms[1:] - time_ms[:-1]) > gap_ms
    user_last = np.ones(len(order), dtype=bool)
    user_last[:-1] = new_user[1:]
    return order, np.cumsum(new_session) - 1, user_last


def _history(values: np.ndarray, session: np.ndarray, decay: float) -> np.ndarray:
    """(n, m) moving average of each column over the session's *earlier* rows (0 at a session start)."""
    out = np.zeros_like(values)
    for i in range(1, len(values)):
        if session[i] == session[i - 1]:
            out[i] = decay * out[i - 1] + (1.0 - decay) * values[i - 1]
    return out


def from_kuairand(source: Any, config: KuaiRandConfig | None = None) -> OfflineDataset:
    """A KuaiRand log file (or in-memory table with ``KUAIRAND_COLUMNS``) as an OfflineDataset."""
    config = config or KuaiRandConfig()

    def needed(names: list[str]) -> list[str]:
        missing = [c for c in KUAIRAND_COLUMNS if c not in names and c not in ("date",)]
        if missing:
            raise ValueError(f"not a KuaiRand log: missing column(s) {missing} (expected {list(KUAIRAND_COLUMNS)})")
        return [c for c in KUAIRAND_COLUMNS if c != "date"]

    table, label = _open_table(Path(source) if isinstance(source, str) else source, needed, None)
    needed(table.names)
    if table.num_rows == 0:
        raise ValueError(f"{label} has no data rows")
    column = {name: _numeric(table, name) for name in KUAIRAND_COLUMNS if name != "date"}
    for name in ("is_click", "is_like", "is_follow", "is_comment", "is_forward", "is_hate", "long_view",
                 "is_profile_enter", "is_rand"):
        bad = (column[name] != 0) & (column[name] != 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"column {name!r}, {table.row_label(i)}: {column[name][i]:g} is not 0 or 1")
    for name in ("play_time_ms", "duration_ms", "profile_stay_time", "comment_stay_time", "time_ms"):
        bad = column[name] < 0
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"column {name!r}, {table.row_label(i)}: {column[name][i]:g} is negative")

    order, session, user_last = _sessions(column["user_id"], column["time_ms"], config.session_gap_minutes * 60000)
    col = {name: values[order] for name, values in column.items()}
    components = np.stack([col[c] * scale for c, scale in COMPONENTS.values()], axis=1)
    binary = components[:, [list(COMPONENTS).index(n) for n in _BINARY]]
    duration_minutes = col["duration_ms"] / 60000
    play_fraction = np.clip(col["play_time_ms"] / np.maximum(col["duration_ms"], 1.0), 0.0, 1.0)
    history = _history(np.column_stack([binary, play_fraction]), session, config.history_decay)
    starts = np.ones(len(session), dtype=bool)
    starts[1:] = session[1:] != session[:-1]
    position = np.arange(len(session)) - np.maximum.accumulate(np.where(starts, np.arange(len(session)), 0))
    state = np.column_stack([
        np.minimum(position, config.max_position) / config.max_position,
        (col["hourmin"] // 100 % 24) / 24.0,
        np.minimum(duration_minutes, config.max_duration_minutes) / config.max_duration_minutes,
        col["tab"],
        history,
    ])
    session_last = np.ones(len(session), dtype=bool)
    session_last[:-1] = starts[1:]
    left = session_last & ~user_last  # a later session of the same user follows: the user left here

    keep = {"all": np.ones(len(session), bool), "standard": col["is_rand"] == 0, "random": col["is_rand"] == 1}[
        config.rows]
    if not keep.any():
        raise ValueError(f"{label}: no rows with rows={config.rows!r} (is_rand "
                         f"{'== 1' if config.rows == 'random' else '== 0'})")
    video_ids, actions = np.unique(col["video_id"], return_inverse=True)
    if len(video_ids) < 2:
        raise ValueError(f"{label}: the log shows fewer than 2 distinct videos")
    # the session's end flags move to its last kept row
    kept_session = session[keep]
    kept_last = np.ones(int(keep.sum()), dtype=bool)
    kept_last[:-1] = kept_session[1:] != kept_session[:-1]
    session_left = np.zeros(int(session.max()) + 1, dtype=bool)
    session_left[session[left]] = True
    terminal = kept_last & session_left[kept_session]
    names = list(COMPONENTS)
    weights = config.reward_weights
    mapping: dict[str, np.ndarray] = {
        # step: the row's rank in time order (two rows of a user may share a time_ms)
        "session": kept_session, "step": np.flatnonzero(keep), "action": actions[keep],
        "terminal": terminal.astype(np.int64), "truncated": (kept_last & ~terminal).astype(np.int64),
        **{f"state_{name}": state[keep, j] for j, name in enumerate(STATE_FEATURES)},
        **{name: components[keep, j] for j, name in enumerate(names)},
    }
    propensity_column = None
    pool = None
    if config.rows == "random":
        pool = config.random_pool_size or int(len(np.unique(col["video_id"][keep])))
        mapping["propensity"] = np.full(int(keep.sum()), 1.0 / pool)
        propensity_column = "propensity"
    schema = LoggedSessionSchema(
        session_column="session", step_column="step", state_prefix="state_", action_columns=("action",),
        action_kind="discrete", num_actions=len(video_ids), component_columns=tuple(names),
        reward_weights=tuple(float(weights.get(name, 0.0)) for name in names), propensity_column=propensity_column,
        terminal_column="terminal", truncated_column="truncated")
    dataset = from_logged_sessions(mapping, schema)
    dataset.metadata.update({
        "source": label, "format": "kuairand", "kuairand": {
            "rows": config.rows, "session_gap_minutes": config.session_gap_minutes,
            "random_pool_size": pool, "reward_weights": {n: float(weights.get(n, 0.0)) for n in names},
            "state_features": list(STATE_FEATURES), "num_users": int(len(np.unique(col["user_id"])))},
        "video_ids": video_ids.astype(np.int64).tolist()})
    return dataset


__all__ = ["COMPONENTS", "FEEDBACK", "KUAIRAND_COLUMNS", "KuaiRandConfig", "ROWS", "STATE_FEATURES",
           "default_reward_weights", "from_kuairand"]
