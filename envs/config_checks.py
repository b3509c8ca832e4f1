"""Field checks for the environments' dataclass configs, driven by the field types.

:func:`check_fields` checks every field of a dataclass instance against its annotation —
``int`` (not a bool, not 2.5), ``float`` (finite: NaN and inf are refused), ``bool``, ``str``,
``tuple[float, ...]`` / ``tuple[float, float]`` (each element finite; YAML lists become
tuples) and ``X | None`` — and against an optional per-field :class:`Range`. A field added to a
config later is covered by its type without touching the checks; give it a range in the
config's table when it has one. Errors name the field (``SimulatorConfig.num_topics``).

(Torch-free and dependent on nothing of ours: ``marl_rec.envs`` imports no other package of
the project.)
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Range:
    """Allowed values ``low <= v <= high`` (``<`` where ``*_open``); None = unbounded."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def __str__(self) -> str:
        def show(bound: float) -> str:
            return str(bound) if isinstance(bound, int) else f"{bound:g}"

        low = "-inf" if self.low is None else show(self.low)
        high = "inf" if self.high is None else show(self.high)
        return f"{'(' if self.low_open or self.low is None else '['}{low}, {high}{')' if self.high_open or self.high is None else ']'}"


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def _check(owner: str, name: str, value: Any, hint: Any, bound: Range | None) -> Any:
    """``value`` checked against ``hint`` (and ``bound`` for numbers); returns it normalised
    (Python ints and floats, tuples for sequences). TypeError / ValueError naming the field."""
    field = f"{owner}.{name}"
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        inner = [a for a in options if a is not type(None)]
        if len(inner) == 1:
            return _check(owner, name, value, inner[0], bound)
        return value  # a union of several types: no generic check
    if origin is tuple:
        args = typing.get_args(hint)
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) and not hasattr(value, "__iter__"):
            raise TypeError(f"{field} must be a sequence, got {value!r}")
        items = tuple(value)
        fixed = [a for a in args if a is not Ellipsis]
        if Ellipsis not in args and len(items) != len(fixed):
            raise ValueError(f"{field} needs {len(fixed)} values, got {len(items)}: {items!r}")
        item_hints = [fixed[0]] * len(items) if Ellipsis in args else fixed
        return tuple(_check(owner, f"{name}[{i}]", item, item_hint, bound)
                     for i, (item, item_hint) in enumerate(zip(items, item_hints)))
    if hint is bool:
        if not isinstance(value, bool) and type(value).__name__ != "bool_":
            raise TypeError(f"{field} must be true or false, got {value!r}")
        return bool(value)
    if hint is str:
        if not isinstance(value, str):
            raise TypeError(f"{field} must be a string, got {value!r}")
        return value
    if hint is int:
        if not _is_int(value):
            raise TypeError(f"{field} must be an integer, got {value!r} ({type(value).__name__})")
        value = int(value)
    elif hint is float:
        if not _is_real(value):
            raise TypeError(f"{field} must be a number, got {value!r} ({type(value).__name__})")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{field} must be finite, got {value}")
    else:
        return value  # another type: its own code checks it
    if bound is not None and not bound.contains(value):
        raise ValueError(f"{field} must be in {bound}, got {value}")
    return value


def check_fields(config: Any, ranges: Mapping[str, Range] = {}) -> None:
    """Check (and normalise in place) every field of the dataclass instance ``config``: its
    type from the annotation, finiteness, and ``ranges[name]`` (also applied to each element
    of a tuple field). Works on frozen dataclasses."""
    owner = type(config).__name__
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = _check(owner, f.name, getattr(config, f.name), hints[f.name], ranges.get(f.name))
        object.__setattr__(config, f.name, value)
