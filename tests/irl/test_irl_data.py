"""Logged data with the true utility beside it, features, episode splits, relabelling."""

import numpy as np
import pytest
from marl_rec.agents.policies import RandomPolicy
from marl_rec.envs.simulator import SimulatorConfig, UserSimulator
from marl_rec.irl.data import (
    AD_FEATURES,
    CONSUMED_FEATURES,
    SLATE_FEATURES,
    _UtilityRecorder,
    collect_with_utility,
    consumed_feature_names,
    consumed_features,
    feature_columns,
    feature_dim,
    logging_consumed,
    relabel,
    slate_features,
    transition_features,
)
from marl_rec.irl.metrics import pearson


@pytest.fixture(scope="module")
def logged():
    sim = UserSimulator(SimulatorConfig(items_per_topic=40, ads_per_topic=2, max_requests=12))
    rng = np.random.default_rng(0)
    return collect_with_utility(sim, RandomPolicy(rng), 3000, rng, batch_size=128)


def test_true_utility_rides_along_and_is_hidden_from_the_dataset(logged):
    d = logged.dataset
    assert d.component_names == ["click", "like", "share", "watch"]
    assert d.reward_components.shape == (len(d), 4)
    assert logged.true_utility.shape == (len(d),)
    # utility comes only from clicked items; engagement reward matches the components
    no_click = d.reward_components[:, 0] == 0
    assert no_click.any() and np.all(logged.true_utility[no_click] == 0)
    weights = np.asarray(SimulatorConfig().reward_weights, dtype=np.float32)
    assert np.allclose(d.rewards, d.reward_components @ weights, atol=1e-4)


def test_same_seed_same_data():
    sim = UserSimulator(SimulatorConfig(items_per_topic=40, ads_per_topic=2, max_requests=12))
    a = collect_with_utility(sim, RandomPolicy(np.random.default_rng(1)), 500, np.random.default_rng(2), 32)
    b = collect_with_utility(sim, RandomPolicy(np.random.default_rng(1)), 500, np.random.default_rng(2), 32)
    assert np.array_equal(a.true_utility, b.true_utility)
    assert np.array_equal(a.dataset.observations, b.dataset.observations)


def test_features_and_their_widths(logged):
    d = logged.dataset
    full = transition_features(d, "transition")
    for name in ("outcome", "state_action", "logged", "transition"):
        x = transition_features(d, name)
        assert x.dtype == np.float32 and x.shape == (len(d), feature_dim(d.obs_dim, 4, 4, name))
        # every feature set is a subset of the transition layout's columns (the Evaluator relies on it)
        assert np.array_equal(full[:, feature_columns(d.obs_dim, 4, 4, name)], x)
    assert np.array_equal(transition_features(d, "outcome"), d.reward_components)
    x = transition_features(d, "transition", np.arange(3))
    assert np.array_equal(x[:, -d.obs_dim:], d.next_observations[:3])
    with pytest.raises(ValueError, match="feature_set"):
        transition_features(d, "pixels")


def test_split_by_episodes_keeps_users_apart(logged):
    first, rest = logged.split_episodes(0.7, np.random.default_rng(0))
    assert len(first.dataset) + len(rest.dataset) == len(logged.dataset)
    assert len(first.dataset.episode_bounds()) + len(rest.dataset.episode_bounds()) == \
        len(logged.dataset.episode_bounds())
    assert np.isclose(first.true_utility.sum() + rest.true_utility.sum(), logged.true_utility.sum())
    with pytest.raises(ValueError, match="fraction"):
        logged.split_episodes(1.0, np.random.default_rng(0))


def test_relabel_replaces_rewards_only(logged):
    d = logged.dataset
    original = d.rewards.copy()
    new = relabel(d, np.arange(len(d), dtype=np.float64))
    assert new.rewards.dtype == np.float32 and new.rewards[5] == 5.0
    assert np.array_equal(new.actions, d.actions) and np.array_equal(new.terminals, d.terminals)
    assert np.array_equal(d.rewards, original)  # the source dataset is untouched
    with pytest.raises(ValueError, match="shape"):
        relabel(d, np.zeros(len(d) + 1))


def test_slate_features_rank_the_observed_candidates_as_the_simulator_does():
    sim = UserSimulator(SimulatorConfig(items_per_topic=40, ads_per_topic=2, max_requests=10))
    rng = np.random.default_rng(0)
    obs = sim.reset(64, rng)
    action = rng.uniform(-1, 1, (64, sim.action_dim))
    features = slate_features(obs, action, sim.config)
    assert features.shape == (64, len(SLATE_FEATURES)) and features.dtype == np.float32
    # the simulator's own slate, valued with its own predictions
    slate = sim.rank(action)
    exam = 1.0 / (1.0 + sim.config.position_decay * np.arange(sim.config.slate_size))
    pred = np.take_along_axis(sim.cand_pred, slate[..., None], axis=1).astype(np.float64)
    clicks = pred[..., 0] * exam
    utility = np.take_along_axis(sim.predicted_utility(), slate, axis=1)
    assert np.allclose(features[:, 0], clicks.sum(1), atol=1e-4)
    assert np.allclose(features[:, 1:5], np.einsum("nk,nkp->np", clicks, pred[..., 1:]), atol=1e-4)
    assert np.allclose(features[:, 5], (clicks * utility).sum(1), atol=1e-3)
    # a different action shows a different slate
    assert not np.allclose(slate_features(obs, -action, sim.config), features)
    with pytest.raises(ValueError, match="observed_candidates"):
        slate_features(obs, action, SimulatorConfig.legacy())


def test_consumed_features_log_what_the_platform_knows_about_the_clicked_items():
    sim = UserSimulator(SimulatorConfig(items_per_topic=40, ads_per_topic=2, max_requests=10))
    rng = np.random.default_rng(0)
    logged = collect_with_utility(sim, RandomPolicy(rng), 2000, rng, batch_size=256, consumed=True)
    d = logged.dataset
    topic_names = [f"consumed_topic{t}" for t in range(sim.config.num_topics)]
    assert d.component_names == ["click", "like", "share", "watch", *CONSUMED_FEATURES, *topic_names]
    assert consumed_feature_names(sim.config.num_topics) == (*CONSUMED_FEATURES, *topic_names)
    c = dict(zip(d.component_names, d.reward_components.T))
    assert np.array_equal(c["consumed_items"], c["click"])  # one consumed item per click
    # every clicked item is counted under its topic
    assert np.array_equal(sum(c[n] for n in topic_names), c["click"])
    assert np.all(c["consumed_position"] >= 0) and np.all(c["consumed_position"][c["click"] == 0] == 0)
    # the clicked items' predicted utility carries the realised true utility (measured: 0.98),
    # far more than the click count does (0.86)
    assert pearson(c["consumed_predicted_utility"], logged.true_utility) > 0.9
    assert pearson(c["consumed_predicted_utility"], logged.true_utility) > pearson(c["click"], logged.true_utility) + 0.05
    # by hand: two requests, a 3-item slate
    preds = np.zeros((2, 3, 5))
    preds[..., 1] = [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]
    out = consumed_features(preds, np.array([[1.0, -1.0, 2.0], [0.5, 0.5, 0.5]]), np.array([[1, 0, 1], [0, 0, 0]]))
    assert np.allclose(out[0], [2, 0.4, 0, 0, 0, 3.0, 2]) and np.allclose(out[1], 0)
    with_topics = consumed_features(preds, np.zeros((2, 3)), np.array([[1, 0, 1], [0, 1, 0]]),
                                    topics=np.array([[2, 0, 2], [1, 1, 0]]), num_topics=3)
    assert np.array_equal(with_topics[:, 7:], [[0, 0, 2], [0, 1, 0]])
    with pytest.raises(ValueError, match="topics must be in 0..2"):
        consumed_features(preds, np.zeros((2, 3)), np.ones((2, 3)), topics=np.full((2, 3), 3), num_topics=3)
    with pytest.raises(ValueError, match="topics must be \\(B, K\\)"):
        consumed_features(preds, np.zeros((2, 3)), np.ones((2, 3)), num_topics=3)


def test_ad_features_describe_the_ad_the_simulator_serves():
    sim = UserSimulator(SimulatorConfig(items_per_topic=40, ads_per_topic=2, max_requests=10))
    sim.reset(64, np.random.default_rng(0))
    recorder = _UtilityRecorder(sim, consumed=True, ads=True)
    ad_slot = np.where(np.arange(64) % 2 == 0, 1 + np.arange(64) % 5, 0)
    result = recorder.step(np.zeros((64, sim.action_dim)), ad_slot)
    names = list(consumed_feature_names(sim.config.num_topics, ads=True))
    ads = dict(zip(AD_FEATURES, result.info["components"][:, 4 + names.index("ad_shown"):-1].T))
    shown = result.info["ad_shown"]
    assert np.array_equal(ads["ad_shown"], shown) and shown.sum() == 32
    assert np.array_equal(ads["ad_position"], np.where(shown, ad_slot, 0))
    assert np.array_equal(ads["ad_click"], result.info["ad_click"])
    # the bid of the ad the simulator served; the auction's p̂ for it is a probability
    assert np.allclose(ads["ad_bid"][shown], sim.world.ad_bid[result.info["ad_id"][shown]])
    assert np.all((ads["ad_predicted_click"][shown] > 0) & (ads["ad_predicted_click"][shown] < 1))
    assert np.all(ads["ad_bid"][~shown] == 0) and np.all(ads["ad_predicted_click"][~shown] == 0)
    with pytest.raises(ValueError, match="need ads=True"):
        _UtilityRecorder(sim, consumed=True).step(np.zeros((64, sim.action_dim)), ad_slot)


def test_a_simulator_logging_consumed_gives_the_logs_columns_without_the_truth():
    """What AIRL's generator sees when it rolls out: the columns collect_with_utility logs, no true utility."""
    config = SimulatorConfig(items_per_topic=40, ads_per_topic=2, max_requests=10)
    plain, wrapped = UserSimulator(config), logging_consumed(UserSimulator(config))
    plain.reset(32, np.random.default_rng(4))
    wrapped.reset(32, np.random.default_rng(4))
    action = np.random.default_rng(5).uniform(-1, 1, (32, 4))
    slate = plain.rank(action)
    predictions = np.take_along_axis(plain.cand_pred, slate[..., None], axis=1)
    predicted_utility = np.take_along_axis(plain.predicted_utility(), slate, axis=1)
    topics = np.take_along_axis(plain.cand_topics, slate, axis=1)
    a, b = plain.step(action), wrapped.step(action)
    expected = consumed_features(predictions, predicted_utility, a.info["clicks"], topics, config.num_topics)
    components = b.info["components"]
    assert components.shape == (32, 4 + len(consumed_feature_names(config.num_topics)))
    np.testing.assert_array_equal(components[:, :4], a.info["components"])
    np.testing.assert_allclose(components[:, 4:], expected)
    np.testing.assert_array_equal(b.info["true_utility"], a.info["true_utility"])  # still in info, not a column


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_consumed_columns_survive_the_log_schema(tmp_path, suffix):
    """A dataset with what was consumed, written as a logged-session table and read back: the
    consumed columns come back by name, as consumed columns of the schema, value for value."""
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    from marl_rec.data import from_logged_sessions
    from marl_rec.data.logs import write_logged_sessions

    sim = UserSimulator(SimulatorConfig(items_per_topic=40, ads_per_topic=2, max_requests=8))
    rng = np.random.default_rng(3)
    original = collect_with_utility(sim, RandomPolicy(rng), 300, rng, batch_size=32, consumed=True).dataset
    schema = write_logged_sessions(original, tmp_path / f"log{suffix}")
    assert schema.consumed_columns == consumed_feature_names(sim.config.num_topics)
    assert schema.component_columns == ("click", "like", "share", "watch")
    imported = from_logged_sessions(tmp_path / f"log{suffix}", schema)
    assert imported.component_names == original.component_names
    assert np.array_equal(imported.reward_components, original.reward_components)
    assert np.array_equal(imported.observations, original.observations)
