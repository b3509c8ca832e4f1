"""Plumbing shared by the torch algorithms: config checks, numpy <-> torch, state dicts.

An algorithm subclasses :class:`TorchAlgorithm`, builds its networks and optimisers, lists
them in ``_parts()``, and writes ``update``, ``_act`` and ``_q_value`` on tensors; this
module turns that into the :class:`OfflineAlgorithm` contract (numpy in/out, checked and
complete state dicts).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import MISSING, asdict, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from marl_rec.algos.base import OfflineAlgorithm

from marl_rec.contracts import ActionSpec
from marl_rec.nets import init_linear_

# ------------------------------------------------------------------ config checks


def _fail(config: Any, name: str, requirement: str) -> None:
    raise ValueError(f"{type(config).__name__}.{name} {requirement}, got {getattr(config, name)!r}")


def check_positive(config: Any, *names: str) -> None:
    """Each named field is a number > 0."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            _fail(config, name, "must be a number > 0")


def check_non_negative(config: Any, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            _fail(config, name, "must be a number >= 0")


def check_positive_int(config: Any, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            _fail(config, name, "must be an integer >= 1")


def check_in_range(config: Any, name: str, low: float, high: float, low_open: bool = False) -> None:
    """``low <= value <= high`` (``low < value`` when ``low_open``)."""
    value = getattr(config, name)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value <= high and (
        value > low if low_open else value >= low)
    if not ok:
        _fail(config, name, f"must be in {'(' if low_open else '['}{low}, {high}]")


def normalise_hidden(config: Any, *names: str) -> None:
    """Each named field is a non-empty sequence of positive layer widths; store it as a tuple
    (Hydra hands lists over; a frozen config keeps tuples)."""
    for name in names:
        value = getattr(config, name)
        try:
            widths = tuple(int(w) for w in value)
            valid = len(widths) > 0 and all(w >= 1 and w == v for w, v in zip(widths, value))
        except (TypeError, ValueError):
            valid = False
        if not valid:
            _fail(config, name, "must be a non-empty sequence of positive integer layer widths")
        object.__setattr__(config, name, widths)


def adam(parameters: Any, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam with the fused kernel: on one CPU thread its step measured ~3x faster than the
    default for-loop implementation (164 vs 540 us for a 256-256 twin critic)."""
    return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay, fused=True)


# ------------------------------------------------------------------ the base class

Part = nn.Module | torch.optim.Optimizer


class TorchAlgorithm(OfflineAlgorithm):
    """An :class:`OfflineAlgorithm` whose state lives in torch modules and optimisers.

    Subclasses implement ``_parts()`` (name -> module/optimiser: everything to save),
    ``_act(obs, deterministic)`` and ``_q_value(obs, action)`` on tensors, and ``update``.
    ``num_updates`` counts calls to ``update`` (delayed actor updates key off it).
    """

    def __init__(self, obs_dim: int, action_spec: ActionSpec, config: Any, seed: int = 0,
                 device: str | torch.device = "cpu") -> None:
        if isinstance(obs_dim, bool) or not isinstance(obs_dim, (int, np.integer)) or obs_dim < 1:
            raise ValueError(f"obs_dim must be an integer >= 1, got {obs_dim!r}")
        if not isinstance(action_spec, ActionSpec):
            raise TypeError(f"action_spec must be an ActionSpec, got {type(action_spec).__name__}")
        super().__init__(int(obs_dim), action_spec, config, seed)
        self.device = torch.device(device)
        if self.device.type != "cpu":  # sampling must happen where the tensors live
            self.generator = torch.Generator(device=self.device).manual_seed(seed)
        # networks are initialised on the CPU from their own stream derived from the seed
        self._init_generator = torch.Generator().manual_seed((seed + 0x5EED) % 2**63)
        self.num_updates = 0

    # subclasses ----------------------------------------------------------------
    @abstractmethod
    def _parts(self) -> dict[str, Part]:
        """Every module and optimiser to save, by a stable name."""

    @abstractmethod
    def _act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """(B, obs_dim) -> (B, action_dim) actions, under no_grad."""

    @abstractmethod
    def _q_value(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """(B, obs_dim), (B, action_dim) -> (B,) value estimates, under no_grad."""

    # helpers ---------------------------------------------------------------------
    def _build(self, module: nn.Module) -> nn.Module:
        """Initialise ``module`` from the seed (not global RNG state) and move it to the device."""
        return init_linear_(module, self._init_generator).to(self.device)

    def _require_continuous(self) -> float:
        """Check the action space is a symmetric box [-m, m]^k and return m (max_action)."""
        spec = self.action_spec
        if spec.discrete:
            raise ValueError(f"{type(self).__name__} needs a continuous action space, got {spec}")
        if spec.low != -spec.high:
            raise ValueError(f"{type(self).__name__} needs symmetric action bounds [-m, m]; got "
                             f"low={spec.low}, high={spec.high} (rescale the actions to [-1, 1])")
        return float(spec.high)

    def _tensor(self, array: np.ndarray | torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array, dtype=np.float32), device=self.device)

    def _metrics(self, values: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """Scalar tensors -> floats. On a GPU one stacked transfer (one device sync instead of
        one per metric); on the CPU ``.item()`` each (measured 1.3 us for five metrics against
        7.5 us for stack + tolist)."""
        if self.device.type == "cpu":
            return {name: value.item() for name, value in values.items()}
        numbers = torch.stack([v.detach().float() for v in values.values()]).tolist()
        return dict(zip(values.keys(), numbers))

    def _batched(self, obs: np.ndarray) -> tuple[torch.Tensor, bool]:
        array = np.asarray(obs, dtype=np.float32)
        single = array.ndim == 1
        if single:
            array = array[None]
        if array.ndim != 2 or array.shape[1] != self.obs_dim:
            raise ValueError(f"obs must have shape (B, {self.obs_dim}) or ({self.obs_dim},), got {np.shape(obs)}")
        return self._tensor(array), single

    # the OfflineAlgorithm contract ----------------------------------------------------
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions (B, action_dim) float32 for observations (B, obs_dim); a single (obs_dim,)
        observation gives a single (action_dim,) action."""
        tensor, single = self._batched(obs)
        with torch.no_grad():
            action = self._act(tensor, deterministic).cpu().numpy()
        return action[0] if single else action

    def q_value(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        """The algorithm's own value estimate Q(s, a), shape (B,) (see each algorithm for which
        combination of its critics it reports)."""
        tensor, single = self._batched(obs)
        action_array = np.asarray(action, dtype=np.float32)
        if single:
            action_array = action_array[None]
        if action_array.shape != (tensor.shape[0], self.action_spec.dim):
            raise ValueError(f"action must have shape ({tensor.shape[0]}, {self.action_spec.dim}), "
                             f"got {np.shape(action)}")
        with torch.no_grad():
            q = self._q_value(tensor, self._tensor(action_array)).cpu().numpy()
        return q[0] if single else q

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training bit-identically: networks, target networks,
        optimisers, the update counter and the generator state, tagged with the algorithm's
        name, config and spaces (checked by :meth:`load_state_dict`)."""
        return {
            "algorithm": self.name,
            "config": asdict(self.config),
            "obs_dim": self.obs_dim,
            "action_spec": self.action_spec.to_dict(),
            "num_updates": self.num_updates,
            "generator": self.generator.get_state(),
            "parts": {name: part.state_dict() for name, part in self._parts().items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`. Raises ValueError, before changing anything, when the
        state comes from another algorithm, another observation/action space, or another
        config (e.g. a different network size), naming what differs."""
        if not isinstance(state, Mapping) or "algorithm" not in state or "parts" not in state:
            raise ValueError("not a marl-rec algorithm state dict (missing 'algorithm'/'parts' keys)")
        if state["algorithm"] != self.name:
            raise ValueError(f"state dict is from algorithm {state['algorithm']!r}, cannot load it "
                             f"into {self.name!r}")
        if state.get("obs_dim") != self.obs_dim:
            raise ValueError(f"state dict has obs_dim={state.get('obs_dim')}, this {self.name} has "
                             f"obs_dim={self.obs_dim}")
        if state.get("action_spec") != self.action_spec.to_dict():
            raise ValueError(f"state dict has action_spec={state.get('action_spec')}, this {self.name} "
                             f"has {self.action_spec.to_dict()}")
        saved, own = dict(state.get("config", {})), asdict(self.config)
        # a field the checkpoint lacks was added to the config after it was saved: the run behaved
        # as the field's default, so it matches a config that has the default there
        differences = [f"{f.name}: checkpoint {saved.get(f.name, '<missing>')!r} vs this "
                       f"{own[f.name]!r}" for f in fields(self.config)
                       if _normalised(saved.get(f.name, _default(f))) != _normalised(own[f.name])]
        if differences:
            raise ValueError(f"{self.name} state dict was saved with a different config: "
                             + "; ".join(differences))
        parts = self._parts()
        if set(state["parts"]) != set(parts):
            raise ValueError(f"{self.name} state dict has parts {sorted(state['parts'])}, expected "
                             f"{sorted(parts)}")
        for name, part in parts.items():  # shapes too, in case a config field was edited by hand
            if isinstance(part, nn.Module):
                for key, value in part.state_dict().items():
                    other = state["parts"][name].get(key)
                    if other is None or tuple(other.shape) != tuple(value.shape):
                        raise ValueError(f"{self.name} state dict: {name}.{key} has shape "
                                         f"{None if other is None else tuple(other.shape)}, "
                                         f"expected {tuple(value.shape)}")
        generator_state = state["generator"]
        if tuple(generator_state.shape) != tuple(self.generator.get_state().shape):
            raise ValueError(f"{self.name} state dict: generator state comes from another device "
                             f"type (this algorithm runs on {self.device})")
        for name, part in parts.items():
            part.load_state_dict(state["parts"][name])
        self.num_updates = int(state["num_updates"])
        self.generator.set_state(generator_state)


def _default(field: Any) -> Any:
    """A dataclass field's default value (a unique sentinel when it has none)."""
    if field.default is not MISSING:
        return field.default
    return field.default_factory() if field.default_factory is not MISSING else _NO_DEFAULT


_NO_DEFAULT = object()


def _normalised(value: Any) -> Any:
    """Lists and tuples compare equal (a config may come back from Hydra/JSON with lists)."""
    if isinstance(value, (list, tuple)):
        return tuple(_normalised(v) for v in value)
    return value
