"""Offline RL algorithms, one file each; all share marl_rec.nets.CriticEnsemble."""

from marl_rec.algos.base import OfflineAlgorithm

from marl_rec.contracts import ActionSpec, Batch
from marl_rec.algos.bc import BC, BCConfig
from marl_rec.algos.bcq import BCQ, BCQConfig
from marl_rec.algos.ddpg import DDPG, DDPGConfig
from marl_rec.algos.registry import ALGORITHMS, make_algorithm, make_config, register_algorithm
from marl_rec.algos.td3 import TD3, TD3Config

__all__ = ["ActionSpec", "Batch", "OfflineAlgorithm", "BC", "BCConfig", "BCQ", "BCQConfig", "DDPG",
           "DDPGConfig", "TD3", "TD3Config", "ALGORITHMS", "make_algorithm", "make_config",
           "register_algorithm"]
