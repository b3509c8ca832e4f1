"""Why the online learner misses the headroom of issue #16 (item 5): measured at checkpoints.

    .venv/bin/python bench/online_diagnosis.py     # bench/results/online_diagnosis.json

Trains the online learners of ``bench/calibration.py`` (:data:`calibration.ONLINE_LEARNERS`, the
same loop, budget per batched step and seeds) on the summary-only observation of the default
world, and after each of ``--checkpoints`` updates measures, on ``--users`` evaluation users (seed 123, the
learner acting greedily, one session each):

- ``return``: the greedy policy's session return;
- the actor: the mean and the across-state std of each action entry, the share of entries at
  the bound (|a| > 0.99) and, for TD3, the mean |pre-tanh activation| (tanh'(u) = 1 − tanh²(u):
  at |u| = 5 the gradient through the squashing is 2e-4 of its value at 0);
- the critic, on the states the greedy policy visits: Q(s, π(s)) against the discounted return
  actually earned from s (γ 0.99; their means and correlation: is the critic converged?);
  Q(s, π(s)) − Q(s, a_prod(s)) with a_prod the production policy's action at the same state
  (negative: the critic prefers the production action, the actor does not reach it); the mean
  dQ/da at π(s) (its sign: where the actor is pushed); and the return of acting greedily on the
  critic over the 81 grid actions (the critic's own best action, no actor involved: is the critic
  right about which action is better?).

And once: the production policy's choices on the grid (how often each action) and the constant
policies along the negative-feedback weight with the other weights at −1 — the shape of the
problem the learner has to find.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration import ONLINE_LEARNERS, OBSERVATIONS  # noqa: E402
from marl_rec.agents.policies import ConstantPolicy, ProductionPolicy, action_grid  # noqa: E402
from marl_rec.algos.online import train_online  # noqa: E402
from marl_rec.envs.rollout import run_sessions  # noqa: E402
from marl_rec.envs.simulator import UserSimulator  # noqa: E402
from marl_rec.files import write_json  # noqa: E402

GAMMA = 0.99
EVAL_SEED = 123


def greedy_rollout(sim: UserSimulator, agent, users: int) -> dict[str, np.ndarray]:
    """The greedy policy's visited states, its actions, the production policy's action at each,
    and the discounted return earned from each state on."""
    production = ProductionPolicy()
    obs = sim.reset(users, np.random.default_rng(EVAL_SEED))
    observations, actions, production_actions, rewards, alive = [], [], [], [], []
    next_observations, terminated = [], []
    while not sim.done.all():
        live = ~sim.done
        action = agent.act(obs, deterministic=True)
        observations.append(obs[live])
        actions.append(action[live])
        production_actions.append(production(sim, obs).action[live].astype(np.float32))
        alive.append(live)
        result = sim.step(action)
        rewards.append(result.reward)
        obs = result.observation
        next_observations.append(obs[live])
        terminated.append(result.terminated[live])
    returns_to_go, future = [], np.zeros(users)
    for t in reversed(range(len(rewards))):
        future = rewards[t] + GAMMA * future * (alive[t + 1] if t + 1 < len(rewards) else 0.0)
        returns_to_go.append(future[alive[t]].copy())
    return {"observations": np.concatenate(observations), "actions": np.concatenate(actions),
            "production_actions": np.concatenate(production_actions),
            "returns_to_go": np.concatenate(returns_to_go[::-1]),
            "rewards": np.concatenate([r[a] for r, a in zip(rewards, alive)]),
            "next_observations": np.concatenate(next_observations), "terminated": np.concatenate(terminated),
            "session_return": np.sum(rewards, axis=0)}



def critic_greedy_return(sim: UserSimulator, agent, users: int) -> float:
    """Session return of acting, at every request, with the grid action of highest Q."""
    grid = action_grid().astype(np.float32)

    def policy(_sim, obs: np.ndarray) -> np.ndarray:
        q = agent.q_value(np.repeat(obs, len(grid), axis=0), np.tile(grid, (len(obs), 1)))
        return grid[q.reshape(len(obs), len(grid)).argmax(1)]

    return float(run_sessions(policy, users, np.random.default_rng(EVAL_SEED), sim=sim).returns.mean())


def checkpoint(sim: UserSimulator, agent, users: int) -> dict:
    visit = greedy_rollout(sim, agent, users)
    obs, actions = visit["observations"], visit["actions"]
    q = agent.q_value(obs, actions)
    q_production = agent.q_value(obs, visit["production_actions"])
    # the one-step TD error of the critic on these transitions (truncations, at most one per
    # session, are counted as bootstrapped): the noise the critic must average away to see
    # advantages of the size of |Q(s, π(s)) − Q(s, a_prod)|
    next_q = agent.q_value(visit["next_observations"], agent.act(visit["next_observations"], deterministic=True))
    td_error = visit["rewards"] + GAMMA * (1.0 - visit["terminated"]) * next_q - q
    obs_t, action_t = torch.as_tensor(obs), torch.as_tensor(actions).requires_grad_(True)
    agent.critic.single(obs_t, action_t).sum().backward()
    row = {"updates": agent.num_updates, "return": round(float(visit["session_return"].mean()), 2),
           "action_mean": actions.mean(0).round(3).tolist(), "action_std_across_states": actions.std(0).round(3).tolist(),
           "share_at_bound": round(float((np.abs(actions) > 0.99).mean()), 3),
           "q_mean": round(float(q.mean()), 2), "discounted_return_mean": round(float(visit["returns_to_go"].mean()), 2),
           "q_return_correlation": round(float(np.corrcoef(q, visit["returns_to_go"])[0, 1]), 3),
           "q_minus_q_production_action": round(float((q - q_production).mean()), 3),
           "mean_abs_q_gap_to_production_action": round(float(np.abs(q - q_production).mean()), 3),
           "td_error_std": round(float(td_error.std()), 2),
           "dq_da_mean": action_t.grad.mean(0).numpy().round(3).tolist(),
           "critic_grid_greedy_return": round(critic_greedy_return(sim, agent, users), 2)}
    if hasattr(agent.actor, "max_action"):  # TD3's deterministic tanh actor: how saturated is it?
        with torch.no_grad():
            pre_tanh = agent.actor.net[:-1](obs_t)
        row["mean_abs_pre_tanh"] = round(float(pre_tanh.abs().mean()), 2)
    return row


def train_and_diagnose(name: str, checkpoints: list[int], online_users: int, start_steps: int, users: int) -> dict:
    torch.set_num_threads(1)
    learner, config = ONLINE_LEARNERS[name], OBSERVATIONS["summary_only"]
    sim, evaluation_sim = UserSimulator(config), UserSimulator(config)
    agent = learner.build(config.obs_dim)
    rows: list[dict] = []
    started = time.perf_counter()

    def hook(_buffer) -> None:
        if agent.num_updates in checkpoints:
            rows.append(checkpoint(evaluation_sim, agent, users))
            print(f"  {name} {rows[-1]}", flush=True)

    # the calibration's loop: one update per batched step after start_steps random steps
    train_online(sim, agent, max(checkpoints) + start_steps, np.random.default_rng(0), batch_users=online_users,
                 exploration_sigma=learner.exploration_sigma, start_steps=start_steps, updates_per_step=1,
                 on_update=hook, exploration=learner.exploration)
    return {"algorithm": learner.algorithm, "overrides": dict(learner.overrides),
            "exploration_sigma": learner.exploration_sigma, "exploration": learner.exploration, "checkpoints": rows,
            "seconds": round(time.perf_counter() - started, 1)}


def problem_shape(users: int) -> dict:
    """What the production policy chooses and what the constants along a_negative earn."""
    sim = UserSimulator(OBSERVATIONS["summary_only"])
    production, counts = ProductionPolicy(), Counter()

    def counting(s: UserSimulator, obs: np.ndarray):
        out = production(s, obs)
        counts.update(tuple(int(v) for v in np.rint(a)) for a in out.action[~s.done])
        return out

    stats = run_sessions(counting, users, np.random.default_rng(EVAL_SEED), sim=sim)
    total = sum(counts.values())
    constants = {}
    for negative in (-1.0, -0.5, 0.0, 0.5, 1.0):
        action = np.array([-1.0, -1.0, -1.0, negative])
        constants[str(negative)] = round(float(run_sessions(ConstantPolicy(action), users,
                                                            np.random.default_rng(EVAL_SEED), sim=sim).returns.mean()), 2)
    return {"production_return": round(float(stats.returns.mean()), 2),
            "production_action_frequencies": {str(list(k)): round(v / total, 3) for k, v in counts.most_common(8)},
            "constant_return_by_a_negative_others_at_minus_1": constants}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--learners", nargs="*", default=list(ONLINE_LEARNERS), choices=list(ONLINE_LEARNERS))
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[500, 1500, 3000, 4500, 6000],
                        help="the update counts at which to measure (training stops at the last)")
    parser.add_argument("--online-users", type=int, default=128)
    parser.add_argument("--start-steps", type=int, default=20)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "online_diagnosis.json")
    args = parser.parse_args()
    if min(args.checkpoints) < 1:
        raise SystemExit(f"--checkpoints must be update counts >= 1, got {args.checkpoints}")
    report = {"command": "python bench/online_diagnosis.py " + " ".join(sys.argv[1:]), "users": args.users,
              "seed": EVAL_SEED, "observation": "summary_only", "online_users": args.online_users,
              "start_steps": args.start_steps}
    print("problem shape", flush=True)
    report["problem"] = problem_shape(args.users)
    print(f"  {report['problem']}", flush=True)
    report["learners"] = {name: train_and_diagnose(name, sorted(set(args.checkpoints)), args.online_users,
                                                   args.start_steps, args.users) for name in args.learners}
    write_json(args.json, report)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
