"""What pays across sessions on the new world, and what each goal space can express (issue #17).

    .venv/bin/python bench/hierarchical_levers.py     # bench/results/issue17/hierarchical_levers.json
    .venv/bin/python bench/hierarchical_levers.py --table bench/results/issue17/hierarchical_levers.json

The hierarchical experiment's world (``conf/experiment/hierarchical.yaml``: lifetimes of up to
10 sessions of up to 30 requests). Three measurements:

1. **What brings a user back.** Lifetimes logged by the experiment's behaviour pair (uniform
   random goals, a noisy goal follower) in each goal space; per session, the correlation of
   "the user came back" with the served slates' mean predicted statistics (p̂(click),
   p̂(like | click), p̂(negative)) and the session's engagement and length, and the return rate
   by quartile of each statistic.
2. **Flat references over whole lifetimes** on the same users: the 81 constant fusion actions of
   the {-1, 0, 1} grid screened on ``--screen-users`` lifetimes, the best ``--top`` re-run on
   ``--users`` (the best of them is the experiment's ``constant_reference``), the production
   lookahead (optimises within a session), the myopic engagement maximiser, and the
   Lagrangian rankers "predicted engagement + μ · predicted consumed utility" (utility from
   p̂(negative)) — a flat policy that values what retention needs.
3. **What a goal can express**: the reference goal follower (the experiment's behaviour
   follower without noise) under fixed goals of each goal space.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from marl_rec.agents.hierarchical import (
    GoalFollowingPolicy,
    UniformGoalPolicy,
    collect_lifetimes,
)
from marl_rec.agents.policies import (
    ConstantPolicy,
    GaussianNoisePolicy,
    MyopicGreedyPolicy,
    ProductionPolicy,
    action_grid,
    grid_slates,
)
from marl_rec.envs.hierarchical import (
    HierarchicalConfig,
    goal_names,
    run_lifetimes,
)
from marl_rec.envs.simulator import SimulatorConfig, UserSimulator

from marl_rec.contracts import PolicyOutput
from marl_rec.files import write_json

# the experiment's settings (conf/experiment/hierarchical.yaml, conf/agent/hierarchical.yaml)
MAX_SESSIONS, MAX_REQUESTS, GOAL_WEIGHT = 10, 30, 20.0
FOLLOWER_WEIGHT, FOLLOWER_VALUES, BEHAVIOUR_SIGMA = 5.0, (-1.0, 0.0, 1.0), 0.3
EVAL_SEED = 10007


class UtilityLagrangian:
    """Per request, the grid action maximising predicted engagement + ``mu`` · predicted consumed
    utility (the utility estimated from p̂(negative), as the production policy does)."""

    def __init__(self, mu: float) -> None:
        self.mu, self.grid = mu, action_grid((-1.0, 0.0, 1.0))

    def __call__(self, sim: UserSimulator, obs: np.ndarray) -> PolicyOutput:
        e = sim.slate_expectations(grid_slates(sim, self.grid), use_true=False, utility=sim.predicted_utility())
        return PolicyOutput(self.grid[np.argmax(e["reward"] + self.mu * e["utility"], axis=1)], None)


def fixed_goal(goal: tuple[float, float]):
    """A goal policy that sets the same goal (in [0, 1]^2) for every session."""
    action = 2.0 * np.asarray(goal, dtype=np.float64) - 1.0
    return lambda sim, obs: np.broadcast_to(action, (obs.shape[0], 2)).copy()


def lifetimes(sim: UserSimulator, config: HierarchicalConfig, policy, users: int, goal_policy=None) -> dict:
    started = time.perf_counter()
    summary = run_lifetimes(policy, users, np.random.default_rng(EVAL_SEED), goal_policy, config, sim=sim).summary()
    return {"lifetime_engagement": round(summary["lifetime_engagement"], 2),
            "engagement_se": round(summary["engagement_se"], 2),
            "sessions_per_user": round(summary["sessions_per_user"], 3), "sessions_se": round(summary["sessions_se"], 3),
            "session_length": round(summary["mean_session_length"], 2),
            "true_utility": round(summary["true_utility"], 1), "seconds": round(time.perf_counter() - started, 1)}


def what_brings_users_back(sim: UserSimulator, users: int) -> dict:
    """Per logged session: correlation of 'returned' with the served slates' statistics."""
    out = {}
    for space in ("ceilings", "click_quality"):
        config = HierarchicalConfig(max_sessions=MAX_SESSIONS, goal_reward_weight=GOAL_WEIGHT, goal_space=space)
        rng = np.random.default_rng(0)
        follower = GoalFollowingPolicy(FOLLOWER_WEIGHT, FOLLOWER_VALUES, space)
        log = collect_lifetimes(sim, UniformGoalPolicy(rng), GaussianNoisePolicy(follower, BEHAVIOUR_SIGMA, rng),
                                users, rng, config)
        achieved = log.session_mean_achieved()
        names = goal_names(space)
        ended = log.first_row + log.length - 1  # each session's last request
        signals = {f"mean {names[0].replace('_ceiling', '_level')}": achieved[:, 0],
                   f"mean {names[1].replace('_ceiling', '_level')}": achieved[:, 1],
                   "session engagement": np.bincount(log.session, log.engagement, log.num_sessions),
                   "session length": log.length.astype(np.float64),
                   "observed satisfaction signal at the end": log.next_observation[ended, -1].astype(np.float64)}
        # only sessions after which a return was possible (below the lifetime cap)
        keep = np.array([s < MAX_SESSIONS for s in _session_index(log)])
        returned = log.returned[keep].astype(np.float64)
        rows = {}
        for name, value in signals.items():
            v = value[keep]
            # quartiles by rank (ties, e.g. sessions capped at max_requests, split arbitrarily)
            groups = np.array_split(np.argsort(v, kind="stable"), 4)
            rows[name] = {"correlation_with_return": round(float(np.corrcoef(v, returned)[0, 1]), 3),
                          "return_rate_by_quartile": [round(float(returned[g].mean()), 3) for g in groups]}
        out[space] = {"sessions": int(keep.sum()), "return_rate": round(float(returned.mean()), 3), "signals": rows}
    return out


def retention_bound(config: SimulatorConfig, max_sessions: int = MAX_SESSIONS) -> float:
    """Expected sessions per user if every session ended at satisfaction 1 (the most a policy can
    reach): the simulator's return model, lifetime satisfaction L ← 0.7·L + 0.3·1 from 0.6,
    return probability sigmoid(return_slope · (L − return_threshold)), capped at ``max_sessions``."""
    lifetime, alive, total = 0.6, 1.0, 0.0
    for _ in range(max_sessions):
        total += alive
        lifetime = 0.7 * lifetime + 0.3
        alive /= 1.0 + np.exp(-config.return_slope * (lifetime - config.return_threshold))
    return total


def _session_index(log) -> np.ndarray:
    first = np.append(True, log.session_user[1:] != log.session_user[:-1])
    start = np.maximum.accumulate(np.where(first, np.arange(log.num_sessions), 0))
    return np.arange(log.num_sessions) - start + 1  # 1 for a user's first session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--screen-users", type=int, default=100)
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--log-users", type=int, default=400)
    parser.add_argument("--json", type=Path,
                        default=Path(__file__).resolve().parent / "results" / "issue17" / "hierarchical_levers.json")
    parser.add_argument("--table", type=Path, help="print the tables of a written JSON and exit")
    parser.add_argument("--retention-bound", action="store_true",
                        help="print the most sessions per user any policy can reach and exit")
    args = parser.parse_args()
    if args.retention_bound:
        print(f"sessions per user with satisfaction 1 at every session end: "
              f"{retention_bound(SimulatorConfig(max_requests=MAX_REQUESTS)):.3f}")
        return
    if args.table:
        print_table(args.table)
        return
    sim_config = SimulatorConfig(max_requests=MAX_REQUESTS)
    sim = UserSimulator(sim_config)
    started = time.perf_counter()
    result: dict = {"settings": {"max_sessions": MAX_SESSIONS, "max_requests": MAX_REQUESTS, "users": args.users,
                                 "screen_users": args.screen_users, "log_users": args.log_users,
                                 "eval_seed": EVAL_SEED}}
    result["what_brings_users_back"] = what_brings_users_back(sim, args.log_users)
    print("returns measured", flush=True)
    config = HierarchicalConfig(max_sessions=MAX_SESSIONS, goal_reward_weight=GOAL_WEIGHT)
    screen = {}
    for action in action_grid((-1.0, 0.0, 1.0)):
        key = str([int(v) for v in action])
        screen[key] = lifetimes(sim, config, ConstantPolicy(action), args.screen_users)["lifetime_engagement"]
    best = sorted(screen, key=screen.get, reverse=True)[:args.top]
    flat = {f"constant {key}": lifetimes(sim, config, ConstantPolicy(json.loads(key)), args.users) for key in best}
    print("constants screened", flush=True)
    flat["production"] = lifetimes(sim, config, ProductionPolicy(), args.users)
    flat["myopic engagement maximiser"] = lifetimes(sim, config, MyopicGreedyPolicy(), args.users)
    for mu in (1.0, 2.0, 4.0):
        flat[f"engagement + {mu:g} x predicted utility"] = lifetimes(sim, config, UtilityLagrangian(mu), args.users)
    result["constant_screen"] = screen
    result["best_constant"] = max(best, key=lambda k: flat[f"constant {k}"]["lifetime_engagement"])
    result["flat"] = flat
    goals = {}
    for space, fixed in (("ceilings", [(1.0, 1.0), (1.0, 0.1), (1.0, 0.2), (1.0, 0.3), (0.6, 0.2)]),
                         ("click_quality", [(0.4, 0.7), (0.5, 0.6), (0.6, 0.7), (0.8, 0.5)])):
        space_config = HierarchicalConfig(max_sessions=MAX_SESSIONS, goal_reward_weight=GOAL_WEIGHT, goal_space=space)
        follower = GoalFollowingPolicy(FOLLOWER_WEIGHT, FOLLOWER_VALUES, space)
        for goal in fixed:
            goals[f"{space} {goal}"] = lifetimes(sim, space_config, follower, args.users, fixed_goal(goal))
    result["fixed_goals"] = goals
    result["seconds"] = round(time.perf_counter() - started, 1)
    write_json(args.json, result)
    print_table(args.json)


def print_table(path: Path) -> None:
    result = json.loads(Path(path).read_text())
    for space, block in result["what_brings_users_back"].items():
        print(f"\nbehaviour logs, goal space {space}: {block['sessions']} sessions below the cap, "
              f"return rate {block['return_rate']}")
        print("| in-session signal | correlation with returning | return rate by quartile (low → high) |")
        print("|---|---|---|")
        for name, row in block["signals"].items():
            print(f"| {name} | {row['correlation_with_return']:+.3f} | "
                  f"{', '.join(f'{r:.3f}' for r in row['return_rate_by_quartile'])} |")
    print(f"\nlifetimes ({result['settings']['users']} users, seed {result['settings']['eval_seed']}); best constant "
          f"{result['best_constant']}")
    print("| policy | lifetime engagement | sessions/user | session length | true utility |")
    print("|---|---|---|---|---|")
    for name, row in {**result["flat"], **{f"follower, fixed goal {k}": v for k, v in result["fixed_goals"].items()}}.items():
        print(f"| {name} | {row['lifetime_engagement']:.1f} ± {row['engagement_se']:.1f} | "
              f"{row['sessions_per_user']:.2f} ± {row['sessions_se']:.2f} | {row['session_length']:.1f} | "
              f"{row['true_utility']:.0f} |")


if __name__ == "__main__":
    main()
