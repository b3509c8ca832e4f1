"""OfflineDataset: storage (atomic save, validated load, mmap), episode helpers, d3rlpy interop."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import marl_rec.data.dataset as dataset_module
import marl_rec.data.storage as storage
from marl_rec.contracts import ActionSpec
from marl_rec.data import OfflineDataset, TensorSampler, collect, from_d3rlpy, to_d3rlpy
from offline_data import COLUMNS, assert_same, make_dataset

original_first_non_finite_row = dataset_module.first_non_finite_row

torch.set_num_threads(1)


# ------------------------------------------------------------------- storage
@pytest.mark.parametrize("mmap", [False, True])
@pytest.mark.parametrize("discrete", [False, True])
def test_save_load_round_trip(tmp_path: Path, mmap: bool, discrete: bool) -> None:
    dataset = make_dataset(discrete=discrete)
    dataset.save(tmp_path / "ds")
    loaded = OfflineDataset.load(tmp_path / "ds", mmap=mmap)
    assert_same(dataset, loaded)
    assert isinstance(loaded.observations, np.memmap) == mmap
    sampler = TensorSampler(loaded)  # works on memory-mapped columns too
    batch = sampler.sample(16, torch.Generator().manual_seed(0))
    assert batch.observations.shape == (16, 3)


def test_metadata_file_describes_columns(tmp_path: Path) -> None:
    dataset = make_dataset()
    dataset.save(tmp_path / "ds")
    meta = json.loads((tmp_path / "ds" / "metadata.json").read_text())
    assert meta["format_version"] == storage.FORMAT_VERSION
    assert meta["num_transitions"] == len(dataset) and meta["num_episodes"] == 4
    assert meta["action_spec"] == {"kind": "continuous", "dim": 2, "num_actions": 0, "low": -1.0, "high": 1.0}
    assert meta["component_names"] == ["click", "watch"] and meta["metadata"] == dataset.metadata
    for name in COLUMNS:
        column = meta["columns"][name]
        file = tmp_path / "ds" / column["file"]
        assert column["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
        assert column["dtype"] == getattr(dataset, name).dtype.str
        assert column["shape"] == list(getattr(dataset, name).shape)
    assert sorted(os.listdir(tmp_path)) == ["ds"]  # no temporary folder left behind


def test_optional_columns_absent_round_trip(tmp_path: Path) -> None:
    dataset = make_dataset()
    dataset.behaviour_log_probs = None
    dataset.reward_components, dataset.component_names = None, []
    dataset.save(tmp_path / "ds")
    assert sorted(json.loads((tmp_path / "ds" / "metadata.json").read_text())["columns"]) == sorted(COLUMNS[:7])
    assert_same(dataset, OfflineDataset.load(tmp_path / "ds"))


def test_mmap_chosen_automatically_above_threshold(tmp_path: Path) -> None:
    make_dataset().save(tmp_path / "ds")
    assert not isinstance(storage.load_dataset(tmp_path / "ds").observations, np.memmap)
    big = storage.load_dataset(tmp_path / "ds", mmap_threshold_bytes=100)
    assert isinstance(big.observations, np.memmap)
    big.rewards[0] = 123.0  # copy-on-write: the file is never modified through the map
    assert OfflineDataset.load(tmp_path / "ds").rewards[0] != 123.0


def test_save_replaces_a_dataset_but_nothing_else(tmp_path: Path) -> None:
    make_dataset(seed=0).save(tmp_path / "ds")
    newer = make_dataset(seed=1, lengths=(2, 2))
    newer.save(tmp_path / "ds")
    assert_same(newer, OfflineDataset.load(tmp_path / "ds"))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        make_dataset().save(tmp_path / "ds", overwrite=False)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a saved dataset"):
        make_dataset().save(tmp_path / "notes")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"
    assert sorted(os.listdir(tmp_path)) == ["ds", "notes"]


def test_save_rejects_metadata_that_is_not_json(tmp_path: Path) -> None:
    dataset = make_dataset()
    dataset.metadata["array"] = np.zeros(2)
    with pytest.raises(ValueError, match="JSON-serialisable"):
        dataset.save(tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


def test_interrupted_save_keeps_the_old_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = make_dataset(seed=0)
    old.save(tmp_path / "ds")
    calls = []
    real_write = storage._write_column

    def failing_write(file: Path, array: np.ndarray) -> None:
        calls.append(file.name)
        if len(calls) == 2:
            raise OSError("disk full")
        real_write(file, array)

    monkeypatch.setattr(storage, "_write_column", failing_write)
    with pytest.raises(OSError, match="disk full"):
        make_dataset(seed=1).save(tmp_path / "ds")
    assert len(calls) == 2
    assert_same(old, OfflineDataset.load(tmp_path / "ds"))
    assert sorted(os.listdir(tmp_path)) == ["ds"]
    calls.clear()
    with pytest.raises(OSError, match="disk full"):  # a first save that fails leaves nothing at all
        make_dataset().save(tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists() and sorted(os.listdir(tmp_path)) == ["ds"]


def test_process_killed_mid_save_keeps_the_old_dataset(tmp_path: Path) -> None:
    """A real crash (the process dies while writing the second column, no cleanup runs)."""
    old = make_dataset(seed=0)
    old.save(tmp_path / "ds")
    script = f"""
import os, sys
sys.path.insert(0, {str(Path(__file__).parents[2] / "helpers")!r})
import marl_rec.data.storage as storage
from offline_data import make_dataset
real, calls = storage._write_column, []
def dying(file, array):
    calls.append(file)
    if len(calls) == 2:
        os._exit(9)
    real(file, array)
storage._write_column = dying
make_dataset(seed=1).save({str(tmp_path / "ds")!r})
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 9, result.stderr
    leftovers = [n for n in os.listdir(tmp_path) if n != "ds"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".ds.tmp-")  # hidden, never taken for the dataset
    assert_same(old, OfflineDataset.load(tmp_path / "ds"))
    newer = make_dataset(seed=2)
    newer.save(tmp_path / "ds")  # and the next save works despite the debris
    assert_same(newer, OfflineDataset.load(tmp_path / "ds"))


# ----------------------------------------------------------- bad input on load
def tamper(folder: Path, name: str, array: np.ndarray) -> None:
    """Replace a column file and make metadata agree with it (dtype, shape, checksum), so the
    check under test is the one that fires, not the checksum."""
    file = folder / f"{name}.npy"
    np.save(file, array)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["columns"][name].update(dtype=array.dtype.str, shape=list(array.shape),
                                 sha256=hashlib.sha256(file.read_bytes()).hexdigest())
    (folder / "metadata.json").write_text(json.dumps(meta))


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    make_dataset().save(tmp_path / "ds")
    return tmp_path / "ds"


def test_load_missing_dataset_or_files(saved: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no saved dataset"):
        OfflineDataset.load(saved.parent / "nope")
    (saved / "rewards.npy").unlink()
    with pytest.raises(FileNotFoundError, match="column 'rewards'.*missing"):
        OfflineDataset.load(saved)
    (saved / "metadata.json").unlink()
    with pytest.raises(FileNotFoundError, match="metadata.json is missing"):
        OfflineDataset.load(saved)


def test_load_corrupted_files(saved: Path) -> None:
    data = (saved / "observations.npy").read_bytes()
    (saved / "observations.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="column 'observations'.*corrupted.*sha256"):
        OfflineDataset.load(saved)
    with pytest.raises(ValueError, match="column 'observations'.*corrupted or not a .npy file"):
        OfflineDataset.load(saved, verify_checksums=False)
    with pytest.raises(ValueError, match="column 'observations'.*corrupted or not a .npy file"):
        OfflineDataset.load(saved, verify_checksums=False, mmap=True)
    (saved / "metadata.json").write_text("{not json")
    with pytest.raises(ValueError, match="metadata.json is corrupted"):
        OfflineDataset.load(saved)


def test_load_rejects_pickled_columns(saved: Path) -> None:
    np.save(saved / "rewards.npy", np.array([{"x": 1}] * 13, dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="column 'rewards'.*(corrupted|pickle)"):
        OfflineDataset.load(saved, verify_checksums=False)


@pytest.mark.parametrize("column, array, message", [
    ("rewards", np.zeros(13, np.float64), "column 'rewards'.*dtype <f8, metadata says '<f4'"),
    ("terminals", np.zeros(13, np.float32), "column 'terminals'.*dtype <f4, metadata says '\\|b1'"),
])
def test_load_dtype_disagreeing_with_metadata(saved: Path, column: str, array: np.ndarray, message: str) -> None:
    np.save(saved / f"{column}.npy", array)
    with pytest.raises(ValueError, match=message):
        OfflineDataset.load(saved, verify_checksums=False)


def test_load_wrong_dtype_kind_even_if_metadata_agrees(saved: Path) -> None:
    tamper(saved, "terminals", np.zeros(13, np.float32))
    with pytest.raises(ValueError, match="column 'terminals' must be bool"):
        OfflineDataset.load(saved)


def test_load_nan_rewards(saved: Path) -> None:
    rewards = np.load(saved / "rewards.npy")
    rewards[5] = np.nan
    tamper(saved, "rewards", rewards)
    with pytest.raises(ValueError, match="column 'rewards' contains NaN.*row 5"):
        OfflineDataset.load(saved)


def test_load_mismatched_lengths(saved: Path) -> None:
    tamper(saved, "rewards", np.load(saved / "rewards.npy")[:-1])
    with pytest.raises(ValueError, match="column 'rewards' has 12 rows, metadata says num_transitions=13"):
        OfflineDataset.load(saved)


def test_load_wrong_action_dimension(saved: Path) -> None:
    tamper(saved, "actions", np.zeros((13, 3), np.float32))
    with pytest.raises(ValueError, match="column 'actions'.*metadata's action_spec is continuous with dim=2"):
        OfflineDataset.load(saved)


def test_load_invalid_episode_boundaries(saved: Path) -> None:
    starts = np.load(saved / "episode_starts.npy")
    starts[1] = True
    tamper(saved, "episode_starts", starts)
    with pytest.raises(ValueError, match=f"dataset at {saved} is invalid: episode boundaries"):
        OfflineDataset.load(saved)


def test_failed_load_changes_nothing(saved: Path) -> None:
    before = {f: (saved / f).read_bytes() for f in os.listdir(saved)}
    tamper(saved, "actions", np.zeros((13, 3), np.float32))
    before.update({f: (saved / f).read_bytes() for f in ("actions.npy", "metadata.json")})
    with pytest.raises(ValueError):
        OfflineDataset.load(saved, mmap=True)
    assert {f: (saved / f).read_bytes() for f in os.listdir(saved)} == before


@pytest.mark.parametrize("column, value, message", [
    ("rewards", np.float32([np.nan] + [0.0] * 12), "column 'rewards' contains NaN"),
    ("rewards", np.zeros(12, np.float32), "column 'observations' has length 13, expected 12"),
    ("actions", np.zeros((13, 3), np.float32), "column 'actions' must have shape \\(N, 2\\)"),
    ("observations", np.zeros((12, 3), np.float32), "column 'observations' has length 12, expected 13"),
])
def test_construction_rejects_bad_columns(column: str, value: np.ndarray, message: str) -> None:
    good = make_dataset()
    fields = {name: getattr(good, name) for name in COLUMNS}
    fields[column] = value
    with pytest.raises(ValueError, match=message):
        OfflineDataset(**fields, action_spec=good.action_spec, component_names=good.component_names)


def test_non_finite_check_scans_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dataset_module, "_CHUNK_BYTES", 24)  # two rows of 3 float32 per block
    column = np.zeros((11, 3), np.float32)
    assert dataset_module.first_non_finite_row(column) is None
    column[7, 2] = np.inf
    assert dataset_module.first_non_finite_row(column) == 7


# ----------------------------------------------------------- episode helpers
def test_episode_rows_and_subset() -> None:
    dataset = make_dataset()  # episodes: rows 0-2, 3-6, 7, 8-12
    assert dataset.episode_rows([3, 0]).tolist() == [8, 9, 10, 11, 12, 0, 1, 2]
    assert dataset.episode_rows(np.array([False, True, True, False])).tolist() == [3, 4, 5, 6, 7]
    subset = dataset.subset_episodes([3, 1])
    rows = [8, 9, 10, 11, 12, 3, 4, 5, 6]
    for name in COLUMNS[:2] + COLUMNS[2:4] + COLUMNS[7:]:
        assert np.array_equal(getattr(subset, name), getattr(dataset, name)[rows]), name
    assert subset.episode_starts.tolist() == [True, False, False, False, False, True, False, False, False]
    assert subset.truncations.tolist() == [False] * 8 + [True]
    for bad in ([4], [], np.array([True, False])):
        with pytest.raises(ValueError, match="episode"):
            dataset.subset_episodes(bad)


def test_split_episodes_is_a_seeded_partition() -> None:
    dataset = make_dataset(lengths=tuple(range(1, 11)))
    first, second = dataset.split_episodes(0.7, np.random.default_rng(3))
    assert (first.num_episodes, second.num_episodes) == (7, 3)
    assert len(first) + len(second) == len(dataset)
    seen = np.concatenate([first.observations, second.observations])
    assert np.array_equal(np.sort(seen, axis=0), np.sort(dataset.observations, axis=0))
    again, _ = dataset.split_episodes(0.7, np.random.default_rng(3))
    assert np.array_equal(again.observations, first.observations)
    other, _ = dataset.split_episodes(0.7, np.random.default_rng(4))
    assert not np.array_equal(other.observations, first.observations)
    for fraction in (0.0, 1.0, 0.01):
        with pytest.raises(ValueError, match="fraction"):
            dataset.split_episodes(fraction, np.random.default_rng(0))


def test_with_rewards_relabels_a_copy() -> None:
    dataset = make_dataset()
    original = dataset.rewards.copy()
    relabelled = dataset.with_rewards(np.arange(13, dtype=np.float64), source="airl")
    assert relabelled.rewards.dtype == np.float32 and relabelled.rewards.tolist() == list(range(13))
    assert np.array_equal(dataset.rewards, original)
    assert relabelled.observations is dataset.observations  # the rest is shared, not copied
    assert relabelled.metadata["reward_source"] == "airl" and "reward_source" not in dataset.metadata
    with pytest.raises(ValueError, match="shape \\(12,\\), expected \\(13,\\)"):
        dataset.with_rewards(np.zeros(12))
    with pytest.raises(ValueError, match="column 'rewards' contains NaN"):
        dataset.with_rewards(np.full(13, np.nan))


def test_concatenate() -> None:
    a, b = make_dataset(seed=0), make_dataset(seed=1, lengths=(2, 6))
    joined = OfflineDataset.concatenate([a, b])
    assert len(joined) == len(a) + len(b) and joined.num_episodes == 6
    assert np.array_equal(joined.observations[len(a):], b.observations)
    assert np.array_equal(joined.behaviour_log_probs[:len(a)], a.behaviour_log_probs)
    assert joined.metadata["parts"] == [a.metadata, b.metadata]
    b.behaviour_log_probs = None  # e.g. a deterministic expert: the mixture has no log-prob column
    assert OfflineDataset.concatenate([a, b]).behaviour_log_probs is None
    with pytest.raises(ValueError, match="action_spec"):
        OfflineDataset.concatenate([a, make_dataset(discrete=True)])
    with pytest.raises(ValueError, match="obs_dim 4"):
        OfflineDataset.concatenate([a, make_dataset(obs_dim=4)])
    b.component_names = ["like", "watch"]
    with pytest.raises(ValueError, match="component_names"):
        OfflineDataset.concatenate([a, b])


def _concatenated_through_init(datasets: list[OfflineDataset]) -> OfflineDataset:
    """What concatenate returned before issue #19: np.concatenate per column, built (and every
    value checked) through __init__."""
    def joined(name: str) -> np.ndarray | None:
        columns = [getattr(d, name) for d in datasets]
        return None if any(c is None for c in columns) else np.concatenate(columns)

    return OfflineDataset(**{name: joined(name) for name in COLUMNS}, action_spec=datasets[0].action_spec,
                          component_names=list(datasets[0].component_names),
                          metadata={"parts": [d.metadata for d in datasets]})


@pytest.mark.parametrize("discrete", [False, True])
def test_concatenate_without_rechecking_values_gives_the_same_dataset(discrete: bool) -> None:
    parts = [make_dataset(seed=0, discrete=discrete), make_dataset(seed=1, lengths=(2, 6), discrete=discrete),
             make_dataset(seed=2, lengths=(1,), discrete=discrete)]
    parts[2].observations = parts[2].observations.astype(np.float64)  # np.concatenate's dtype: float64
    joined = OfflineDataset.concatenate(parts)
    assert_same(joined, _concatenated_through_init(parts))
    assert joined.observations.dtype == np.float64 and joined._values_checked()
    # a part that came back from a worker (pickled, arrays out of band) is still a checked one
    buffers: list = []
    shipped = pickle.loads(pickle.dumps(parts[0], protocol=5, buffer_callback=buffers.append), buffers=buffers)
    assert shipped._values_checked()


def test_concatenate_checks_what_joining_can_break(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = make_dataset(seed=0), make_dataset(seed=1)
    scans = []
    monkeypatch.setattr(dataset_module, "first_non_finite_row",
                        lambda column: scans.append(column) or original_first_non_finite_row(column))
    OfflineDataset.concatenate([a, b])
    assert scans == []  # the parts' values were checked when they were built: not scanned again
    b.reward_components = b.reward_components[:, :1].copy()  # widths disagree (no names to compare)
    b.component_names = []
    with pytest.raises(ValueError, match="dataset 1 has column 'reward_components' of shape \\(13, 1\\)"):
        OfflineDataset.concatenate([a, b])
    b = make_dataset(seed=1)
    b.rewards = np.where(np.arange(len(b)) == 3, np.nan, b.rewards).astype(np.float32)  # assigned after its check
    with pytest.raises(ValueError, match="column 'rewards' contains NaN or infinite values \\(first at row 3\\)"):
        OfflineDataset.concatenate([a, b])
    b = make_dataset(seed=1)
    b.truncations = np.zeros(len(b), bool)  # a part whose episode boundaries broke since its check
    b.terminals = np.zeros(len(b), bool)
    with pytest.raises(ValueError, match="episode boundaries|last transition"):
        OfflineDataset.concatenate([a, b])


def test_summary_matches_the_columns() -> None:
    dataset = make_dataset()
    summary = dataset.summary()
    json.dumps(summary)
    assert summary["num_transitions"] == 13 and summary["num_episodes"] == 4
    assert summary["episode_length"] == {"mean": 13 / 4, "min": 1, "max": 5}
    returns = [dataset.rewards[s:e].sum() for s, e in [(0, 3), (3, 7), (7, 8), (8, 13)]]
    assert summary["episode_return"]["mean"] == pytest.approx(np.mean(returns), rel=1e-5)
    assert summary["terminal_episode_fraction"] == 0.75
    assert summary["action_mean"] == pytest.approx(dataset.actions.mean(axis=0).tolist(), rel=1e-5)
    assert summary["component_mean"]["watch"] == pytest.approx(dataset.reward_components[:, 1].mean(), rel=1e-5)
    discrete = make_dataset(discrete=True).summary()
    assert len(discrete["action_frequency"]) == 5 and sum(discrete["action_frequency"]) == pytest.approx(1.0)


def test_collected_simulator_dataset_round_trips(tmp_path: Path) -> None:
    from marl_rec.agents.policies import GaussianNoisePolicy, HeuristicExpertPolicy
    from marl_rec.envs.simulator import SimulatorConfig, UserSimulator

    sim = UserSimulator(SimulatorConfig(max_requests=6))
    policy = GaussianNoisePolicy(HeuristicExpertPolicy(), 0.3, np.random.default_rng(0))
    dataset = collect(sim, policy, 300, np.random.default_rng(1), batch_size=32, metadata={"pipeline": "noisy"})
    dataset.save(tmp_path / "sim")
    assert_same(dataset, OfflineDataset.load(tmp_path / "sim", mmap=True))


# ----------------------------------------------------------------- d3rlpy
def test_d3rlpy_missing_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "d3rlpy", None)  # import d3rlpy now raises ImportError
    with pytest.raises(ImportError, match="pip install d3rlpy"):
        to_d3rlpy(make_dataset())
    with pytest.raises(ImportError, match="pip install d3rlpy"):
        from_d3rlpy(object(), ActionSpec("continuous", dim=2))


@pytest.mark.parametrize("discrete", [False, True])
def test_d3rlpy_round_trip_and_transitions(discrete: bool) -> None:
    d3rlpy = pytest.importorskip("d3rlpy")
    dataset = make_dataset(discrete=discrete, lengths=(3, 4, 1, 5, 2), truncated=(1, 2))
    mdp = to_d3rlpy(dataset)
    assert mdp.transition_count == len(dataset) and mdp.size() == 5
    assert mdp.dataset_info.action_space == (d3rlpy.ActionSpace.DISCRETE if discrete else d3rlpy.ActionSpace.CONTINUOUS)
    # d3rlpy's own transition picker sees exactly our transitions, in order
    for row in range(len(dataset)):
        episode, index = mdp.buffer[row]
        t = mdp.transition_picker(episode, index)
        assert np.array_equal(t.observation, dataset.observations[row])
        assert np.array_equal(np.reshape(t.action, -1), np.reshape(dataset.actions[row], -1))
        assert t.reward[0] == dataset.rewards[row]
        assert t.terminal == float(dataset.terminals[row])
        expected_next = dataset.next_observations[row] * (0.0 if dataset.terminals[row] else 1.0)
        assert np.array_equal(t.next_observation, expected_next)
    back = from_d3rlpy(mdp, dataset.action_spec)
    for name in ("observations", "actions", "rewards", "terminals", "truncations", "episode_starts"):
        assert np.array_equal(getattr(back, name), getattr(dataset, name)), name
    assert back.actions.dtype == dataset.actions.dtype
    kept = ~dataset.terminals
    assert np.array_equal(back.next_observations[kept], dataset.next_observations[kept])
    assert not back.next_observations[dataset.terminals].any()


def test_d3rlpy_rejects_mismatches() -> None:
    pytest.importorskip("d3rlpy")
    dataset = make_dataset()
    with pytest.raises(ValueError, match="does not match the d3rlpy dataset"):
        from_d3rlpy(to_d3rlpy(dataset), ActionSpec("continuous", dim=3))
    dataset.next_observations[4] += 1.0  # no longer the next row's observation
    with pytest.raises(ValueError, match="row 4: 'next_observations' differs"):
        to_d3rlpy(dataset)


@pytest.mark.parametrize("bootstrap", [False, True])
def test_sampler_dones_follow_the_truncation_convention(bootstrap: bool) -> None:
    """Default: a truncation ends the TD target like a terminal; bootstrap_truncated=True
    bootstraps through it (only terminals are dones)."""
    data = make_dataset(truncated=(1, 3))
    sampler = TensorSampler(data, bootstrap_truncated=bootstrap)
    expected = data.terminals if bootstrap else data.terminals | data.truncations
    assert data.truncations.any()
    np.testing.assert_array_equal(sampler.dones.numpy(), expected.astype(np.float32))
