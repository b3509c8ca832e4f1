"""Offline RL algorithms, one file each; all share marl_rec.nets.CriticEnsemble."""

from marl_rec.algos.base import ActionSpec, Batch, OfflineAlgorithm

__all__ = ["ActionSpec", "Batch", "OfflineAlgorithm"]
