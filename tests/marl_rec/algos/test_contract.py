"""The algorithm contract, once, for every registered algorithm: registering one in
``marl_rec.algos.registry.ALGORITHMS`` (or with ``register_algorithm``) is what gets it tested
(save/load round trip, determinism, output shapes, bad config rejected). The checks live in
tests/helpers/algorithm_contract.py; the algorithms' own files test what is particular to each."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from algorithm_contract import (build, check_determinism, check_round_trip, check_shapes, spec_of, through_bytes,
                                tiny_overrides)

from marl_rec.algos.registry import ALGORITHMS, PRESETS, make_config

torch.set_num_threads(1)

NAMES = sorted(ALGORITHMS)


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(name: str) -> None:
    check_round_trip(lambda seed: build(name, seed), spec_of(name))


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_run_other_seed_other_networks(name: str) -> None:
    check_determinism(lambda seed: build(name, seed), spec_of(name))


@pytest.mark.parametrize("name", NAMES)
def test_output_shapes(name: str) -> None:
    check_shapes(build(name), spec_of(name))


@pytest.mark.parametrize("name", NAMES)
def test_bad_config_is_rejected_naming_the_field(name: str) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        make_config(name, "rec", batch_size=0)
    with pytest.raises(ValueError, match="no_such_field"):
        make_config(name, "rec", no_such_field=1)
    with pytest.raises(ValueError, match="preset"):
        make_config(name, "best")
    hidden = next(iter(tiny_overrides(name)))  # a negative layer width
    with pytest.raises(ValueError, match=hidden):
        make_config(name, "rec", **{hidden: (16, -1)})


@pytest.mark.parametrize("name", NAMES)
def test_presets_are_frozen_configs_of_the_registered_class(name: str) -> None:
    config_cls = ALGORITHMS[name][1]
    for preset in PRESETS:
        config = make_config(name, preset)
        assert type(config) is config_cls
        with pytest.raises(dataclasses.FrozenInstanceError):
            config.batch_size = 1  # type: ignore[misc]


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_of_another_size_or_algorithm_is_rejected(name: str) -> None:
    algo = build(name)
    hidden = next(iter(tiny_overrides(name)))
    with pytest.raises(ValueError, match=hidden):
        algo.load_state_dict(through_bytes(build(name, **{hidden: (24, 16)}).state_dict()))
    others = [n for n in NAMES if n != name and ALGORITHMS[n][0] is not ALGORITHMS[name][0]
              and spec_of(n) == spec_of(name)]
    with pytest.raises(ValueError, match="algorithm"):
        algo.load_state_dict(through_bytes(build(others[0]).state_dict()))
