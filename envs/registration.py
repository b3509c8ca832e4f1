"""Register marl-rec's environments with PettingZoo's and Gymnasium's registries (idempotent).

One id per environment; each registry holds the forms its clients can use:

| id                               | pettingzoo "parallel" | pettingzoo "aec"          | gymnasium            |
|----------------------------------|-----------------------|---------------------------|----------------------|
| marl_rec/FusionRanking-v0        | FusionRankingEnv      | parallel_to_aec of it     | FusionRankingGymEnv  |
| marl_rec/JointRecAds-v0          | JointRecAdsEnv        | parallel_to_aec of it     | — (two agents)       |
| marl_rec/HierarchicalInterest-v0 | — (two time scales)   | HierarchicalInterestEnv   | — (two agents)       |

(``pettingzoo.make("parallel" | "aec", id, **kwargs)``, ``gymnasium.make(id, **kwargs)``.)

``marl_rec/FusionRankingGym-v0`` stays registered in Gymnasium as an alias of
``marl_rec/FusionRanking-v0`` (the name used before the ids were unified). Every environment
takes ``render_mode`` (``"ansi"``, ``"rgb_array"``, ``"human"``) and its config's fields as
keyword arguments. The hierarchical env cannot be a Parallel env: its long-term agent acts once
per session, which ``aec_to_parallel`` refuses.
"""

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
GYM_ENVS = [
    ("marl_rec/FusionRanking-v0", "marl_rec.envs.fusion_env:FusionRankingGymEnv"),
    ("marl_rec/FusionRankingGym-v0", "marl_rec.envs.fusion_env:FusionRankingGymEnv"),  # alias (older name)
]


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
