"""Each Hydra launcher of the extras (``marl-rec[joblib]``, ``[submitit]``, ``[ray]``) runs a
2-job sweep of the app, when it is installed (skipped otherwise; ``make clients``' venv has all
three). The job is tests/helpers/launcher_task.py: the launcher's path, not training."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
LAUNCHERS = {  # launcher override -> (plugin module, extra overrides)
    "joblib": ("hydra_plugins.hydra_joblib_launcher", ["hydra.launcher.n_jobs=2"]),
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", ["hydra.launcher.timeout_min=5"]),
    "ray": ("hydra_plugins.hydra_ray_launcher",
            ["+hydra.launcher.ray.init.num_cpus=2", "+hydra.launcher.ray.init.include_dashboard=false"]),
}


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_two_job_sweep(launcher: str, tmp_path: Path) -> None:
    module, extra = LAUNCHERS[launcher]
    if not installed(module):
        pytest.skip(f"{module} is not installed (pip install 'marl-rec[{launcher.split('_')[0]}]')")
    sweep_dir, cache = tmp_path / "multirun", tmp_path / "shared_cache"
    env = {**os.environ, "MARL_REC_CACHE": str(cache), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(HELPERS), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "marl_rec.cli", "-m", f"hydra/launcher={launcher}", *extra,
         "task=launcher_task.run", "seed=0,1", f"hydra.sweep.dir={sweep_dir}", "progress=false"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(sweep_dir.rglob("metrics.json"))
    metrics = [json.loads(p.read_text()) for p in runs]
    assert sorted(m["seed"] for m in metrics) == [0, 1]
    assert all(m["cache_dir"] == str(cache) for m in metrics)  # every job sees the shared cache
    assert all((p.parent / ".hydra" / "config.yaml").exists() for p in runs)
    assert all((p.parent / "marl-rec.log").exists() for p in runs)  # the app's name, not the module's
