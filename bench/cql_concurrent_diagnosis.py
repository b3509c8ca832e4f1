"""Why CQL fails on the ``concurrent`` dataset: the data's anatomy and CQL's α, measured.

    .venv/bin/python bench/cql_concurrent_diagnosis.py                # about 2.5 minutes
    .venv/bin/python bench/cql_concurrent_diagnosis.py --alphas 1 5 --updates 3000

The ``concurrent`` buffer is the whole replay buffer of an online TD3 agent (σ = 0.1). Its
actions saturate at corners of the action box, so the data is a few tight clusters, one per
phase of the agent's training. For each cluster (actions within 0.2 of a corner in every
coordinate, clusters holding at least 5% of the data) this prints its share of the
transitions, its share of the *first* actions of sessions, the mean length and return of the
complete sessions that start with it, and the true return of always playing its corner
(a simulated A/B test, 1,000 users per corner, common random numbers). Then CQL (``rec``
preset) trains offline on the finished buffer (``data=concurrent data.concurrent=false``,
cached as the CLI caches it) for each α, and the table gives its true return, its Q estimate on initial states and the corner its policy picks
at the first request. The same is repeated on a *balanced* buffer: a random ``--keep``
fraction of the sessions that start in the corner most frequent at first requests is kept,
the rest dropped, so that both corners start about equally many sessions (the causal check:
if the first-request frequency is what misleads CQL, balancing it changes its choice).
"""

from __future__ import annotations

import argparse
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_module  # noqa: E402

from marl_rec.experiments.ope_benchmark import ConstantActor  # noqa: E402
from marl_rec.contracts import ActionSpec  # noqa: E402
from marl_rec.algos.registry import make_algorithm  # noqa: E402
from marl_rec.data.dataset import TensorSampler  # noqa: E402
from marl_rec.experiments.common import load_dataset, simulator_factory  # noqa: E402
from marl_rec.ope import simulated_ab_test  # noqa: E402
from marl_rec.schema import register_schemas  # noqa: E402
from marl_rec.trainer import SimulatorEvaluator  # noqa: E402


def corner_clusters(actions: np.ndarray, radius: float = 0.2, min_share: float = 0.05) -> dict[str, np.ndarray]:
    """Boolean masks of the transitions within ``radius`` of each well-populated corner."""
    corners = np.sign(actions)
    near = np.abs(actions - corners).max(1) < radius
    clusters = {}
    for corner in np.unique(corners[near], axis=0):
        mask = near & (corners == corner).all(1)
        if mask.mean() >= min_share:
            clusters["(" + ", ".join(f"{c:+.0f}" for c in corner) + ")"] = mask
    return clusters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alphas", type=float, nargs="+", default=[1.0, 2.0, 5.0])
    parser.add_argument("--updates", type=int, default=3000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--keep", type=float, default=0.3,
                        help="fraction of the sessions starting in the most frequent first-request corner kept")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default="data_cache", help="dataset cache (the CLI's default)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    register_schemas()
    with initialize_config_module("marl_rec.conf", version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=fusion_offline", "data=concurrent",
                                           "data.concurrent=false", "progress=false",
                                           f"cache_dir={os.path.abspath(args.cache_dir)}"])
    dataset, info = load_dataset(cfg)
    factory = simulator_factory(cfg)
    evaluator = SimulatorEvaluator(factory, args.users, seed=12345, gamma=float(cfg.evaluation.gamma))
    actions, starts = dataset.actions, np.flatnonzero(dataset.episode_starts)
    bounds = dataset.episode_bounds()  # (episodes, 2): first row, one past the last
    lengths = bounds[:, 1] - bounds[:, 0]
    complete = (dataset.terminals | dataset.truncations)[bounds[:, 1] - 1]
    returns = dataset.episode_returns(1.0)
    behaviour = float(returns.mean())
    print(f"dataset: {len(dataset)} transitions, {dataset.num_episodes} sessions, behaviour return "
          f"{behaviour:.1f} ({info['dataset_path']})\n")
    clusters = corner_clusters(actions)
    if not clusters:
        raise SystemExit("no corner holds 5% of the logged actions: this buffer is not the clustered one "
                         "the diagnosis is about (changed simulator or data config?)")
    print("| corner | share of transitions | share of first actions | complete sessions starting there: "
          "length | their return | true return of always playing it |")
    print("|---|---|---|---|---|---|")
    constants = simulated_ab_test(factory, {name: ConstantActor([float(c) for c in name.strip("()").split(",")])
                                            for name in clusters}, args.users, seed=12345)
    for name, mask in clusters.items():
        first = mask[starts]
        print(f"| {name} | {mask.mean():.2f} | {first.mean():.2f} | {lengths[first & complete].mean():.1f} | "
              f"{returns[first & complete].mean():.1f} | {constants[name].undiscounted.value:.1f} |")

    most_frequent = max(clusters.values(), key=lambda mask: mask[starts].mean())
    drop = most_frequent[starts] & (np.random.default_rng(args.seed).random(len(starts)) > args.keep)
    balanced = dataset.subset_episodes(np.flatnonzero(~drop))
    shares = ", ".join(f"{name} {mask[starts][~drop].mean():.2f}" for name, mask in clusters.items())
    print(f"\nbalanced buffer: {len(balanced)} transitions; first actions {shares}")

    print(f"\nCQL (rec preset) trained offline for {args.updates} updates:\n")
    print("| buffer | α | true return | true value (γ) | Q on initial states | first-request action (mean) |")
    print("|---|---|---|---|---|---|")
    for buffer_name, data in (("finished", dataset), ("balanced", balanced)):
        sampler = TensorSampler(data)
        first_obs = data.observations[np.flatnonzero(data.episode_starts)]
        for alpha in args.alphas:
            algorithm = make_algorithm("cql", data.obs_dim, ActionSpec("continuous", dim=4), preset="rec",
                                       seed=args.seed, cql_alpha=alpha)
            generator = torch.Generator().manual_seed(args.seed)
            for _ in range(args.updates):
                algorithm.update(sampler.sample(algorithm.config.batch_size, generator))
            result = evaluator(algorithm, args.updates)
            mean_action = np.asarray(algorithm.act(first_obs, deterministic=True)).mean(0)
            print(f"| {buffer_name} | {alpha:g} | {result['eval/return']:.1f} | {result['eval/discounted_return']:.1f} | "
                  f"{result['eval/q_estimate']:.1f} | ({', '.join(f'{a:+.2f}' for a in mean_action)}) |", flush=True)

if __name__ == "__main__":
    main()
