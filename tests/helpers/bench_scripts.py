"""The scripts of bench/ are not a package: ``load("headline")`` imports bench/headline.py as the
module ``headline`` (registered in sys.modules, so its dataclasses and pickles resolve)."""
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
