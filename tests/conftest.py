"""Shared test set-up: the helper modules in tests/helpers (a synthetic MDP with closed-form
values, the trainer's subprocess worker, …) are importable from every test folder."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "helpers"))
