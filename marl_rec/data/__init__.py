"""Offline datasets: the columnar table, its storage, and collection from a simulator."""

from marl_rec.data.collect import collect
from marl_rec.data.dataset import OfflineDataset, TensorSampler

__all__ = ["OfflineDataset", "TensorSampler", "collect"]
