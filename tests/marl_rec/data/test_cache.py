"""The dataset cache shared by concurrent runs (a parallel sweep): each entry is built once
under a per-entry lock, every process gets it, a lost race keeps the winner's folder, and a
build killed mid-save leaves nothing that the next run trips on."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import pytest

import marl_rec.data.storage as storage
from marl_rec.data import OfflineDataset
from marl_rec.pipelines import cached_dataset
from marl_rec.files import exclusive_lock
from offline_data import assert_same, make_dataset

FORK = multiprocessing.get_context("fork")  # the children inherit the test's imports: fast to start
KEY = "0123456789ab"


def _ask_for_the_dataset(cache_dir: str, builds_log: str, barrier, results) -> None:
    def build() -> OfflineDataset:
        with open(builds_log, "a") as log:  # O_APPEND: one line per build, from any process
            log.write(f"{os.getpid()}\n")
        return make_dataset(seed=7)

    barrier.wait()  # all ask at the same moment
    dataset, path, reused = cached_dataset(cache_dir, "random", KEY, build)
    results.put((os.getpid(), str(path), reused, dataset.rewards.tolist()))


def test_processes_asking_at_once_build_the_entry_once_and_all_get_it(tmp_path: Path) -> None:
    num_processes = 4
    builds_log = tmp_path / "builds.log"
    cache_dir = tmp_path / "cache"
    barrier, results = FORK.Barrier(num_processes), FORK.Queue()
    workers = [FORK.Process(target=_ask_for_the_dataset, args=(str(cache_dir), str(builds_log), barrier, results))
               for _ in range(num_processes)]
    for worker in workers:
        worker.start()
    answers = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert len(builds_log.read_text().splitlines()) == 1  # built once
    assert sorted(reused for _, _, reused, _ in answers) == [False] + [True] * (num_processes - 1)
    expected = make_dataset(seed=7).rewards.tolist()
    assert all(path == str(cache_dir / f"random-{KEY}") and rewards == expected for _, path, _, rewards in answers)
    assert sorted(os.listdir(cache_dir)) == [f"random-{KEY}"]  # no lock file, no temporary


def _build_and_die_mid_save(cache_dir: str) -> None:
    calls = []
    real = storage._write_column

    def dying(file, array) -> None:
        calls.append(file)
        if len(calls) == 2:  # one column written, the second not: a SIGKILL runs no cleanup
            os.kill(os.getpid(), signal.SIGKILL)
        real(file, array)

    storage._write_column = dying
    cached_dataset(cache_dir, "random", KEY, lambda: make_dataset(seed=3))


def test_a_build_killed_mid_save_is_rebuilt_and_its_debris_removed(tmp_path: Path) -> None:
    killed = FORK.Process(target=_build_and_die_mid_save, args=(str(tmp_path),))
    killed.start()
    killed.join(timeout=120)
    assert killed.exitcode == -signal.SIGKILL
    debris = sorted(os.listdir(tmp_path))
    assert any(name.startswith(f".random-{KEY}.tmp-") for name in debris), debris
    assert f"random-{KEY}" not in debris  # never taken for an entry

    builds = []
    dataset, path, reused = cached_dataset(tmp_path, "random", KEY, lambda: builds.append(1) or make_dataset(seed=3))
    assert not reused and builds == [1]
    assert_same(dataset, OfflineDataset.load(path))
    assert sorted(os.listdir(tmp_path)) == [f"random-{KEY}"]  # the killed build's temporary and lock are gone


def test_an_entry_is_never_replaced_and_a_lost_race_keeps_the_winner(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / f"random-{KEY}"
    winner = make_dataset(seed=1)
    real = storage._write_column

    def write_after_another_process_saved(file, array) -> None:
        monkeypatch.setattr(storage, "_write_column", real)
        winner.save(path)  # a process outside the lock (another host, say) finishes first
        real(file, array)

    monkeypatch.setattr(storage, "_write_column", write_after_another_process_saved)
    with pytest.raises(FileExistsError, match="another process"):
        make_dataset(seed=2).save(path, overwrite=False)
    assert_same(winner, OfflineDataset.load(path))
    assert sorted(os.listdir(tmp_path)) == [path.name]  # the loser's temporary is gone
    with pytest.raises(FileExistsError, match="already exists"):
        make_dataset(seed=2).save(path, overwrite=False)
    assert_same(winner, OfflineDataset.load(path))


def test_the_lock_is_exclusive_and_removed_on_release(tmp_path: Path) -> None:
    lock = tmp_path / ".entry.lock"
    waits = []
    with exclusive_lock(lock):
        assert lock.exists()
        child = FORK.Process(target=_try_lock, args=(str(lock),))
        child.start()
        child.join(timeout=30)
        assert child.exitcode == 1  # held here: the other process cannot take it
    assert not lock.exists()
    with exclusive_lock(lock, on_wait=lambda: waits.append(1)):
        pass
    assert waits == [] and not lock.exists()


def _try_lock(lock: str) -> None:
    import fcntl

    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os._exit(1)
    os._exit(0)
