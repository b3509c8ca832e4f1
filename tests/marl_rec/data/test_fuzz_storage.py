"""Fuzz: saved dataset folders damaged at random (metadata fields, column descriptions, column
files) are refused with an error naming the field, column or file (tests/helpers/fuzzing.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fuzzing import FUZZ, assert_refused, outcome
from hypothesis import assume, given
from hypothesis import strategies as st
from offline_data import make_dataset

from marl_rec.data import OfflineDataset

TOP_LEVEL = ["format", "format_version", "num_transitions", "num_episodes", "action_spec", "component_names",
             "metadata", "columns"]
COLUMNS = ["observations", "actions", "rewards", "next_observations", "terminals", "truncations", "episode_starts",
           "behaviour_log_probs", "reward_components"]
DESCRIPTION = ["file", "dtype", "shape", "sha256"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**20) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset().save(tmp_path_factory.mktemp("pristine") / "ds")


def _copy(pristine: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "ds"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(pristine, folder)
    return folder


def _edit_metadata(folder: Path, edit) -> None:
    meta = json.loads((folder / "metadata.json").read_text())
    edit(meta)
    (folder / "metadata.json").write_text(json.dumps(meta))


@FUZZ
@given(key=st.sampled_from(TOP_LEVEL), value=st.one_of(st.just("<deleted>"), json_values))
def test_a_damaged_metadata_field_is_named(pristine: Path, tmp_path: Path, key: str, value) -> None:
    original = json.loads((pristine / "metadata.json").read_text())
    assume(value != original[key])
    if key == "metadata":
        assume(not isinstance(value, dict))  # any JSON object is valid user metadata
    if key == "component_names":
        # any two names (or none: unnamed components) are valid
        assume(not (isinstance(value, list) and len(value) in (0, 2) and all(isinstance(v, str) for v in value)))
    if key == "num_episodes":
        assume(value != "<deleted>")  # optional (folders written by other tools)
    folder = _copy(pristine, tmp_path)
    _edit_metadata(folder, lambda meta: meta.pop(key) if value == "<deleted>" else meta.update({key: value}))
    assert_refused(lambda: OfflineDataset.load(folder), [f"'{key}'", f"{key}="])


@FUZZ
@given(column=st.sampled_from(COLUMNS), key=st.sampled_from(DESCRIPTION),
       value=st.one_of(st.just("<deleted>"), json_values))
def test_a_damaged_column_description_is_named(pristine: Path, tmp_path: Path, column: str, key: str,
                                               value) -> None:
    original = json.loads((pristine / "metadata.json").read_text())["columns"][column]
    assume(value != original[key])
    if key == "sha256":
        assume(value != "<deleted>")  # the checksum is optional (datasets written by other tools)
    folder = _copy(pristine, tmp_path)

    def edit(meta: dict) -> None:
        if value == "<deleted>":
            meta["columns"][column].pop(key)
        else:
            meta["columns"][column][key] = value

    _edit_metadata(folder, edit)
    assert_refused(lambda: OfflineDataset.load(folder), [f"'{column}'"])


@FUZZ
@given(column=st.sampled_from(COLUMNS), cut=st.integers(0, 400), noise=st.binary(max_size=64),
       verify=st.booleans())
def test_a_damaged_column_file_is_named(pristine: Path, tmp_path: Path, column: str, cut: int, noise: bytes,
                                        verify: bool) -> None:
    folder = _copy(pristine, tmp_path)
    file = folder / f"{column}.npy"
    content = file.read_bytes()
    damaged = content[:cut] + noise
    assume(damaged != content)
    if not verify:  # in-place corruption (and trailing bytes np.load never reads) are the checksum's job
        assume(len(damaged) < len(content))
    file.write_bytes(damaged)
    assert_refused(lambda: OfflineDataset.load(folder, verify_checksums=verify), [f"'{column}'"])


@FUZZ
@given(column=st.sampled_from(COLUMNS),
       replacement=st.sampled_from(["float64", "int8", "bool", "float16", ">f4", ">f8", "shorter", "2d", "nan", "inf",
                                    "unicode"]))
def test_a_column_replaced_consistently_is_refused_or_trains(pristine: Path, tmp_path: Path, column: str,
                                                             replacement: str) -> None:
    """A column file swapped for another array, with metadata updated to match (checksum too):
    refused naming the column, or loaded with the file's values and usable for training (a
    column that loads and then crashes the sampler is the bug this catches)."""
    import hashlib

    import torch

    from marl_rec.data import TensorSampler

    folder = _copy(pristine, tmp_path)
    original = np.load(folder / f"{column}.npy")
    array = {"shorter": lambda a: a[:-1], "2d": lambda a: a.reshape(len(a), -1)[:, :1].repeat(2, 1),
             "nan": lambda a: np.full(a.shape, np.nan), "inf": lambda a: np.full(a.shape, np.inf),
             "unicode": lambda a: a.astype("U3")}.get(replacement, lambda a: a.astype(replacement))(original)
    np.save(folder / f"{column}.npy", array)
    _edit_metadata(folder, lambda meta: meta["columns"][column].update(
        dtype=array.dtype.str, shape=list(array.shape),
        sha256=hashlib.sha256((folder / f"{column}.npy").read_bytes()).hexdigest()))
    result = outcome(lambda: OfflineDataset.load(folder))
    if isinstance(result, BaseException):
        partner = {"observations": "next_observations", "next_observations": "observations"}.get(column, column)
        assert f"'{column}'" in str(result) or f"'{partner}'" in str(result), result  # shapes must agree
        return
    assert np.array_equal(getattr(result, column), array)
    batch = TensorSampler(result).sample(4, torch.Generator().manual_seed(0))
    assert torch.isfinite(batch.rewards).all()


@FUZZ
@given(cut=st.integers(0, 2000), noise=st.binary(max_size=32), delete=st.booleans())
def test_damaged_or_missing_metadata_file_is_named(pristine: Path, tmp_path: Path, cut: int, noise: bytes,
                                                   delete: bool) -> None:
    folder = _copy(pristine, tmp_path)
    meta = folder / "metadata.json"
    if delete:
        meta.unlink()
    else:
        content = meta.read_bytes()
        assume(content[:cut] + noise != content)
        meta.write_bytes(content[:cut] + noise)
    assert_refused(lambda: OfflineDataset.load(folder), ["metadata.json"])
