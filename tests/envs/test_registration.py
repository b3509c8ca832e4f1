"""One id per environment across PettingZoo's and Gymnasium's registries, as the table in
marl_rec.envs.registration documents it."""

from __future__ import annotations

import warnings

import gymnasium
import pettingzoo
import pytest
from gymnasium.utils.env_checker import check_env

import marl_rec.envs
from marl_rec.envs import registration
from marl_rec.envs.fusion_env import FusionRankingEnv, FusionRankingGymEnv
from marl_rec.envs.hierarchical import HierarchicalInterestEnv
from marl_rec.envs.joint_rec_ads import JointRecAdsEnv

SMALL = dict(max_requests=6, items_per_topic=40, ads_per_topic=6)
TABLE = {  # id: (parallel class, AEC's unwrapped class, Gymnasium class); None = not in that registry
    "marl_rec/FusionRanking-v0": (FusionRankingEnv, FusionRankingEnv, FusionRankingGymEnv),
    "marl_rec/JointRecAds-v0": (JointRecAdsEnv, JointRecAdsEnv, None),
    "marl_rec/HierarchicalInterest-v0": (None, HierarchicalInterestEnv, None),
}


@pytest.mark.parametrize("env_id", sorted(TABLE))
def test_each_id_builds_the_documented_form_in_each_registry(env_id):
    parallel_cls, aec_cls, gym_cls = TABLE[env_id]
    assert env_id in registration.__doc__ and env_id in marl_rec.envs.__doc__
    if parallel_cls is None:
        assert env_id not in pettingzoo.parallel_registry
    else:
        assert isinstance(pettingzoo.make("parallel", env_id, **SMALL), parallel_cls)
    assert isinstance(pettingzoo.make("aec", env_id, **SMALL).unwrapped, aec_cls)
    if gym_cls is None:
        assert env_id not in gymnasium.registry
    else:
        assert isinstance(gymnasium.make(env_id, **SMALL).unwrapped, gym_cls)
    registered = {i for i in [*pettingzoo.parallel_registry, *pettingzoo.aec_registry, *gymnasium.registry]
                  if i.startswith("marl_rec/")}
    assert registered == set(TABLE) | {"marl_rec/FusionRankingGym-v0"}  # nothing undocumented


def test_the_gymnasium_name_users_try_passes_check_env_with_rendering():
    env = gymnasium.make("marl_rec/FusionRanking-v0", render_mode="rgb_array", max_requests=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # float32 Box precision notes
        check_env(env.unwrapped)  # the render check included
    alias = gymnasium.make("marl_rec/FusionRankingGym-v0", max_requests=5)
    assert type(alias.unwrapped) is type(env.unwrapped)
