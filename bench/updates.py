"""Updates per second of marl-rec's offline algorithms and FQE, side by side with d3rlpy's.

    bench/setup_bench_venv.sh                          # once: .venv-bench with d3rlpy 2.8.1
    .venv-bench/bin/python bench/updates.py            # the table (about 3 minutes)
    .venv-bench/bin/python bench/updates.py --quick    # smoke run (short blocks, 2 rounds)
    .venv-bench/bin/python bench/updates.py --algos bcq cql --rounds 7 --json out.json

What is timed: one update at batch 256 *with* its batch sampling, one torch thread, the
``paper`` sizes (BC 256-256; TD3 256-256; BCQ VAE 750-750, actor and critics 400-300, 10
sampled actions; CQL 3×256, 10 sampled actions; FQE twin 256-256 critics evaluating a 256-256
deterministic actor). Ours: ``algorithm.update(TensorSampler.sample(256, generator))``, what
the trainer does per step; FQE: a whole ``fit_fqe`` call (its one-off setup, tabulating the
target policy's actions over the dataset, included; the setup alone is printed below the
table). d3rlpy: ``algo.update(replay_buffer.sample_transition_batch(256))``, what its
``fit`` does per step, with the settings matched as ``bench/d3rlpy_adapters.py`` documents.
Our BC is timed without its evaluation critic (d3rlpy's BC has none); ``bc+critic`` is our
default BC (actor + a 256-256 evaluation critic), shown for information against the same
d3rlpy BC. Our CQL is timed after its BC warm start (``bc_warmup_updates=0``: the steady-state
update, the one d3rlpy's CQL, which has no warm start, always does). The data: a synthetic
100,000-transition dataset shaped like the fusion task (33-dim observations, 4-dim actions,
20-step episodes); throughput does not depend on its values.

A shared host makes timings noisy, so the script interleaves: each round times, for every
algorithm, ours and d3rlpy's blocks (about ``--block`` seconds each, order alternating
between rounds), each block right after a fixed reference workload (float32 256×256
matmul + tanh, the kind of work an update is made of). Figures are by process CPU time
(``time.process_time``: with one thread it leaves out the time spent waiting for a CPU), and
each block's rate is divided by its reference's rate; the ratio ours/d3rlpy is the median over
rounds of the per-round ratio of these normalised rates. The wall-clock rates are printed too.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from marl_rec.contracts import ActionSpec  # noqa: E402
from marl_rec.algos.registry import make_algorithm, make_config  # noqa: E402
from marl_rec.data.d3rlpy_interop import to_d3rlpy  # noqa: E402
from marl_rec.data.dataset import OfflineDataset, TensorSampler  # noqa: E402
from marl_rec.files import write_json  # noqa: E402
from marl_rec.ope.fqe import FQEConfig, fit_fqe  # noqa: E402

OBS_DIM, ACTION_DIM, BATCH_SIZE = 33, 4, 256
ALGOS = ("bc", "bc+critic", "td3", "bcq", "cql", "fqe")
TARGETS = {"bc": 1.3, "td3": 1.3, "bcq": 1.3, "cql": 1.1, "fqe": 1.3}  # ratio ours/d3rlpy (issue #19)
FQE_HIDDEN, FQE_CRITICS, FQE_LR, GAMMA = (256, 256), 2, 3e-4, 0.99
# "bc": pure BC, the work d3rlpy's BC does; "cql": the update after the BC warm start (the
# steady state; d3rlpy's CQL has no warm start, and a warm-start update skips a critic pass)
PAPER_OVERRIDES: dict[str, dict[str, Any]] = {"bc": {"evaluate_critic": False}, "cql": {"bc_warmup_updates": 0}}


# ------------------------------------------------------------------ data and reference


def synthetic_dataset(num_transitions: int = 100_000, episode_length: int = 20, seed: int = 0) -> OfflineDataset:
    """Random values in the fusion task's shapes; episodes alternately terminal and truncated,
    each next observation equal to the next row's observation (so d3rlpy can hold it)."""
    if num_transitions % episode_length:
        raise ValueError(f"num_transitions ({num_transitions}) must be a multiple of episode_length "
                         f"({episode_length})")
    rng = np.random.default_rng(seed)
    episodes = num_transitions // episode_length
    states = rng.random((episodes, episode_length + 1, OBS_DIM), dtype=np.float32)
    ends = np.zeros((episodes, episode_length), dtype=bool)
    terminals, truncations, starts = ends.copy(), ends.copy(), ends.copy()
    terminals[::2, -1], truncations[1::2, -1], starts[:, 0] = True, True, True
    return OfflineDataset(
        observations=states[:, :-1].reshape(-1, OBS_DIM), next_observations=states[:, 1:].reshape(-1, OBS_DIM),
        actions=rng.uniform(-1.0, 1.0, (num_transitions, ACTION_DIM)).astype(np.float32),
        rewards=rng.random(num_transitions, dtype=np.float32), terminals=terminals.ravel(),
        truncations=truncations.ravel(), episode_starts=starts.ravel(),
        action_spec=ActionSpec("continuous", dim=ACTION_DIM), metadata={"source": "bench/updates.py synthetic"})


class Reference:
    """A fixed torch job timed beside every block: ``calls`` × (256×256 matmul + tanh), float32,
    on the benchmark's one thread. Its rate (calls per CPU second) tracks the host's speed."""

    def __init__(self, calls: int = 60) -> None:
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(256, 256, generator=generator)
        self.weight = torch.randn(256, 256, generator=generator) / 16.0
        self.calls = calls
        self.rates: list[float] = []  # every measurement, for the report

    def rate(self) -> float:
        start = time.process_time()
        x = self.x
        for _ in range(self.calls):
            x = torch.tanh(x @ self.weight)
        self.rates.append(self.calls / max(time.process_time() - start, 1e-9))
        return self.rates[-1]


# ------------------------------------------------------------------ what is timed


@dataclass
class Side:
    """One implementation of one algorithm: ``run(n)`` performs n updates (sampling included)."""

    run: Callable[[int], None]
    count: int = 0  # updates per block, set by calibration
    cpu_rates: list[float] = field(default_factory=list)
    wall_rates: list[float] = field(default_factory=list)
    normalised: list[float] = field(default_factory=list)  # cpu rate / reference rate


def ours_side(name: str, data: OfflineDataset, seed: int) -> Side:
    spec = data.action_spec
    if name == "fqe":
        policy = make_algorithm("td3", OBS_DIM, spec, "paper", seed=seed)  # a 256-256 deterministic actor

        def run_fqe(n: int) -> None:
            config = FQEConfig(hidden=FQE_HIDDEN, num_critics=FQE_CRITICS, learning_rate=FQE_LR,
                               batch_size=BATCH_SIZE, num_updates=n, seed=seed)
            fit_fqe(data, policy, GAMMA, config)

        return Side(run_fqe)
    algorithm = make_algorithm(name.removesuffix("+critic"), OBS_DIM, spec, "paper", seed=seed,
                               **PAPER_OVERRIDES.get(name, {}))
    sampler, generator = TensorSampler(data), torch.Generator().manual_seed(seed)

    def run(n: int) -> None:
        for _ in range(n):
            algorithm.update(sampler.sample(BATCH_SIZE, generator))

    return Side(run)


def d3rlpy_side(name: str, buffer: Any) -> Side:
    from d3rlpy_adapters import make_d3rlpy, make_d3rlpy_fqe

    if name == "fqe":
        target = make_d3rlpy("td3", make_config("td3", "paper"), OBS_DIM, ACTION_DIM)
        algorithm = make_d3rlpy_fqe(target, FQE_HIDDEN, FQE_CRITICS, FQE_LR, GAMMA, BATCH_SIZE)
    else:
        base = name.removesuffix("+critic")
        algorithm = make_d3rlpy(base, make_config(base, "paper", **PAPER_OVERRIDES.get(base, {})), OBS_DIM,
                                ACTION_DIM)

    def run(n: int) -> None:
        for _ in range(n):
            algorithm.update(buffer.sample_transition_batch(BATCH_SIZE))

    return Side(run)


def calibrate(side: Side, block_seconds: float, minimum: int) -> None:
    """Warm up (first Adam step, allocator) and size the block to about ``block_seconds``."""
    side.run(2)
    probe = max(1, minimum)
    start = time.process_time()
    side.run(probe)
    per_update = max(time.process_time() - start, 1e-6) / probe
    side.count = max(minimum, int(round(block_seconds / per_update)))


def time_block(side: Side, reference: Reference) -> None:
    reference_rate = reference.rate()
    cpu, wall = time.process_time(), time.perf_counter()
    side.run(side.count)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    side.cpu_rates.append(side.count / max(cpu, 1e-9))
    side.wall_rates.append(side.count / wall)
    side.normalised.append(side.cpu_rates[-1] / reference_rate)


@dataclass
class Row:
    algorithm: str
    ours_updates_per_s: float  # median over rounds, CPU time
    d3rlpy_updates_per_s: float
    ours_wall: float  # median over rounds, wall clock
    d3rlpy_wall: float
    ratio: float  # median over rounds of (ours / reference) / (d3rlpy / reference)
    ratio_low: float  # min and max of the per-round ratios
    ratio_high: float
    target: float | None
    updates_per_block: tuple[int, int]


def summarise(name: str, ours: Side, theirs: Side) -> Row:
    ratios = [a / b for a, b in zip(ours.normalised, theirs.normalised)]
    return Row(name, statistics.median(ours.cpu_rates), statistics.median(theirs.cpu_rates),
               statistics.median(ours.wall_rates), statistics.median(theirs.wall_rates),
               statistics.median(ratios), min(ratios), max(ratios), TARGETS.get(name),
               (ours.count, theirs.count))


def sampling_costs(data: OfflineDataset, buffer: Any, repeats: int) -> tuple[float, float]:
    """CPU microseconds per batch of 256: our TensorSampler and d3rlpy's transition sampling."""
    sampler, generator = TensorSampler(data), torch.Generator().manual_seed(0)
    start = time.process_time()
    for _ in range(repeats):
        sampler.sample(BATCH_SIZE, generator)
    ours = (time.process_time() - start) / repeats
    start = time.process_time()
    for _ in range(max(1, repeats // 10)):
        buffer.sample_transition_batch(BATCH_SIZE)
    theirs = (time.process_time() - start) / max(1, repeats // 10)
    return ours * 1e6, theirs * 1e6


def fqe_setup_seconds(data: OfflineDataset, seed: int) -> float:
    """CPU seconds of a ``fit_fqe`` call with one update: its fixed cost (target-policy table,
    tensors, networks), included in every FQE block of ours."""
    policy = make_algorithm("td3", OBS_DIM, data.action_spec, "paper", seed=seed)
    config = FQEConfig(hidden=FQE_HIDDEN, num_critics=FQE_CRITICS, learning_rate=FQE_LR,
                       batch_size=BATCH_SIZE, num_updates=1, seed=seed)
    fit_fqe(data, policy, GAMMA, config)
    start = time.process_time()
    fit_fqe(data, policy, GAMMA, config)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algos", nargs="+", choices=ALGOS, default=list(ALGOS))
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--block", type=float, default=1.5, help="seconds per timed block (default 1.5)")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 0.3 s blocks (smoke run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args()
    rounds, block = (2, 0.3) if args.quick else (args.rounds, args.block)
    if rounds < 1 or block <= 0:
        raise ValueError(f"--rounds must be >= 1 and --block > 0, got {rounds} and {block}")

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", module="gym")
    import d3rlpy

    d3rlpy.seed(args.seed)  # d3rlpy samples from the global torch/numpy RNGs
    data = synthetic_dataset(seed=args.seed)
    buffer = to_d3rlpy(data)
    reference = Reference()
    pairs: dict[str, tuple[Side, Side]] = {}
    for name in args.algos:
        ours, theirs = ours_side(name, data, args.seed), d3rlpy_side(name, buffer)
        minimum = 1000 if name == "fqe" else 1  # an FQE block is a whole fit: keep its setup a small share
        calibrate(ours, block, minimum)
        calibrate(theirs, block, 1)
        pairs[name] = (ours, theirs)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    for index in range(rounds):
        for name, (ours, theirs) in pairs.items():
            for side in ((ours, theirs) if index % 2 == 0 else (theirs, ours)):
                time_block(side, reference)
    elapsed = time.perf_counter() - started
    rows = [summarise(name, *pairs[name]) for name in pairs]
    sample_ours, sample_theirs = sampling_costs(data, buffer, 2000)
    setup = fqe_setup_seconds(data, args.seed) if "fqe" in pairs else None

    print(f"marl-rec updates/s vs d3rlpy {d3rlpy.__version__}: torch {torch.__version__}, 1 thread, batch "
          f"{BATCH_SIZE}, paper sizes, Python {platform.python_version()}, {os.cpu_count()} CPUs, load average "
          f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}, {rounds} interleaved rounds in {elapsed:.0f} s")
    header = (f"{'algorithm':10s} {'ours/s':>8s} {'d3rlpy/s':>9s} {'ours wall':>9s} {'d3 wall':>8s} "
              f"{'ratio':>6s} {'(min-max)':>11s}  target")
    print(header)
    print("-" * (len(header) + 12))
    for row in rows:
        verdict = "(info)" if row.target is None else (
            f">= {row.target:.1f} {'met' if row.ratio >= row.target else 'NOT met'}")
        print(f"{row.algorithm:10s} {row.ours_updates_per_s:8.1f} {row.d3rlpy_updates_per_s:9.1f} "
              f"{row.ours_wall:9.1f} {row.d3rlpy_wall:8.1f} {row.ratio:6.2f} "
              f"({row.ratio_low:4.2f}-{row.ratio_high:4.2f})  {verdict}")
    print(f"rates: median over rounds by CPU time (wall: by wall clock); ratio: ours/d3rlpy, each normalised by "
          f"the reference workload timed just before it (median {statistics.median(reference.rates):.0f} "
          f"reference calls per CPU second, min {min(reference.rates):.0f}, max {max(reference.rates):.0f})")
    print(f"sampling a batch of 256: ours {sample_ours:.0f} us, d3rlpy {sample_theirs:.0f} us (CPU time)")
    if setup is not None:
        fqe = pairs["fqe"][0]
        print(f"our FQE block = one fit_fqe of {fqe.count} updates incl. its setup ({setup:.2f} CPU s: target "
              f"actions tabulated over {len(data):,} transitions)")
    met = [r for r in rows if r.target is not None and r.ratio >= r.target]
    graded = [r for r in rows if r.target is not None]
    print("summary: " + ", ".join(f"{r.algorithm} {r.ratio:.2f}x" for r in rows)
          + f" ours/d3rlpy (reference-normalised CPU time); {len(met)}/{len(graded)} targets met")
    if args.json:
        write_json(args.json, {"rows": [asdict(r) for r in rows], "rounds": rounds, "block_seconds": block,
                               "load_average": load_before, "torch": torch.__version__,
                               "d3rlpy": d3rlpy.__version__, "sampling_us": [sample_ours, sample_theirs],
                               "fqe_setup_cpu_s": setup})


if __name__ == "__main__":
    main()
