"""The user simulator and the PettingZoo / Gymnasium environments built on it (no torch).

Importing ``marl_rec.envs`` registers the four environments (one id each; the table of which
registry holds which form is in :mod:`marl_rec.envs.registration`):

- ``FusionRankingEnv`` (``marl_rec/FusionRanking-v0``): one recommender choosing fusion weights
  per request; PettingZoo Parallel and AEC;
- ``FusionRankingGymEnv`` (``gymnasium.make("marl_rec/FusionRanking-v0")``, alias
  ``marl_rec/FusionRankingGym-v0``): its Gymnasium single-agent view (SB3 and the like);
- ``JointRecAdsEnv`` (``marl_rec/JointRecAds-v0``): recommender and advertiser on the same
  feed; PettingZoo Parallel and AEC;
- ``HierarchicalInterestEnv`` (``marl_rec/HierarchicalInterest-v0``): long-term and
  short-term controllers over a user's lifetime; PettingZoo AEC.
"""

from marl_rec.envs.registration import register_all
from marl_rec.envs.simulator import NUM_TASKS, TASKS, SimulatorConfig, StepResult, UserSimulator, World

register_all()

__all__ = ["NUM_TASKS", "TASKS", "SimulatorConfig", "StepResult", "UserSimulator", "World"]
