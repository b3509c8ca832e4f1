"""The user simulator and the PettingZoo / Gymnasium environments built on it (no torch).

Importing ``envs`` registers the environments:

- PettingZoo parallel registry: ``marl_rec/FusionRanking-v0`` (also in the AEC registry
  through ``parallel_to_aec``);
- Gymnasium: ``marl_rec/FusionRankingGym-v0``.
"""

from marl_rec.envs.registration import register_all
from marl_rec.envs.simulator import NUM_TASKS, TASKS, SimulatorConfig, StepResult, UserSimulator, World

register_all()

__all__ = ["NUM_TASKS", "TASKS", "SimulatorConfig", "StepResult", "UserSimulator", "World"]
