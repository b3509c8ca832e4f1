"""``marl-rec``: the Hydra app. ``marl-rec +experiment=NAME [overrides]`` or ``-m`` for sweeps.

Configs live in the top-level ``conf/`` and ship as the package ``marl_rec.conf``. Every
run writes into Hydra's output directory: the resolved config (``.hydra/``), TensorBoard
events, checkpoints and ``metrics.json``. The ``task`` key names the function that runs
(``marl_rec.experiments.fusion_offline.run`` by default; the multi-agent, hierarchical and
reward-learning experiments name theirs), so this module imports none of them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_method
from omegaconf import DictConfig

from marl_rec.override_check import unknown_key_error
from marl_rec.schema import register_schemas

register_schemas()


def summary_line(metrics: dict) -> str:
    keys = ("data", "algo", "seed", "status", "true_return", "behaviour_return", "q_estimate", "final_discounted_return")
    parts = [f"{k}={metrics[k]:.2f}" if isinstance(metrics.get(k), float) else f"{k}={metrics.get(k)}"
             for k in keys if k in metrics]
    return " ".join(parts)


@hydra.main(version_base="1.3", config_path="pkg://marl_rec.conf", config_name="config")
def app(cfg: DictConfig) -> dict:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    metrics = get_method(cfg.task)(cfg, run_dir)
    # one line per finished job: in a sweep this is the progress report
    print(f"[marl-rec] done {run_dir}: {summary_line(metrics)}", flush=True)
    return metrics


def main() -> None:
    # a key the config does not have is a typo, with or without "+": refuse it before Hydra
    # (which would suggest adding it with "+", and then run with the default)
    problem = unknown_key_error(sys.argv[1:])
    if problem is not None:
        sys.exit(f"marl-rec: {problem}")
    sys.exit(app())


if __name__ == "__main__":
    main()
