"""Refuse command-line keys that the run's config does not have, with or without ``+``.

Hydra refuses an unknown key in a typed node (``train.num_update=5``) but suggests adding it
with ``+``, and ``+train.num_update=5`` or ``+evaluaton.ope=false`` then run with the default
settings: a typo that silently changes nothing. :func:`unknown_key_error` checks each key
override against the config composed with the command line's group choices (each choice of a
swept group, ``algo=td3,cql``, in turn: a key is known if one of them has it) and names the
unknown key and the nearest known ones. A key may be added only to a node without a schema —
the free-form groups (``data``, ``ope``, ``agent``, ``irl``, an ``env`` other than ``fusion``:
``_target_`` calls and experiment settings) — and under ``hydra``; the typed nodes (the top
level, ``train``, ``evaluation``, ``algo``, ``env=fusion``'s ``config``) have every key already.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from importlib import resources
from typing import Any

#: the groups whose nodes usually have no schema (named in the message)
FREE_FORM = ("data", "ope", "agent", "irl")


def _is_group(key: str) -> bool:
    """Whether ``key`` selects a config group (``algo``, ``experiment``, ``hydra/launcher``)."""
    if key.startswith("hydra/") or "/" in key:
        return True
    return "." not in key and resources.files("marl_rec.conf").joinpath(key).is_dir()


def _known_keys(node: Any, prefix: str = "") -> list[str]:
    from omegaconf import DictConfig

    keys = []
    if isinstance(node, DictConfig):
        for key in node.keys():
            name = f"{prefix}{key}"
            keys.append(name)
            child = node._get_node(key)
            if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
                keys.extend(_known_keys(child, f"{name}."))
    return keys


def _has_key_or_free_parent(config: Any, key: str) -> bool:
    """Whether ``config`` has ``key``, or its deepest existing parent is a node without a schema
    (a plain mapping, where Hydra's ``+`` legitimately adds keys)."""
    from omegaconf import DictConfig

    node = config
    for part in key.split("."):
        if not isinstance(node, DictConfig):
            return False
        if part not in node:
            return node._metadata.object_type in (None, dict)  # no dataclass schema behind it
        node = node._get_node(part)
    return True


def _compositions(group_choices: list[list[str]]) -> list[list[str]]:
    """Override lists to compose: every group at its first choice, then each other choice of a
    swept group in turn (not the full product: a key belongs to one group)."""
    first = [choices[0] for choices in group_choices]
    out = [first]
    for i, choices in enumerate(group_choices):
        out.extend(first[:i] + [choice] + first[i + 1:] for choice in choices[1:])
    return out


def unknown_key_error(argv: Sequence[str], config_name: str = "config") -> str | None:
    """The error message for the first key override in ``argv`` (the app's command line) that
    no composition of the config has, or None (also when the check cannot run: Hydra then
    reports whatever is wrong itself)."""
    try:
        from hydra import compose, initialize_config_module
        from hydra._internal.utils import get_args_parser
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.override_parser.overrides_parser import OverridesParser

        arguments = get_args_parser().parse_args(list(argv))
        if arguments.help or arguments.hydra_help or arguments.info or arguments.shell_completion:
            return None
        overrides = OverridesParser.create().parse_overrides(arguments.overrides)
    except (Exception, SystemExit):  # not ours to report: Hydra parses the command line again
        return None
    groups: list[list[str]] = []
    keys = []
    for override in overrides:
        key = override.key_or_group
        if override.is_delete() or key.startswith("hydra") or override.package:
            continue
        if _is_group(key):
            choices = (list(override.sweep_string_iterator()) if override.is_sweep_override()
                       else [override.get_value_element_as_str()])
            groups.append([f"{'+' if override.is_add() else ''}{key}={choice}" for choice in choices])
        else:
            keys.append((key, override.input_line))
    if not keys:
        return None
    try:
        from marl_rec.schema import register_schemas

        register_schemas()
        configs = []
        GlobalHydra.instance().clear()
        with initialize_config_module(config_module="marl_rec.conf", version_base="1.3"):
            for group_overrides in _compositions(groups) if groups else [[]]:
                configs.append(compose(config_name=config_name, overrides=group_overrides))
        GlobalHydra.instance().clear()
    except Exception:  # a bad group choice: Hydra's own message is the right one
        GlobalHydra.instance().clear()
        return None
    for key, line in keys:
        if any(_has_key_or_free_parent(config, key) for config in configs):
            continue
        known = sorted({k for config in configs for k in _known_keys(config)})
        parent = key.rpartition(".")[0]
        siblings = [k for k in known if k.rpartition(".")[0] == parent]
        close = difflib.get_close_matches(key, siblings or known, n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
        return (f"unknown config key {key!r} in {line!r}{hint}. Keys can be added (+key=value) only to nodes "
                f"without a schema (the free-form groups such as {', '.join(FREE_FORM)}); a typed node has every "
                f"key already (marl-rec --cfg job lists them).")
    return None
