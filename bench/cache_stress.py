"""Stress the dataset cache's coordination (issue #15): ROUNDS rounds of PROCS processes that ask
for the same entry at the same moment (a barrier), each round in a fresh cache folder.

Counts failed requests, rounds where the entry was not built exactly once, and rounds that
left anything beside the entry (a lock file, a temporary). Usage::

    python bench/cache_stress.py [ROUNDS] [PROCS]
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))

from offline_data import make_dataset  # noqa: E402

from marl_rec.pipelines import cached_dataset  # noqa: E402

FORK = multiprocessing.get_context("fork")
KEY = "0123456789ab"


def ask(cache: str, log: str, barrier, results) -> None:
    def build():
        with open(log, "a") as handle:  # O_APPEND: one line per build, from any process
            handle.write("built\n")
        return make_dataset(seed=7)

    barrier.wait()
    try:
        dataset, _, _ = cached_dataset(cache, "random", KEY, build)
        results.put(("ok", len(dataset)))
    except BaseException as error:  # counted, not raised: the point is how often
        results.put(("error", f"{type(error).__name__}: {error}"))


def main(rounds: int, procs: int) -> None:
    failed = not_once = leftovers = 0
    started = time.perf_counter()
    for _ in range(rounds):
        root = Path(tempfile.mkdtemp())
        cache, log = root / "cache", root / "builds.log"
        barrier, results = FORK.Barrier(procs), FORK.Queue()
        workers = [FORK.Process(target=ask, args=(str(cache), str(log), barrier, results)) for _ in range(procs)]
        for worker in workers:
            worker.start()
        answers = [results.get(timeout=120) for _ in workers]
        for worker in workers:
            worker.join()
        failed += sum(status != "ok" for status, _ in answers)
        not_once += log.read_text().count("built") != 1
        leftovers += sorted(os.listdir(cache)) != [f"random-{KEY}"]
    print(f"{rounds} rounds x {procs} processes: {failed} failed requests, {not_once} rounds not built exactly "
          f"once, {leftovers} rounds with leftovers ({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100, int(sys.argv[2]) if len(sys.argv) > 2 else 4)
