"""Hydra configs of marl-rec, shipped as the package marl_rec.conf (see pyproject.toml)."""
