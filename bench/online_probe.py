"""Probes for issue #16's online bar: an online learner's settings measured on held-out users.

    .venv/bin/python bench/online_probe.py --label sac --learner sac            # bench/results/online_probe.json
    .venv/bin/python bench/online_probe.py --label sac_b1024 --learner sac --set batch_size=1024
    .venv/bin/python bench/online_probe.py --table bench/results/online_probe.json   # the README's table

Trains one online learner of ``bench/calibration.py`` (:data:`calibration.ONLINE_LEARNERS`, plus
``--set FIELD=VALUE`` overrides of its algorithm config) with the calibration's loop
(:func:`marl_rec.algos.online.train_online`, ``--online-users`` users a batched step, one update a
step after ``--start-steps`` random steps) on the candidate observation, and measures the greedy
policy's session return on ``--users`` evaluation users after each of ``--checkpoints`` updates.
The probe is held out from the calibration: its training seed (``--train-seed``: the simulator's
stream and the learner's seed) and its evaluation users (``--eval-seed``) differ from the
calibration's (0 and 123), so settings chosen here are not tuned on the calibration's users. The best
constant and the production policy are measured on the same evaluation users once per file
(``reference``), so each row has its headroom share. Only the last checkpoint is the row's result (a
fixed budget); the earlier ones show the trajectory and are not picked from.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration import OBSERVATIONS, ONLINE_LEARNERS, headroom_share  # noqa: E402
from marl_rec.agents.policies import ConstantPolicy, ProductionPolicy  # noqa: E402
from marl_rec.algos.online import train_online  # noqa: E402
from marl_rec.envs.rollout import run_sessions  # noqa: E402
from marl_rec.envs.simulator import UserSimulator  # noqa: E402
from marl_rec.files import write_json  # noqa: E402

#: where the calibration's best constant is read from (its default world's screen of 81 constants)
CALIBRATION = Path(__file__).resolve().parent / "results" / "calibration.json"


def best_constant_action(path: Path = CALIBRATION) -> np.ndarray:
    """The calibration's best constant action (``default.constants.best.action`` of its JSON)."""
    return np.asarray(json.loads(path.read_text())["default"]["constants"]["best"]["action"], dtype=np.float64)


def parse_override(text: str) -> tuple[str, object]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise SystemExit(f"--set expects FIELD=VALUE, got {text!r}")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value  # a bare string


def evaluate(sim: UserSimulator, policy, users: int, seed: int) -> dict[str, float]:
    stats = run_sessions(policy, users, np.random.default_rng(seed), sim=sim).summary()
    return {key: round(stats[key], 2) for key in ("mean_return", "return_se")}


def markdown_table(report: dict) -> str:
    """The probes as a markdown table: each row's settings (beyond its learner's), the greedy return
    at every checkpoint, the stochastic policy's at the last, and the last checkpoint's headroom share."""
    lines = ["| probe | learner | settings | train seed | greedy return at (updates) | stochastic, last | "
             "headroom share, last |", "|---|---|---|---|---|---|---|"]
    for label, row in report["rows"].items():
        base = ONLINE_LEARNERS[row["learner"]].overrides if row["learner"] in ONLINE_LEARNERS else {}
        changed = {k: v for k, v in row["overrides"].items() if k not in base or _plain(base[k]) != _plain(v)}
        settings = ", ".join(f"{k}={v}" for k, v in changed.items()) or "as the learner"
        trajectory = " / ".join(f"{c['mean_return']:.1f} ({c['updates'] // 1000}k)" for c in row["checkpoints"])
        last = row["result"]
        stochastic = f"{last['stochastic_return']:.1f}" if "stochastic_return" in last else "–"
        lines.append(f"| {label} | {row['learner']} | {settings} | {row['train_seed']} | {trajectory} | "
                     f"{stochastic} | {last['headroom_share']:.2f} |")
    references = "; ".join(f"{key}: best constant {ref['best_constant']['mean_return']:.1f}, production "
                           f"{ref['production']['mean_return']:.1f}" for key, ref in report["reference"].items())
    return "\n".join(lines) + f"\n\nReferences on the probe's users ({references})."


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", type=Path, help="print the markdown table of a probe JSON and exit")
    parser.add_argument("--label", help="the row's name in the JSON (rewritten if present)")
    parser.add_argument("--learner", default="sac", choices=list(ONLINE_LEARNERS))
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="overrides of the learner's algorithm config")
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[2000, 4000, 6000, 8000],
                        help="update counts at which the greedy policy is evaluated (training stops at the last)")
    parser.add_argument("--online-users", type=int, default=128)
    parser.add_argument("--start-steps", type=int, default=20)
    parser.add_argument("--updates-per-step", type=int, default=1)
    parser.add_argument("--observation", default="candidates", choices=list(OBSERVATIONS))
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--train-seed", type=int, default=1)
    parser.add_argument("--eval-seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "online_probe.json")
    args = parser.parse_args()
    if args.table is not None:
        print(markdown_table(json.loads(args.table.read_text())))
        return
    if not args.label:
        raise SystemExit("--label is required (the row's name in the JSON)")
    if args.eval_seed == 123 or args.train_seed == 0:
        raise SystemExit("--eval-seed 123 / --train-seed 0 are the calibration's own: probe on other seeds")
    torch.set_num_threads(1)
    config = OBSERVATIONS[args.observation]
    base = ONLINE_LEARNERS[args.learner]
    learner = dataclasses.replace(base, overrides={**base.overrides, **dict(map(parse_override, args.set))})
    report = json.loads(args.json.read_text()) if args.json.exists() else {"rows": {}}
    key = f"{args.users} users, seed {args.eval_seed}"
    sim = UserSimulator(config)
    if key not in report.setdefault("reference", {}):
        action = best_constant_action()
        report["reference"][key] = {"best_constant": {"action": action.tolist(), **evaluate(
            sim, ConstantPolicy(action), args.users, args.eval_seed)},
            "production": evaluate(sim, ProductionPolicy(), args.users, args.eval_seed)}
    reference = report["reference"][key]
    best, production = reference["best_constant"]["mean_return"], reference["production"]["mean_return"]
    print(f"reference on {key}: best constant {best}, production {production}", flush=True)

    agent = learner.build(config.obs_dim, seed=args.train_seed)
    eval_sim, checkpoints, rows = UserSimulator(config), sorted(set(args.checkpoints)), []
    started = time.process_time()
    recent: list[dict[str, float]] = []  # the update metrics since the last checkpoint
    update = agent.update
    agent.update = lambda batch: recent.append(update(batch)) or recent[-1]  # noqa: E731 (a probe's tap)

    def hook(_buffer) -> None:
        if agent.num_updates in checkpoints:
            row = {"updates": agent.num_updates, "cpu_seconds": round(time.process_time() - started, 1),
                   **evaluate(eval_sim, lambda s, obs: agent.act(obs, deterministic=True), args.users, args.eval_seed)}
            row["headroom_share"] = headroom_share(row["mean_return"], best, production)
            if learner.exploration == "policy":  # the stochastic policy it trains, on a saved-and-restored stream
                state = agent.generator.get_state()
                row["stochastic_return"] = evaluate(eval_sim, lambda s, obs: agent.act(obs, deterministic=False),
                                                    args.users, args.eval_seed)["mean_return"]
                agent.generator.set_state(state)
            # the training metrics averaged since the previous checkpoint (entropy weight, Q, TD loss)
            row["metrics"] = {name: round(float(np.mean([m[name] for m in recent])), 4)
                              for name in ("alpha", "entropy", "q_mean", "td_loss", "actor_loss") if name in recent[0]}
            recent.clear()
            rows.append(row)
            print(f"  {args.label} {row}", flush=True)

    steps = -(-checkpoints[-1] // args.updates_per_step) + args.start_steps
    train_online(sim, agent, steps, np.random.default_rng(args.train_seed), batch_users=args.online_users,
                 exploration_sigma=learner.exploration_sigma, start_steps=args.start_steps,
                 updates_per_step=args.updates_per_step, on_update=hook, exploration=learner.exploration)
    report = json.loads(args.json.read_text()) if args.json.exists() else report  # others may have written rows
    report.setdefault("reference", {})[key] = reference
    report["rows"][args.label] = {
        "command": "python bench/online_probe.py " + " ".join(sys.argv[1:]), "learner": args.learner,
        "algorithm": learner.algorithm, "overrides": {k: v for k, v in learner.overrides.items()},
        "exploration": learner.exploration, "observation": args.observation, "online_users": args.online_users,
        "updates_per_step": args.updates_per_step, "train_seed": args.train_seed, "eval": key,
        "checkpoints": rows, "result": rows[-1] if rows else None}
    write_json(args.json, report)
    print(f"wrote {args.json}", flush=True)


if __name__ == "__main__":
    main()
