"""Independent jobs on worker processes: data collection shards and A/B-test groups.

:func:`map_jobs` runs ``task(0) … task(n - 1)`` on up to ``num_workers`` processes and returns
the results in job order. Each job must own all of its randomness (a seed derived from the job's
index, e.g. ``np.random.SeedSequence(seed).spawn(n)[index]``); each job runs in a fresh process
forked from the caller, so it starts from the caller's state whichever worker runs it, and the
results do not depend on the number of workers > 1. (With one worker the jobs run here, one
after the other: the same results unless a job changes state a later job reads, e.g. a
policy's own generator.)

The workers are *forked*: a job may be a closure over simulators, Hydra ``instantiate`` and
policies (torch modules included) that could not be pickled; only the results travel back
(pickled). The array data of a result of 1 MB or more does not go through the pool's pipe: a
worker writes it to a file in a temporary folder (in memory, ``/dev/shm``, where there is one) and
the parent maps it (through the pipe, two 64 MB results measured ~1 CPU second and seconds of wall
clock on a loaded host; issue #19, bench/results/README.md). Fork is POSIX-only; where it is
unavailable ``num_workers > 1`` raises. Each worker uses one torch/BLAS thread (the processes are
the parallelism; more threads per process only compete for the same cores). For many machines,
run the jobs as separate processes through a launcher instead (``bench/results/README.md``, "Data
collection on many machines").
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import pickle
import shutil
import sys
import tempfile
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_task: Callable[[int], object] | None = None  # the job function, inherited by the forked workers
_spill_dir: str | None = None  # where the workers write their results' array data, inherited too
_ALIGN = 64  # each array's data starts on a cache line of the buffer it is read into
_SPILL_MIN_BYTES = 1 << 20  # smaller ones go through the pipe (a spilled result holds a map; not timed)


def _one_thread() -> None:
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    torch = sys.modules.get("torch")  # only if the parent uses it: no torch import for numpy jobs
    if torch is not None:
        torch.set_num_threads(1)


def _run(index: int) -> tuple[bytes, list[bytearray], list[int], str | None]:
    """Job ``index`` in a worker. The result is pickled once, with its arrays' data out of band
    (pickle protocol 5); that data goes to a file (``path``, with each buffer's size) when it is
    large, else through the pipe beside the rest (``inline``)."""
    assert _task is not None and _spill_dir is not None, "map_jobs: worker started without a task"
    buffers: list[pickle.PickleBuffer] = []
    payload = pickle.dumps(_task(index), protocol=5, buffer_callback=buffers.append)
    if sum(buffer.raw().nbytes for buffer in buffers) >= _SPILL_MIN_BYTES:
        path = os.path.join(_spill_dir, f"job{index}")
        try:
            return payload, [], _spill(path, buffers), path
        except OSError:  # e.g. a full /dev/shm (containers often give it 64 MB): through the pipe, then
            if os.path.exists(path):
                os.remove(path)
    return payload, [bytearray(buffer.raw()) for buffer in buffers], [], None


def _spill(path: str, buffers: list[pickle.PickleBuffer]) -> list[int]:
    """Write the buffers to ``path``, each padded to ``_ALIGN`` bytes; returns their sizes."""
    sizes = []
    with open(path, "wb") as file:
        for buffer in buffers:
            data = buffer.raw()
            file.write(data)
            file.write(bytes(-data.nbytes % _ALIGN))
            sizes.append(data.nbytes)
    return sizes


def _receive(payload: bytes, inline: list[bytearray], sizes: list[int], path: str | None) -> object:
    """A worker's result from :func:`_run`'s output (spilled arrays are views of the file's data)."""
    if path is None:
        return pickle.loads(payload, buffers=inline)
    with open(path, "rb") as file:  # a copy-on-write map of the file: the arrays are writable views of it
        empty = os.fstat(file.fileno()).st_size == 0  # (mmap refuses an empty file)
        view = memoryview(bytearray() if empty else mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY))
    os.remove(path)  # the map keeps the data until its last array is freed
    offset, buffers = 0, []
    for size in sizes:
        buffers.append(view[offset:offset + size])
        offset += size + (-size % _ALIGN)
    return pickle.loads(payload, buffers=buffers)


def _spill_root() -> str | None:
    """/dev/shm (memory) where it is a writable folder, else the default temporary folder."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def check_num_workers(num_workers: object, owner: str = "num_workers") -> int:
    """``num_workers`` as an int >= 1, or ValueError naming ``owner``."""
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
        raise ValueError(f"{owner} must be an integer >= 1, got {num_workers!r}")
    return num_workers


def map_jobs(task: Callable[[int], T], num_jobs: int, num_workers: int = 1) -> list[T]:
    """``[task(i) for i in range(num_jobs)]``, on ``min(num_workers, num_jobs)`` forked processes
    when ``num_workers > 1`` (in this process otherwise). Results come back in job order."""
    global _task, _spill_dir
    check_num_workers(num_workers)
    if num_workers == 1 or num_jobs <= 1:
        return [task(index) for index in range(num_jobs)]
    if "fork" not in multiprocessing.get_all_start_methods():
        raise ValueError("num_workers > 1 needs the 'fork' start method (POSIX); use num_workers=1 here")
    if _task is not None:
        raise RuntimeError("map_jobs is not re-entrant: a job may not start workers of its own")
    _task, _spill_dir = task, tempfile.mkdtemp(prefix="marl_rec_jobs_", dir=_spill_root())
    try:
        # maxtasksperchild=1: every job starts from this process's state at the fork (a policy
        # with its own generator, say), whichever worker runs it and whatever ran before it
        with multiprocessing.get_context("fork").Pool(min(num_workers, num_jobs), initializer=_one_thread,
                                                      maxtasksperchild=1) as pool:
            return [_receive(*sent) for sent in pool.map(_run, range(num_jobs), chunksize=1)]
    finally:
        shutil.rmtree(_spill_dir, ignore_errors=True)
        _task, _spill_dir = None, None


__all__ = ["check_num_workers", "map_jobs"]
