"""Saving and loading :class:`OfflineDataset` as a folder of ``.npy`` columns.

Layout of a saved dataset ``path/``::

    metadata.json          format name and version, length, action spec, component names,
                           the user metadata, and per column: file, dtype, shape, sha256
    observations.npy       one plain .npy file per column (no pickles)
    actions.npy
    ...

Why a folder of ``.npy`` files: each column can be memory-mapped on its own, so a dataset
larger than memory loads lazily (``np.load(mmap_mode=...)``), and any tool that reads
numpy reads it. ``metadata.json`` is written last, so a folder without it is never taken
for a dataset.

Atomicity: everything is written to a hidden sibling folder ``.NAME.tmp-XXXX`` and fsynced,
then renamed into place. Replacing an existing dataset renames the old one aside
(``.NAME.old-XXXX``), renames the new one in and only then deletes the old one: an
interrupted save never leaves a half-written dataset at ``path`` and never destroys the
previous one before the new one is complete. (A crash exactly between the two renames
leaves the previous dataset in the ``.old-`` sibling; :func:`load_dataset` says so.)

The pieces are shared with every other folder format of ``marl_rec.data`` (the multi-agent
dataset): :func:`save_folder_atomically` (the atomic write), :func:`write_columns` and
:func:`load_column` (checksummed ``.npy`` columns), :func:`read_metadata` (the checked
``metadata.json``).
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import shutil
import tokenize
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from marl_rec.contracts import ActionSpec
from marl_rec.files import fsync_dir
from marl_rec.data.dataset import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, OfflineDataset

FORMAT_NAME = "marl_rec.offline_dataset"
# 2: fusion actions are the like / share / watch / negative weights relative to a fixed click
#    weight (issue #16); a version-1 dataset's actions (click / like / share / watch, w = 10 ** a)
#    mean something else, so it is refused rather than misread
FORMAT_VERSION = 2
METADATA_FILE = "metadata.json"
#: datasets whose columns together exceed this many bytes are memory-mapped when ``mmap=None``
MMAP_THRESHOLD_BYTES = 1 << 30

# the dtype kind each column must have on disk ("f" floating, "b" bool, "i" signed integer)
_FLOAT_COLUMNS = ("observations", "rewards", "next_observations", "behaviour_log_probs", "reward_components")
_BOOL_COLUMNS = ("terminals", "truncations", "episode_starts")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _write_column(file: Path, array: np.ndarray) -> None:
    """One column as a plain ``.npy`` file, flushed to disk."""
    with open(file, "wb") as f:
        np.save(f, array, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def write_columns(folder: Path, arrays: Mapping[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Each array as ``folder/<name>.npy`` (fsynced); returns each column's metadata entry
    (file, dtype, shape, sha256), what :func:`load_column` checks on load."""
    columns: dict[str, dict[str, Any]] = {}
    for name, array in arrays.items():
        file = folder / f"{name}.npy"
        _write_column(file, array)
        columns[name] = {"file": file.name, "dtype": array.dtype.str, "shape": list(array.shape),
                         "sha256": _file_sha256(file)}
    return columns


def json_copy(value: Any, field: str) -> Any:
    """``value`` round-tripped through strict JSON; ValueError naming ``field`` if it is not JSON."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{field} must be JSON-serialisable (no NaN/inf): {error}") from error


def _has_format(path: Path, format_name: str) -> bool:
    try:
        return json.loads((path / METADATA_FILE).read_text()).get("format") == format_name
    except (OSError, ValueError, AttributeError):
        return False


def save_folder_atomically(path: str | Path, fill: Callable[[Path], dict[str, Any]], format_name: str,
                           what: str, overwrite: bool = True) -> Path:
    """Write a saved folder at ``path`` atomically (see the module docstring).

    ``fill(tmp)`` writes the content into the hidden sibling ``tmp`` and returns its metadata,
    which is written last as ``metadata.json`` (so a folder without it is never taken for a
    saved one); the folder is then fsynced and renamed into place. An existing folder at
    ``path`` is replaced only if its metadata names ``format_name`` and ``overwrite`` is True;
    anything else there raises ``FileExistsError`` (naming ``what`` it is not) untouched. With
    ``overwrite=False`` a folder that another process renames into place first is kept too
    (``FileExistsError``; the losing save removes its temporary). Replacing (``overwrite=True``)
    is not coordinated between processes: callers sharing a path lock it (the dataset cache)."""
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"{path} already exists (pass overwrite=True to replace it)")
        if not _has_format(path, format_name):
            raise FileExistsError(f"{path} exists and is not a saved {what}: refusing to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:12]
    tmp = path.parent / f".{path.name}.tmp-{token}"
    tmp.mkdir()
    try:
        metadata = fill(tmp)
        with open(tmp / METADATA_FILE, "w") as f:
            json.dump(metadata, f, indent=2, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(tmp)
        if path.exists() and overwrite:
            old = path.parent / f".{path.name}.old-{token}"
            os.rename(path, old)
            os.rename(tmp, path)
            fsync_dir(path.parent)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.rename(tmp, path)  # fails on a non-empty folder: never replaces one
            except OSError as error:
                if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                # another process saved the same path while this one was writing: keep its folder
                raise FileExistsError(f"{path} was saved by another process while this one was writing it; "
                                      f"the other save is kept") from error
            fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def remove_temporaries(path: str | Path) -> list[Path]:
    """Delete the hidden ``.NAME.tmp-*`` folders that saves of ``path`` left behind when their
    process was killed (a failed save in a live process removes its own). Only safe while no
    other save of ``path`` is running: the dataset cache calls it under the entry's lock.
    Returns the folders removed."""
    path = Path(path)
    stale = sorted(path.parent.glob(f".{glob.escape(path.name)}.tmp-*")) if path.parent.is_dir() else []
    for folder in stale:
        shutil.rmtree(folder, ignore_errors=True)
    return stale


def save_dataset(dataset: OfflineDataset, path: str | Path, overwrite: bool = True) -> Path:
    """Write ``dataset`` to the folder ``path`` atomically (see the module docstring).

    An existing folder at ``path`` is replaced only if it is a saved dataset and
    ``overwrite`` is True; anything else there raises ``FileExistsError`` untouched.
    ``dataset.metadata`` must be JSON-serialisable. Returns the path.
    """
    dataset.validate()  # columns are mutable arrays: never write a dataset that no longer validates
    user_metadata = json_copy(dataset.metadata, "dataset.metadata")

    def fill(folder: Path) -> dict[str, Any]:
        arrays = {name: getattr(dataset, name) for name in REQUIRED_COLUMNS + OPTIONAL_COLUMNS}
        columns = write_columns(folder, {name: array for name, array in arrays.items() if array is not None})
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                "num_transitions": len(dataset), "num_episodes": dataset.num_episodes,
                "action_spec": dataset.action_spec.to_dict(),
                "component_names": list(dataset.component_names),
                "metadata": user_metadata, "columns": columns}

    return save_folder_atomically(path, fill, FORMAT_NAME, "dataset", overwrite)


def read_metadata(path: Path, format_name: str, format_version: int, what: str,
                  fields: tuple[str, ...]) -> dict[str, Any]:
    """``path/metadata.json`` of a saved ``what`` (a dataset, a multi-agent dataset), checked:
    FileNotFoundError when it is missing, ValueError when it is not valid JSON, names another
    format or version, or lacks one of ``fields``."""
    meta_file = path / METADATA_FILE
    if not meta_file.is_file():
        raise FileNotFoundError(f"{meta_file} is missing: {path} is not a saved {what} "
                                f"(or its save did not finish)")
    try:
        meta = json.loads(meta_file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{meta_file} is corrupted (not valid JSON): {error}") from error
    if not isinstance(meta, dict) or meta.get("format") != format_name:
        raise ValueError(f"{meta_file} is not saved {what} metadata (field 'format' is not {format_name!r})")
    if meta.get("format_version") != format_version:
        raise ValueError(f"{meta_file}: unsupported field 'format_version' {meta.get('format_version')!r} "
                         f"(this version of marl_rec reads {format_version})")
    for key in fields:
        if key not in meta:
            raise ValueError(f"{meta_file} is missing the field {key!r}")
    count = meta.get("num_transitions", 0)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"{meta_file}: field 'num_transitions' must be a non-negative integer, got {count!r}")
    return meta


def column_file(path: Path, name: str, column: Any) -> Path:
    """The file of column ``name`` (``path/<name>.npy``), as its metadata entry must say;
    FileNotFoundError when it is missing."""
    file = path / f"{name}.npy"
    recorded = column.get("file") if isinstance(column, dict) else None
    if recorded != file.name:
        raise ValueError(f"{path / METADATA_FILE}: column {name!r} must be described and stored in "
                         f"{file.name!r}, metadata says {recorded!r}")
    if not file.is_file():
        raise FileNotFoundError(f"column {name!r}: file {file} is missing")
    if file.resolve().parent != path.resolve():
        # a symlink out of the folder would read (and checksum) a file the dataset does not own
        raise ValueError(f"column {name!r}: file {file} is a link to {file.resolve()}, outside the dataset "
                         f"folder {path}")
    return file


def load_column(file: Path, name: str, column: dict[str, Any], mmap: bool, verify_checksums: bool) -> np.ndarray:
    """One column file (``allow_pickle=False``; copy-on-write memory map when ``mmap``), checked
    against its metadata entry: the recorded sha256 (when ``verify_checksums``), dtype and shape."""
    if verify_checksums and "sha256" in column and _file_sha256(file) != column["sha256"]:
        raise ValueError(f"column {name!r}: file {file} is corrupted (sha256 differs from the one "
                         f"recorded when it was saved)")
    try:
        array = np.load(file, mmap_mode="c" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError, tokenize.TokenError) as error:
        # (a damaged header fails inside numpy's literal parsing with SyntaxError / TokenError)
        raise ValueError(f"column {name!r}: file {file} is corrupted or not a .npy file: "
                         f"{type(error).__name__}: {error}") from error
    if array.dtype.str != column.get("dtype"):
        raise ValueError(f"column {name!r}: file {file} has dtype {array.dtype.str}, metadata says "
                         f"{column.get('dtype')!r}")
    if list(array.shape) != column.get("shape"):
        raise ValueError(f"column {name!r}: file {file} has shape {list(array.shape)}, metadata says "
                         f"{column.get('shape')!r}")
    if not array.dtype.isnative:
        # a column written on (or for) a big-endian machine: torch refuses non-native byte order,
        # so convert here (a copy in memory, even when memory-mapping) rather than fail in training
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def _missing_dataset_message(path: Path) -> str:
    backups = sorted(path.parent.glob(f".{path.name}.old-*")) if path.parent.exists() else []
    hint = f"; an interrupted save left the previous dataset at {backups[-1]}" if backups else ""
    return f"no saved dataset at {path}{hint}"


def load_dataset(path: str | Path, mmap: bool | None = None, verify_checksums: bool = True,
                 mmap_threshold_bytes: int = MMAP_THRESHOLD_BYTES) -> OfflineDataset:
    """Load and validate the dataset saved at ``path``.

    mmap: True memory-maps every column, False reads them into memory, None memory-maps
    when the column files together exceed ``mmap_threshold_bytes``. Memory maps are
    copy-on-write (``mmap_mode="c"``): arrays are writable but writes never reach the files.
    verify_checksums: compare each file's sha256 with the one recorded at save time (reads
    every file once; turn off for very large trusted datasets).

    Raises FileNotFoundError for a missing folder or column file and ValueError naming the
    column for a corrupted file, a dtype or shape that disagrees with the metadata, or a
    dataset that fails validation (NaN rewards, inconsistent episodes, ...).
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(_missing_dataset_message(path))
    meta = read_metadata(path, FORMAT_NAME, FORMAT_VERSION, "dataset",
                         ("num_transitions", "action_spec", "component_names", "metadata", "columns"))
    meta_file = path / METADATA_FILE
    try:
        action_spec = ActionSpec(**meta["action_spec"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"{meta_file}: invalid 'action_spec' {meta['action_spec']!r}: {error}") from error
    columns_meta: dict[str, dict[str, Any]] = meta["columns"]
    if not isinstance(columns_meta, dict) or not all(isinstance(c, dict) for c in columns_meta.values()):
        raise ValueError(f"{meta_file}: field 'columns' must map each column name to its description")
    for name in REQUIRED_COLUMNS:
        if name not in columns_meta:
            raise ValueError(f"{meta_file}: field 'columns' lists no column {name!r}")
    unknown = set(columns_meta) - set(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)
    if unknown:
        raise ValueError(f"{meta_file}: field 'columns' lists unknown columns {sorted(unknown)}")
    files = {name: column_file(path, name, column) for name, column in columns_meta.items()}
    if mmap is None:
        mmap = sum(f.stat().st_size for f in files.values()) > mmap_threshold_bytes

    num_rows = meta["num_transitions"]
    arrays: dict[str, np.ndarray] = {}
    for name, file in files.items():
        array = load_column(file, name, columns_meta[name], mmap, verify_checksums)
        if len(array) != num_rows:
            raise ValueError(f"column {name!r} has {len(array)} rows, metadata says num_transitions={num_rows}")
        arrays[name] = array
    _check_dtypes_and_actions(arrays, action_spec)
    names, user_metadata = meta["component_names"], meta["metadata"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{meta_file}: field 'component_names' must be a list of names, got {names!r}")
    components = arrays.get("reward_components")
    width = components.shape[1] if components is not None and components.ndim == 2 else 0
    if names and len(names) != width:
        raise ValueError(f"{meta_file}: field 'component_names' names {len(names)} components, column "
                         f"'reward_components' has {width}")
    if not isinstance(user_metadata, dict):
        raise ValueError(f"{meta_file}: field 'metadata' must be a JSON object, got {type(user_metadata).__name__}")
    try:
        dataset = OfflineDataset(**arrays, action_spec=action_spec, component_names=list(names),
                                 metadata=dict(user_metadata))
    except ValueError as error:
        raise ValueError(f"dataset at {path} is invalid: {error}") from error
    if "num_episodes" in meta and meta["num_episodes"] != dataset.num_episodes:  # optional: other tools' folders
        raise ValueError(f"{meta_file}: field 'num_episodes' is {meta['num_episodes']!r}, the columns hold "
                         f"{dataset.num_episodes} episodes")
    return dataset


def _check_dtypes_and_actions(arrays: dict[str, np.ndarray], action_spec: ActionSpec) -> None:
    """Column dtype kinds and the action shape must match what the metadata promises."""
    for name in _FLOAT_COLUMNS:
        if name in arrays and arrays[name].dtype.kind != "f":
            raise ValueError(f"column {name!r} must be floating point, got dtype {arrays[name].dtype}")
    for name in _BOOL_COLUMNS:
        if arrays[name].dtype != np.bool_:
            raise ValueError(f"column {name!r} must be bool, got dtype {arrays[name].dtype}")
    actions = arrays["actions"]
    if action_spec.discrete:
        if actions.ndim != 1 or actions.dtype.kind not in "iu":
            raise ValueError(f"column 'actions' must be 1-D integers for the metadata's discrete action space "
                             f"({action_spec.num_actions} actions), got {actions.dtype} {actions.shape}")
    elif actions.ndim != 2 or actions.shape[1] != action_spec.dim or actions.dtype.kind != "f":
        raise ValueError(f"column 'actions' has {actions.dtype} shape {actions.shape}, but the metadata's "
                         f"action_spec is continuous with dim={action_spec.dim}")
