"""The import graph has one direction: the contract types are a leaf, ``marl_rec.data`` never
imports ``marl_rec.algos`` (``algos`` may import ``data``), and the core never imports
``marl_rec.agents``, ``marl_rec.irl`` or ``marl_rec.envs`` (those are reached only through
Hydra ``_target_``/``task`` strings). Checked on the source, lazy imports inside functions
included."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "marl_rec"


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def offending(paths: list[Path], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found = {}
    for path in paths:
        bad = sorted(m for m in imported_modules(path) if m.startswith(forbidden))
        if bad:
            found[str(path.relative_to(ROOT))] = bad
    return found


def test_checker_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from marl_rec.algos.registry import make_algorithm\n")
    assert imported_modules(module) >= {"marl_rec.algos.registry"}


@pytest.mark.parametrize("module", ["contracts.py", "distributions.py"])
def test_contract_modules_are_leaves(module: str) -> None:
    assert not [m for m in imported_modules(CORE / module) if m.startswith("marl_rec")]


def test_data_does_not_import_algos() -> None:
    assert offending(sorted((CORE / "data").rglob("*.py")), ("marl_rec.algos",)) == {}


def test_core_does_not_import_agents_irl_or_envs() -> None:
    assert offending(sorted(CORE.rglob("*.py")), ("marl_rec.agents", "marl_rec.irl", "marl_rec.envs")) == {}


def test_contract_types_are_defined_once() -> None:
    for name in ("ActionSpec", "Batch", "PolicyOutput"):
        homes = [str(p.relative_to(ROOT)) for folder in ("marl_rec", "envs", "agents", "irl")
                 for p in (ROOT / folder).rglob("*.py") if f"class {name}:" in p.read_text()
                 or f"class {name}(" in p.read_text()]
        assert homes == ["marl_rec/contracts.py"], (name, homes)
