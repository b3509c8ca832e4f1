"""TensorBoard logging for training runs: one writer per run folder, tags ``section/name``.

Tags used across marl-rec: ``train/<agent>/<metric>`` (means over a log interval),
``eval/<metric>`` (``eval/return``, ``eval/q_estimate``, ...), ``ope/<estimator>``.
Hyperparameters go into the *same* run (``add_hparams(..., run_name=".")``); their metric
values are written under ``hparam/<tag>`` so they never add a stray point to the series
they summarise.

(The module shadows nothing: inside the package, ``import logging`` still means the
standard library; use ``marl_rec.logging`` for this one.)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

HParamValue = int | float | str | bool


def flatten_hparams(config: Any, prefix: str = "", sep: str = ".") -> dict[str, HParamValue]:
    """Flatten nested dataclasses / mappings (incl. OmegaConf DictConfig) into ``{"a.b": v}``
    with values TensorBoard accepts: int, float, str, bool. Sequences become their ``str``
    (``"[256, 256]"``), ``None`` becomes ``"None"``, anything else its ``str``."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    if not isinstance(config, Mapping):
        raise ValueError(f"flatten_hparams expects a dataclass or a mapping, got {type(config).__name__}")
    flat: dict[str, HParamValue] = {}
    for key, value in config.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if (dataclasses.is_dataclass(value) and not isinstance(value, type)) or isinstance(value, Mapping):
            flat.update(flatten_hparams(value, name, sep))
        elif isinstance(value, (bool, np.bool_)):
            flat[name] = bool(value)
        elif isinstance(value, (int, np.integer)):
            flat[name] = int(value)
        elif isinstance(value, (float, np.floating)):
            flat[name] = float(value)
        elif isinstance(value, str):
            flat[name] = value
        elif isinstance(value, Sequence) or isinstance(value, np.ndarray) or _is_list_config(value):
            flat[name] = str(list(value))
        else:
            flat[name] = str(value)
    return flat


def _is_list_config(value: Any) -> bool:
    return type(value).__name__ == "ListConfig"  # omegaconf, without importing it


class TensorBoardLogger:
    """A thin wrapper over ``SummaryWriter`` writing into ``log_dir`` itself.

    ``purge_step``: when a run restarts from a checkpoint taken at update ``k``, pass
    ``k + 1`` — TensorBoard then hides the events the dead process wrote after the
    checkpoint, so the resumed curves continue without duplicates.
    """

    def __init__(self, log_dir: str | Path, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imported here: ~1-3 s of start-up

        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=purge_step)

    def log_scalars(self, metrics: Mapping[str, float], step: int, prefix: str = "") -> None:
        """Write every ``metrics[key]`` under tag ``prefix + key`` at ``step``."""
        for key, value in metrics.items():
            self.writer.add_scalar(prefix + key, float(value), global_step=step)

    def log_hparams(self, hparams: Mapping[str, Any] | Any, metrics: Mapping[str, float],
                    step: int | None = None) -> None:
        """Record the run's hyperparameters (flattened) and final metrics in this run.

        Metric values are stored under ``hparam/<key>``; non-finite ones are dropped (the
        HParams plugin cannot show them)."""
        flat = flatten_hparams(hparams)
        final = {f"hparam/{key}": float(value) for key, value in metrics.items()
                 if isinstance(value, (int, float, np.number)) and math.isfinite(float(value))}
        self.writer.add_hparams(flat, final, run_name=".", global_step=step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
