"""CPU time of an OPE pass with and without the context's shared tables: DR's and WDR's Q̂(s_t, a_t)
and V̂(s_t), the log importance ratios, and a deterministic policy's actions at the dataset's states
(which FQE's fits, the smoothed targets and FQE's value all ask for), each computed once.

    nice -n 19 .venv/bin/python bench/ope_tables.py                     # ~41,000 transitions, 2 rounds
    nice -n 19 .venv/bin/python bench/ope_tables.py --algo td3 --rounds 1

The estimators are the headline study's final OPE (``conf/ope/default.yaml`` with the overrides
of ``conf/experiment/fusion_offline.yaml``: fqe, wdr, cfqe; FQE of 128 x 128 critics, 3,000
updates), then ``dr`` (the same FQE model) and the IS family (``conf/ope/all.yaml``'s set), run
in that order on a fresh context, FQE fits included; the CPU time of each estimator is recorded,
so the first three are the headline pass, the first four ``+ dr`` and all of them ``all`` (a pass
of the first k estimators computes exactly what they compute here). The policy is the deployed
(deterministic) view of an untrained ``--algo`` of the ``rec`` preset (its cost per action is what
matters here), the data the ``expert`` pipeline in the default world (``--transitions`` on 1,024
users: every started session is kept, so at least ~41,000). Each round runs the pass with the
tables shared (``after``) and recomputed by every estimator (``before``, a context whose
``policy_table`` always computes: the code before the cache), in alternating order, in CPU time
(``time.process_time``); the estimates are checked to be equal bit for bit. Prints the medians
over rounds and their ratio before / after.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from marl_rec.algos.registry import make_algorithm
from marl_rec.contracts import ActionSpec
from marl_rec.files import write_json
from marl_rec.ope import DeterministicView, OPEContext
from marl_rec.pipelines import build_dataset

ROOT = Path(__file__).resolve().parent.parent
SIMULATOR = {"_target_": "marl_rec.envs.simulator.UserSimulator"}
EXPERT = {"name": "expert", "kind": "policy", "seed": 0, "batch_users": 1024,
          "behaviour": {"_target_": "marl_rec.agents.policies.GaussianNoisePolicy", "_partial_": True, "sigma": 0.1,
                        "base": {"_target_": "marl_rec.agents.policies.ProductionPolicy"}}}
GAMMA = 0.99


class RecomputingContext(OPEContext):
    """The context before the shared tables: every estimator computes its own."""

    def policy_table(self, policy: Any, key: Any, compute: Any) -> Any:
        return compute()


def headline_estimators() -> dict[str, Any]:
    """The final OPE of the headline study: conf/ope/default.yaml + fusion_offline.yaml's ope node."""
    node = OmegaConf.merge(OmegaConf.load(ROOT / "conf/ope/default.yaml"),
                           {"estimators": OmegaConf.load(ROOT / "conf/experiment/fusion_offline.yaml").ope.estimators})
    return dict(node.estimators)


def estimators() -> dict[str, Any]:
    """The headline's final OPE, then DR on its model and the IS family, in the order they run."""
    headline = headline_estimators()
    assert list(headline) == ["fqe", "wdr", "cfqe"], list(headline)
    dr = OmegaConf.merge(headline["wdr"], {"config": {"weighted": False}})
    family = {kind: OmegaConf.create({"_target_": "marl_rec.ope.ImportanceSamplingEstimator",
                                      "config": {"_target_": "marl_rec.ope.ImportanceConfig", "kind": kind}})
              for kind in ("is", "wis", "pdis", "wpdis")}
    return {name: instantiate(node) for name, node in {**headline, "dr": dr, **family}.items()}


PASSES = {"headline (fqe, wdr, cfqe)": 3, "+ dr": 4, "all (+ is, wis, pdis, wpdis)": 8}  # first k estimators


def run_pass(context: OPEContext, estimators: dict[str, Any], policy: Any) -> tuple[list[float], dict[str, Any]]:
    """Each estimator's CPU seconds, in order, and its estimate."""
    seconds, out = [], {}
    for name, estimator in estimators.items():
        start = time.process_time()
        out[name] = estimator.estimate(context, policy).to_dict()
        seconds.append(time.process_time() - start)
    return seconds, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transitions", type=int, default=20_000)
    parser.add_argument("--algo", default="bcq")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = build_dataset({**EXPERT, "num_transitions": args.transitions}, lambda: instantiate(SIMULATOR),
                         instantiate, 0)
    algorithm = make_algorithm(args.algo, data.obs_dim, ActionSpec("continuous", dim=data.actions.shape[1]),
                               preset="rec", seed=0)
    policy = DeterministicView(algorithm)
    chain = estimators()
    cpu: dict[str, list[list[float]]] = {"before": [], "after": []}
    for index in range(args.rounds):
        results = {}
        for variant in (("before", "after") if index % 2 == 0 else ("after", "before")):
            cls = RecomputingContext if variant == "before" else OPEContext
            seconds, results[variant] = run_pass(cls(data, GAMMA), chain, policy)
            cpu[variant].append(seconds)
        np.testing.assert_equal(results["before"], results["after"])  # bit for bit
    print(f"{len(data):,} transitions, {args.algo} (rec preset), {args.rounds} interleaved rounds, CPU time "
          f"(medians over rounds), FQE fits included:")
    summary: dict[str, Any] = {"transitions": len(data), "algo": args.algo, "rounds": args.rounds,
                               "estimators": list(chain), "cpu_per_estimator": cpu, "passes": {}}
    for name, k in PASSES.items():
        before = statistics.median(sum(seconds[:k]) for seconds in cpu["before"])
        after = statistics.median(sum(seconds[:k]) for seconds in cpu["after"])
        print(f"  {name:30s} before {before:6.1f} s, after {after:6.1f} s: {before / after:.3f}x")
        summary["passes"][name] = {"before": before, "after": after, "ratio": before / after}
    for variant in ("before", "after"):
        per = {name: round(statistics.median(s[i] for s in cpu[variant]), 2) for i, name in enumerate(chain)}
        print(f"  per estimator, {variant}: {per}")
    if args.json is not None:
        write_json(args.json, summary)


if __name__ == "__main__":
    main()
