"""Build an :class:`OfflineDataset` from a table of logged sessions (CSV, Parquet, or a table in memory).

The table has one row per request (a logged decision) and the columns a
:class:`LoggedSessionSchema` names:

================== ============================================================================
schema field       meaning of the column(s)
================== ============================================================================
session_column     session id (any value: string or number); a session is one episode
step_column        position within the session: any increasing number (step index, timestamp);
                   rows are sorted by it; the same step twice in a session is an error
state_columns /    state features, numeric: an explicit list of columns, or every column whose
state_prefix       name starts with the prefix (in table order) — give exactly one of the two
next_state_columns optional explicit next-state features (same count as the state); without them
/ next_state_prefix the next state is the state of the session's next row (see "session ends")
action_columns /   the logged action: continuous — one numeric column per action dimension, each
action_prefix      value in [action_low, action_high]; discrete (``action_kind="discrete"``) —
                   one column of integers 0 .. num_actions - 1
reward_column      the reward, numeric; or, instead of it, ``reward_weights``:
component_columns  per-behaviour reward components (click, like, watch time, ...), numeric;
                   kept in the dataset as ``reward_components`` (names = column names)
reward_weights     one weight per component column: reward = Σ weight · component.
                   Give exactly one of ``reward_column`` and ``reward_weights``
consumed_columns / optional: what the platform knows about what the user consumed on the request
consumed_prefix    (the clicked items' predicted behaviours, predicted utility, topics, slate
                   positions; the ad shown, its position, bid, predicted and realised click —
                   ``marl_rec.irl.data.consumed_feature_names``), numeric; kept after the
                   components in ``reward_components`` under their names, never weighted into
                   the reward: a learned reward reads them (``feature_set="logged"``)
propensity_column  optional: the logging policy's probability of the logged action, in (0, 1]
                   (``propensity_kind="probability"``) or its log-probability / log-density
                   (``"log_probability"``, for continuous actions whose density may exceed 1);
                   stored as ``behaviour_log_probs``
terminal_column    optional flags (true/false, 1/0, yes/no): the user left after this row
truncated_column   optional flags: the session was cut here (time limit, end of the log window)
================== ============================================================================

Session ends. A flag may only be set on the last row of its session, and not both flags on
one row. The last row of a session is terminal unless the log says otherwise: with a
``terminal_column`` it is terminal only if flagged (otherwise truncated); with only a
``truncated_column`` it is truncated only if flagged. A terminal transition's next state is
zeros (it is never bootstrapped from). A truncated session needs the state *after* its last
action to bootstrap from: with next-state columns it is read from them; without them the
last row only supplies the next state of the row before it, and its own action and reward
are dropped (as d3rlpy does) — ``metadata['dropped_rows']`` counts such rows and a session
left with no transition is dropped (``metadata['dropped_sessions']``).

Writing. :func:`write_logged_sessions` writes a dataset as such a table (CSV or Parquet, atomically)
and returns the schema that reads it back to the same dataset (tested round trip): one column
per state and next-state entry, per action dimension, the reward, every component under its
name (names that start with ``consumed_`` or ``ad_``, :data:`CONSUMED_COLUMN_PREFIXES`, become
the schema's ``consumed_columns``), the log-propensity and both end flags.

Row order. Sessions keep the order in which they first appear in the table; rows are sorted
by step within a session. Every violation raises ``ValueError`` naming the column and row
(row = 0-based data row of the input table; for CSV also the line of the file).

CSV is read with the ``csv`` module (no pandas), in Python: about 10k rows of 42 columns
per second on a busy 2-core machine, fine for samples and tests; for millions of rows use
Parquet, which needs ``pyarrow`` (the ``marl-rec[parquet]`` extra) and imported the same
table about 15x faster. In-memory tables: a ``pyarrow.Table``, a pandas/polars DataFrame,
or a mapping from column name to a 1-D array.
"""

from __future__ import annotations

import csv
import operator
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from marl_rec.contracts import ActionSpec
from marl_rec.data.dataset import OfflineDataset

_TRUE = {"1", "1.0", "true", "t", "yes", "y"}
#: Component names :func:`write_logged_sessions` files under ``consumed_columns`` (what was consumed, the ad).
CONSUMED_COLUMN_PREFIXES = ("consumed_", "ad_")
_FALSE = {"0", "0.0", "false", "f", "no", "n"}


@dataclass
class LoggedSessionSchema:
    """Which columns of a logged-session table mean what (see the module docstring)."""

    session_column: str = "session_id"
    step_column: str = "step"
    state_columns: tuple[str, ...] = ()
    state_prefix: str | None = None
    next_state_columns: tuple[str, ...] = ()
    next_state_prefix: str | None = None
    action_columns: tuple[str, ...] = ()
    action_prefix: str | None = None
    action_kind: str = "continuous"
    num_actions: int = 0
    action_low: float = -1.0
    action_high: float = 1.0
    reward_column: str | None = None
    component_columns: tuple[str, ...] = ()
    reward_weights: tuple[float, ...] | None = None
    consumed_columns: tuple[str, ...] = ()
    consumed_prefix: str | None = None
    propensity_column: str | None = None
    propensity_kind: str = "probability"
    terminal_column: str | None = None
    truncated_column: str | None = None

    def __post_init__(self) -> None:
        # accept lists (e.g. from Hydra/YAML) for the tuple fields
        for name in ("state_columns", "next_state_columns", "action_columns", "component_columns",
                     "consumed_columns"):
            setattr(self, name, tuple(getattr(self, name)))
        if self.reward_weights is not None:
            self.reward_weights = tuple(float(w) for w in self.reward_weights)
        if bool(self.state_columns) == (self.state_prefix is not None):
            raise ValueError("LoggedSessionSchema: give exactly one of state_columns and state_prefix")
        if self.consumed_columns and self.consumed_prefix is not None:
            raise ValueError("LoggedSessionSchema: give at most one of consumed_columns and consumed_prefix")
        if self.next_state_columns and self.next_state_prefix is not None:
            raise ValueError("LoggedSessionSchema: give at most one of next_state_columns and next_state_prefix")
        if bool(self.action_columns) == (self.action_prefix is not None):
            raise ValueError("LoggedSessionSchema: give exactly one of action_columns and action_prefix")
        if self.action_kind not in ("continuous", "discrete"):
            raise ValueError(f"LoggedSessionSchema.action_kind must be 'continuous' or 'discrete', "
                             f"got {self.action_kind!r}")
        if self.action_kind == "discrete" and self.num_actions < 2:
            raise ValueError(f"LoggedSessionSchema.num_actions must be >= 2 for discrete actions, "
                             f"got {self.num_actions}")
        if self.action_kind == "continuous" and not self.action_low < self.action_high:
            raise ValueError(f"LoggedSessionSchema: action_low={self.action_low} must be < "
                             f"action_high={self.action_high}")
        if (self.reward_column is None) == (self.reward_weights is None):
            raise ValueError("LoggedSessionSchema: give exactly one of reward_column and reward_weights")
        if self.reward_weights is not None and len(self.reward_weights) != len(self.component_columns):
            raise ValueError(f"LoggedSessionSchema.reward_weights has {len(self.reward_weights)} weights for "
                             f"{len(self.component_columns)} component_columns {list(self.component_columns)}")
        if self.propensity_kind not in ("probability", "log_probability"):
            raise ValueError(f"LoggedSessionSchema.propensity_kind must be 'probability' or 'log_probability', "
                             f"got {self.propensity_kind!r}")

    def action_spec(self, action_dim: int) -> ActionSpec:
        if self.action_kind == "discrete":
            return ActionSpec("discrete", num_actions=self.num_actions)
        return ActionSpec("continuous", dim=action_dim, low=self.action_low, high=self.action_high)


# ------------------------------------------------------------------- tables
@dataclass
class _Table:
    """Column access plus a way to name a row in error messages."""

    names: list[str]
    column: Callable[[str], np.ndarray]
    num_rows: int
    row_label: Callable[[int], str]


def _read_csv(path: Path, needed: Callable[[list[str]], list[str]], delimiter: str) -> _Table:
    """Read only the columns the schema needs, as string arrays, in one pass."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path} is empty (no header row)")
        header = [name.strip() for name in header]
        duplicated = sorted({n for n in header if header.count(n) > 1})
        if duplicated:
            raise ValueError(f"{path}: duplicated column names in the header: {duplicated}")
        wanted = needed(header)
        pick = operator.itemgetter(*[header.index(name) for name in wanted], 0)  # a tuple even for one column
        width = len(header)
        picked: list[tuple[str, ...]] = []
        lines: list[int] = []
        first_line = reader.line_num + 1  # a quoted cell may span lines: name the line a row starts on
        for row in reader:
            if len(row) != width:
                if not row:  # blank line
                    first_line = reader.line_num + 1
                    continue
                raise ValueError(f"{path}, line {first_line}: {len(row)} fields, the header has {width}")
            lines.append(first_line)
            first_line = reader.line_num + 1
            picked.append(pick(row))
    by_column = list(zip(*picked)) if picked else [() for _ in range(len(wanted) + 1)]
    # values keep surrounding spaces: float() ignores them, session ids and flags are stripped where read
    columns = {name: np.array(values, dtype=object) for name, values in zip(wanted, by_column)}
    return _Table(header, columns.__getitem__, len(lines),
                  lambda i: f"row {i} (line {lines[i]} of {path.name})")


def _arrow_table(table: Any, label: str) -> _Table:
    def column(name: str) -> np.ndarray:
        chunked = table.column(name)
        if chunked.null_count:
            first = int(np.flatnonzero(chunked.is_null().to_numpy(zero_copy_only=False))[0])
            raise ValueError(f"column {name!r}, row {first}: missing value (null)")
        return np.asarray(chunked.to_numpy())

    return _Table(list(table.column_names), column, table.num_rows, lambda i: f"row {i} of {label}")


def _open_table(source: Any, needed: Callable[[list[str]], list[str]], delimiter: str | None) -> tuple[_Table, str]:
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no logged-session file at {path}")
        suffix = path.suffix.lower()
        if suffix in (".parquet", ".pq"):
            try:
                import pyarrow.parquet as pq
            except ImportError as error:
                raise ImportError("reading Parquet logs needs pyarrow: pip install 'marl-rec[parquet]' "
                                  "(or convert the table to CSV)") from error
            import pyarrow as pa

            try:
                columns = needed(list(pq.read_schema(path).names))  # read only the columns the schema uses
                table = pq.read_table(path, columns=columns)
            except (pa.ArrowException, OSError) as error:  # truncated, or not Parquet at all
                raise ValueError(f"{path}: not a readable Parquet file: {error}") from error
            return _arrow_table(table, path.name), str(path)
        if suffix in (".csv", ".tsv", ".txt"):
            try:
                return _read_csv(path, needed, delimiter or ("\t" if suffix == ".tsv" else ",")), str(path)
            except UnicodeDecodeError as error:
                raise ValueError(f"{path}: the file is not UTF-8 text ({error.reason}); save it as UTF-8") from None
        raise ValueError(f"unsupported logged-session file type {suffix!r} for {path} (use .csv, .tsv or .parquet)")
    if hasattr(source, "column_names") and hasattr(source, "column"):  # pyarrow.Table
        return _arrow_table(source, "the table"), type(source).__name__
    if isinstance(source, Mapping):
        names, getter = [str(n) for n in source], lambda name: np.asarray(source[name])
    elif hasattr(source, "columns") and hasattr(source, "__getitem__"):  # pandas / polars DataFrame
        names, getter = [str(n) for n in source.columns], lambda name: np.asarray(source[name])
    else:
        raise TypeError(f"cannot read logged sessions from {type(source).__name__}: pass a .csv/.parquet path, "
                        f"a pyarrow Table, a DataFrame or a mapping of column name -> array")
    lengths = {len(getter(name)) for name in needed(names)}
    if len(lengths) > 1:
        raise ValueError(f"the table's columns have different lengths {sorted(lengths)}")
    num_rows = lengths.pop() if lengths else 0
    return _Table(names, getter, num_rows, lambda i: f"row {i}"), type(source).__name__


# ------------------------------------------------------------ conversions
def _missing(value: Any) -> bool:
    blank = isinstance(value, str) and not value.strip()
    return value is None or blank or (isinstance(value, float) and value != value)


def _numeric(table: _Table, name: str) -> np.ndarray:
    """A column as finite float64, or a ValueError naming the first bad row."""
    raw = table.column(name)
    if raw.ndim != 1:
        raise ValueError(f"column {name!r} must be 1-D, got shape {raw.shape}")
    if raw.dtype.kind not in "biufOUS":
        raise ValueError(f"column {name!r} has non-numeric dtype {raw.dtype}")
    try:
        values = raw.astype(np.float64)  # parses strings (CSV) and Python numbers (object columns)
    except (TypeError, ValueError):
        for i, value in enumerate(raw):  # find and name the offending row
            if _missing(value):
                raise ValueError(f"column {name!r}, {table.row_label(i)}: missing value") from None
            try:
                float(value)
            except (TypeError, ValueError):
                raise ValueError(f"column {name!r}, {table.row_label(i)}: {value!r} is not a number") from None
        raise
    if not np.all(np.isfinite(values)):
        i = int(np.flatnonzero(~np.isfinite(values))[0])
        problem = "missing value (NaN)" if np.isnan(values[i]) else f"{raw[i]!r} is not finite"
        raise ValueError(f"column {name!r}, {table.row_label(i)}: {problem}")
    return values


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _float32_range(values: np.ndarray, name: str, row_label: Callable[[int], str]) -> np.ndarray:
    """``values`` (float64), or a ValueError naming the first row beyond the float32 range the
    dataset stores (finite here, infinite there)."""
    beyond = np.abs(values) > _FLOAT32_MAX
    if beyond.any():
        i = int(np.flatnonzero(beyond)[0])
        raise ValueError(f"column {name!r}, {row_label(i)}: {values[i]:g} is beyond the float32 range "
                         f"(±{_FLOAT32_MAX:.3g}) the dataset stores")
    return values


def _float32_numeric(table: _Table, name: str) -> np.ndarray:
    """:func:`_numeric`, also refusing values that float32 cannot hold."""
    return _float32_range(_numeric(table, name), name, table.row_label)


def _steps(table: _Table, name: str) -> np.ndarray:
    """The step column, exactly: integers and timestamps stay int64 (a float64 cast merges
    distinct nanosecond timestamps, which then read as duplicated steps); other numbers float64."""
    raw = table.column(name)
    if raw.ndim == 1 and raw.dtype.kind in "mM":  # Parquet timestamps / durations
        if np.isnat(raw).any():
            row = int(np.flatnonzero(np.isnat(raw))[0])
            raise ValueError(f"column {name!r}, {table.row_label(row)}: missing value (NaT)")
        return raw.view(np.int64)
    if raw.ndim == 1 and raw.dtype.kind == "i":
        return raw.astype(np.int64)
    if raw.ndim == 1 and raw.dtype.kind in "OU" and all(
            isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)) for v in raw):
        try:  # CSV text: integers if every cell is one (int() refuses "1.5": then float64)
            return np.array([int(v) for v in raw], dtype=np.int64)
        except (ValueError, OverflowError):
            pass
    return _numeric(table, name)


def _show(value: Any) -> str:
    """A step for a message: integers in full (timestamps), other numbers short."""
    return str(int(value)) if isinstance(value, (int, np.integer)) else f"{value:g}"


def _flags(table: _Table, name: str) -> np.ndarray:
    raw = table.column(name)
    if raw.dtype == np.bool_:
        return raw.copy()
    out = np.empty(len(raw), dtype=bool)
    for i, value in enumerate(raw):
        text = str(value).strip().lower()
        if text in _TRUE:
            out[i] = True
        elif text in _FALSE:
            out[i] = False
        else:
            raise ValueError(f"column {name!r}, {table.row_label(i)}: {value!r} is not a flag "
                             f"(use true/false, 1/0 or yes/no)")
    return out


def _session_codes(table: _Table, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(per-row session number in order of first appearance, the session ids)."""
    raw = table.column(name)
    if raw.dtype.kind == "f" and not np.all(np.isfinite(raw)):
        row = int(np.flatnonzero(~np.isfinite(raw))[0])
        raise ValueError(f"column {name!r}, {table.row_label(row)}: missing session id")
    if raw.dtype.kind in "OU":
        for i, value in enumerate(raw):
            if _missing(value):
                raise ValueError(f"column {name!r}, {table.row_label(i)}: missing session id")
        raw = np.char.strip(raw.astype(str))
    ids, first_row, inverse = np.unique(raw, return_index=True, return_inverse=True)
    rank = np.empty(len(ids), dtype=np.int64)
    rank[np.argsort(first_row, kind="stable")] = np.arange(len(ids))
    return rank[inverse.reshape(-1)], ids[np.argsort(first_row, kind="stable")]


# ------------------------------------------------------------- the import
def _resolve_columns(schema: LoggedSessionSchema, names: list[str]) -> dict[str, list[str]]:
    def pick(columns: tuple[str, ...], prefix: str | None, field: str) -> list[str]:
        chosen = list(columns) if prefix is None else [n for n in names if n.startswith(prefix)]
        if prefix is not None and not chosen:
            raise ValueError(f"no column starts with {field}={prefix!r}; the table has columns {names}")
        return chosen

    roles = {
        "session": [schema.session_column], "step": [schema.step_column],
        "state": pick(schema.state_columns, schema.state_prefix, "state_prefix"),
        "next_state": pick(schema.next_state_columns, schema.next_state_prefix, "next_state_prefix"),
        "action": pick(schema.action_columns, schema.action_prefix, "action_prefix"),
        "reward": [schema.reward_column] if schema.reward_column else [],
        "component": list(schema.component_columns),
        "consumed": pick(schema.consumed_columns, schema.consumed_prefix, "consumed_prefix"),
        "propensity": [schema.propensity_column] if schema.propensity_column else [],
        "terminal": [schema.terminal_column] if schema.terminal_column else [],
        "truncated": [schema.truncated_column] if schema.truncated_column else [],
    }
    for role, columns in roles.items():
        for column in columns:
            if column not in names:
                raise ValueError(f"column {column!r} ({role} in the schema) is missing; the table has columns {names}")
    claimed: dict[str, str] = {}  # a column has one role (the reward may also be a component)
    for role in ("session", "step", "state", "next_state", "action", "propensity", "terminal", "truncated",
                 "component", "consumed", "reward"):
        for column in roles[role]:
            if column in claimed and {claimed[column], role} != {"component", "reward"}:
                raise ValueError(f"column {column!r} is used both as {claimed[column]} and as {role}")
            claimed.setdefault(column, role)
    if roles["next_state"] and len(roles["next_state"]) != len(roles["state"]):
        raise ValueError(f"{len(roles['next_state'])} next-state columns for {len(roles['state'])} state columns")
    if schema.action_kind == "discrete" and len(roles["action"]) != 1:
        raise ValueError(f"a discrete action is one column, the schema names {roles['action']}")
    return roles


def from_logged_sessions(source: Any, schema: LoggedSessionSchema, delimiter: str | None = None) -> OfflineDataset:
    """Build an :class:`OfflineDataset` from logged sessions (a .csv/.tsv/.parquet path or an
    in-memory table), following ``schema``; see the module docstring for the rules."""
    roles: dict[str, list[str]] = {}

    def needed(names: list[str]) -> list[str]:
        roles.update(_resolve_columns(schema, names))
        return list(dict.fromkeys(c for columns in roles.values() for c in columns))

    table, source_label = _open_table(source, needed, delimiter)
    if not roles:
        needed(table.names)
    if table.num_rows == 0:
        raise ValueError(f"{source_label} has no data rows")
    label = table.row_label

    session, session_ids = _session_codes(table, schema.session_column)
    step = _steps(table, schema.step_column)
    order = np.lexsort((step, session))  # group by session (first appearance), then by step
    session, step = session[order], step[order]
    same = (session[1:] == session[:-1]) & (step[1:] == step[:-1])
    if same.any():
        i = int(np.flatnonzero(same)[0])
        raise ValueError(f"column {schema.step_column!r}: step {_show(step[i])} appears twice in session "
                         f"{session_ids[session[i]].item()!r} ({label(int(order[i]))} and {label(int(order[i + 1]))})")

    def matrix(columns: list[str]) -> np.ndarray:
        return np.stack([_float32_numeric(table, c)[order] for c in columns], axis=1)

    observations = matrix(roles["state"]).astype(np.float32)
    if schema.action_kind == "discrete":
        raw = _numeric(table, roles["action"][0])[order]
        bad = (raw != np.round(raw)) | (raw < 0) | (raw >= schema.num_actions)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"column {roles['action'][0]!r}, {label(int(order[i]))}: {raw[i]:g} is not an "
                             f"action index in 0..{schema.num_actions - 1}")
        actions = raw.astype(np.int64)
    else:
        actions = matrix(roles["action"])
        bad = (actions < schema.action_low) | (actions > schema.action_high)
        if bad.any():
            i, j = (int(x) for x in np.argwhere(bad)[0])
            raise ValueError(f"column {roles['action'][j]!r}, {label(int(order[i]))}: {actions[i, j]:g} is outside "
                             f"the action range [{schema.action_low}, {schema.action_high}]")
        actions = actions.astype(np.float32)
    logged_columns = roles["component"] + roles["consumed"]  # the weighted components, then what was consumed
    components = matrix(logged_columns) if logged_columns else None
    if schema.reward_column is not None:
        rewards = _float32_numeric(table, schema.reward_column)[order]
    else:
        rewards = components[:, :len(roles["component"])] @ np.asarray(schema.reward_weights, dtype=np.float64)
        _float32_range(rewards, "reward (reward_weights · component_columns)", lambda i: label(int(order[i])))
    log_probs = None
    if schema.propensity_column is not None:
        propensity = _numeric(table, schema.propensity_column)[order]
        if schema.propensity_kind == "probability":
            bad = (propensity <= 0) | (propensity > 1)
            what = "a probability in (0, 1]"
        else:
            bad = propensity > 1e-6 if schema.action_kind == "discrete" else np.zeros(len(propensity), bool)
            what = "a log-probability <= 0"
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"column {schema.propensity_column!r}, {label(int(order[i]))}: propensity "
                             f"{propensity[i]:g} is not {what}")
        log_probs = np.log(propensity) if schema.propensity_kind == "probability" else _float32_range(
            propensity, schema.propensity_column, lambda i: label(int(order[i])))

    # ------------------------------------------------------- session ends
    last = np.ones(len(session), dtype=bool)
    last[:-1] = session[1:] != session[:-1]
    flagged = {}
    for kind, column in (("terminal", schema.terminal_column), ("truncated", schema.truncated_column)):
        if column is None:
            continue
        flags = _flags(table, column)[order]
        early = flags & ~last
        if early.any():
            i = int(np.flatnonzero(early)[0])
            session_id = session_ids[session[i]].item()
            raise ValueError(f"column {column!r}, {label(int(order[i]))}: session {session_id!r} is marked {kind} "
                             f"at step {_show(step[i])} but continues at step {_show(step[i + 1])}")
        flagged[kind] = flags
    if len(flagged) == 2 and (both := flagged["terminal"] & flagged["truncated"]).any():
        i = int(np.flatnonzero(both)[0])
        raise ValueError(f"{label(int(order[i]))}: marked both terminal ({schema.terminal_column!r}) and truncated "
                         f"({schema.truncated_column!r})")
    if "terminal" in flagged:
        terminal = last & flagged["terminal"]
    elif "truncated" in flagged:
        terminal = last & ~flagged["truncated"]
    else:
        terminal = last.copy()
    truncated = last & ~terminal

    if roles["next_state"]:
        next_observations = matrix(roles["next_state"]).astype(np.float32)
        keep = np.ones(len(session), dtype=bool)
    else:
        next_observations = np.zeros_like(observations)
        next_observations[:-1] = observations[1:]
        next_observations[terminal] = 0.0
        # a truncated session's last row only provides the state after the previous action
        keep = ~truncated
        truncated = np.zeros_like(truncated)
        truncated[:-1] = keep[:-1] & ~keep[1:] & ~last[:-1]  # the row before a dropped last row
    kept_sessions = np.unique(session[keep])
    if len(kept_sessions) == 0:
        raise ValueError(f"{source_label}: every session is a single truncated row, which gives no transition "
                         f"(add next-state columns or terminal flags)")
    kept_session = session[keep]  # (a session whose only row was dropped disappears)
    kept_starts = np.ones(len(kept_session), dtype=bool)
    kept_starts[1:] = kept_session[1:] != kept_session[:-1]

    metadata = {
        "source": source_label, "schema": asdict(schema),
        "num_sessions": int(len(kept_sessions)),
        "dropped_rows": int((~keep).sum()),
        "dropped_sessions": int(len(session_ids) - len(kept_sessions)),
    }
    return OfflineDataset(
        observations=observations[keep], actions=actions[keep], rewards=rewards[keep].astype(np.float32),
        next_observations=next_observations[keep], terminals=terminal[keep], truncations=truncated[keep],
        episode_starts=kept_starts, action_spec=schema.action_spec(len(roles["action"])),
        behaviour_log_probs=None if log_probs is None else log_probs[keep].astype(np.float32),
        reward_components=None if components is None else components[keep].astype(np.float32),
        component_names=logged_columns, metadata=metadata,
    )


# ------------------------------------------------------------- the export
def write_logged_sessions(dataset: OfflineDataset, path: str | Path, state_names: list[str] | None = None,
                          action_names: list[str] | None = None) -> LoggedSessionSchema:
    """Write ``dataset`` as a logged-session table at ``path`` (``.csv``/``.tsv`` with the csv
    module, ``.parquet``/``.pq`` with pyarrow), atomically, and return the schema that reads it
    back with :func:`from_logged_sessions` (same columns, names and values; floats are written in
    full precision). ``state_names``: one name per observation entry (default ``0 .. d-1``;
    ``marl_rec.envs.simulator.observation_names`` for the simulator's), written as ``state_<name>``
    and ``next_state_<name>``; ``action_names`` likewise as ``action_<name>``. Columns: see the
    module docstring ("Writing")."""
    from marl_rec.files import atomic_write

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".parquet", ".pq"):
        raise ValueError(f"unsupported logged-session file type {suffix!r} for {path} (use .csv, .tsv or .parquet)")
    d = dataset
    state_names = [str(i) for i in range(d.obs_dim)] if state_names is None else [str(n) for n in state_names]
    if len(state_names) != d.obs_dim:
        raise ValueError(f"state_names has {len(state_names)} names for {d.obs_dim} observation entries")
    action_dim = 1 if d.action_spec.discrete else d.actions.shape[1]
    if action_names is None:
        action_names = [str(i) for i in range(action_dim)]
    if len(action_names) != action_dim:
        raise ValueError(f"action_names has {len(action_names)} names for {action_dim} action dimensions")
    names = list(d.component_names)
    if d.reward_components is not None and len(names) != d.reward_components.shape[1]:
        names = [f"component_{i}" for i in range(d.reward_components.shape[1])]
    bounds = d.episode_bounds()
    lengths = bounds[:, 1] - bounds[:, 0]
    columns: dict[str, np.ndarray] = {
        "session_id": np.repeat(np.arange(len(bounds)), lengths),
        "step": np.arange(len(d)) - np.repeat(bounds[:, 0], lengths)}
    columns.update({f"state_{n}": d.observations[:, j] for j, n in enumerate(state_names)})
    columns.update({f"next_state_{n}": d.next_observations[:, j] for j, n in enumerate(state_names)})
    actions = d.actions[:, None] if d.action_spec.discrete else d.actions
    columns.update({f"action_{n}": actions[:, j] for j, n in enumerate(action_names)})
    columns["reward"] = d.rewards
    if d.reward_components is not None:
        columns.update({n: d.reward_components[:, j] for j, n in enumerate(names)})
    if d.behaviour_log_probs is not None:
        columns["log_propensity"] = d.behaviour_log_probs
    columns["terminal"] = d.terminals
    columns["truncated"] = d.truncations
    if len(columns) != 2 + 2 * d.obs_dim + action_dim + 1 + len(names) * (d.reward_components is not None) \
            + (d.behaviour_log_probs is not None) + 2:
        raise ValueError("the dataset's column names collide (a component named like a state, action or "
                         "flag column); rename the components")
    consumed = [n for n in names if n.startswith(CONSUMED_COLUMN_PREFIXES)]
    spec = d.action_spec
    schema = LoggedSessionSchema(
        state_columns=tuple(f"state_{n}" for n in state_names),
        next_state_columns=tuple(f"next_state_{n}" for n in state_names),
        action_columns=tuple(f"action_{n}" for n in action_names),
        action_kind=spec.kind, num_actions=spec.num_actions if spec.discrete else 0,
        **({} if spec.discrete else {"action_low": float(spec.low), "action_high": float(spec.high)}),
        reward_column="reward",
        component_columns=tuple(n for n in names if n not in consumed) if d.reward_components is not None else (),
        consumed_columns=tuple(consumed) if d.reward_components is not None else (),
        propensity_column="log_propensity" if d.behaviour_log_probs is not None else None,
        propensity_kind="log_probability", terminal_column="terminal", truncated_column="truncated")
    if suffix in (".parquet", ".pq"):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as error:
            raise ImportError("writing Parquet logs needs pyarrow: pip install 'marl-rec[parquet]'") from error
        table = pa.table({name: np.ascontiguousarray(values) for name, values in columns.items()})
        atomic_write(path, lambda handle: pq.write_table(table, handle))
    else:
        def write_csv(handle: Any) -> None:
            import io

            text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
            writer = csv.writer(text, delimiter="\t" if suffix == ".tsv" else ",")
            writer.writerow(list(columns))
            # repr of a Python float round-trips exactly (float32 values widen to float64 exactly)
            cells = [[str(bool(v)).lower() for v in values] if values.dtype == np.bool_ else
                     [repr(float(v)) if values.dtype.kind == "f" else str(int(v)) for v in values]
                     for values in columns.values()]
            writer.writerows(zip(*cells))
            text.flush()
            text.detach()

        atomic_write(path, write_csv)
    return schema
