"""marl_rec.files: atomic writes keep the old file when writing fails, and JSON takes numpy scalars."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pytest

from marl_rec.files import atomic_write, write_json, write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = write_text(tmp_path / "report.md", "old\n")

    def fail(handle) -> None:
        handle.write(b"half of the new")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_write(path, fail)
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_write_json_takes_numpy_scalars_and_is_world_readable(tmp_path: Path) -> None:
    path = write_json(tmp_path / "sub" / "metrics.json",
                      {"ret": np.float32(1.5), "n": np.int64(3), "ok": np.bool_(True), "where": tmp_path})
    assert json.loads(path.read_text()) == {"ret": 1.5, "n": 3, "ok": True, "where": str(tmp_path)}
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
