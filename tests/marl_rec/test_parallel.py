"""Work on several processes (marl_rec.parallel, issue #19): data-collection shards and A/B-test
groups give the same results on any number of workers for a given seed (and, for the data, a
given number of shards), and bad settings are refused with the field's name."""

from __future__ import annotations

import mmap
import os

import numpy as np
import pytest
from hydra.utils import instantiate
from marl_rec.agents.policies import ConstantPolicy, GaussianNoisePolicy
from marl_rec.envs.simulator import SimulatorConfig, UserSimulator

from marl_rec.data.dataset import OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from marl_rec.ope.ab_test import simulated_ab_test
from marl_rec.parallel import map_jobs
from marl_rec.pipelines import build_dataset, dataset_key

SIMULATOR = {"_target_": "marl_rec.envs.simulator.UserSimulator",
             "config": {"_target_": "marl_rec.envs.simulator.SimulatorConfig", "max_requests": 5,
                        "items_per_topic": 40, "ads_per_topic": 5}}
EXPERT = {"name": "expert", "kind": "policy", "seed": 0, "num_transitions": 300, "batch_users": 32,
          "behaviour": {"_target_": "marl_rec.agents.policies.GaussianNoisePolicy", "_partial_": True, "sigma": 0.3,
                        "base": {"_target_": "marl_rec.agents.policies.ProductionPolicy"}}}
MIXED = {"name": "mixed", "kind": "mixture", "seed": 0, "num_transitions": 300, "batch_users": 32,
         "components": [{"fraction": 0.5, "behaviour": {"_target_": "marl_rec.agents.policies.RandomPolicy",
                                                         "_partial_": True}},
                        {"fraction": 0.5, "behaviour": EXPERT["behaviour"]}]}


def _pid(_: int) -> int:
    return os.getpid()


def test_map_jobs_keeps_job_order_and_runs_each_job_in_a_fresh_process():
    assert map_jobs(lambda i: i * i, 7, num_workers=3) == [i * i for i in range(7)]
    assert len(set(map_jobs(_pid, 4, num_workers=2))) == 4  # a new process per job: no state carried over
    assert map_jobs(_pid, 2, num_workers=1) == [os.getpid()] * 2  # one worker: here
    with pytest.raises(ValueError, match="num_workers must be an integer >= 1"):
        map_jobs(lambda i: i, 2, num_workers=0)


def _arrays(index: int) -> dict:
    rng = np.random.default_rng(index)
    return {"big": rng.random((300, 1000), dtype=np.float32), "fortran": np.asfortranarray(rng.random((5, 3))),
            "odd": np.arange(7, dtype=np.int8) + index, "empty": np.zeros((0, 4)), "flags": rng.random(13) < 0.5,
            "text": f"job {index}", "nested": [np.full(3, index), (index, None)]}


def _memory(array: np.ndarray) -> object:
    """What holds an array's data: the first base that is not an array (a memoryview's object)."""
    while isinstance(array, np.ndarray) and array.base is not None:
        array = array.base
    return array.obj if isinstance(array, memoryview) else array


def test_map_jobs_returns_array_results_whole_through_its_spill_files(tmp_path, monkeypatch):
    monkeypatch.setattr("marl_rec.parallel._spill_root", lambda: str(tmp_path))
    got, want = map_jobs(_arrays, 3, num_workers=2), [_arrays(index) for index in range(3)]
    for result, expected in zip(got, want):
        assert result.keys() == expected.keys() and result["text"] == expected["text"]
        for name in ("big", "fortran", "odd", "empty", "flags"):
            np.testing.assert_array_equal(result[name], expected[name], err_msg=name)
            assert result[name].dtype == expected[name].dtype and result[name].flags.writeable, name
        np.testing.assert_array_equal(result["nested"][0], expected["nested"][0])
        assert result["nested"][1] == expected["nested"][1]
    assert got[0]["fortran"].flags.f_contiguous and got[0]["big"].ctypes.data % 64 == 0
    assert isinstance(_memory(got[0]["big"]), mmap.mmap)  # the data came through the file, not the pipe
    small = map_jobs(lambda i: np.ones(10), 2, num_workers=2)[1]
    assert not isinstance(_memory(small), mmap.mmap) and small.flags.writeable  # small: pipe, still writable
    got[1]["big"][0, 0] = -1.0  # writable in place, and only this result changes
    assert got[2]["big"][0, 0] == want[2]["big"][0, 0]
    assert list(tmp_path.iterdir()) == []  # the spill folder is gone
    assert map_jobs(lambda i: {"empty": np.zeros(0)}, 2, num_workers=2)[1]["empty"].shape == (0,)


def test_map_jobs_sends_results_through_the_pipe_when_the_spill_folder_is_full(tmp_path, monkeypatch):
    spill, tried = tmp_path / "spill", tmp_path / "tried"
    spill.mkdir(), tried.mkdir()

    def full(path, buffers):  # runs in the worker
        (tried / os.path.basename(path)).touch()
        open(path, "wb").close()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("marl_rec.parallel._spill_root", lambda: str(spill))
    monkeypatch.setattr("marl_rec.parallel._spill", full)  # the forked workers inherit it
    got = map_jobs(_arrays, 2, num_workers=2)
    for index, result in enumerate(got):
        np.testing.assert_array_equal(result["big"], _arrays(index)["big"])
    assert sorted(p.name for p in tried.iterdir()) == ["job0", "job1"] and list(spill.iterdir()) == []


def log(spec: dict, workers: int):
    return build_dataset({**spec, "num_workers": workers}, lambda: instantiate(SIMULATOR), instantiate, spec["seed"])


def columns(data) -> dict[str, np.ndarray]:
    return {name: getattr(data, name) for name in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if getattr(data, name) is not None}


@pytest.mark.parametrize("spec", [EXPERT, MIXED], ids=["policy", "mixture"])
def test_sharded_collection_is_the_concatenation_of_its_shards_and_reproducible(spec):
    two = log(spec, 2)
    again = log(spec, 2)
    for name, values in columns(two).items():
        np.testing.assert_array_equal(values, columns(again)[name], err_msg=name)
    assert len(two) >= spec["num_transitions"] and two.metadata["num_workers"] == 2
    # shard i is what one process logs from SeedSequence(seed).spawn(2)[i] with half the transitions
    one = log(spec, 1)
    assert not np.array_equal(one.observations[:100], two.observations[:100])  # other seeds: other data
    assert np.isfinite(two.rewards).all() and two.episode_starts.sum() > 10


def test_num_workers_is_part_of_the_cache_key_unless_it_is_one():
    assert dataset_key({**EXPERT, "num_workers": 1}, SIMULATOR) == dataset_key(EXPERT, SIMULATOR)
    assert dataset_key({**EXPERT, "num_workers": 2}, SIMULATOR) != dataset_key(EXPERT, SIMULATOR)


def test_sharded_collection_rejects_bad_settings():
    with pytest.raises(ValueError, match="data.num_workers must be an integer >= 1"):
        log(EXPERT, 0)
    online = {"name": "final_buffer", "kind": "online", "seed": 0, "num_transitions": 0, "online_steps": 2,
              "batch_users": 4, "exploration_sigma": 0.5}
    with pytest.raises(ValueError, match="data.num_workers > 1 needs data.kind 'policy' or 'mixture'"):
        log(online, 2)


def test_ab_test_gives_the_same_arms_on_any_number_of_workers():
    def make_sim():
        return UserSimulator(SimulatorConfig(max_requests=6, items_per_topic=40, ads_per_topic=5))

    def policies():  # fresh each run: the noisy arm's generator advances as it acts
        base = ConstantPolicy([0.5, 0.0, -0.5, 0.2])
        return {"constant": base, "noisy": GaussianNoisePolicy(base, 0.5, np.random.default_rng(1))}

    runs = [simulated_ab_test(make_sim, policies(), users_per_group=300, seed=2, batch_size=100, num_workers=w)
            for w in (1, 2, 3)]
    for other in runs[1:]:
        for name in ("constant", "noisy"):
            np.testing.assert_array_equal(other[name].discounted_returns, runs[0][name].discounted_returns)
            np.testing.assert_array_equal(other[name].session_lengths, runs[0][name].session_lengths)
    with pytest.raises(ValueError, match="num_workers must be an integer >= 1"):
        simulated_ab_test(make_sim, policies(), users_per_group=10, seed=0, num_workers=0)
