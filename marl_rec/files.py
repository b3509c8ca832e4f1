"""Atomic file writes, the one implementation behind checkpoints, metrics, reports and plots,
and the exclusive lock that coordinates processes sharing a folder (the dataset cache).

Content goes to a hidden temporary file beside the target (``.NAME.XXXX.tmp``), is fsynced
and moved into place with ``os.replace``: a process killed at any moment leaves either the
old file or the new one, never half of one. Torch-free, so light tools can use it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
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


@contextlib.contextmanager
def exclusive_lock(path: str | Path, on_wait: Callable[[], Any] | None = None) -> Iterator[None]:
    """Hold an exclusive ``fcntl.flock`` on the lock file ``path`` (created if missing) for the
    ``with`` block; ``on_wait()`` is called once if another process holds it (to say so).

    The lock file is removed on release, so nothing is left behind. That is safe because a
    waiter that wins the lock checks that ``path`` is still the file it locked: a file that was
    unlinked by the previous holder is not the lock any more, and it locks the new one instead.
    The kernel drops a killed holder's lock with its file descriptor, so a crash never leaves
    the lock taken (only the lock file, which the next holder reuses and removes).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None and not waited:
                    on_wait()
                waited = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            held = os.fstat(fd)
            if current is None or (current.st_dev, current.st_ino) != (held.st_dev, held.st_ino):
                continue  # the previous holder removed this file: lock the one at path now
            try:
                yield
            finally:
                path.unlink(missing_ok=True)  # while still holding it (see the docstring)
            return
        finally:
            os.close(fd)  # releases the flock
