"""A job for the launcher tests: the Hydra app's whole path (compose, launch, run_dir, the
summary line) without training, so a 2-job sweep costs seconds. ``task=launcher_task.run``."""

from __future__ import annotations

import json
import os
from pathlib import Path


def run(cfg, run_dir: Path) -> dict:
    metrics = {"status": "completed", "seed": int(cfg.seed), "pid": os.getpid(),
               "cache_dir": str(cfg.cache_dir)}
    (Path(run_dir) / "metrics.json").write_text(json.dumps(metrics))
    return metrics
