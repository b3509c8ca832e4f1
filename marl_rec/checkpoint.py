"""Atomic, safely loadable training checkpoints.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python values
(dict, list, str, int, float, bool, None), so it loads with ``torch.load(weights_only=True)``
— nothing is unpickled. It is written to a temporary file in the same folder, fsynced and
moved into place with ``os.replace``: a process killed at any moment leaves either the old
checkpoint or the new one, never half of one.

Layout::

    {"format": "marl-rec-checkpoint", "version": 1,
     "algorithm": {"name", "class", "obs_dim", "action_spec", "config", "state"},
     "trainer":   {...}}           # written by marl_rec.trainer.Trainer

:func:`restore_algorithm` refuses a checkpoint written by another algorithm, for another
observation/action space, or with different network sizes, naming the first mismatch.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from marl_rec.files import atomic_write
from marl_rec.logging import flatten_hparams

CHECKPOINT_FORMAT = "marl-rec-checkpoint"
CHECKPOINT_VERSION = 1
#: what :func:`algorithm_payload` writes (checked on load, so a malformed file is named, not a KeyError)
ALGORITHM_KEYS = ("name", "class", "obs_dim", "action_spec", "config", "state")


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupted, or does not fit the algorithm it is loaded into."""


# ------------------------------------------------------------------------ files
def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then ``os.replace``."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete temporary files a killed :func:`atomic_torch_save` of ``path`` left behind."""
    path = Path(path)
    stale = sorted(path.parent.glob(f".{path.name}.*.tmp")) if path.parent.is_dir() else []
    for leftover in stale:
        leftover.unlink(missing_ok=True)
    return stale


def save_checkpoint(path: str | Path, algorithm: Any, trainer_state: Mapping[str, Any] | None = None) -> None:
    """Write ``algorithm`` (and the trainer's state, if given) atomically to ``path``."""
    atomic_torch_save({
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "algorithm": algorithm_payload(algorithm),
        "trainer": dict(trainer_state) if trainer_state is not None else None,
    }, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; CheckpointError if it is missing,
    truncated/corrupted, or not a marl-rec checkpoint of a version this code reads."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"checkpoint {path} is corrupted or not loadable with "
                              f"weights_only=True: {error}") from error
    except Exception as error:  # the restricted unpickler raises assorted types
        raise CheckpointError(f"checkpoint {path} could not be read: {type(error).__name__}: {error}") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a marl-rec checkpoint (missing format tag {CHECKPOINT_FORMAT!r})")
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint {path} has version {checkpoint.get('version')}, this code reads "
                              f"version {CHECKPOINT_VERSION}")
    if checkpoint.get("trainer") is not None and not isinstance(checkpoint["trainer"], Mapping):
        raise CheckpointError(f"checkpoint {path} is malformed: key 'trainer' must be a mapping or None")
    return checkpoint


# ------------------------------------------------------------------- algorithm
def algorithm_payload(algorithm: Any) -> dict[str, Any]:
    """What identifies an algorithm instance, plus its full state (networks, optimisers, ...)."""
    return {**algorithm_payload_header(algorithm), "state": algorithm.state_dict()}


def _plain_config(config: Any) -> dict[str, Any] | None:
    if config is None:
        return None
    try:
        return flatten_hparams(config)
    except ValueError:
        return {"repr": repr(config)}


def restore_algorithm(algorithm: Any, payload: Mapping[str, Any], source: str = "checkpoint") -> None:
    """Check that ``payload`` (from :func:`algorithm_payload`) fits ``algorithm``, then load it.

    Raises CheckpointError naming the algorithm, space or tensor that differs, or the part of
    a malformed payload."""
    if not isinstance(payload, Mapping):
        raise CheckpointError(f"{source} is malformed: its 'algorithm' must be a mapping, got {type(payload).__name__}")
    missing = [key for key in ALGORITHM_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{source} is malformed: its 'algorithm' lacks the keys {missing}")
    if not isinstance(payload["state"], Mapping):
        raise CheckpointError(f"{source} is malformed: 'algorithm.state' is not a mapping")
    current = algorithm_payload_header(algorithm)
    if payload.get("name") != current["name"]:
        raise CheckpointError(f"{source} was written by algorithm {payload.get('name')!r} "
                              f"({payload.get('class')}), cannot load it into {current['name']!r} "
                              f"({current['class']})")
    for key in ("obs_dim", "action_spec"):
        if payload.get(key) != current[key]:
            raise CheckpointError(f"{source} has {key}={payload.get(key)!r}, the algorithm has "
                                  f"{key}={current[key]!r}")
    # the config is compared by the algorithm's load_state_dict, which names each differing field
    # and accepts a field the checkpoint predates where this config has its default
    mismatch = first_state_mismatch({k: v for k, v in payload["state"].items() if k != "config"},
                                    {k: v for k, v in algorithm.state_dict().items() if k != "config"})
    if mismatch is not None:
        differing = _config_differences(payload.get("config"), current["config"])
        hint = f" (config differs: {differing})" if differing else ""
        raise CheckpointError(f"{source} does not fit this {current['name']!r} network: {mismatch}{hint}")
    try:
        algorithm.load_state_dict(payload["state"])
    except (RuntimeError, KeyError, ValueError) as error:
        raise CheckpointError(f"{source} could not be loaded into {current['name']!r}: {error}") from error


def algorithm_payload_header(algorithm: Any) -> dict[str, Any]:
    """:func:`algorithm_payload` without the (possibly large) state."""
    spec = algorithm.action_spec
    return {
        "name": str(getattr(algorithm, "name", type(algorithm).__name__)),
        "class": f"{type(algorithm).__module__}.{type(algorithm).__qualname__}",
        "obs_dim": int(algorithm.obs_dim),
        "action_spec": dict(spec.to_dict()) if hasattr(spec, "to_dict") else str(spec),
        "config": _plain_config(getattr(algorithm, "config", None)),
    }


def _config_differences(saved: Any, current: Any) -> str:
    if not isinstance(saved, Mapping) or not isinstance(current, Mapping):
        return ""
    keys = sorted(set(saved) | set(current))
    return ", ".join(f"{k}: saved {saved.get(k)!r} vs {current.get(k)!r}"
                     for k in keys if saved.get(k) != current.get(k))


def first_state_mismatch(saved: Any, current: Any, path: str = "state") -> str | None:
    """The first structural difference between two (nested) state dicts, or None.

    Tensors must agree in shape and dtype; dict keys must agree, except integer-keyed
    dicts (optimiser per-parameter state, empty before the first step) where only shared
    keys are compared."""
    if isinstance(current, torch.Tensor):
        if not isinstance(saved, torch.Tensor):
            return f"{path} is a tensor here but {type(saved).__name__} in the checkpoint"
        if saved.shape != current.shape:
            return f"{path} has shape {tuple(saved.shape)} in the checkpoint, {tuple(current.shape)} here"
        if saved.dtype != current.dtype:
            return f"{path} has dtype {saved.dtype} in the checkpoint, {current.dtype} here"
        return None
    if isinstance(current, Mapping):
        if not isinstance(saved, Mapping):
            return f"{path} is a mapping here but {type(saved).__name__} in the checkpoint"
        if (current and all(isinstance(k, int) for k in current)) or (saved and all(isinstance(k, int) for k in saved)):
            keys = [k for k in current if k in saved]
        else:
            missing = [k for k in current if k not in saved]
            extra = [k for k in saved if k not in current]
            if missing or extra:
                return f"{path} keys differ: missing in checkpoint {missing}, unexpected {extra}"
            keys = list(current)
        for key in keys:
            found = first_state_mismatch(saved[key], current[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(current, (list, tuple)):
        if not isinstance(saved, (list, tuple)) or len(saved) != len(current):
            return (f"{path} has length {len(saved) if isinstance(saved, (list, tuple)) else '?'} "
                    f"in the checkpoint, {len(current)} here")
        for i, (a, b) in enumerate(zip(saved, current)):
            found = first_state_mismatch(a, b, f"{path}[{i}]")
            if found:
                return found
    return None


# ------------------------------------------------------------------------ RNGs
def numpy_rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The bit generator's state with arrays turned into tensors (weights_only-loadable)."""
    return _arrays_to_tensors(rng.bit_generator.state)


def set_numpy_rng_state(rng: np.random.Generator, state: Mapping[str, Any]) -> None:
    name = type(rng.bit_generator).__name__
    if not isinstance(state, Mapping) or state.get("bit_generator") != name:
        found = state.get("bit_generator") if isinstance(state, Mapping) else type(state).__name__
        raise CheckpointError(f"'numpy_rng': the numpy RNG state is for {found!r}, the generator is {name!r}")
    try:
        rng.bit_generator.state = _tensors_to_arrays(state)
    except (KeyError, TypeError, ValueError, OverflowError) as error:  # numpy checks the fields one by one
        raise CheckpointError(f"'numpy_rng': malformed numpy RNG state ({type(error).__name__}: {error})") from error


def _arrays_to_tensors(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _arrays_to_tensors(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, np.integer):
        return int(value)
    return value


def _tensors_to_arrays(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _tensors_to_arrays(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        return value.numpy().copy()
    return value
