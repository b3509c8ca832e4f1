"""Dataset folders that are subtly wrong: a column linked from outside the folder, a string
row count in the metadata, big-endian columns (which must load as native ones)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from marl_rec.data import OfflineDataset, TensorSampler
from offline_data import assert_same, make_dataset

torch.set_num_threads(1)


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return make_dataset().save(tmp_path / "ds")


def _edit_metadata(folder: Path, edit) -> None:
    meta = json.loads((folder / "metadata.json").read_text())
    edit(meta)
    (folder / "metadata.json").write_text(json.dumps(meta))


def test_a_column_linked_from_outside_the_folder_is_refused(saved: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.npy"
    (saved / "rewards.npy").rename(outside)  # the same bytes: only where they live is wrong
    (saved / "rewards.npy").symlink_to(outside)
    with pytest.raises(ValueError, match=r"column 'rewards'.*outside the dataset folder"):
        OfflineDataset.load(saved)


def test_a_link_inside_the_folder_is_fine(saved: Path) -> None:
    (saved / "rewards.npy").rename(saved / "rewards-data.npy")
    (saved / "rewards.npy").symlink_to("rewards-data.npy")
    assert_same(make_dataset(), OfflineDataset.load(saved))


@pytest.mark.parametrize("count", ["14", 14.0, True, -1, None])
def test_num_transitions_must_be_an_integer(saved: Path, count: object) -> None:
    _edit_metadata(saved, lambda meta: meta.update(num_transitions=count))
    with pytest.raises(ValueError, match=r"'num_transitions' must be a non-negative integer, got " + repr(count)):
        OfflineDataset.load(saved)


def test_big_endian_columns_load_as_native_and_train(saved: Path) -> None:
    original = make_dataset()
    for name in ("observations", "rewards", "actions"):
        array = getattr(original, name)
        big = array.astype(array.dtype.newbyteorder(">"))
        file = saved / f"{name}.npy"
        np.save(file, big)
        entry = {"dtype": big.dtype.str, "sha256": hashlib.sha256(file.read_bytes()).hexdigest()}
        _edit_metadata(saved, lambda meta, name=name, entry=entry: meta["columns"][name].update(entry))
    for mmap in (False, True):
        loaded = OfflineDataset.load(saved, mmap=mmap)
        assert loaded.observations.dtype.isnative and loaded.rewards.dtype.isnative
        assert_same(original, loaded)
        batch = TensorSampler(loaded).sample(4, torch.Generator().manual_seed(0))  # torch refuses '>f4'
        assert torch.isfinite(batch.rewards).all()
