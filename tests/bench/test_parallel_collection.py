"""bench/parallel_collection.py: the CPU-time figures it derives from fake calls (no simulator, no real
timing), and the per-job CPU clock around marl_rec.parallel.map_jobs."""
import time

import pytest
from bench_scripts import load

bench = load("parallel_collection")


def test_measure_interleaves_and_derives_overhead_and_the_speedup_with_a_core_per_process() -> None:
    order = []

    def job(workers: int, size: int) -> dict:
        order.append(workers)
        if workers == 1:
            return {"wall": 10.0, "cpu": 4.0, "workers_cpu": 0.0, "job_cpu": [4.0]}
        # parent 0.2 s; workers 4.4 s of which the jobs 4.2 s (2.4 the longer): 0.2 s of process overhead
        return {"wall": 8.0, "cpu": 0.2, "workers_cpu": 4.4, "job_cpu": [1.8, 2.4]}

    row = bench.measure(job, 100, rounds=2)
    assert order == [1, 1, 2, 2, 1]  # warm-up with one worker, then (1, 2), (2, 1)
    assert row["speedup_median"] == pytest.approx(1.25)
    assert row["cpu_overhead"] == pytest.approx((0.2 + 4.4) / 4.0 - 1.0)
    assert row["idle_speedup_estimate"] == pytest.approx(4.0 / (0.2 + 2.4 + 0.2 / 2))
    assert row["cpu_2_workers_longest_job"] == 2.4 and row["cpu_2_workers_jobs"] == pytest.approx(4.2)


def _spin(index: int) -> int:
    start = time.process_time()
    while time.process_time() - start < 0.05 * (index + 1):
        pass
    return index


def test_timed_map_jobs_returns_the_results_in_order_and_each_jobs_own_cpu_time() -> None:
    assert bench._timed_map_jobs(_spin, 2, 2) == [0, 1]
    assert bench._job_cpu[0] == pytest.approx(0.05, abs=0.03) and bench._job_cpu[1] == pytest.approx(0.1, abs=0.03)
