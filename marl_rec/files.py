"""Atomic file writes, the one implementation behind checkpoints, metrics, reports and plots.

Content goes to a hidden temporary file beside the target (``.NAME.XXXX.tmp``), is fsynced
and moved into place with ``os.replace``: a process killed at any moment leaves either the
old file or the new one, never half of one. Torch-free, so light tools can use it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def fsync_dir(folder: str | Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(handle)`` on a binary temporary file beside ``path``, then move it into place
    (mode 0644, as a plain ``open`` would give; ``mkstemp`` creates 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Atomic UTF-8 text write."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def _json_default(value: Any) -> Any:
    item = getattr(value, "item", None)  # numpy scalars
    return item() if callable(item) else str(value)


def write_json(path: str | Path, payload: Any) -> Path:
    """Atomic JSON write (indented; numpy scalars as numbers, other unknown values as strings)."""
    return write_text(path, json.dumps(payload, indent=2, default=_json_default))


def save_figure(figure: Any, path: str | Path, **savefig_kwargs: Any) -> Path:
    """Atomic ``figure.savefig`` (a matplotlib figure; the format is the path's suffix)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    return atomic_write(path, lambda handle: figure.savefig(handle, format=fmt, **savefig_kwargs))
