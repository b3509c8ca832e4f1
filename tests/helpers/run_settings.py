"""The check the run-settings tests share: a bad setting must stop a run *before* its first real
work (a function the test has replaced by one raising ``SentinelReached``), naming the key."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


class SentinelReached(RuntimeError):
    """Raised by the stand-in for a run's first real work (collection, dataset loading)."""


def reached(*args: Any, **kwargs: Any) -> None:
    raise SentinelReached("the run reached its first real work")


def assert_refused_before_work(run: Callable[[Any, Path], Any], cfg: Any, run_dir: Path,
                               message: str | None) -> None:
    """``message`` None: the valid config reaches the sentinel; else the run fails first with an
    error matching ``message``. Either way no ``metrics.json`` is written."""
    with pytest.raises((ValueError, TypeError, SentinelReached)) as caught:
        run(cfg, run_dir)
    if message is None:
        assert caught.type is SentinelReached
    else:
        assert caught.type is not SentinelReached, "the bad setting was only found after the work started"
        assert caught.match(message)
    assert not (run_dir / "metrics.json").exists()
