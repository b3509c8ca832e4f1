"""The parent's serial part of parallel data collection: receiving the shards and merging them
(issue #19), before and after ``OfflineDataset.concatenate`` stopped re-checking every value.

    nice -n 19 .venv/bin/python bench/parallel_merge.py                 # 120,000 transitions, 15 rounds
    nice -n 19 .venv/bin/python bench/parallel_merge.py --transitions 40000

The ``expert`` pipeline's dataset is logged once on 2 workers (``build_dataset``, as
``bench/parallel_collection.py`` does) and its two shards are kept. Each round then, for each of
the two merges in turn (order alternating between rounds), writes the shards to spill files as a
worker does (not timed) and times, in this process's CPU time (``time.process_time``: robust to a
busy host), what the parent does with them: map the files (``marl_rec.parallel._receive``), merge
the shards, free the shards (not the merged dataset, which the pipeline keeps); and the merge
alone, of the shards in memory. ``before`` is ``concatenate`` as it was (``np.concatenate`` per column,
then a dataset built through ``__init__``, which checks every value for NaN/inf again);
``after`` is ``OfflineDataset.concatenate``. Both results are checked to be identical. Prints the
medians and the median of the rounds' ratios (before / after); ``--json`` also writes them.
Then (``--whole-rounds``) the whole parent: this process's CPU time in ``build_dataset`` on 2 workers, ``before`` emulating
the code before the change (a simulator built in the parent, which the shards never used, and the
re-checking merge), interleaved likewise. Off by default: on a busy host it varies ~2x from
round to round (0.54-2.62x over 7 rounds at load 5, median 0.98x), far more than the merge saves.
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate

import marl_rec.parallel
import marl_rec.pipelines
from marl_rec.data.dataset import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, OfflineDataset
from marl_rec.files import write_json

SIMULATOR = {"_target_": "marl_rec.envs.simulator.UserSimulator"}
EXPERT = {"name": "expert", "kind": "policy", "seed": 0, "batch_users": 1024,
          "behaviour": {"_target_": "marl_rec.agents.policies.GaussianNoisePolicy", "_partial_": True, "sigma": 0.1,
                        "base": {"_target_": "marl_rec.agents.policies.ProductionPolicy"}}}
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS


def concatenate_before(datasets: list[OfflineDataset]) -> OfflineDataset:
    """``OfflineDataset.concatenate`` before issue #19's change (its checks of the parts' specs
    left out: they are the same in both)."""
    def joined(name: str) -> np.ndarray | None:
        columns = [getattr(d, name) for d in datasets]
        return None if any(c is None for c in columns) else np.concatenate(columns)

    components = joined("reward_components")
    return OfflineDataset(
        observations=joined("observations"), actions=joined("actions"), rewards=joined("rewards"),
        next_observations=joined("next_observations"), terminals=joined("terminals"),
        truncations=joined("truncations"), episode_starts=joined("episode_starts"),
        action_spec=datasets[0].action_spec, behaviour_log_probs=joined("behaviour_log_probs"),
        reward_components=components,
        component_names=list(datasets[0].component_names) if components is not None else [],
        metadata={"parts": [dict(d.metadata) for d in datasets]})


def logged_shards(transitions: int) -> list[OfflineDataset]:
    """The shards that ``build_dataset`` merges for the ``expert`` pipeline on 2 workers."""
    shards: list[OfflineDataset] = []
    map_jobs = marl_rec.pipelines.map_jobs

    def keeping(task: Callable[[int], Any], num_jobs: int, num_workers: int = 1) -> list[Any]:
        shards[:] = map_jobs(task, num_jobs, num_workers)
        return shards

    marl_rec.pipelines.map_jobs = keeping
    try:
        marl_rec.pipelines.build_dataset({**EXPERT, "num_transitions": transitions, "num_workers": 2},
                                         lambda: instantiate(SIMULATOR), instantiate, 0)
    finally:
        marl_rec.pipelines.map_jobs = map_jobs
    # in memory, as the workers hold them (the kept ones are maps of files that no longer exist)
    return [pickle.loads(pickle.dumps(shard, protocol=5)) for shard in shards]


def spilled(shard: OfflineDataset, folder: str, index: int) -> tuple:
    """What a worker sends back for ``shard`` (marl_rec.parallel._run): a pickle and a spill file."""
    buffers: list[pickle.PickleBuffer] = []
    payload = pickle.dumps(shard, protocol=5, buffer_callback=buffers.append)
    path = os.path.join(folder, f"job{index}")
    return payload, [], marl_rec.parallel._spill(path, buffers), path


def parent_cpu(merge: Callable[[list[OfflineDataset]], OfflineDataset], shards: list[OfflineDataset],
               folder: str) -> float:
    """CPU seconds of receiving the spilled ``shards``, merging them and freeing the shards (the
    merged dataset is kept, as in ``build_dataset``; freeing it is not timed)."""
    sent = [spilled(shard, folder, index) for index, shard in enumerate(shards)]
    gc.collect()
    start = time.process_time()
    parts = [marl_rec.parallel._receive(*one) for one in sent]
    merged = merge(parts)
    del parts
    seconds = time.process_time() - start
    del merged
    return seconds


def merge_cpu(merge: Callable[[list[OfflineDataset]], OfflineDataset], shards: list[OfflineDataset]) -> float:
    """CPU seconds of the merge alone, of shards already in memory (freeing the result not timed)."""
    gc.collect()
    start = time.process_time()
    merged = merge(shards)
    seconds = time.process_time() - start
    del merged
    return seconds


def whole_parent_cpu(transitions: int, before: bool) -> float:
    """CPU seconds of this process in ``build_dataset`` on 2 workers (forking, waiting, receiving,
    merging; the workers' own time is not this process's). ``before``: as the code was before
    issue #19's change, a simulator built here that the shards do not use, and the merge that
    checks every value again."""
    spec = {**EXPERT, "num_transitions": transitions, "num_workers": 2}
    concatenate = OfflineDataset.__dict__["concatenate"]  # the classmethod itself, to put back
    gc.collect()
    start = time.process_time()
    if before:
        instantiate(SIMULATOR)
        OfflineDataset.concatenate = staticmethod(concatenate_before)  # what build_dataset calls
    try:
        marl_rec.pipelines.build_dataset(spec, lambda: instantiate(SIMULATOR), instantiate, 0)
    finally:
        OfflineDataset.concatenate = concatenate
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transitions", type=int, default=120_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--whole-rounds", type=int, default=0,
                        help="rounds of the whole parent (build_dataset on 2 workers, before/after; for a quiet host)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    shards = logged_shards(args.transitions)
    # the results are the same: every column, every row, its dtype
    reference, fast = concatenate_before(shards), OfflineDataset.concatenate(shards)
    for name in COLUMNS:
        a, b = getattr(reference, name), getattr(fast, name)
        assert (a is None and b is None) or (a.dtype == b.dtype and np.array_equal(a, b)), name
    rows = len(reference)
    del reference, fast
    merges = {"before": concatenate_before, "after": OfflineDataset.concatenate}
    cpu: dict[str, dict[str, list[float]]] = {part: {name: [] for name in merges} for part in ("parent", "merge")}
    folder = tempfile.mkdtemp(prefix="marl_rec_merge_", dir=marl_rec.parallel._spill_root())
    try:
        parent_cpu(OfflineDataset.concatenate, shards, folder)  # warm-up
        for index in range(args.rounds):
            for name in (("before", "after") if index % 2 == 0 else ("after", "before")):
                cpu["parent"][name].append(parent_cpu(merges[name], shards, folder))
                cpu["merge"][name].append(merge_cpu(merges[name], shards))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"2 shards, {rows:,} transitions, {args.rounds} interleaved rounds, CPU time (medians; the ratio "
          f"before / after is the median of the rounds' ratios, with their range):")
    summary: dict[str, Any] = {"transitions": args.transitions, "rows": rows, "rounds": args.rounds}
    for part, label in (("parent", "receive + merge + free the shards"), ("merge", "merge alone (in memory)")):
        times = cpu[part]
        ratios = [b / a for b, a in zip(times["before"], times["after"])]
        before, after = statistics.median(times["before"]), statistics.median(times["after"])
        print(f"  {label:34s} before {1e3 * before:6.1f} ms, after {1e3 * after:6.1f} ms, ratio "
              f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")
        summary[part] = {"cpu_before": times["before"], "cpu_after": times["after"], "cpu_before_median": before,
                         "cpu_after_median": after, "ratio_median": statistics.median(ratios),
                         "ratio_min": min(ratios), "ratio_max": max(ratios)}
    whole: dict[str, list[float]] = {"before": [], "after": []}
    for index in range(args.whole_rounds):
        for name in (("before", "after") if index % 2 == 0 else ("after", "before")):
            whole[name].append(whole_parent_cpu(args.transitions, name == "before"))
    if args.whole_rounds:
        ratios = [b / a for b, a in zip(whole["before"], whole["after"])]
        before, after = statistics.median(whole["before"]), statistics.median(whole["after"])
        print(f"  {'the parent in build_dataset':34s} before {1e3 * before:6.1f} ms, after {1e3 * after:6.1f} ms, "
              f"ratio {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}), "
              f"{args.whole_rounds} rounds")
        summary["whole_parent"] = {"cpu_before": whole["before"], "cpu_after": whole["after"],
                                   "cpu_before_median": before, "cpu_after_median": after,
                                   "ratio_median": statistics.median(ratios)}
    if args.json is not None:
        write_json(args.json, summary)


if __name__ == "__main__":
    main()
