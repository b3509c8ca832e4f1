"""Bandit feedback (horizon 1): load a logged table and evaluate it with the same estimators.

Schema (:class:`BanditSchema`), one row per logged impression:

==================  ======================  ===============================================
column(s)           type                    meaning
==================  ======================  ===============================================
context_columns     float                   the context features x (the observation)
action_columns      int (discrete) /        the logged action: one integer column 0..n-1,
                    float (continuous)      or one float column per action dimension
reward_column       float                   the observed reward
propensity_column   float in (0, 1]         μ(a|x) of the logged action (discrete); for
                    (> 0 continuous)        continuous actions a density, > 0. Optional:
                                            without it, fit a behaviour model
position_column     int >= 0, optional      the slot the item was shown in
==================  ======================  ===============================================

Each row becomes a one-step episode of an :class:`~marl_rec.data.dataset.OfflineDataset`
(``terminals`` all True, ``behaviour_log_probs`` = log propensity), so IPS = ``is``,
SNIPS = ``wis``, DR = ``dr`` and the direct method = FQE (a reward regression at horizon 1)
all apply unchanged, at any ``gamma``. When a position column is given and
``position_in_context`` is True, a one-hot of the position is appended to the context, so
policies and reward models condition on the slot; the raw positions are kept in
:attr:`BanditLog.positions`.

Validation names the column and the (0-based, header excluded) data row: missing column,
NaN / empty / non-numeric cell, a value too large for float32 (contexts, actions, rewards),
non-integer or out-of-range action, propensity outside (0, 1], a position above
:data:`MAX_INFERRED_POSITIONS` when ``num_positions`` is not given (one outlier would widen
every context by its one-hot). A file that is not UTF-8 or not readable Parquet is named.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from marl_rec.contracts import ActionSpec
from marl_rec.data.dataset import OfflineDataset

#: The largest number of positions inferred from the data (``num_positions=None``): feeds show
#: tens of slots; a larger position is far more likely an outlier than a real slot.
MAX_INFERRED_POSITIONS = 100
#: The largest number of discrete actions inferred from the data (``num_actions=None``).
MAX_INFERRED_ACTIONS = 1_000_000
_EXACT_INTEGERS = 2**53  # float64 holds every integer below this exactly
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class BanditSchema:
    """Which columns of the table hold what (see the module docstring)."""

    context_columns: tuple[str, ...]
    action_columns: tuple[str, ...] = ("action",)
    reward_column: str = "reward"
    propensity_column: str | None = "propensity"
    position_column: str | None = None
    continuous_actions: bool = False
    num_actions: int | None = None  # discrete: None = max(action) + 1
    action_low: float = -1.0  # continuous action box
    action_high: float = 1.0
    position_in_context: bool = True
    num_positions: int | None = None  # None = max(position) + 1

    def __post_init__(self) -> None:
        for name in ("context_columns", "action_columns"):
            value = getattr(self, name)
            value = (value,) if isinstance(value, str) else tuple(value)
            object.__setattr__(self, name, value)
            if not value:
                raise ValueError(f"BanditSchema.{name} must name at least one column")
        if not self.continuous_actions and len(self.action_columns) != 1:
            raise ValueError(f"BanditSchema.action_columns must be one column for discrete actions, "
                             f"got {self.action_columns}")
        if self.num_actions is not None and self.num_actions < 2:
            raise ValueError(f"BanditSchema.num_actions must be >= 2, got {self.num_actions}")

    @property
    def columns(self) -> list[str]:
        names = [*self.context_columns, *self.action_columns, self.reward_column]
        return names + [c for c in (self.propensity_column, self.position_column) if c is not None]


@dataclass
class BanditLog:
    """A loaded bandit table: the one-step-episode dataset and the raw positions (if any)."""

    dataset: OfflineDataset
    positions: np.ndarray | None
    schema: BanditSchema


def _read_csv(path: Path, columns: list[str]) -> dict[str, np.ndarray]:
    try:
        return _read_csv_text(path, columns)
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: the file is not UTF-8 text ({error.reason}); save it as UTF-8") from None


def _read_csv_text(path: Path, columns: list[str]) -> dict[str, np.ndarray]:
    with path.open(newline="", encoding="utf-8-sig") as handle:  # -sig: a spreadsheet's byte-order mark
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path}: the file is empty (no header row)") from None
        header = [h.strip() for h in header]
        duplicated = sorted({h for h in header if header.count(h) > 1})
        if duplicated:
            raise ValueError(f"{path}: duplicated column names in the header: {duplicated}")
        for name in columns:
            if name not in header:
                raise ValueError(f"{path}: missing column {name!r} (columns: {header})")
        index = {name: header.index(name) for name in columns}
        values: dict[str, list[float]] = {name: [] for name in columns}
        for row_number, row in enumerate(reader):
            if not row:
                continue
            for name, i in index.items():
                cell = row[i].strip() if i < len(row) else ""
                try:
                    value = float(cell)
                except ValueError:
                    raise ValueError(f"{path}: column {name!r} row {row_number}: "
                                     f"{'empty cell' if not cell else f'non-numeric value {cell!r}'}") from None
                values[name].append(value)
    return {name: np.asarray(v, dtype=np.float64) for name, v in values.items()}


def _read_parquet(path: Path, columns: list[str]) -> dict[str, np.ndarray]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as error:  # pyarrow is optional: pip install 'marl-rec[parquet]'
        raise ImportError("reading Parquet needs pyarrow: pip install 'marl-rec[parquet]'") from error
    try:
        names = pq.read_schema(path).names
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"{path}: duplicated column names: {duplicated}")
        for name in columns:
            if name not in names:
                raise ValueError(f"{path}: missing column {name!r} (columns: {names})")
        table = pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as error:  # truncated or not Parquet at all
        raise ValueError(f"{path}: not a readable Parquet file: {error}") from error
    out = {}
    for name in columns:
        try:
            column = table.column(name).cast(pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise ValueError(f"{path}: column {name!r} is not numeric ({table.schema.field(name).type})") from error
        out[name] = column.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls become NaN
    return out


def load_bandit_log(path: str | Path, schema: BanditSchema) -> BanditLog:
    """Read a CSV (``.csv``) or Parquet (``.parquet``/``.pq``) bandit log and validate it."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise ValueError(f"{path}: unknown file type {path.suffix!r}; expected .csv, .parquet or .pq")
    if not path.is_file():
        raise FileNotFoundError(f"no bandit log at {path}")
    table = _read_csv(path, schema.columns) if suffix == ".csv" else _read_parquet(path, schema.columns)
    return bandit_log_from_columns(table, schema, path)


def bandit_log_from_columns(columns: Mapping[str, Any], schema: BanditSchema,
                            path: str | Path = "the table") -> BanditLog:
    """Validate a bandit table already in memory (column name -> 1-D array) and build the log;
    ``path`` names it in error messages. :func:`load_bandit_log` and :func:`from_obp_feedback`
    end here."""
    missing = [name for name in schema.columns if name not in columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    try:
        table = {name: np.asarray(columns[name], dtype=np.float64).reshape(-1) for name in schema.columns}
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: a column is not numeric ({error})") from None
    lengths = {name: len(values) for name, values in table.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{path}: columns have different lengths {lengths}")
    n = len(table[schema.reward_column])
    if n == 0:
        raise ValueError(f"{path}: the table has no data rows")
    for name in schema.columns:
        bad = np.flatnonzero(~np.isfinite(table[name]))
        if bad.size:
            raise ValueError(f"{path}: column {name!r} row {bad[0]} is NaN, missing or infinite")
    stored_as_float32 = [*schema.context_columns, schema.reward_column]
    stored_as_float32 += list(schema.action_columns) if schema.continuous_actions else []
    for name in stored_as_float32:
        bad = np.flatnonzero(np.abs(table[name]) > _FLOAT32_MAX)
        if bad.size:
            raise ValueError(f"{path}: column {name!r} row {bad[0]} has value {table[name][bad[0]]:g}, "
                             f"beyond the float32 range the dataset stores (±{_FLOAT32_MAX:.3g})")

    def integers(name: str, upper: int | None, inferred_limit: tuple[int, str] | None = None) -> np.ndarray:
        """Column ``name`` as integers in 0..upper-1; without ``upper``, below ``inferred_limit``
        (the limit and the schema field that lifts it) and never beyond what float64 holds exactly."""
        values = table[name]
        limit = upper if upper is not None else inferred_limit[0] if inferred_limit else _EXACT_INTEGERS
        bad = np.flatnonzero((values != np.round(values)) | (values < 0) | (values >= limit))
        if bad.size:
            allowed = f"0..{upper - 1}" if upper is not None else f"0..{limit - 1}"
            hint = f" (set BanditSchema.{inferred_limit[1]} for more)" if upper is None and inferred_limit else ""
            raise ValueError(f"{path}: column {name!r} row {bad[0]} has value {values[bad[0]]}; "
                             f"expected an integer {allowed}{hint}")
        return values.astype(np.int64)

    context = np.stack([table[c] for c in schema.context_columns], axis=1)
    if schema.continuous_actions:
        actions = np.stack([table[c] for c in schema.action_columns], axis=1).astype(np.float32)
        outside = np.flatnonzero(((actions < schema.action_low) | (actions > schema.action_high)).any(1))
        if outside.size:
            raise ValueError(f"{path}: columns {list(schema.action_columns)} row {outside[0]} lie outside "
                             f"the action box [{schema.action_low}, {schema.action_high}]")
        spec = ActionSpec("continuous", dim=len(schema.action_columns), low=schema.action_low,
                          high=schema.action_high)
    else:
        actions = integers(schema.action_columns[0], schema.num_actions, (MAX_INFERRED_ACTIONS, "num_actions"))
        spec = ActionSpec("discrete", num_actions=schema.num_actions or max(2, int(actions.max()) + 1))
    log_probs = None
    if schema.propensity_column is not None:
        propensity = table[schema.propensity_column]
        upper = math.inf if schema.continuous_actions else 1.0
        bad = np.flatnonzero(~((propensity > 0) & (propensity <= upper)))
        if bad.size:
            allowed = "> 0 (a density)" if schema.continuous_actions else "in (0, 1]"
            raise ValueError(f"{path}: column {schema.propensity_column!r} row {bad[0]} has value "
                             f"{propensity[bad[0]]}; propensities must be {allowed}")
        log_probs = np.log(propensity).astype(np.float32)
    positions = None
    if schema.position_column is not None:
        positions = integers(schema.position_column, schema.num_positions)
        if schema.position_in_context:
            num_positions = schema.num_positions or int(positions.max()) + 1
            if schema.num_positions is None and num_positions > MAX_INFERRED_POSITIONS:
                row = int(positions.argmax())
                raise ValueError(f"{path}: column {schema.position_column!r} row {row} has position "
                                 f"{positions[row]}; with position_in_context each position is one-hot encoded, "
                                 f"so more than {MAX_INFERRED_POSITIONS} positions need BanditSchema.num_positions "
                                 f"set explicitly")
            one_hot = np.zeros((n, num_positions), dtype=np.float32)
            one_hot[np.arange(n), positions] = 1.0
            context = np.concatenate([context, one_hot], axis=1)
    observations = context.astype(np.float32)
    ones = np.ones(n, dtype=bool)
    dataset = OfflineDataset(
        observations=observations, actions=actions, rewards=table[schema.reward_column].astype(np.float32),
        next_observations=observations.copy(), terminals=ones, truncations=~ones, episode_starts=ones.copy(),
        action_spec=spec, behaviour_log_probs=log_probs,
        metadata={"source": str(path), "kind": "bandit", "context_columns": list(schema.context_columns)})
    return BanditLog(dataset, positions, schema)


def from_obp_feedback(feedback: Mapping[str, Any], position_in_context: bool = True) -> BanditLog:
    """An Open Bandit Pipeline bandit-feedback dict as a :class:`BanditLog`.

    Keys read (obp's names): ``n_actions``, ``action`` (n,), ``reward`` (n,), ``pscore`` (n,)
    — μ(a|x) of the logged action —, ``context`` (n, d) and, optionally, ``position`` (n,)
    (0-based slot; ``len_list`` slots when given, else max + 1). Other keys (``n_rounds``,
    ``action_context``, ``expected_reward``, ...) are ignored. Validation is the loader's.
    """
    for key in ("n_actions", "action", "reward", "pscore", "context"):
        if key not in feedback:
            raise ValueError(f"obp bandit feedback: missing key {key!r} (keys: {sorted(feedback)})")
    context = np.asarray(feedback["context"], dtype=np.float64)
    if context.ndim == 1:
        context = context[:, None]
    if context.ndim != 2:
        raise ValueError(f"obp bandit feedback: 'context' must be (n_rounds, dim), got shape {context.shape}")
    names = tuple(f"context_{j}" for j in range(context.shape[1]))
    columns: dict[str, Any] = {name: context[:, j] for j, name in enumerate(names)}
    columns.update(action=feedback["action"], reward=feedback["reward"], propensity=feedback["pscore"])
    position = feedback.get("position")
    if position is not None:
        columns["position"] = position
    len_list = feedback.get("len_list")
    schema = BanditSchema(context_columns=names, num_actions=int(feedback["n_actions"]),
                          position_column=None if position is None else "position",
                          position_in_context=position_in_context,
                          num_positions=None if position is None or len_list is None else int(len_list))
    return bandit_log_from_columns(columns, schema, "obp bandit feedback")


__all__ = ["BanditSchema", "BanditLog", "bandit_log_from_columns", "from_obp_feedback", "load_bandit_log"]
