"""SimulatorConfig refuses nonsense naming the field: wrong types, NaN / inf, out-of-range
values, a catalogue too large to build — and a field added later is covered by its type."""

from __future__ import annotations

import dataclasses
import math
import typing

import numpy as np
import pytest
from fuzzing import FUZZ, assert_refused
from hypothesis import given
from hypothesis import strategies as st
from marl_rec.envs.config_checks import Range, check_fields
from marl_rec.envs.simulator import MAX_CATALOGUE, SIMULATOR_RANGES, SimulatorConfig


@pytest.mark.parametrize("field, value, error, message", [
    ("leave_slope", math.nan, ValueError, r"SimulatorConfig.leave_slope must be finite, got nan"),
    ("return_threshold", math.nan, ValueError, r"SimulatorConfig.return_threshold must be finite"),
    ("reward_weights", (1.0, math.nan, 1.0, 1.0), ValueError, r"SimulatorConfig.reward_weights\[1\] must be finite"),
    ("max_duration", math.inf, ValueError, r"SimulatorConfig.max_duration must be finite, got inf"),
    ("prediction_noise", math.inf, ValueError, r"SimulatorConfig.prediction_noise must be finite"),
    ("num_topics", "abc", TypeError, r"SimulatorConfig.num_topics must be an integer, got 'abc'"),
    ("num_topics", 2.5, TypeError, r"SimulatorConfig.num_topics must be an integer, got 2.5"),
    ("num_topics", True, TypeError, r"SimulatorConfig.num_topics must be an integer, got True"),
    ("world_seed", -1, ValueError, r"SimulatorConfig.world_seed must be in \[0, 9223372036854775807\], got -1"),
    ("items_per_topic", 10**9, ValueError, r"num_topics × items_per_topic = 8,000,000,000 items exceeds the "
                                           rf"catalogue limit of {MAX_CATALOGUE:,}"),
    ("reward_weights", "abcd", TypeError, r"SimulatorConfig.reward_weights must be a sequence"),
    ("fusion_priors", (0.0, 1.0, 1.0, 1.0, 1.0), ValueError, r"SimulatorConfig.fusion_priors\[0\] must be in \(0"),
    ("base_leave", 1.5, ValueError, r"SimulatorConfig.base_leave must be in \[0, 1\], got 1.5"),
])
def test_bad_values_are_refused_naming_the_field(field: str, value, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        SimulatorConfig(**{field: value})


def test_numpy_scalars_and_yaml_lists_are_normalised() -> None:
    config = SimulatorConfig(num_topics=np.int64(4), leave_slope=np.float32(2.0), reward_weights=[1, 2, 3, 4])
    assert type(config.num_topics) is int and type(config.leave_slope) is float
    assert config.reward_weights == (1.0, 2.0, 3.0, 4.0) and hash(config)  # frozen and hashable


def test_a_field_added_later_is_checked_by_its_type() -> None:
    @dataclasses.dataclass(frozen=True)
    class Extended(SimulatorConfig):  # what a new field looks like to the checks
        new_rate: float = 0.5
        new_count: int = 3
        new_levels: tuple[float, ...] = (0.1, 0.2)

    assert Extended().new_levels == (0.1, 0.2)
    with pytest.raises(ValueError, match=r"Extended.new_rate must be finite, got nan"):
        Extended(new_rate=math.nan)
    with pytest.raises(TypeError, match=r"Extended.new_count must be an integer, got '3'"):
        Extended(new_count="3")
    with pytest.raises(ValueError, match=r"Extended.new_levels\[1\] must be finite"):
        Extended(new_levels=[0.1, math.inf])


def test_range_bounds() -> None:
    @dataclasses.dataclass
    class Config:
        rate: float = 0.5
        maybe: int | None = None

    check_fields(Config(), {"rate": Range(0.0, 1.0, high_open=True)})
    with pytest.raises(ValueError, match=r"Config.rate must be in \[0, 1\), got 1.0"):
        check_fields(Config(rate=1.0), {"rate": Range(0.0, 1.0, high_open=True)})
    check_fields(Config(maybe=None))
    with pytest.raises(TypeError, match="Config.maybe must be an integer"):
        check_fields(Config(maybe=1.5))


HINTS = typing.get_type_hints(SimulatorConfig)
FIELDS = [f.name for f in dataclasses.fields(SimulatorConfig)]
wrong_values = st.one_of(st.none(), st.booleans(), st.text(max_size=4), st.just(math.nan), st.just(-math.inf),
                         st.floats(min_value=-1e30, max_value=1e30), st.integers(-10**30, 10**30),
                         st.lists(st.floats(), max_size=3))


@FUZZ
@given(name=st.sampled_from(FIELDS), value=wrong_values)
def test_any_value_is_accepted_as_typed_or_refused_naming_the_field(name: str, value) -> None:
    hint = HINTS[name]
    bound = SIMULATOR_RANGES.get(name)
    acceptable = (
        (hint is int and isinstance(value, int) and not isinstance(value, bool))
        or (hint is float and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)))
    if acceptable and (bound is None or bound.contains(value)):
        return  # a plausible value: cross-field rules may still refuse it, tested above
    assert_refused(lambda: SimulatorConfig(**{name: value}), [f"SimulatorConfig.{name}", name])
