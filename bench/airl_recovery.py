"""Does adversarial IRL recover the true utility in the simulator? Before and after the fix.

The reward an AIRL demonstrator reveals is the MDP's reward r(s, a) = E[utility | s, a]
(the realised utility is a draw of clicks no reward of (s, a) can predict), and only up
to what the demonstrator's choices depend on. Three rows per seed, scored on held-out
users of the soft-optimal curator (``probe_expected_utility``: the expected utility of
the curator's action and of 16 uniform probe actions in the same state):

- ``airl/before``: the old set-up — demonstrations of the utility-greedy curator plus
  Gaussian noise (σ = 0.3), γ = 0.9, 20 discriminator steps per iteration at lr 3e-4.
  AIRL's discriminator converges to f = log π_E(a|s) (+ a state term), and for that
  demonstrator log π_E is the distance to the curator's grid argmax, which carries little
  of the utility.
- ``airl/greedy_noise_trained``: the same demonstrations, the discriminator trained as
  below (``--discriminator-steps``, ``--discriminator-lr``): separates the two causes.
- ``airl/boltzmann``: demonstrations of :class:`~marl_rec.irl.experts.BoltzmannCuratorPolicy`
  (a ∝ exp(β E[utility | s, a]), the soft-optimal expert AIRL's theory assumes) and
  γ = 0 to match its horizon; f → β E[utility | s, a] − log Z(s).
- ``airl/boltzmann_slate``: the same, g also sees :func:`~marl_rec.irl.data.slate_features`
  (the slate the action would show, as the platform predicts it, from the observation).
- ``reference/supervised`` (``_slate``): an MLP regressed on E[utility | s, a] from the same
  inputs as g on separate probe users — the ceiling of any reward of those inputs.

Metrics (:meth:`~marl_rec.irl.data.UtilityProbe.score`): ``epic_expected`` =
:func:`~marl_rec.irl.metrics.epic_distance_myopic` to E[utility | s, a] (EPIC at γ = 0: the
state-only offset the demonstrations cannot identify cancels), ``pearson_expected`` (raw,
with that offset), ``pearson_realised``.

    .venv/bin/python bench/airl_recovery.py [--seeds 3] [--iterations 25] [--beta 10] [--methods ...]
        [--proposals 64] [--uniform-negatives 0]

``--proposals``: the Boltzmann demonstrator's uniform proposals per request (its sampling-
importance-resampling: the more, the closer its draws are to exp(β E[utility | s, a]); the
held-out probe users' demonstrator too). ``--uniform-negatives``: ``AIRLConfig.uniform_negatives``
of the γ = 0 rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from marl_rec.agents.policies import GaussianNoisePolicy
from marl_rec.envs.simulator import SimulatorConfig, UserSimulator
from marl_rec.irl.airl import AIRL, AIRLConfig
from marl_rec.irl.data import collect_with_utility, probe_expected_utility, slate_features
from marl_rec.irl.experiments.reward_learning import ReferenceConfig, fit_reference
from marl_rec.irl.experts import BoltzmannCuratorPolicy, UtilityGreedyPolicy
from marl_rec.files import write_json
from marl_rec.report import seed_std

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("airl/before", "airl/greedy_noise_trained", "airl/boltzmann", "airl/boltzmann_slate",
           "reference/supervised", "reference/supervised_slate")


def inputs(obs: np.ndarray, action: np.ndarray, slate: bool, config: SimulatorConfig) -> np.ndarray:
    """What the supervised reference sees: (obs, action) [+ slate features], as AIRL's g."""
    parts = [obs, action] + ([slate_features(obs, action, config)] if slate else [])
    return np.concatenate(parts, 1).astype(np.float32)


def run_seed(seed: int, args: argparse.Namespace) -> list[dict]:
    sim = UserSimulator(SimulatorConfig())
    rng = np.random.default_rng(seed)
    heldout = probe_expected_utility(sim, BoltzmannCuratorPolicy(args.beta, rng, args.proposals), args.probe_users, 16, rng)
    rows = []
    old_training = {"discriminator_steps": 20, "discriminator_lr": 3e-4}  # the AIRLConfig defaults before the fix
    new_training = {"discriminator_steps": args.discriminator_steps, "discriminator_lr": args.discriminator_lr}

    def greedy():
        return GaussianNoisePolicy(UtilityGreedyPolicy(), 0.3, rng)

    def boltzmann():
        return BoltzmannCuratorPolicy(args.beta, rng, args.proposals)

    setups = {"airl/before": (greedy, 0.9, old_training, False),
              "airl/greedy_noise_trained": (greedy, 0.9, new_training, False),
              "airl/boltzmann": (boltzmann, 0.0, new_training, False),
              "airl/boltzmann_slate": (boltzmann, 0.0, new_training, True)}
    for name, (demonstrator, gamma, training, slate) in setups.items():
        if name not in args.methods:
            continue
        expert = collect_with_utility(sim, demonstrator(), args.transitions, rng)
        config = AIRLConfig(gamma=gamma, iterations=args.iterations, reward_features="state_action",
                            slate_features=slate, uniform_negatives=args.uniform_negatives if gamma == 0.0 else 0.0,
                            **training)
        airl = AIRL(sim.obs_dim, sim.action_dim, expert.dataset.reward_components.shape[1], config, seed=seed,
                    simulator_config=sim.config)
        started = time.perf_counter()
        airl.train(sim, expert.dataset, rng)

        def reward(obs, action, airl=airl):
            return airl.reward_of({"obs": obs, "action": action})

        rows.append({"method": name, "seed": seed, "gamma": gamma, **heldout.score(reward),
                     "seconds": time.perf_counter() - started})
        print(rows[-1], flush=True)
    train = probe_expected_utility(sim, BoltzmannCuratorPolicy(args.beta, rng, args.proposals), args.probe_users * 2, 16, rng)
    n, m, a = train.probe_actions.shape
    obs, actions = np.repeat(train.observations, m, 0), train.probe_actions.reshape(n * m, a)
    for name, slate in (("reference/supervised", False), ("reference/supervised_slate", True)):
        if name not in args.methods:
            continue
        started = time.perf_counter()
        fit = fit_reference(inputs(obs, actions, slate, sim.config), train.probe_utility.reshape(-1),
                            ReferenceConfig(), seed)

        def reference(obs, action, fit=fit, slate=slate):
            return fit(inputs(obs, action, slate, sim.config))

        rows.append({"method": name, "seed": seed, **heldout.score(reference),
                     "seconds": time.perf_counter() - started})
        print(rows[-1], flush=True)
    return rows


def markdown_table(result: dict) -> str:
    """The results README's table: mean ± std (ddof=1) over seeds, then the per-seed EPIC."""
    lines = ["| method | EPIC (γ = 0) to E[utility∣s,a] | Pearson with E[utility∣s,a] | Pearson with realised "
             "utility | EPIC per seed |", "|---|---|---|---|---|"]
    for method in dict.fromkeys(r["method"] for r in result["rows"]):
        rows = [r for r in result["rows"] if r["method"] == method]
        per_seed = ", ".join(f"{r['epic_expected']:.3f}" for r in rows)
        cells = [f"{np.mean([r[k] for r in rows]):.3f} ± {seed_std([r[k] for r in rows]):.3f}"
                 for k in ("epic_expected", "pearson_expected", "pearson_realised")]
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {per_seed} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=25)
    parser.add_argument("--beta", type=float, default=10.0)
    parser.add_argument("--proposals", type=int, default=64,
                        help="the Boltzmann demonstrator's uniform proposals per request (its resampling)")
    parser.add_argument("--transitions", type=int, default=20_000)
    parser.add_argument("--discriminator-steps", type=int, default=100)
    parser.add_argument("--discriminator-lr", type=float, default=1e-3)
    parser.add_argument("--probe-users", type=int, default=300)
    parser.add_argument("--uniform-negatives", type=float, default=0.0,
                        help="AIRLConfig.uniform_negatives of the gamma = 0 rows (the boltzmann ones)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "airl_recovery.json")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS,
                        help="rows to compute (the seed's one generator feeds them in order, so a subset draws "
                             "other demonstrations than the full run)")
    parser.add_argument("--table", action="store_true", help="print the markdown table of --out and stop")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(args.out.read_text())))
        return
    torch.set_num_threads(1)
    rows = [row for seed in range(args.seeds) for row in run_seed(seed, args)]
    summary = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        summary[method] = {k: {"mean": float(np.mean([r[k] for r in mine])),
                               "std": seed_std([r[k] for r in mine])}
                           for k in ("epic_expected", "pearson_expected", "pearson_realised")}
    write_json(args.out, {"command": "bench/airl_recovery.py " + " ".join(sys.argv[1:]), "settings": vars(args) | {
        "out": str(args.out)}, "simulator": SimulatorConfig().to_dict(), "rows": rows, "summary": summary})
    for method, values in summary.items():
        print(f"{method:<24}" + "  ".join(f"{k} {v['mean']:.3f} ± {v['std']:.3f}" for k, v in values.items()))


if __name__ == "__main__":
    main()
