"""Register marl-rec's environments with PettingZoo's and Gymnasium's registries (idempotent)."""

from __future__ import annotations

import gymnasium
import pettingzoo

# (id, "module:factory" for the parallel form, "module:factory" for the AEC form)
PARALLEL_ENVS = [
    ("marl_rec/FusionRanking-v0", "marl_rec.envs.fusion_env:parallel_env", "marl_rec.envs.fusion_env:env"),
    ("marl_rec/JointRecAds-v0", "marl_rec.envs.joint_rec_ads:parallel_env", "marl_rec.envs.joint_rec_ads:env"),
]
AEC_ENVS: list[tuple[str, str]] = [
    ("marl_rec/HierarchicalInterest-v0", "marl_rec.envs.hierarchical:env"),
]
GYM_ENVS = [("marl_rec/FusionRankingGym-v0", "marl_rec.envs.fusion_env:FusionRankingGymEnv")]


def register_all() -> None:
    for env_id, parallel_entry, aec_entry in PARALLEL_ENVS:
        if env_id not in pettingzoo.parallel_registry:
            pettingzoo.register("parallel", env_id, entry_point=parallel_entry)
        if env_id not in pettingzoo.aec_registry:
            pettingzoo.register("aec", env_id, entry_point=aec_entry)
    for env_id, entry in AEC_ENVS:
        if env_id not in pettingzoo.aec_registry:
            pettingzoo.register("aec", env_id, entry_point=entry)
    for env_id, entry in GYM_ENVS:
        if env_id not in gymnasium.registry:
            gymnasium.register(env_id, entry_point=entry)
