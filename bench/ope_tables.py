"""CPU time of an OPE pass with and without the context's shared tables (DR and WDR's Q̂(s_t, a_t)
and V̂(s_t), and the log importance ratios, computed once per policy, model and smoothing).

    nice -n 19 .venv/bin/python bench/ope_tables.py                     # 20,000 transitions, 3 rounds
    nice -n 19 .venv/bin/python bench/ope_tables.py --transitions 50000 --algo td3

The estimators are the headline study's final OPE (``conf/ope/default.yaml`` with the overrides
of ``conf/experiment/fusion_offline.yaml``: fqe, wdr, cfqe, FQE of 128 x 128 critics, 3,000
updates), and two larger passes on the same FQE model: ``+ dr`` (DR beside WDR) and ``all``
(also the IS family, as ``conf/ope/all.yaml`` runs it). The policy is the deployed (deterministic)
view of an untrained ``--algo`` of the ``rec`` preset (its cost per action is what matters here),
the data the ``expert`` pipeline in the default world. The FQE models are fitted once (their CPU
time printed) and shared by every pass: both variants fit the same models, once per context.
Each round times every pass with the tables cached (``after``) and recomputed by every estimator
(``before``, a context whose ``policy_table`` always computes: the code before the cache), in
alternating order, in CPU time (``time.process_time``); the estimates are checked to be equal bit
for bit. Prints, per pass, the medians without the fits and the ratio of the whole pass
(fits included): (fits + before) / (fits + after).
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


def passes() -> dict[str, dict[str, Any]]:
    headline = headline_estimators()
    dr = OmegaConf.merge(headline["wdr"], {"config": {"weighted": False}})
    same_fqe = headline["wdr"].config.fqe
    family = {kind: OmegaConf.create({"_target_": "marl_rec.ope.ImportanceSamplingEstimator",
                                      "config": {"_target_": "marl_rec.ope.ImportanceConfig", "kind": kind}})
              for kind in ("is", "wis", "pdis", "wpdis")}
    assert OmegaConf.to_container(dr.config.fqe) == OmegaConf.to_container(same_fqe)
    nodes = {"headline (fqe, wdr, cfqe)": headline,
             "+ dr": {**headline, "dr": dr},
             "all (+ dr, is, wis, pdis, wpdis)": {**headline, "dr": dr, **family}}
    return {name: {key: instantiate(node) for key, node in estimators.items()} for name, estimators in nodes.items()}


def run_pass(context: OPEContext, estimators: dict[str, Any], policy: Any) -> tuple[float, dict[str, Any]]:
    start = time.process_time()
    out = {name: estimator.estimate(context, policy).to_dict() for name, estimator in estimators.items()}
    return time.process_time() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transitions", type=int, default=20_000)
    parser.add_argument("--algo", default="bcq")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = build_dataset({**EXPERT, "num_transitions": args.transitions}, lambda: instantiate(SIMULATOR),
                         instantiate, 0)
    algorithm = make_algorithm(args.algo, data.obs_dim, ActionSpec("continuous", dim=data.actions.shape[1]),
                               preset="rec", seed=0)
    policy = DeterministicView(algorithm)
    all_passes = passes()
    fitted = OPEContext(data, GAMMA)
    start = time.process_time()
    for estimator in all_passes["headline (fqe, wdr, cfqe)"].values():  # fqe/wdr's model and cfqe's
        fitted.fitted_q(policy, estimator.config.fqe if hasattr(estimator.config, "fqe") else estimator.config)
    fit_cpu = time.process_time() - start

    def context(cls: type[OPEContext]) -> OPEContext:
        made = cls(data, GAMMA)
        made._fitted = dict(fitted._fitted)  # the same fitted models (what both variants fit, once each)
        return made

    cpu: dict[str, dict[str, list[float]]] = {name: {"before": [], "after": []} for name in all_passes}
    for index in range(args.rounds):
        for name, estimators in all_passes.items():
            results = {}
            for variant in (("before", "after") if index % 2 == 0 else ("after", "before")):
                cls = RecomputingContext if variant == "before" else OPEContext
                seconds, results[variant] = run_pass(context(cls), estimators, policy)
                cpu[name][variant].append(seconds)
            np.testing.assert_equal(results["before"], results["after"])  # bit for bit
    print(f"{len(data):,} transitions, {args.algo} (rec preset), {args.rounds} interleaved rounds, CPU time; "
          f"fitting the FQE models (shared): {fit_cpu:.2f} s")
    summary: dict[str, Any] = {"transitions": len(data), "algo": args.algo, "rounds": args.rounds,
                               "fit_cpu": fit_cpu, "passes": {}}
    for name, times in cpu.items():
        before, after = statistics.median(times["before"]), statistics.median(times["after"])
        ratio = (fit_cpu + before) / (fit_cpu + after)
        print(f"  {name:34s} without the fits: before {before:6.2f} s, after {after:6.2f} s "
              f"({before / after:.2f}x); whole pass {ratio:.3f}x")
        summary["passes"][name] = {**times, "before_median": before, "after_median": after,
                                   "ratio_without_fits": before / after, "ratio_whole_pass": ratio}
    if args.json is not None:
        write_json(args.json, summary)


if __name__ == "__main__":
    main()
