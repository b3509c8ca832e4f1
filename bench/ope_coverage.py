"""Coverage of the OPE estimators' 95% intervals, measured against exact policy values.

On the synthetic MDP of the OPE tests (tests/helpers/ope_mdp.py: three states, two actions,
values in closed form), log ``--datasets`` independent datasets of ``--episodes`` episodes with
the behaviour policy, estimate a target policy on each with every estimator, and count how
often the interval contains the exact value. An honest 95% interval covers about 95% of the
time; the OPE benchmark's figures (bench/results/README.md) come with this number.

    .venv/bin/python bench/ope_coverage.py            # writes bench/results/ope_coverage.json

FQE's default interval resamples initial states and picks one of its critics (which differ by
initialisation only); ``fqe_bootstrap`` trains every critic on its own Poisson bootstrap of the
episodes (``FQEConfig(episode_bootstrap=True)``), so its interval includes the model's own
uncertainty; DR/WDR resample episodes with the FQE model fixed, ``dr_bootstrap``/``wdr_bootstrap``
share their replicates out over the bootstrap refits of ``fqe_bootstrap``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "helpers"))  # the synthetic MDP is shared with the OPE tests

from ope_mdp import TabularPolicy, rollout

from marl_rec.files import write_json
from marl_rec.ope import (
    DoublyRobustConfig,
    DoublyRobustEstimator,
    FQEConfig,
    FQEEstimator,
    ImportanceConfig,
    ImportanceSamplingEstimator,
    OPEContext,
)

GAMMA = 0.9
MU = [[0.5, 0.5], [0.6, 0.4], [0.3, 0.7]]
TARGET = [[0.7, 0.3], [0.35, 0.65], [0.2, 0.8]]  # exact value 2.76 (behaviour 2.07)
FQE = FQEConfig(hidden=(32,), num_critics=2, learning_rate=3e-3, batch_size=256, num_updates=600, tau=0.05,
                num_bootstrap=500)
FQE_BOOTSTRAP = FQEConfig(**{**FQE.__dict__, "num_critics": 5, "episode_bootstrap": True})


def estimators() -> dict[str, object]:
    return {
        "is": ImportanceSamplingEstimator(ImportanceConfig(kind="is", num_bootstrap=500)),
        "wpdis": ImportanceSamplingEstimator(ImportanceConfig(kind="wpdis", num_bootstrap=500)),
        "fqe": FQEEstimator(FQE),
        "fqe_bootstrap": FQEEstimator(FQE_BOOTSTRAP),
        "dr": DoublyRobustEstimator(DoublyRobustConfig(fqe=FQE, num_bootstrap=500)),
        "wdr": DoublyRobustEstimator(DoublyRobustConfig(weighted=True, fqe=FQE, num_bootstrap=500)),
        "dr_bootstrap": DoublyRobustEstimator(DoublyRobustConfig(fqe=FQE_BOOTSTRAP, num_bootstrap=500)),
        "wdr_bootstrap": DoublyRobustEstimator(DoublyRobustConfig(weighted=True, fqe=FQE_BOOTSTRAP, num_bootstrap=500)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=40)
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "ope_coverage.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    target = TabularPolicy(TARGET)
    truth = target.true_value(GAMMA)
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in estimators()}
    started = time.perf_counter()
    for index in range(args.datasets):
        data = rollout(TabularPolicy(MU, seed=1000 + index), args.episodes, np.random.default_rng(index),
                       gamma=GAMMA).dataset
        context = OPEContext(data, GAMMA)
        for name, estimator in estimators().items():
            estimate = estimator.estimate(context, target)
            rows[name].append({"value": estimate.value, "ci_low": estimate.ci_low, "ci_high": estimate.ci_high})
        print(f"dataset {index + 1}/{args.datasets} ({time.perf_counter() - started:.0f} s)", flush=True)
    summary = {}
    for name, mine in rows.items():
        values = np.array([r["value"] for r in mine])
        covered = [r["ci_low"] <= truth <= r["ci_high"] for r in mine]
        widths = [r["ci_high"] - r["ci_low"] for r in mine]
        summary[name] = {"coverage": float(np.mean(covered)), "mean_width": float(np.mean(widths)),
                         "bias": float(values.mean() - truth), "std_over_datasets": float(values.std(ddof=1)),
                         # an honest interval's width is about 2 × 1.96 × the estimate's spread over datasets
                         "width_over_4sd": float(np.mean(widths) / (4 * values.std(ddof=1)))}
    out = {"command": "bench/ope_coverage.py " + " ".join(sys.argv[1:]), "truth": truth, "gamma": GAMMA,
           "datasets": args.datasets, "episodes_per_dataset": args.episodes, "confidence": 0.95,
           "summary": summary, "seconds": time.perf_counter() - started}
    write_json(args.json, out)
    for name, row in summary.items():
        print(f"{name:>14}: coverage {row['coverage']:.2f}  width {row['mean_width']:.3f}  "
              f"bias {row['bias']:+.3f}  sd {row['std_over_datasets']:.3f}")


if __name__ == "__main__":
    main()
