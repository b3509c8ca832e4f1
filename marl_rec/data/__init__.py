"""Offline datasets: the columnar table, its storage, logged-session import, d3rlpy interop,
and collection from a simulator."""

from marl_rec.data.collect import collect
from marl_rec.data.d3rlpy_interop import from_d3rlpy, to_d3rlpy
from marl_rec.data.dataset import OfflineDataset, TensorSampler
from marl_rec.data.logs import LoggedSessionSchema, from_logged_sessions
from marl_rec.data.storage import load_dataset, save_dataset

__all__ = ["LoggedSessionSchema", "OfflineDataset", "TensorSampler", "collect", "from_d3rlpy",
           "from_logged_sessions", "load_dataset", "save_dataset", "to_d3rlpy"]
