"""The distribution installs one import name, ``marl_rec``: the top-level folders envs/,
agents/, irl/ and conf/ ship as ``marl_rec.envs`` … so that packages with generic names
(``agents``, ``envs``) can neither overwrite ours nor be overwritten by it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[2]


def test_every_declared_package_lives_under_marl_rec():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert all(p == "marl_rec" or p.startswith("marl_rec.") for p in tool["packages"])
    assert set(tool["package-dir"]) == {"marl_rec.conf", "marl_rec.envs", "marl_rec.agents", "marl_rec.irl"}


def test_every_source_package_is_declared():
    # the package list is explicit: a sub-package missing from it is missing from the wheel
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {"marl_rec": "marl_rec", **{name: folder for name, folder in tool["package-dir"].items()}}
    found = set()
    for name, folder in folders.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *relative)))
    # the Hydra config groups are data folders (no __init__.py): declared, or setuptools warns
    # "Package would be ignored" and a later setuptools drops their YAML
    groups = {f"marl_rec.conf.{d.name}" for d in (ROOT / "conf").iterdir() if d.is_dir() and any(d.glob("*.yaml"))}
    assert groups and all(tool["package-data"].get(group) == ["*.yaml"] for group in groups)
    assert found | groups == set(tool["packages"])


def test_license_is_an_spdx_expression_with_its_file():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    assert "Apache License\n                           Version 2.0" in (ROOT / "LICENSE").read_text()


def test_installed_package_exposes_no_generic_top_level_name(tmp_path):
    # Run outside the repository so that its root is not on sys.path: only what is installed counts.
    code = (
        "import importlib.util as u\n"
        "import marl_rec.envs, marl_rec.agents, marl_rec.irl, marl_rec.conf\n"
        "print([n for n in ('envs', 'agents', 'irl', 'conf') if u.find_spec(n) is not None])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
