"""render() on every environment (ansi, rgb_array, human; Gymnasium's make and vector env) and
state() / state_space on every multi-agent environment (PettingZoo's state_test)."""

from __future__ import annotations

import re
import warnings

import gymnasium
import numpy as np
import pettingzoo
import pytest
from pettingzoo.test import render_test, state_test
from pettingzoo.utils.conversions import aec_to_parallel, parallel_to_aec

import marl_rec.envs  # noqa: F401  (registers the environments)
from marl_rec.envs.fusion_env import AGENT, FusionRankingEnv, FusionRankingGymEnv
from marl_rec.envs.hierarchical import LONG_TERM, SHORT_TERM, HierarchicalInterestEnv, env as hierarchical_env
from marl_rec.envs.joint_rec_ads import ADVERTISER, RECOMMENDER, JointRecAdsEnv
from marl_rec.envs.render import RENDER_MODES

SMALL = dict(max_requests=8, items_per_topic=40, ads_per_topic=6)
ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+(-?\d+\.\d+)\s+((?:-?\d+\.\d+\s+)+)(yes|no)", re.M)


@pytest.fixture(autouse=True)
def _quiet_recommendations():
    with warnings.catch_warnings():  # PettingZoo's naming / space-type recommendations
        warnings.simplefilter("ignore", UserWarning)
        yield


def slate_rows(text: str) -> list[tuple[int, float, np.ndarray, bool]]:
    """(item, fused score, predictions, clicked) of each slate row of an ansi frame."""
    return [(int(m[2]), float(m[3]), np.array(m[4].split(), float), m[5] == "yes") for m in ROW.finditer(text)]


# --------------------------------------------------------------------------------- render
ENV_FACTORIES = {
    "fusion": lambda render_mode=None: parallel_to_aec(FusionRankingEnv(render_mode=render_mode, **SMALL)),
    "joint": lambda render_mode=None: parallel_to_aec(JointRecAdsEnv(render_mode=render_mode, **SMALL)),
    "hierarchical": lambda render_mode=None: hierarchical_env(render_mode=render_mode, max_sessions=3, **SMALL),
}


@pytest.mark.parametrize("name", sorted(ENV_FACTORIES))
def test_pettingzoo_render_test_passes(name, capsys):
    render_test(ENV_FACTORIES[name])  # every declared mode, "human" included (prints, returns None)
    assert "request" in capsys.readouterr().out


def test_ansi_shows_the_served_slate_its_clicks_and_the_reward():
    env = FusionRankingEnv(render_mode="ansi", **SMALL)
    env.reset(seed=3)
    assert "no request served yet" in env.render()
    env.action_space(AGENT).seed(0)
    for _ in range(4):
        action = env.action_space(AGENT).sample().astype(np.float32)
        # the slate the simulator is about to serve (its candidates change during step)
        slate = env.sim.rank(action[None].astype(np.float64))[0]
        items, preds = env.sim.cand_items[0, slate].copy(), env.sim.cand_pred[0, slate].copy()
        _, reward, terminated, truncated, info = env.step({AGENT: action})
        text = env.render()
        rows = slate_rows(text)
        assert [row[0] for row in rows] == items.tolist()
        np.testing.assert_allclose(np.stack([row[2] for row in rows]), preds, atol=6e-4)
        scores = [row[1] for row in rows]
        assert scores == sorted(scores, reverse=True)  # ranked by the fused score
        assert sum(row[3] for row in rows) == info[AGENT]["components"][0]  # clicks
        assert f"reward: {AGENT} {reward[AGENT]:.3f}" in text
        assert f"request_fraction={env.sim.observe()[0][-5]:.2f}" in text  # the observed state *now*
        if terminated[AGENT] or truncated[AGENT]:
            break


def test_rgb_array_is_an_image_that_changes_with_the_request():
    env = FusionRankingGymEnv(render_mode="rgb_array", **SMALL)
    env.reset(seed=1)
    blank = env.render()
    assert blank.dtype == np.uint8 and blank.ndim == 3 and blank.shape[2] == 3
    env.step(np.full(4, -1.0, np.float32))
    first = env.render()
    env.step(np.ones(4, np.float32))
    second = env.render()
    assert first.shape == blank.shape and not np.array_equal(first, blank) and not np.array_equal(first, second)


def test_rendering_does_not_change_trajectories():
    def run(render_mode):
        env, rng, out = JointRecAdsEnv(render_mode=render_mode, **SMALL), np.random.default_rng(2), []
        obs, _ = env.reset(seed=7)
        while env.agents:
            allowed = np.flatnonzero(obs[ADVERTISER]["action_mask"])
            actions = {RECOMMENDER: rng.uniform(-1, 1, 4).astype(np.float32), ADVERTISER: int(allowed[-1])}
            obs, rewards, *_ = env.step(actions)
            if render_mode:
                env.render()
            out += [obs[RECOMMENDER], rewards[RECOMMENDER], rewards[ADVERTISER]]
        return out

    plain, rendered = run(None), run("rgb_array")
    assert len(plain) == len(rendered)
    for a, b in zip(plain, rendered):
        np.testing.assert_array_equal(a, b)


def test_joint_env_marks_the_ad_slot_and_hierarchical_env_shows_the_goal():
    env = JointRecAdsEnv(render_mode="ansi", max_ad_share=1.0, **SMALL)
    env.reset(seed=0)
    _, _, _, _, info = env.step({RECOMMENDER: np.zeros(4, np.float32), ADVERTISER: 2})
    assert info[ADVERTISER]["ad_slot"] == 2
    text = env.render()
    row_two = next(line for line in text.splitlines() if line.strip().startswith("2 "))
    assert "ad served here" in row_two and "served slot 2" in text

    henv = HierarchicalInterestEnv(render_mode="ansi", max_sessions=2, **SMALL)
    henv.reset(seed=0)
    henv.step(np.array([1.0, -1.0], np.float32))  # goal (1, 0)
    henv.step(np.zeros(4, np.float32))
    text = henv.render()
    assert "goal: click_ceiling 1.00, negative_ceiling 0.00" in text and SHORT_TERM in text


def test_render_without_a_mode_warns_and_bad_modes_are_refused():
    for cls in (FusionRankingEnv, JointRecAdsEnv, HierarchicalInterestEnv, FusionRankingGymEnv):
        assert cls.metadata["render_modes"] == RENDER_MODES
        env = cls(**SMALL)
        env.reset(seed=0)
        with pytest.warns(UserWarning, match="without a render mode"):
            assert env.render() is None
        with pytest.raises(ValueError, match="render_mode 'bogus' is not supported"):
            cls(render_mode="bogus", **SMALL)


def test_gymnasium_make_and_vector_env_render():
    """What SB3's make_vec_env and video recorders do: render_mode='rgb_array' by default."""
    env = gymnasium.make("marl_rec/FusionRankingGym-v0", render_mode="rgb_array", max_requests=5)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    assert env.render().dtype == np.uint8
    frames = gymnasium.make("marl_rec/FusionRankingGym-v0", render_mode="rgb_array_list", max_requests=5)
    frames.reset(seed=0)
    frames.step(frames.action_space.sample())
    assert len(frames.render()) == 2  # RenderCollection: the reset frame and the step frame
    vec = gymnasium.make_vec("marl_rec/FusionRankingGym-v0", num_envs=2, vectorization_mode="sync",
                             render_mode="rgb_array", max_requests=5)
    vec.reset(seed=0)
    vec.step(vec.action_space.sample())
    images = vec.render()
    assert len(images) == 2 and all(image.ndim == 3 for image in images)
    vec.close()


# ---------------------------------------------------------------------------------- state
def test_state_test_passes_for_every_multi_agent_env():
    state_test(hierarchical_env(max_sessions=3, **SMALL), aec_to_parallel_or_none(), num_cycles=60)
    state_test(parallel_to_aec(JointRecAdsEnv(**SMALL)), JointRecAdsEnv(**SMALL), num_cycles=60)
    state_test(parallel_to_aec(FusionRankingEnv(**SMALL)), FusionRankingEnv(**SMALL), num_cycles=60)
    registered = pettingzoo.make("aec", "marl_rec/HierarchicalInterest-v0", max_sessions=2, **SMALL)
    assert registered.state_space.shape == HierarchicalInterestEnv(**SMALL).state_space.shape


def aec_to_parallel_or_none():
    """The hierarchical env acts at two time scales, so ``aec_to_parallel`` refuses it; PettingZoo's
    parallel state check only needs ``reset`` / ``state`` / ``state_space``, which the AEC env has."""
    with pytest.raises(AssertionError):
        aec_to_parallel(hierarchical_env(**SMALL))
    return HierarchicalInterestEnv(max_sessions=3, **SMALL)


def test_hierarchical_state_is_the_union_of_both_observations():
    env = HierarchicalInterestEnv(max_sessions=3, **SMALL)
    with pytest.raises(ValueError, match="reset"):
        env.state()
    env.reset(seed=4)
    d = env.sim_config.obs_dim
    for _ in range(20):
        agent = env.agent_selection
        if env.terminations[agent] or env.truncations[agent]:
            break
        state = env.state()
        assert env.state_space.contains(state)
        np.testing.assert_array_equal(state[:-2], env.observe(LONG_TERM))
        np.testing.assert_array_equal(np.concatenate([state[:d], state[-2:]]), env.observe(SHORT_TERM))
        env.step(env.action_space(agent).sample())
