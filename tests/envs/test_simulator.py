"""The batched user simulator (envs/simulator.py): config validation, world, shapes, seeding,
the lean one-user path, frozen users, sampling distributions and the ad trade-off."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from marl_rec.envs.rollout import run_sessions
from marl_rec.envs.simulator import (NUM_TASKS, SimulatorConfig, UserSimulator, World, all_finite,
                            observation_names, standard_normal_f32)


@pytest.fixture(scope="module")
def sim() -> UserSimulator:
    return UserSimulator(SimulatorConfig())


def rollout(sim: UserSimulator, batch: int, seed: int, steps: int, action_seed: int = 99):
    """Observations, rewards and termination flags of ``steps`` requests under random actions."""
    actions = np.random.default_rng(action_seed).uniform(-1.0, 1.0, (steps, batch, NUM_TASKS))
    out = [sim.reset(batch, np.random.default_rng(seed))]
    for action in actions:
        result = sim.step(action)
        out += [result.observation, result.reward, result.terminated, result.truncated]
    return out


# ---------------------------------------------------------------------------- config and world
@pytest.mark.parametrize("field,value", [
    ("num_topics", 0), ("slate_size", 0), ("max_requests", 0), ("topic_graph_neighbours", 0),
    ("topic_graph_rewire", 1.5), ("base_leave", -0.1), ("prediction_noise", -1.0),
    ("max_duration", 0.0), ("fusion_priors", (0.1, 0.1, 0.1)), ("fusion_priors", (0.1, 0.1, 0.0, 0.1, 0.1)),
    ("reward_weights", (1.0,)), ("clickbait_sensitivity", (2.0, 1.0)), ("observed_candidates", -1),
])
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SimulatorConfig(**{field: value})


def test_config_rejects_slate_larger_than_candidates():
    with pytest.raises(ValueError, match="slate_size"):
        SimulatorConfig(slate_size=10, num_candidates=8)


def test_config_stores_lists_as_tuples():
    config = SimulatorConfig(fusion_priors=[0.1, 0.1, 0.1, 0.1, 0.1], clickbait_sensitivity=[1, 2])
    assert config.fusion_priors == (0.1, 0.1, 0.1, 0.1, 0.1)
    assert config.clickbait_sensitivity == (1.0, 2.0)
    hash(config)  # frozen and hashable


@pytest.mark.parametrize("num_topics", [1, 2, 3, 4, 5, 8, 20])
def test_world_builds_for_any_topic_count(num_topics):
    config = SimulatorConfig(num_topics=num_topics, items_per_topic=10, ads_per_topic=2)
    world = World.build(config)
    assert world.graph.number_of_nodes() == num_topics
    np.testing.assert_allclose(world.topic_transition.sum(1), 1.0)
    assert (world.topic_transition >= 0).all()
    sim = UserSimulator(config)
    obs = sim.reset(70, np.random.default_rng(0))  # >= 64 users: the vectorised topic sampler
    for _ in range(5):
        result = sim.step(np.zeros((70, NUM_TASKS)), np.ones(70, dtype=np.int64))
        assert np.isfinite(result.observation).all()
    assert obs.shape == (70, config.obs_dim)


def test_world_is_fixed_by_its_seed():
    a, b = World.build(SimulatorConfig(world_seed=3)), World.build(SimulatorConfig(world_seed=3))
    np.testing.assert_array_equal(a.item_quality, b.item_quality)
    assert not np.array_equal(a.item_quality, World.build(SimulatorConfig(world_seed=4)).item_quality)


def test_world_must_match_the_config():
    world = World.build(SimulatorConfig(num_topics=4))
    with pytest.raises(ValueError, match="world does not match"):
        UserSimulator(SimulatorConfig(num_topics=5), world=world)


# ------------------------------------------------------------------------ shapes and contracts
def test_step_shapes_dtypes_and_ranges(sim):
    b, c = 300, sim.config
    obs = sim.reset(b, np.random.default_rng(1))
    assert obs.shape == (b, c.obs_dim) and obs.dtype == np.float32
    assert len(observation_names(c)) == c.obs_dim
    assert sim.cand_pred.shape == sim.cand_true.shape == sim.cand_log_pred.shape == (b, c.num_candidates, 5)
    np.testing.assert_allclose(sim.cand_log_pred, np.log(sim.cand_pred + np.array(c.fusion_priors)), atol=1e-6)
    result = sim.step(np.random.default_rng(2).uniform(-3, 3, (b, NUM_TASKS)))  # clipped, not rejected
    info = result.info
    assert result.observation.shape == (b, c.obs_dim) and result.observation.dtype == np.float32
    assert ((result.observation >= 0) & (result.observation <= 1)).all()
    assert result.reward.shape == result.terminated.shape == result.truncated.shape == (b,)
    assert info["components"].shape == (b, NUM_TASKS) and info["clicks"].shape == (b, c.slate_size)
    np.testing.assert_allclose(result.reward, info["components"] @ np.array(c.reward_weights))
    np.testing.assert_array_equal(info["components"][:, 0], info["clicks"].sum(1))
    assert (info["components"][:, 1] <= info["components"][:, 0]).all()  # likes need clicks
    assert not (result.terminated & result.truncated).any()
    assert (info["return_probability"][~(result.terminated | result.truncated)] == 0).all()
    assert set(info) >= {"true_utility", "satisfaction", "ad_shown", "ad_click", "ad_revenue", "ad_id",
                         "slate_items", "active", "negative_feedback"}
    assert ((info["negative_feedback"] >= 0) & (info["negative_feedback"] <= c.slate_size)).all()
    # the observed candidates: the top ones by predicted click, with their five predictions
    names = observation_names(c)
    first = names.index("candidate0_pred_click")
    block = result.observation[:, first:first + 5 * c.observed_candidates].reshape(b, c.observed_candidates, 5)
    expected = -np.sort(-sim.cand_pred[..., 0], axis=1)[:, :c.observed_candidates]
    np.testing.assert_array_equal(block[..., 0], np.clip(expected, 0, 1))
    assert names[-1] == "satisfaction_signal"


def test_observed_candidates_are_at_most_the_candidates():
    assert SimulatorConfig(num_candidates=6, slate_size=3).num_observed_candidates == 6
    assert SimulatorConfig(num_candidates=6, slate_size=3, observed_candidates=4).obs_dim == \
        SimulatorConfig(observed_candidates=0).obs_dim + 20


def test_summary_only_observation_is_an_option():
    config = SimulatorConfig(observed_candidates=0)
    sim = UserSimulator(config)
    obs = sim.reset(20, np.random.default_rng(0))
    assert obs.shape == (20, config.summary_dim) == (20, config.obs_dim)
    full = UserSimulator(SimulatorConfig()).reset(20, np.random.default_rng(0))
    # the same user summary around the candidate block
    summary = 2 * config.num_topics + 15
    np.testing.assert_array_equal(obs[:, :summary], full[:, :summary])
    np.testing.assert_array_equal(obs[:, -5:], full[:, -5:])


def test_negative_feedback_reveals_the_items_utility_for_the_user(sim):
    """The negative-feedback task carries the trade-off: its true probability falls with the
    candidate's utility for its user (clickbait × sensitivity, low quality), its prediction
    is that plus independent noise, and in the legacy world it carries nothing."""
    sim.reset(2000, np.random.default_rng(7))
    utility = sim.cand_utility.ravel()
    true_negative = sim.cand_true[..., 4].ravel()
    assert np.corrcoef(utility, true_negative)[0, 1] < -0.8
    estimate = sim.predicted_utility().ravel()
    assert np.corrcoef(utility, estimate)[0, 1] ** 2 > 0.7  # R² of the platform's utility estimate
    legacy = UserSimulator(SimulatorConfig.legacy())
    legacy.reset(2000, np.random.default_rng(7))
    assert abs(np.corrcoef(legacy.cand_utility.ravel(), legacy.cand_pred[..., 4].ravel())[0, 1]) < 0.05
    assert legacy.config.obs_dim == legacy.config.summary_dim


def test_every_action_direction_changes_the_ranking(sim):
    """No redundant action direction: moving the action along any unit vector (or along the
    all-ones direction, redundant under the former ``w = 10 ** a`` for every task) changes
    some user's slate."""
    b = 200
    sim.reset(b, np.random.default_rng(5))
    base = np.random.default_rng(6).uniform(-0.5, 0.5, (b, 4))
    slates = sim.rank(base)
    for direction in list(np.eye(4)) + [np.ones(4), -np.ones(4)]:
        moved = sim.rank(base + 0.5 * direction)
        assert (moved != slates).any(), f"direction {direction} leaves every slate unchanged"


def test_rank_is_the_top_k_of_the_fused_scores(sim):
    sim.reset(50, np.random.default_rng(3))
    action = np.random.default_rng(4).uniform(-1, 1, (50, NUM_TASKS))
    scores = sim.fused_scores(action)
    slate = sim.rank(action)
    expected = np.argsort(-scores, axis=1)[:, :sim.config.slate_size]
    np.testing.assert_array_equal(np.take_along_axis(scores, slate, 1), np.take_along_axis(scores, expected, 1))
    # the click weight is fixed at 1: the other weights are relative to it, and a + c·1 ranks differently
    weights = sim.fusion_weights(np.full((50, 4), 0.5))
    np.testing.assert_allclose(weights[:, 0], 1.0)
    np.testing.assert_allclose(weights[:, 1:4], 10 ** 0.5)
    np.testing.assert_allclose(weights[:, 4], -10 ** 0.5)  # negative feedback lowers the score


@pytest.mark.parametrize("bad,message", [
    (np.zeros((5, 3)), "shape"), (np.zeros(4), "shape"),
    (np.full((5, 4), np.nan), "NaN"), (np.full((5, 4), np.inf), "NaN or infinite"),
])
def test_step_rejects_bad_actions(sim, bad, message):
    sim.reset(5, np.random.default_rng(0))
    with pytest.raises(ValueError, match=message):
        sim.step(bad)


@pytest.mark.parametrize("rows", [1, 20])  # one user's action (checked as Python floats), a batch's (numpy)
def test_all_finite_finds_any_single_bad_entry(rows):
    values = np.zeros((rows, 4))
    assert all_finite(values)
    for position in (0, values.size - 1):
        for bad in (np.nan, np.inf, -np.inf):
            values.flat[position] = bad
            assert not all_finite(values)
            values.flat[position] = 0.0


def test_step_rejects_bad_ad_slots(sim):
    sim.reset(5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="ad_slot"):
        sim.step(np.zeros((5, 4)), np.full(5, sim.config.slate_size + 1))
    with pytest.raises(ValueError, match="ad_slot"):
        sim.step(np.zeros((5, 4)), np.zeros(4, dtype=np.int64))


def test_reset_rejects_bad_arguments(sim):
    with pytest.raises(ValueError, match="batch_size"):
        sim.reset(0, np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        sim.reset(3, 0)


# ------------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("batch", [1, 7, 300])
def test_same_seed_same_trajectories_different_seed_differs(sim, batch):
    a, b = rollout(sim, batch, 11, 40), rollout(sim, batch, 11, 40)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    c = rollout(sim, batch, 12, 40)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))


def test_one_user_path_matches_the_batched_path():
    """B = 1 runs a lean scalar path; it must make the same draws and the same arithmetic."""
    def run(lean: bool, seed: int):
        sim = UserSimulator(SimulatorConfig())
        sim._single_user_path = lean
        rng, actions = np.random.default_rng(seed), np.random.default_rng(seed + 1)
        out = [sim.reset(1, rng)]
        for i in range(400):
            result = sim.step(actions.uniform(-1.2, 1.2, (1, NUM_TASKS)))
            out += [result.observation, result.reward, result.terminated, result.truncated]
            out += [np.asarray(v) for _, v in sorted(result.info.items())]
            if result.terminated[0] or result.truncated[0]:
                mask = np.ones(1, dtype=bool)
                out.append(sim.reset_users(mask) if i % 2 else sim.start_new_sessions(mask))
        return out + [v for _, v in sorted(sim.state.items())]

    for seed in range(3):
        lean, batched = run(True, seed), run(False, seed)
        assert len(lean) == len(batched)
        for x, y in zip(lean, batched):
            assert x.dtype == y.dtype and x.shape == y.shape
            if x.dtype.kind == "f":  # math.exp and numpy's exp may differ in the last bit
                np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-15)
            else:
                np.testing.assert_array_equal(x, y)


# ------------------------------------------------------------------------ sessions and users
def test_done_users_are_frozen_and_earn_nothing(sim):
    b = 200
    sim.reset(b, np.random.default_rng(5))
    while not sim.done.any():
        sim.step(np.zeros((b, NUM_TASKS)))
    done = sim.done.copy()
    before = {key: value[done].copy() for key, value in sim.state.items()}
    obs_before = sim.observe()[done]
    result = sim.step(np.zeros((b, NUM_TASKS)), np.ones(b, dtype=np.int64))
    assert (result.reward[done] == 0).all() and not result.info["clicks"][done].any()
    assert not (result.terminated[done] | result.truncated[done]).any()
    assert not result.info["ad_shown"][done].any() and not result.info["active"][done].any()
    for key, value in before.items():
        np.testing.assert_array_equal(sim.state[key][done], value, err_msg=key)
    np.testing.assert_array_equal(result.observation[done], obs_before)


def test_reset_users_and_new_sessions(sim):
    b = 100
    sim.reset(b, np.random.default_rng(6))
    while sim.done.sum() < 10:
        sim.step(np.zeros((b, NUM_TASKS)))
    done = sim.done.copy()
    long_term = sim.state["long_term"].copy()
    sim.start_new_sessions(done)
    assert not sim.done.any()
    assert (sim.state["session_index"][done] == 1).all() and (sim.state["request"][done] == 0).all()
    np.testing.assert_array_equal(sim.state["long_term"], long_term)  # the same users came back
    sim.reset_users(np.arange(b) < 3)
    assert not np.array_equal(sim.state["long_term"][:3], long_term[:3])  # new users
    np.testing.assert_array_equal(sim.state["long_term"][3:], long_term[3:])


def test_sessions_end_by_leaving_or_truncation():
    sim = UserSimulator(SimulatorConfig(max_requests=8))
    stats = run_sessions(lambda s, obs: np.zeros((obs.shape[0], NUM_TASKS)), 500, np.random.default_rng(0),
                         sim=sim)
    assert stats.lengths.max() == 8 and stats.lengths.min() >= 1
    assert stats.terminated.any() and not stats.terminated.all()
    np.testing.assert_array_equal(stats.lengths[~stats.terminated], 8)


# -------------------------------------------------------------------------- distributions
def test_box_muller_normals_are_standard_normal():
    rng = np.random.default_rng(0)
    out = np.empty(200_001, dtype=np.float32)  # odd size, above the Box–Muller threshold
    z = standard_normal_f32(rng, out)
    assert z is out and np.isfinite(z).all()
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1.0) < 0.01
    assert stats.kstest(z, "norm").pvalue > 1e-3
    # the two variates of a pair share a radius: independent only if Box–Muller is right
    first, second = z[:100_000], z[100_000:200_000]
    assert abs(np.corrcoef(first, second)[0, 1]) < 0.01
    assert abs(np.corrcoef(first**2, second**2)[0, 1]) < 0.01


@pytest.mark.parametrize("batch", [20, 3000])  # binary-search and vectorised topic samplers
def test_retrieval_follows_the_topic_distribution(batch):
    config = SimulatorConfig()
    sim = UserSimulator(config)
    sim.reset(batch, np.random.default_rng(7))
    s, t = sim.state, config.num_topics
    probs = 0.4 * s["profile"] + 0.3 * s["recent_topics"] + 0.3 / t
    probs /= probs.sum(1, keepdims=True)
    expected = probs.sum(0) * config.num_candidates
    counts = np.zeros(t)
    rounds = max(1, 60_000 // (batch * config.num_candidates))
    for _ in range(rounds):
        sim._retrieve(None)
        counts += np.bincount(sim.cand_topics.ravel(), minlength=t)
        np.testing.assert_array_equal(sim.cand_topics, sim.cand_items // config.items_per_topic)
    assert stats.chisquare(counts, expected * rounds).pvalue > 1e-3
    within = (sim.cand_items % config.items_per_topic).ravel()
    assert within.min() >= 0 and within.max() < config.items_per_topic


def test_predictions_are_noisy_truths(sim):
    """The multi-task model: logit(p̂) = logit(p) + N(0, prediction_noise²) for click/like/share."""
    sim.reset(4000, np.random.default_rng(8))
    true, pred = sim.cand_true[..., :3].astype(np.float64), sim.cand_pred[..., :3].astype(np.float64)
    logit = lambda p: np.log(p) - np.log1p(-p)  # noqa: E731
    error = (logit(np.clip(pred, 1e-6, 1 - 1e-6)) - logit(np.clip(true, 1e-6, 1 - 1e-6))).ravel()
    error = error[np.abs(error) < 10]
    assert abs(error.mean()) < 0.01
    assert abs(error.std() - sim.config.prediction_noise) < 0.01


def test_the_observation_reveals_no_latent_state(sim):
    """Satisfaction is latent: only a noisy measured signal of it enters the observation."""
    sim.reset(2000, np.random.default_rng(9))
    for _ in range(5):
        result = sim.step(np.zeros((2000, NUM_TASKS)))
    live = ~sim.done
    signal = result.observation[live, observation_names(sim.config).index("satisfaction_signal")]
    assert not np.allclose(signal, sim.state["satisfaction"][live], atol=0.05)
    assert np.corrcoef(signal, sim.state["satisfaction"][live])[0, 1] > 0.5


def test_ads_earn_revenue_and_shorten_sessions():
    """Trade-off (3): an ad on every request vs none, same users (seed), 2,000 sessions each."""
    sim = UserSimulator(SimulatorConfig())
    neutral = lambda s, obs: np.zeros((obs.shape[0], NUM_TASKS))  # noqa: E731
    no_ads = run_sessions(neutral, 2000, np.random.default_rng(21), sim=sim)
    ads = run_sessions(neutral, 2000, np.random.default_rng(21), sim=sim,
                       ad_policy=lambda s, obs: np.ones(obs.shape[0], dtype=np.int64))
    assert no_ads.ad_revenue.sum() == 0 and (ads.ads_shown == ads.lengths).all()
    assert ads.ad_revenue.mean() > 0.5
    assert ads.lengths.mean() < 0.8 * no_ads.lengths.mean()
    assert ads.returns.mean() < no_ads.returns.mean()


def test_run_sessions_rejects_bad_arguments(sim):
    policy = lambda s, obs: np.zeros((obs.shape[0], NUM_TASKS))  # noqa: E731
    with pytest.raises(ValueError, match="num_users"):
        run_sessions(policy, 0, np.random.default_rng(0), sim=sim)
    with pytest.raises(ValueError, match="disagree"):
        run_sessions(policy, 5, np.random.default_rng(0), config=SimulatorConfig(max_requests=3), sim=sim)


def test_legacy_world_is_a_config_preset():
    """``env=fusion_legacy`` builds the world before issue #16 (SimulatorConfig.legacy())."""
    from hydra.utils import instantiate
    from hydra_config import compose_config

    env = instantiate(compose_config(["env=fusion_legacy"]).env)
    assert env.config == SimulatorConfig.legacy()
    assert env.config.negative_utility_slope == 0.0 and env.config.obs_dim == env.config.summary_dim
