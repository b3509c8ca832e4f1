"""Our Bradley–Terry reward model vs the `imitation` library's preference-comparisons
reward training, on the same segment pairs, the same oracle labels and the same inputs.

`imitation` 1.0.1 pins gymnasium 0.29 and stable-baselines3 2.2, which our project
(gymnasium 1.x through PettingZoo 1.25+) cannot share, so it lives in its own virtual
environment ``.venv-imitation`` and runs in a subprocess; the two sides exchange plain
``.npz`` arrays. Build that environment once (what ``--setup`` runs):

    python3 -m venv .venv-imitation
    .venv-imitation/bin/python -m pip install -c constraints-dev.txt torch==2.13.0
    .venv-imitation/bin/python -m pip install -c constraints-dev.txt imitation==1.0.1 "numpy<2"

(torch first, from the CPU wheel this machine has, so imitation does not pull another
build; numpy < 2 because gymnasium 0.29 uses aliases numpy 2 removed.) Then:

    .venv/bin/python bench/preference_vs_imitation.py [--setup] [--seeds 3] [--epochs 20]

What is compared: the default simulator's logs (noisy engagement expert; with what each
request consumed, ``consumed_feature_names``, unless ``--no-consumed``), segments of 3
steps of the ``--feature-set`` features (marl_rec.irl.data.FEATURE_SETS; default ``outcome``, what
``+experiment=reward_learning`` uses), 1,000 uniformly drawn pairs labelled by the
noisy oracle (beta = 1, 10% mistakes), inputs standardised with the same statistics; both
sides fit one reward network (no ensemble) with the same architecture, epochs, batch size
and learning rate (ours: Adam with L2 1e-2 as in marl_rec.irl.preferences; imitation: its
BasicRewardTrainer, AdamW with torch's default decoupled weight decay 1e-2). Reported:
held-out Pearson / Spearman with the true utility (users never seen in training) and the
wall time of the fit alone, side by side and as ratios ours / imitation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-imitation"
SETUP = [
    ["python3", "-m", "venv", str(VENV)],
    [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", "-c", "constraints-dev.txt", "torch==2.13.0"],
    [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", "-c", "constraints-dev.txt", "imitation==1.0.1",
     "numpy<2"],
]


# --------------------------------------------------------------- imitation side (own venv)
def imitation_worker(folder: Path) -> None:
    """Runs inside .venv-imitation: only numpy, torch, gymnasium and imitation here."""
    import gymnasium as gym
    import torch
    from imitation.algorithms import preference_comparisons as pc
    from imitation.data.types import Trajectory
    from imitation.rewards.reward_nets import BasicRewardNet
    from imitation.util import logger as imit_logger

    torch.set_num_threads(1)
    spec = json.loads((folder / "spec.json").read_text())
    data = np.load(folder / "data.npz", allow_pickle=False)
    segments, heldout = data["segments"], data["heldout"]
    length, width = segments.shape[1], segments.shape[2]
    obs_space = gym.spaces.Box(-np.inf, np.inf, (width,), np.float32)
    act_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    dummy_actions = np.zeros((length, 1), np.float32)

    def fragment(i: int) -> Trajectory:  # obs has one more row than acts; the last is unused
        obs = np.concatenate([segments[i], np.zeros((1, width), np.float32)])
        return Trajectory(obs=obs, acts=dummy_actions, infos=None, terminal=False)

    fragments = [fragment(i) for i in range(len(segments))]
    results = []
    for seed in range(spec["seeds"]):
        pairs, labels = data[f"pairs{seed}"], data[f"labels{seed}"]
        keep = np.isfinite(labels)
        torch.manual_seed(seed)  # imitation's networks take no generator
        net = BasicRewardNet(obs_space, act_space, use_state=True, use_action=False,
                             hid_sizes=tuple(spec["hidden"]))
        model = pc.PreferenceModel(net)
        trainer = pc.BasicRewardTrainer(model, pc.CrossEntropyRewardLoss(), np.random.default_rng(seed),
                                        batch_size=spec["batch_size"], epochs=spec["epochs"], lr=spec["lr"],
                                        custom_logger=imit_logger.configure(format_strs=[]))
        dataset = pc.PreferenceDataset()
        dataset.push([(fragments[a], fragments[b]) for a, b in pairs[keep]], labels[keep].astype(np.float32))
        started = time.perf_counter()
        trainer.train(dataset)
        seconds = time.perf_counter() - started
        with torch.no_grad():
            predicted = net.mlp(torch.as_tensor(heldout)).numpy()
        results.append({"seconds": seconds})
        np.save(folder / f"imitation_pred{seed}.npy", predicted)
    (folder / "imitation.json").write_text(json.dumps(results))


# ------------------------------------------------------------------------- our side
def setup() -> None:
    if (VENV / "bin" / "python").exists():
        probe = subprocess.run([str(VENV / "bin" / "python"), "-c", "import imitation; print(imitation.__version__)"],
                               capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == "1.0.1":
            print(f"{VENV.name}: imitation 1.0.1 already installed")
            return
    for command in SETUP:
        print("+", " ".join(command), flush=True)
        subprocess.run(command, check=True, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setup", action="store_true", help="create .venv-imitation if it is missing")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--hidden", type=int, nargs="*", default=[32, 32],
                        help="hidden widths of both reward networks (imitation's default is 32 32; none = linear)")
    parser.add_argument("--transitions", type=int, default=60_000)
    parser.add_argument("--no-consumed", dest="consumed", action="store_false",
                        help="log only the four behaviours, not what was consumed (irl/data.py consumed_feature_names)")
    parser.add_argument("--feature-set", default="outcome",
                        help="what both reward networks see (marl_rec.irl.data.FEATURE_SETS)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "preference_vs_imitation.json")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        imitation_worker(args.worker)
        return
    if args.setup:
        setup()
    if not (VENV / "bin" / "python").exists():
        sys.exit(f"{VENV} is missing: run with --setup (or the commands in this file's docstring)")

    sys.path.insert(0, str(ROOT))
    import torch

    from marl_rec.agents.policies import GaussianNoisePolicy, HeuristicExpertPolicy
    from marl_rec.envs.simulator import UserSimulator
    from marl_rec.irl.data import collect_with_utility, transition_features
    from marl_rec.irl.metrics import pearson, spearman
    from marl_rec.irl.preferences import (BradleyTerryRewardModel, OracleConfig, PreferenceOracle, RewardModelConfig,
                                 SegmentPool, standardisation, uniform_pairs)

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    sim = UserSimulator()
    logged = collect_with_utility(sim, GaussianNoisePolicy(HeuristicExpertPolicy(), 0.5, rng), args.transitions, rng,
                                  consumed=args.consumed)
    train, heldout = logged.split_episodes(0.7, rng)
    pool = SegmentPool.from_dataset(train, 3, args.feature_set)
    mean, std = standardisation(pool.features)
    std = np.maximum(std, 1e-6)
    heldout_x = transition_features(heldout.dataset, args.feature_set)
    config = RewardModelConfig(hidden=tuple(args.hidden), ensemble_size=1, bootstrap=False,
                               epochs_per_round=args.epochs, batch_size=64, lr=1e-3, weight_decay=1e-2)
    arrays = {"segments": ((pool.features - mean) / std).astype(np.float32),
              "heldout": ((heldout_x - mean) / std).astype(np.float32)}
    ours = []
    for seed in range(args.seeds):
        pairs = uniform_pairs(len(pool), args.queries, np.random.default_rng([seed, 1]))
        oracle = PreferenceOracle(OracleConfig(beta=1.0, mistake_rate=0.1), np.random.default_rng([seed, 2]))
        labels = oracle.label(pool.true_rewards[pairs[:, 0]], pool.true_rewards[pairs[:, 1]])
        arrays[f"pairs{seed}"], arrays[f"labels{seed}"] = pairs, labels
        model = BradleyTerryRewardModel(pool.features.shape[-1], config, mean, std, seed=seed)
        started = time.perf_counter()
        model.fit(pool, pairs, labels)
        seconds = time.perf_counter() - started
        predicted = model.predict(heldout_x)
        ours.append({"seconds": seconds, "pearson": pearson(predicted, heldout.true_utility),
                     "spearman": spearman(predicted, heldout.true_utility)})

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        np.savez(folder / "data.npz", **arrays)
        (folder / "spec.json").write_text(json.dumps({"seeds": args.seeds, "hidden": args.hidden,
                                                       "epochs": args.epochs, "batch_size": 64, "lr": 1e-3}))
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        subprocess.run([str(VENV / "bin" / "python"), __file__, "--worker", str(folder)], check=True, env=env)
        theirs = json.loads((folder / "imitation.json").read_text())
        for seed, entry in enumerate(theirs):
            predicted = np.load(folder / f"imitation_pred{seed}.npy", allow_pickle=False)
            entry["pearson"] = pearson(predicted, heldout.true_utility)
            entry["spearman"] = spearman(predicted, heldout.true_utility)

    def mean_of(rows: list[dict], key: str) -> float:
        return float(np.mean([r[key] for r in rows]))

    print(f"{args.queries} pairs of 3-step segments, oracle beta=1 / 10% mistakes, hidden={args.hidden or 'linear'}, "
          f"{args.epochs} epochs, {args.seeds} seeds; held-out transitions: {len(heldout_x)}")
    print(f"{'':14}{'pearson':>10}{'spearman':>10}{'fit seconds':>14}")
    for name, rows in (("marl-rec", ours), ("imitation", theirs)):
        print(f"{name:14}{mean_of(rows, 'pearson'):>10.3f}{mean_of(rows, 'spearman'):>10.3f}"
              f"{mean_of(rows, 'seconds'):>14.2f}")
    print(f"{'ratio ours/imitation':22} pearson {mean_of(ours, 'pearson') / mean_of(theirs, 'pearson'):.3f}   "
          f"wall time {mean_of(ours, 'seconds') / mean_of(theirs, 'seconds'):.3f}")
    print("per seed pearson: ours", [round(r["pearson"], 3) for r in ours],
          "imitation", [round(r["pearson"], 3) for r in theirs])
    from marl_rec.files import write_json

    write_json(args.out, {"command": "bench/preference_vs_imitation.py " + " ".join(sys.argv[1:]),
                          "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                          "features": list(logged.dataset.component_names), "heldout_transitions": len(heldout_x),
                          "ours": ours, "imitation": theirs,
                          "pearson_ratio": mean_of(ours, "pearson") / mean_of(theirs, "pearson"),
                          "wall_time_ratio": mean_of(ours, "seconds") / mean_of(theirs, "seconds")})


if __name__ == "__main__":
    main()
