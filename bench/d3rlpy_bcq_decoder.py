"""Why d3rlpy's BCQ stays at one action in the time-to-quality run: its VAE decoder saturates.

    .venv-bench/bin/python bench/d3rlpy_bcq_decoder.py --json bench/results/d3rlpy_bcq_decoder.json

BCQ at paper sizes on the ``expert`` pipeline's logs (the time-to-quality dataset), trained for
``--updates`` updates (batch 256, one torch thread); every ``--every`` updates the greedy action
on the first 256 logged states is summarised (mean, spread, share of entries at the box's lower
corner −1). Learners: d3rlpy with the ``tanh`` decoder output that ``bench/d3rlpy_adapters.py``
installs to match Fujimoto's BCQ (seeds ``--seeds``), d3rlpy with its own linear decoder output
(a setting difference: its decoder is not squashed), and ours at the same sizes (``paper``).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from marl_rec.algos.registry import make_algorithm, make_config  # noqa: E402
from marl_rec.data.d3rlpy_interop import to_d3rlpy  # noqa: E402
from marl_rec.data.dataset import TensorSampler  # noqa: E402
from marl_rec.files import write_json  # noqa: E402
from time_to_quality import load_pipeline_dataset  # noqa: E402


def summary(actions: np.ndarray) -> dict[str, Any]:
    return {"mean": np.round(actions.mean(0), 3).tolist(), "std": np.round(actions.std(0), 3).tolist(),
            "share_at_minus_one": float(np.mean(actions < -0.99))}


def trace(act: Callable[[np.ndarray], np.ndarray], update: Callable[[], None], obs: np.ndarray, updates: int,
          every: int) -> list[dict[str, Any]]:
    rows = []
    for step in range(updates + 1):
        if step % every == 0:
            rows.append({"updates": step, **summary(np.asarray(act(obs)))})
        if step < updates:
            update()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--cache-dir", default="data_cache")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.updates < 1 or args.every < 1:
        raise ValueError(f"--updates and --every must be >= 1, got {args.updates}, {args.every}")
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", module="gym")
    import d3rlpy
    from d3rlpy_adapters import TanhVAEDecoder, d3rlpy_config

    dataset, _, _ = load_pipeline_dataset(args.cache_dir, "expert")
    buffer = to_d3rlpy(dataset)
    obs = np.asarray(dataset.observations[:256], dtype=np.float32)
    config = make_config("bcq", "paper")
    results: dict[str, Any] = {"logged_actions": summary(np.asarray(dataset.actions[:256]))}
    for decoder, seeds in (("tanh", args.seeds), ("linear", args.seeds[:1])):
        for seed in seeds:
            d3rlpy.seed(seed)
            algo = d3rlpy_config("bcq", config).create(device="cpu:0")
            algo.create_impl((dataset.obs_dim,), dataset.action_spec.dim)
            if decoder == "tanh":  # what make_d3rlpy does
                algo.impl.modules.vae_decoder.__class__ = TanhVAEDecoder
            results[f"d3rlpy {decoder} decoder, seed {seed}"] = trace(
                algo.predict, lambda: algo.update(buffer.sample_transition_batch(config.batch_size)), obs,
                args.updates, args.every)
            print(f"d3rlpy {decoder} seed {seed}: {results[f'd3rlpy {decoder} decoder, seed {seed}'][-1]}", flush=True)
    ours = make_algorithm("bcq", dataset.obs_dim, dataset.action_spec, preset="paper", seed=args.seeds[0])
    sampler, generator = TensorSampler(dataset), torch.Generator().manual_seed(args.seeds[0])
    results[f"ours paper, seed {args.seeds[0]}"] = trace(
        lambda o: ours.act(o, deterministic=True), lambda: ours.update(sampler.sample(config.batch_size, generator)),
        obs, args.updates, args.every)
    for name, rows in results.items():
        print(name, rows if isinstance(rows, dict)
              else [(r["updates"], r["mean"], r["share_at_minus_one"]) for r in rows])
    if args.json:
        write_json(args.json, {"results": results, "updates": args.updates, "d3rlpy": d3rlpy.__version__,
                               "command": " ".join(sys.argv)})


if __name__ == "__main__":
    main()
