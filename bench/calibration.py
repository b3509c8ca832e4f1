"""Calibration of the simulated world (issue #16): does learning pay in it?

    .venv/bin/python bench/calibration.py                       # bench/results/calibration.json
    .venv/bin/python bench/calibration.py --users 500 --online-steps 50 --json /tmp/c.json  # smoke
    .venv/bin/python bench/calibration.py --table bench/results/calibration.json  # markdown table

Every policy is evaluated on the same ``--users`` users (one session each, seed ``--seed``,
:func:`marl_rec.envs.rollout.run_sessions`) of the default world, and the legacy world
(``SimulatorConfig.legacy()``) is measured beside it:

- the best constant: all 81 actions of ``action_grid()`` (every one ranks differently: the
  click weight is fixed) screened in one batch (``--screen-users`` each, seed 1), the best
  ``--finalists`` then evaluated on the evaluation users; the best of those is "best constant";
- ``myopic``: ``MyopicGreedyPolicy`` (predicted immediate reward);
- ``production``: ``ProductionPolicy`` (predictions + observation, no hidden input);
- ``oracle``: ``HeuristicExpertPolicy`` (true responses, utilities and user state);
- ads: the production policy with an ad in slot 1 of every request vs none (session length,
  revenue);
- online: the project's own learners trained online (:func:`marl_rec.algos.online.train_online`,
  ``--online-steps`` batched steps of ``--online-users`` users, truncated-Gaussian exploration
  around the greedy action, one update per step after ``--start-steps`` random steps), evaluated
  greedily — on the full observation (the candidates' predictions) and on the summary-only one, so
  the encoding is chosen by measurement. Their settings are :data:`ONLINE_LEARNERS` (the online
  learner's own config, not the offline presets): ``td3`` is the ``rec`` preset with σ 0.1;
  ``sac`` is SAC with automatic entropy (the CQL class with α = 0, online SAC's learning rates and
  an entropy term in the backup), exploring with its own stochastic policy; ``sac_steady`` is that
  SAC with a fixed entropy weight of 0.15, batches of 1,024 and a Polyak-averaged greedy actor
  (chosen on ``bench/online_probe.py``'s held-out seeds), and ``sac_steady_alpha005`` the same with
  the weight at 0.05 (:data:`~marl_rec.algos.online.SAC_STEADY_OVERRIDES`, the Fujimoto pipelines' agent).
  Why TD3 ends in a corner is measured by ``bench/online_diagnosis.py``. ``--online NAME ...``
  picks the learners, ``--observations`` the observations; ``--merge`` keeps every other row of the existing ``--json`` (the worlds,
  and the online rows not rerun) and rewrites only the rows run now.

The bars of issue #16: production >= 1.12x the best constant; myopic <= 0.90x; ads shorten
sessions; the online learner earns >= 60% of the headroom from the best constant to production.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from marl_rec.algos.online import SAC_OVERRIDES, SAC_STEADY_OVERRIDES  # noqa: E402  (the pipelines' online SACs)
from marl_rec.agents.policies import (ConstantPolicy, HeuristicExpertPolicy, MyopicGreedyPolicy,  # noqa: E402
                                      ProductionPolicy, action_grid)
from marl_rec.envs.rollout import run_sessions  # noqa: E402
from marl_rec.envs.simulator import SimulatorConfig, UserSimulator  # noqa: E402
from marl_rec.files import write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BARS = {"production_over_best_constant": 1.12, "myopic_over_best_constant": 0.90, "online_headroom_share": 0.60}


def headroom_share(value: float, best_constant: float, production: float) -> float:
    """Where ``value`` lies from the best constant (0) to the production policy (1): the online bar's measure."""
    return round((value - best_constant) / (production - best_constant), 4)


def summary(stats) -> dict[str, float]:
    out = stats.summary()
    return {key: round(float(value), 3) for key, value in out.items()}


def best_constant(sim: UserSimulator, users: int, seed: int, screen_users: int, finalists: int) -> dict:
    grid = action_grid()
    screen_actions = np.repeat(grid, screen_users, axis=0)
    screen = run_sessions(lambda s, obs: screen_actions, len(screen_actions), np.random.default_rng(1), sim=sim)
    screened = screen.returns.reshape(len(grid), screen_users).mean(1)
    rows = []
    for action in grid[np.argsort(-screened)[:finalists]]:
        stats = run_sessions(ConstantPolicy(action), users, np.random.default_rng(seed), sim=sim)
        rows.append({"action": action.tolist(), **summary(stats)})
    best = max(rows, key=lambda row: row["mean_return"])
    return {"num_constants": len(grid), "screen_users_each": screen_users, "finalists": rows, "best": best,
            "neutral": summary(run_sessions(ConstantPolicy(np.zeros(4)), users, np.random.default_rng(seed), sim=sim))}


@dataclass(frozen=True)
class OnlineLearner:
    """The online learner's own settings: an algorithm of the registry (``rec`` preset plus
    ``overrides``; the offline defaults stay as they are) and the exploration noise of
    :func:`marl_rec.algos.online.train_online` (std × max_action, truncated to the box)."""

    algorithm: str
    overrides: dict[str, Any] = field(default_factory=dict)
    exploration_sigma: float = 0.1
    exploration: str = "gaussian"  # or "policy": the algorithm's own stochastic action (SAC)

    def build(self, obs_dim: int, seed: int = 0):
        from marl_rec.algos.base import ActionSpec
        from marl_rec.algos.registry import make_algorithm

        return make_algorithm(self.algorithm, obs_dim, ActionSpec("continuous", dim=4), preset="rec", seed=seed,
                              **self.overrides)


#: ``sac_steady``: the pipelines' steady SAC (:data:`~marl_rec.algos.online.SAC_STEADY_OVERRIDES`) with the
#: entropy weight at 0.15, the value it was first run with on bench/online_probe.py's held-out seeds
#: (training seed 1, 500 users of seed 7): the runs with a tuned weight peaked near 6,000 updates and fell by
#: 8,000 while the weight kept decaying, and at batch 256 a fixed weight's greedy return swung between 104
#: and 117 from checkpoint to checkpoint. ``sac_steady_alpha005`` is the committed setting (weight 0.05).
SAC_STEADY_015: dict[str, Any] = {**SAC_STEADY_OVERRIDES, "initial_entropy_alpha": 0.15}

ONLINE_LEARNERS: dict[str, OnlineLearner] = {
    "td3": OnlineLearner("td3"),
    "sac": OnlineLearner("cql", SAC_OVERRIDES, exploration="policy"),
    "sac_steady": OnlineLearner("cql", SAC_STEADY_015, exploration="policy"),
    # the same with the entropy weight at 0.05, chosen on the probe after sac_steady's calibration row
    # (weights 0.05 / 0.15 / 0.3 on training seed 1: 122.2 / 118.1 / 112.4; seed 2: 122.0 / 119.9)
    "sac_steady_alpha005": OnlineLearner("cql", SAC_STEADY_OVERRIDES, exploration="policy"),
}
OBSERVATIONS = {"candidates": SimulatorConfig(), "summary_only": SimulatorConfig(observed_candidates=0)}


def online_row(learner: OnlineLearner, config: SimulatorConfig, steps: int, online_users: int, start_steps: int,
               users: int, seed: int) -> dict:
    import torch

    from marl_rec.algos.online import train_online

    torch.set_num_threads(1)
    sim = UserSimulator(config)
    agent = learner.build(config.obs_dim)
    started = time.perf_counter()
    result = train_online(sim, agent, steps, np.random.default_rng(0), batch_users=online_users,
                          exploration_sigma=learner.exploration_sigma, start_steps=start_steps, updates_per_step=1,
                          exploration=learner.exploration)
    seconds = time.perf_counter() - started
    stats = run_sessions(lambda s, obs: agent.act(obs, deterministic=True), users, np.random.default_rng(seed),
                         sim=sim)
    return {"algorithm": learner.algorithm, "overrides": dict(learner.overrides),
            "exploration_sigma": learner.exploration_sigma, "exploration": learner.exploration,
            "obs_dim": config.obs_dim, "online_steps": steps,
            "online_users": online_users, "start_steps": start_steps, "updates": result.num_updates,
            "transitions": int(steps * online_users), "train_seconds": round(seconds, 1), **summary(stats)}


def world(config: SimulatorConfig, args: argparse.Namespace) -> dict:
    sim = UserSimulator(config)
    evaluate = lambda policy: summary(run_sessions(policy, args.users, np.random.default_rng(args.seed), sim=sim))  # noqa: E731
    out = {"constants": best_constant(sim, args.users, args.seed, args.screen_users, args.finalists)}
    for name, policy in (("myopic", MyopicGreedyPolicy()), ("production", ProductionPolicy()),
                         ("oracle", HeuristicExpertPolicy())):
        out[name] = evaluate(policy)
        print(f"  {name}: {out[name]['mean_return']:.1f}", flush=True)
    every_request = lambda s, obs: np.ones(obs.shape[0], dtype=np.int64)  # noqa: E731
    out["production_ad_every_request"] = summary(run_sessions(
        ProductionPolicy(), args.users, np.random.default_rng(args.seed), sim=sim, ad_policy=every_request))
    best = out["constants"]["best"]["mean_return"]
    out["ratios"] = {"production_over_best_constant": round(out["production"]["mean_return"] / best, 4),
                     "myopic_over_best_constant": round(out["myopic"]["mean_return"] / best, 4),
                     "oracle_over_best_constant": round(out["oracle"]["mean_return"] / best, 4),
                     "ads_session_length": [out["production"]["mean_length"],
                                            out["production_ad_every_request"]["mean_length"]]}
    return out


def markdown_table(report: dict) -> str:
    """The calibration report as the markdown table of bench/results/README.md."""
    def row(name: str, reads: str, stats: dict, best: float) -> str:
        return (f"| {name} | {reads} | {stats['mean_return']:.1f} ± {stats['return_se']:.1f} | "
                f"{stats['mean_return'] / best:.3f} | {stats['mean_length']:.1f} | {stats['true_utility']:.1f} |")

    lines = []
    for world_name in ("default", "legacy"):
        if world_name not in report:
            continue
        world_report = report[world_name]
        best_row = world_report["constants"]["best"]
        best = best_row["mean_return"]
        lines += [f"**{world_name} world** ({report['users']:,} users, seed {report['seed']})", "",
                  "| policy | reads | session return | × best constant | requests | true utility |",
                  "|---|---|---|---|---|---|",
                  row("constant a = 0", "nothing", world_report["constants"]["neutral"], best),
                  row(f"best of {world_report['constants']['num_constants']} constants "
                      f"(a = {[round(v) for v in best_row['action']]})", "nothing", best_row, best),
                  row("myopic greedy", "predictions", world_report["myopic"], best),
                  row("production lookahead", "predictions + observation", world_report["production"], best),
                  row("oracle lookahead", "true responses, utilities, user state", world_report["oracle"], best),
                  row(f"production, an ad on every request (ad revenue "
                      f"{world_report['production_ad_every_request']['ad_revenue']:.2f})",
                      "predictions + observation", world_report["production_ad_every_request"], best)]
        if world_name == "default":
            for name, online in report.get("online", {}).items():
                lines.append(row(f"online {name} ({online['updates']:,} updates, {online['transitions']:,} "
                                 f"transitions; headroom share {online['headroom_share']:.2f})",
                                 f"observation ({online['obs_dim']} entries)", online, best))
            if report.get("online"):  # rows merged later name their own command
                lines += ["", "Online rows: " + "; ".join(
                    f"{name}: `{online.get('command', report['command'])}`" for name, online in report["online"].items())]
        lines.append("")
    lines.append("Bars met: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in report["bars_met"].items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", type=Path, help="print the markdown table of a calibration JSON and exit")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--screen-users", type=int, default=300)
    parser.add_argument("--finalists", type=int, default=5)
    parser.add_argument("--online-steps", type=int, default=1500)
    parser.add_argument("--online-users", type=int, default=128)
    parser.add_argument("--start-steps", type=int, default=20)
    parser.add_argument("--skip-legacy", action="store_true")
    parser.add_argument("--online", nargs="*", default=list(ONLINE_LEARNERS), choices=list(ONLINE_LEARNERS),
                        help="the online learners to run (each on both observations)")
    parser.add_argument("--observations", nargs="*", default=list(OBSERVATIONS), choices=list(OBSERVATIONS),
                        help="the observations the online learners are trained on")
    parser.add_argument("--merge", action="store_true",
                        help="rerun only the online rows of --online and merge them into the existing --json")
    parser.add_argument("--json", type=Path, default=RESULTS / "calibration.json")
    args = parser.parse_args()
    if args.table is not None:
        print(markdown_table(json.loads(args.table.read_text())))
        return
    started = time.perf_counter()
    command = "python bench/calibration.py " + " ".join(sys.argv[1:])
    if args.merge:
        report = json.loads(args.json.read_text())
        if (report["users"], report["seed"]) != (args.users, args.seed):
            raise SystemExit(f"--merge: {args.json} was measured on {report['users']} users, seed {report['seed']}; "
                             f"got --users {args.users} --seed {args.seed} (rows would not be comparable)")
    else:
        report = {"command": command, "python": platform.python_version(), "users": args.users, "seed": args.seed,
                  "bars": BARS}
        print("default world", flush=True)
        report["default"] = world(SimulatorConfig(), args)
        if not args.skip_legacy:
            print("legacy world", flush=True)
            report["legacy"] = world(SimulatorConfig.legacy(), args)
        report["online"] = {}
    new_rows = {}
    for learner_name in args.online:
        for observation in args.observations:
            name = f"{learner_name}_{observation}"
            print(f"online {name}", flush=True)
            new_rows[name] = online_row(ONLINE_LEARNERS[learner_name], OBSERVATIONS[observation], args.online_steps,
                                        args.online_users, args.start_steps, args.users, args.seed)
            new_rows[name]["command"] = command
            print(f"  {new_rows[name]['mean_return']:.1f} ({new_rows[name]['train_seconds']} s)", flush=True)
    if args.merge:  # read again: the file may have been rewritten while the learners trained
        report = json.loads(args.json.read_text())
        if (report["users"], report["seed"]) != (args.users, args.seed):
            raise SystemExit(f"--merge: {args.json} changed to {report['users']} users, seed {report['seed']} "
                             "during the run; not merged")
    report["online"].update(new_rows)
    best = report["default"]["constants"]["best"]["mean_return"]
    production = report["default"]["production"]["mean_return"]
    for row in report["online"].values():  # against the report's own best constant and production policy
        row["headroom_share"] = headroom_share(row["mean_return"], best, production)
    ratios = report["default"]["ratios"]
    length, with_ads = ratios["ads_session_length"]
    report["bars_met"] = {
        "production_over_best_constant": ratios["production_over_best_constant"] >= BARS["production_over_best_constant"],
        "myopic_over_best_constant": ratios["myopic_over_best_constant"] <= BARS["myopic_over_best_constant"],
        "ads_shorten_sessions": with_ads < length,
        "online_headroom_share": max(r["headroom_share"] for r in report["online"].values())
        >= BARS["online_headroom_share"]}
    report["seconds" if not args.merge else "merge_seconds"] = round(time.perf_counter() - started, 1)
    write_json(args.json, report)
    print(f"wrote {args.json}: bars met {report['bars_met']}")


if __name__ == "__main__":
    main()
