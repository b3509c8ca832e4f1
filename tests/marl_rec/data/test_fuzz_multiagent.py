"""Fuzz: saved multi-agent dataset folders with a damaged top-level metadata field are refused
naming the field (tests/helpers/fuzzing.py for the property)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fuzzing import FUZZ, assert_refused
from hypothesis import assume, given
from hypothesis import strategies as st
from offline_data import make_dataset

from marl_rec.data.multiagent import MultiAgentDataset

FIELDS = ["format", "format_version", "agents", "num_transitions", "action_mask_columns", "metadata", "columns"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**12) | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tables = {"recommender": make_dataset(seed=0), "advertiser": make_dataset(seed=1, discrete=True)}
    states = np.random.default_rng(0).normal(size=(len(tables["recommender"]), 4)).astype(np.float32)
    dataset = MultiAgentDataset(tables, states, states.copy())
    return dataset.save(tmp_path_factory.mktemp("pristine") / "joint")


def test_the_pristine_folder_loads(pristine: Path) -> None:
    assert set(MultiAgentDataset.load(pristine).tables) == {"recommender", "advertiser"}


@FUZZ
@given(key=st.sampled_from(FIELDS), value=st.one_of(st.just("<deleted>"), json_values))
def test_a_damaged_metadata_field_is_named(pristine: Path, tmp_path: Path, key: str, value) -> None:
    meta = json.loads((pristine / "metadata.json").read_text())
    assume(value != meta[key])
    if key == "metadata":
        assume(not isinstance(value, dict))  # any JSON object is valid user metadata
    if key == "action_mask_columns":
        assume(value != {})  # no masks is valid
    folder = tmp_path / "joint"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(pristine, folder)
    if value == "<deleted>":
        meta.pop(key)
    else:
        meta[key] = value
    (folder / "metadata.json").write_text(json.dumps(meta))
    assert_refused(lambda: MultiAgentDataset.load(folder), [f"'{key}'", f"{key}="])
