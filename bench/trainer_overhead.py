"""What the trainer costs on top of the updates themselves.

1. Per-update overhead, with a no-op algorithm that returns 4 metrics (as floats or as
   0-d tensors): microseconds per update of a bare sample+update loop vs ``Trainer.fit``.
   The difference is what the trainer adds per update (robust to machine load).
2. Metric conversion: an algorithm calling ``.tolist()`` on its 4 metrics every update
   (``TorchAlgorithm._metrics``) vs the trainer reducing 4 x 1000 returned 0-d tensors once
   per log interval, per update. (On a GPU the per-update conversion is also a host sync.)
3. For one real algorithm (default: TD3, rec preset, batch 256, one torch thread):
  bare     a plain ``algorithm.update(sampler.sample(256, g))`` loop
  trainer  ``Trainer.fit`` on the same work (log every 1000, no evaluation, one final checkpoint)
each with the algorithm's metrics returned as floats (its ``update`` converts them, one
``.tolist()`` per update) and as detached tensors (the trainer sums them as tensors and
converts once per log interval). Rounds are interleaved and the median kept; a fixed
matmul workload is timed alongside so numbers from a loaded machine can be compared.

    .venv/bin/python bench/trainer_overhead.py [--algo td3] [--updates 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from marl_rec.contracts import ActionSpec  # noqa: E402
from marl_rec.algos.common import TorchAlgorithm  # noqa: E402
from marl_rec.algos.registry import make_algorithm  # noqa: E402
from marl_rec.data.dataset import OfflineDataset, TensorSampler  # noqa: E402
from marl_rec.trainer import Trainer, TrainerConfig  # noqa: E402


def dataset(n: int = 100_000, obs_dim: int = 33, action_dim: int = 4) -> OfflineDataset:
    rng = np.random.default_rng(0)
    ends = np.zeros(n, dtype=bool)
    ends[49::50] = True
    ends[-1] = True
    starts = np.roll(ends, 1)
    return OfflineDataset(rng.random((n, obs_dim), dtype=np.float32),
                          rng.uniform(-1, 1, (n, action_dim)).astype(np.float32),
                          rng.random(n, dtype=np.float32), rng.random((n, obs_dim), dtype=np.float32),
                          ends, np.zeros(n, dtype=bool), starts, ActionSpec("continuous", dim=action_dim))


def reference_workload() -> float:
    """Seconds for 200 float32 256x256 matmuls: a yardstick for the machine's current speed."""
    a = torch.randn(256, 256, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    for _ in range(200):
        a = torch.tanh(a @ a)
    return time.perf_counter() - start


class NoOp:
    """Returns fixed metrics; everything else about the loop (sampling included) is real."""

    name, obs_dim, action_spec, config = "noop", 33, ActionSpec("continuous", dim=4), None

    def __init__(self, as_tensors: bool) -> None:
        values = {"critic_loss": 1.0, "actor_loss": -2.0, "q_mean": 3.0, "target_mean": 3.0}
        self.metrics = {k: torch.tensor(v) for k, v in values.items()} if as_tensors else values

    def update(self, batch: object) -> dict:
        return self.metrics

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def overhead(data: OfflineDataset, updates: int, as_tensors: bool) -> tuple[float, float]:
    """(bare, trainer) microseconds per update for the no-op algorithm."""
    sampler, generator = TensorSampler(data), torch.Generator().manual_seed(0)
    algorithm = NoOp(as_tensors)
    start = time.perf_counter()
    for _ in range(updates):
        algorithm.update(sampler.sample(256, generator))
    bare_us = (time.perf_counter() - start) / updates * 1e6
    config = TrainerConfig(num_updates=updates, batch_size=256, eval_every=0, checkpoint_every=updates,
                           log_every=1000, progress=False)
    with tempfile.TemporaryDirectory() as run_dir:
        run = Trainer(NoOp(as_tensors), sampler, config, run_dir)
        start = time.perf_counter()
        run.fit()
        return bare_us, (time.perf_counter() - start) / updates * 1e6


def conversion(repeats: int = 20_000) -> tuple[float, float]:
    """(per-update .tolist(), trainer's per-interval reduction / 1000) in microseconds."""
    values = {k: torch.randn(()) for k in ("critic_loss", "actor_loss", "q_mean", "target_mean")}
    start = time.perf_counter()
    for _ in range(repeats):
        TorchAlgorithm._metrics(values)
    per_update = (time.perf_counter() - start) / repeats * 1e6
    trainer = Trainer(NoOp(True), TensorSampler(dataset(100)), TrainerConfig(batch_size=256, progress=False),
                      tempfile.gettempdir())
    trainer._pending = {k: [v.clone() for _ in range(1000)] for k, v in values.items()}  # one log interval
    start = time.perf_counter()
    for _ in range(repeats // 1000):
        trainer._interval_means()
    return per_update, (time.perf_counter() - start) / (repeats // 1000 * 1000) * 1e6


def bare(algo: str, data: OfflineDataset, updates: int) -> float:
    algorithm, sampler = make_algorithm(algo, data.obs_dim, data.action_spec, "rec"), TensorSampler(data)
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(updates):
        algorithm.update(sampler.sample(256, generator))
    return updates / (time.perf_counter() - start)


def trainer(algo: str, data: OfflineDataset, updates: int) -> float:
    algorithm = make_algorithm(algo, data.obs_dim, data.action_spec, "rec")
    config = TrainerConfig(num_updates=updates, batch_size=256, eval_every=0, checkpoint_every=updates,
                           log_every=1000, progress=False, q_divergence_bound=float("inf"))
    with tempfile.TemporaryDirectory() as run_dir:
        run = Trainer(algorithm, TensorSampler(data), config, run_dir)
        start = time.perf_counter()
        run.fit()
        return updates / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", default="td3")
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = dataset()
    float_metrics = TorchAlgorithm.__dict__["_metrics"]  # the staticmethod object
    tensor_metrics = staticmethod(lambda values: {k: v.detach() for k, v in values.items()})
    results: dict[str, list[float]] = {}
    reference: list[float] = []
    trainer(args.algo, data, 50)  # warm-up: imports, first Adam, TensorBoard
    print("per-update cost with a no-op algorithm (batch 256 sampling included), median of "
          f"{args.rounds} x {10 * args.updates} updates:")
    for as_tensors in (False, True):
        timings = [overhead(data, 10 * args.updates, as_tensors) for _ in range(args.rounds)]
        bare_us, trainer_us = (statistics.median(t[i] for t in timings) for i in (0, 1))
        print(f"  metrics as {'tensors' if as_tensors else 'floats '}: bare loop {bare_us:6.1f} us, "
              f"Trainer.fit {trainer_us:6.1f} us  -> trainer adds {trainer_us - bare_us:5.1f} us/update")
    for _ in range(args.rounds):
        reference.append(reference_workload())
        for metrics_kind, metrics in (("floats", float_metrics), ("tensors", tensor_metrics)):
            TorchAlgorithm._metrics = metrics
            for name, run in (("bare", bare), ("trainer", trainer)):
                results.setdefault(f"{name:8s}{metrics_kind}", []).append(run(args.algo, data, args.updates))
    TorchAlgorithm._metrics = float_metrics
    timings = [conversion() for _ in range(args.rounds)]
    print(f"metric conversion per update: .tolist() every update {statistics.median(t[0] for t in timings):.1f} us,"
          f" trainer's log-time reduction {statistics.median(t[1] for t in timings):.2f} us")
    print(f"{args.algo} (rec preset), batch 256, {args.updates} updates x {args.rounds} rounds, 1 thread; "
          f"reference workload {statistics.median(reference) * 1e3:.0f} ms (median)")
    for key, rates in results.items():
        print(f"  {key:18s} {statistics.median(rates):8.1f} updates/s  (rounds: "
              f"{', '.join(f'{r:.1f}' for r in rates)})")
    for kind in ("floats", "tensors"):
        ratio = statistics.median(results[f"trainer {kind}"]) / statistics.median(results[f"bare    {kind}"])
        print(f"  trainer / bare, metrics as {kind}: {ratio:.3f}")


if __name__ == "__main__":
    main()
