"""PettingZoo's factory convention in every environment module: ``raw_env`` is the AEC form
unwrapped, ``env`` is it inside the ``OrderEnforcingWrapper``, ``parallel_env`` the Parallel
form (where the agents act together); no factory is an alias of another."""
from __future__ import annotations

import importlib

import pytest
from pettingzoo import AECEnv, ParallelEnv
from pettingzoo.utils.wrappers import BaseWrapper, OrderEnforcingWrapper

KW = {"max_requests": 5, "items_per_topic": 20, "ads_per_topic": 4}
MODULES = {  # module: (keyword arguments of a small instance, has a Parallel form)
    "marl_rec.envs.fusion_env": (KW, True),
    "marl_rec.envs.joint_rec_ads": (KW, True),
    "marl_rec.envs.discrete_presets": ({}, True),
    "marl_rec.envs.hierarchical": ({"max_sessions": 2, "max_requests": 3}, False),
}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_raw_env_is_the_unwrapped_aec_form_and_env_enforces_the_order(name: str) -> None:
    module, (kwargs, parallel) = importlib.import_module(name), MODULES[name]
    assert module.raw_env is not module.env
    raw = module.raw_env(**kwargs)
    assert isinstance(raw, AECEnv) and not isinstance(raw, BaseWrapper)
    wrapped = module.env(**kwargs)
    assert isinstance(wrapped, OrderEnforcingWrapper) and type(wrapped.unwrapped) is type(raw.unwrapped)
    with pytest.raises(Exception, match="reset"):  # the wrapper refuses a step before reset
        wrapped.step(None)
    raw.reset(seed=0)
    assert raw.agent_selection in raw.agents
    if parallel:
        assert isinstance(module.parallel_env(**kwargs), ParallelEnv)
