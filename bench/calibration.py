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
- online: the project's own TD3 (``rec`` preset) trained online (:func:`marl_rec.algos.online.train_online`,
  ``--online-steps`` batched steps of ``--online-users`` users, exploration σ 0.1, one update per
  step after ``--start-steps`` random steps), evaluated greedily — on the full observation (the
  candidates' predictions) and on the summary-only one, so the encoding is chosen by measurement.

The bars of issue #16: production >= 1.12x the best constant; myopic <= 0.90x; ads shorten
sessions; the online learner earns >= 60% of the headroom from the best constant to production.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from marl_rec.agents.policies import (ConstantPolicy, HeuristicExpertPolicy, MyopicGreedyPolicy,  # noqa: E402
                                      ProductionPolicy, action_grid)
from marl_rec.envs.rollout import run_sessions  # noqa: E402
from marl_rec.envs.simulator import SimulatorConfig, UserSimulator  # noqa: E402
from marl_rec.files import write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BARS = {"production_over_best_constant": 1.12, "myopic_over_best_constant": 0.90, "online_headroom_share": 0.60}


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


def online_td3(config: SimulatorConfig, steps: int, online_users: int, start_steps: int, users: int,
               seed: int) -> dict:
    import torch

    from marl_rec.algos.base import ActionSpec
    from marl_rec.algos.online import train_online
    from marl_rec.algos.registry import make_algorithm

    torch.set_num_threads(1)
    sim = UserSimulator(config)
    agent = make_algorithm("td3", config.obs_dim, ActionSpec("continuous", dim=4), preset="rec", seed=0)
    started = time.perf_counter()
    result = train_online(sim, agent, steps, np.random.default_rng(0), batch_users=online_users,
                          exploration_sigma=0.1, start_steps=start_steps, updates_per_step=1)
    seconds = time.perf_counter() - started
    stats = run_sessions(lambda s, obs: agent.act(obs, deterministic=True), users, np.random.default_rng(seed),
                         sim=sim)
    return {"obs_dim": config.obs_dim, "online_steps": steps, "online_users": online_users,
            "start_steps": start_steps, "updates": result.num_updates,
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
    parser.add_argument("--json", type=Path, default=RESULTS / "calibration.json")
    args = parser.parse_args()
    if args.table is not None:
        import json

        print(markdown_table(json.loads(args.table.read_text())))
        return
    started = time.perf_counter()
    report: dict = {"command": "python bench/calibration.py " + " ".join(sys.argv[1:]),
                    "python": platform.python_version(), "users": args.users, "seed": args.seed, "bars": BARS}
    print("default world", flush=True)
    report["default"] = world(SimulatorConfig(), args)
    if not args.skip_legacy:
        print("legacy world", flush=True)
        report["legacy"] = world(SimulatorConfig.legacy(), args)
    best = report["default"]["constants"]["best"]["mean_return"]
    production = report["default"]["production"]["mean_return"]
    report["online"] = {}
    for name, config in (("td3_candidates", SimulatorConfig()),
                         ("td3_summary_only", SimulatorConfig(observed_candidates=0))):
        print(f"online {name}", flush=True)
        row = online_td3(config, args.online_steps, args.online_users, args.start_steps, args.users, args.seed)
        row["headroom_share"] = round((row["mean_return"] - best) / (production - best), 4)
        report["online"][name] = row
        print(f"  {row['mean_return']:.1f} (headroom share {row['headroom_share']:.2f}, {row['train_seconds']} s)",
              flush=True)
    ratios = report["default"]["ratios"]
    length, with_ads = ratios["ads_session_length"]
    report["bars_met"] = {
        "production_over_best_constant": ratios["production_over_best_constant"] >= BARS["production_over_best_constant"],
        "myopic_over_best_constant": ratios["myopic_over_best_constant"] <= BARS["myopic_over_best_constant"],
        "ads_shorten_sessions": with_ads < length,
        "online_headroom_share": max(r["headroom_share"] for r in report["online"].values())
        >= BARS["online_headroom_share"]}
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_json(args.json, report)
    print(f"wrote {args.json}: bars met {report['bars_met']}")


if __name__ == "__main__":
    main()
