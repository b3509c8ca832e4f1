"""Compose the installed Hydra config (``marl_rec.conf``) with the project's schemas, as the CLI does."""
from __future__ import annotations

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from marl_rec.schema import register_schemas


def compose_config(overrides: list[str]) -> DictConfig:
    GlobalHydra.instance().clear()
    register_schemas()
    with initialize_config_module(config_module="marl_rec.conf", version_base="1.3"):
        return compose(config_name="config", overrides=overrides)
