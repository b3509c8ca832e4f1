"""Multi-agent data: the batched joint env against JointRecAdsEnv, the ad-load cap, the advertiser
behaviour policies, collection, storage (round trip, atomicity, bad files) and validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from marl_rec.agents.multiagent_data import (COMPONENT_NAMES, EpsilonGreedyAdPolicy, RandomAdPolicy,
                                    ThresholdAdPolicy, collect_joint, evaluate_joint, relabel)
from marl_rec.agents.policies import ConstantPolicy, RandomPolicy
from marl_rec.envs.joint_rec_ads import ADVERTISER, RECOMMENDER, JointRecAdsBatch, JointRecAdsConfig, JointRecAdsEnv
from marl_rec.envs.simulator import SimulatorConfig, UserSimulator
from marl_rec.data import storage
from marl_rec.data.multiagent import JointSampler, MultiAgentDataset

SMALL = SimulatorConfig(max_requests=12, items_per_topic=40, ads_per_topic=6)


def small_env(**kwargs) -> JointRecAdsBatch:
    return JointRecAdsBatch(UserSimulator(SMALL), JointRecAdsConfig(**kwargs))


@pytest.fixture(scope="module")
def dataset() -> MultiAgentDataset:
    rng = np.random.default_rng(0)
    policies = {RECOMMENDER: RandomPolicy(rng), ADVERTISER: RandomAdPolicy(0.5, rng)}
    return collect_joint(small_env(), policies, 600, rng, batch_size=32, metadata={"pipeline": "test"})


# ----------------------------------------------------------------- the batched env
def test_batched_env_reproduces_the_pettingzoo_env_step_by_step():
    """B = 1: same seed, same actions (masked ones included) -> same observations, state,
    mask, rewards and info as JointRecAdsEnv, over several sessions."""
    for mode in ("cooperative", "mixed"):
        env = JointRecAdsEnv(config=JointRecAdsConfig(mode=mode, revenue_weight=3.0, max_ads_per_session=2),
                             simulator=SMALL)
        batch = JointRecAdsBatch(UserSimulator(SMALL), env.config)
        actions_rng = np.random.default_rng(1)
        for episode in range(3):
            obs, _ = env.reset(seed=10 + episode)
            flat = batch.reset(1, np.random.default_rng(10 + episode))
            while env.agents:
                np.testing.assert_array_equal(flat[RECOMMENDER][0], obs[RECOMMENDER])
                np.testing.assert_array_equal(flat[ADVERTISER][0], np.concatenate(
                    [obs[ADVERTISER]["observation"], obs[ADVERTISER]["action_mask"]]))
                np.testing.assert_array_equal(batch.state()[0], env.state())
                rec = actions_rng.uniform(-1, 1, 4).astype(np.float32)
                ad = int(actions_rng.integers(0, env.num_ad_actions))  # sometimes masked: served as no ad
                obs, rewards, terms, truncs, infos = env.step({RECOMMENDER: rec, ADVERTISER: ad})
                result = batch.step(rec[None].astype(np.float64), np.array([ad]))
                flat = result.observations
                for agent in (RECOMMENDER, ADVERTISER):
                    assert result.rewards[agent][0] == pytest.approx(rewards[agent], abs=1e-12)
                info = infos[ADVERTISER]
                assert result.revenue[0] == pytest.approx(info["revenue"])
                assert bool(result.info["invalid_action"][0]) == info["invalid_action"]
                assert int(result.info["ad_slot"][0]) == info["ad_slot"]
                assert bool(result.terminated[0]) == terms[RECOMMENDER]
                assert bool(result.truncated[0]) == truncs[RECOMMENDER]
            assert batch.done.all()


@pytest.mark.parametrize("share,cap", [(0.25, None), (0.5, 2), (0.0, None), (1.0, 3)])
def test_ad_load_cap_holds_whatever_the_advertiser_requests(share: float, cap: int | None):
    env = small_env(max_ad_share=share, max_ads_per_session=cap)
    rng = np.random.default_rng(2)
    env.reset(64, rng)
    while not env.done.all():
        active = ~env.done
        requested = rng.integers(0, env.num_ad_actions, 64)  # masked or not
        result = env.step(rng.uniform(-1, 1, (64, 4)), requested)
        assert (env.ads_shown <= share * env.requests + 1e-9).all()
        if cap is not None:
            assert (env.ads_shown <= cap).all()
        # a served ad is never a masked one, an invalid one is never served
        assert not (result.info["invalid_action"] & result.info["ad_shown"]).any()
        assert not (result.info["invalid_action"] & ~active).any()


def test_masked_ad_action_raises_in_raise_mode_and_leaves_the_batch_unchanged():
    env = small_env(max_ad_share=0.0, invalid_action="raise")
    env.reset(4, np.random.default_rng(0))
    before = {k: v.copy() for k, v in env.sim.state.items()}
    with pytest.raises(ValueError, match="violates the ad-load cap"):
        env.step(np.zeros((4, 4)), np.array([0, 0, 3, 0]))
    for key, value in before.items():
        np.testing.assert_array_equal(env.sim.state[key], value)
    assert env.requests.sum() == 0
    env.step(np.zeros((4, 4)), np.zeros(4, dtype=np.int64))  # allowed actions still work
    with pytest.raises(ValueError, match="0..5"):
        env.step(np.zeros((4, 4)), np.array([0, 0, 6, 0]))
    with pytest.raises(ValueError, match="integers"):
        env.step(np.zeros((4, 4)), np.array([0.0, 1.0, 0.0, 0.0]))


# ------------------------------------------------------------ behaviour policies
def _mask_obs(masks: np.ndarray) -> np.ndarray:
    """Flat advertiser observations whose last columns are ``masks`` (the rest is irrelevant)."""
    return np.concatenate([np.full((len(masks), 3), 0.5), masks.astype(np.float64)], axis=1)


@pytest.mark.parametrize("make", [
    lambda rng: RandomAdPolicy(0.4, rng),
    lambda rng: EpsilonGreedyAdPolicy(lambda sim, obs: ThresholdAdPolicy(2)(sim, obs), 0.3, rng),
])
def test_ad_behaviour_policies_respect_the_mask_with_exact_log_probs(make):
    rng = np.random.default_rng(3)
    policy = make(rng)
    sim = UserSimulator(SimulatorConfig(num_topics=1, items_per_topic=5, ads_per_topic=2, num_candidates=5))
    n = 40_000
    masks = np.ones((n, 6), dtype=np.int8)
    masks[n // 2:, 1:] = 0  # cap binding: only "no ad"
    obs = np.concatenate([np.full((n, sim.config.obs_dim), 0.9), _mask_obs(masks)[:, 3:]], axis=1)
    out = policy(sim, obs)
    assert out.action.dtype == np.int64
    assert (masks[np.arange(n), out.action] == 1).all()
    np.testing.assert_array_equal(out.log_prob[n // 2:], 0.0)
    # the log-probabilities are those of the empirical action frequencies
    free = slice(0, n // 2)
    freq = np.bincount(out.action[free], minlength=6) / (n // 2)
    for action in range(6):
        logged = out.log_prob[free][out.action[free] == action]
        if freq[action] == 0:
            continue
        assert np.ptp(logged) == 0.0
        assert np.exp(logged[0]) == pytest.approx(freq[action], abs=0.01)


def test_ad_policy_arguments_are_checked():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="ad_probability"):
        RandomAdPolicy(1.5, rng)
    with pytest.raises(ValueError, match="epsilon"):
        EpsilonGreedyAdPolicy(ThresholdAdPolicy(1), -0.1, rng)
    with pytest.raises(ValueError, match="slot"):
        ThresholdAdPolicy(0)


# --------------------------------------------------------------- the dataset
def test_collected_dataset_is_consistent(dataset: MultiAgentDataset):
    rec, ad = dataset.tables[RECOMMENDER], dataset.tables[ADVERTISER]
    assert len(dataset) >= 600 and dataset.agents == [RECOMMENDER, ADVERTISER]
    assert rec.action_spec.kind == "continuous" and ad.action_spec.num_actions == 6
    # the advertiser's flat observation is the global state; its mask allows every logged action
    np.testing.assert_array_equal(ad.observations, dataset.states)
    np.testing.assert_array_equal(ad.next_observations, dataset.next_states)
    masks = dataset.action_masks(ADVERTISER)
    assert masks[np.arange(len(ad)), ad.actions].all()
    assert (~masks[:, 1:]).any() and (ad.actions > 0).any()  # the cap did bind; ads were shown
    # rewards: cooperative team reward on both tables, from the stored components
    assert list(rec.component_names) == list(COMPONENT_NAMES)
    team = rec.reward_components[:, 4] + 4.0 * rec.reward_components[:, 5]
    np.testing.assert_allclose(rec.rewards, team, rtol=1e-5)
    np.testing.assert_array_equal(rec.rewards, ad.rewards)
    # exact behaviour log-probs: uniform fusion actions, the advertiser's categorical draw
    np.testing.assert_allclose(rec.behaviour_log_probs, -4 * np.log(2.0), rtol=1e-6)
    free = masks[:, 1:].all(1)
    expected = np.where(ad.actions[free] == 0, np.log(0.5), np.log(0.5 / 5))
    np.testing.assert_allclose(ad.behaviour_log_probs[free], expected, rtol=1e-5)
    np.testing.assert_array_equal(ad.behaviour_log_probs[~free], 0.0)


def test_relabel_recomputes_rewards_for_any_mode_and_weight(dataset: MultiAgentDataset):
    components = dataset.tables[RECOMMENDER].reward_components
    mixed = relabel(dataset, "mixed", 4.0)
    np.testing.assert_allclose(mixed.tables[RECOMMENDER].rewards, components[:, 4])
    np.testing.assert_allclose(mixed.tables[ADVERTISER].rewards, components[:, 5])
    coop = relabel(dataset, "cooperative", 10.0)
    np.testing.assert_allclose(coop.tables[ADVERTISER].rewards, components[:, 4] + 10.0 * components[:, 5],
                               rtol=1e-6)
    assert coop.metadata["revenue_weight"] == 10.0
    with pytest.raises(ValueError, match="mode"):
        relabel(dataset, "competitive", 1.0)


def test_save_load_round_trip(dataset: MultiAgentDataset, tmp_path: Path):
    path = dataset.save(tmp_path / "joint")
    loaded = MultiAgentDataset.load(path)
    assert loaded.agents == dataset.agents
    assert loaded.action_mask_columns == dataset.action_mask_columns
    assert loaded.metadata == dataset.metadata
    np.testing.assert_array_equal(loaded.states, dataset.states)
    np.testing.assert_array_equal(loaded.next_states, dataset.next_states)
    for agent in dataset.agents:
        a, b = loaded.tables[agent], dataset.tables[agent]
        for column in ("observations", "actions", "rewards", "next_observations", "terminals", "truncations",
                       "episode_starts", "behaviour_log_probs", "reward_components"):
            np.testing.assert_array_equal(getattr(a, column), getattr(b, column))
        assert a.action_spec == b.action_spec
    mapped = MultiAgentDataset.load(path, mmap=True)
    assert isinstance(mapped.states, np.memmap)
    assert not list(tmp_path.glob(".*"))  # no temporary folder left behind


def test_joint_sampler_draws_the_same_rows_from_every_table(dataset: MultiAgentDataset):
    batch = JointSampler(dataset).sample(128, torch.Generator().manual_seed(0))
    ad = batch[ADVERTISER]
    torch.testing.assert_close(ad.observations, batch.states)  # same rows: advertiser obs == state
    torch.testing.assert_close(batch[RECOMMENDER].observations, batch.states[:, :SMALL.obs_dim])
    torch.testing.assert_close(batch[RECOMMENDER].dones, ad.dones)
    assert ad.actions.dtype == torch.long and batch[RECOMMENDER].actions.shape == (128, 4)


def test_tables_of_different_lengths_raise(dataset: MultiAgentDataset, tmp_path: Path):
    rec, ad = dataset.tables[RECOMMENDER], dataset.tables[ADVERTISER]
    short = ad.subset_episodes(np.arange(ad.num_episodes - 1))
    with pytest.raises(ValueError, match="disagree in length"):
        MultiAgentDataset({RECOMMENDER: rec, ADVERTISER: short}, dataset.states, dataset.next_states)
    # on disk: an agent table replaced by a shorter one
    path = dataset.save(tmp_path / "joint")
    short.save(path / "agents" / ADVERTISER)
    with pytest.raises(ValueError, match="'advertiser'.*disagree in length"):
        MultiAgentDataset.load(path)


def test_inconsistent_tables_and_states_raise(dataset: MultiAgentDataset):
    rec, ad = dataset.tables[RECOMMENDER], dataset.tables[ADVERTISER]
    with pytest.raises(ValueError, match="'states' has"):
        MultiAgentDataset(dataset.tables, dataset.states[:-1], dataset.next_states[:-1])
    bad_states = dataset.states.copy()
    bad_states[7, 0] = np.nan
    with pytest.raises(ValueError, match="'states' contains NaN.*row 7"):
        MultiAgentDataset(dataset.tables, bad_states, dataset.next_states)
    # same length, different episodes
    order = np.r_[ad.episode_rows([1]), ad.episode_rows([0]), ad.episode_rows(np.arange(2, ad.num_episodes))]
    shuffled = ad._replace(order)
    if not np.array_equal(shuffled.episode_starts, ad.episode_starts):
        with pytest.raises(ValueError, match="disagree in column"):
            MultiAgentDataset({RECOMMENDER: rec, ADVERTISER: shuffled}, dataset.states[order],
                              dataset.next_states[order])
    with pytest.raises(ValueError, match="agent name"):
        MultiAgentDataset({"../evil": rec}, dataset.states, dataset.next_states)
    with pytest.raises(ValueError, match="only discrete agents"):
        MultiAgentDataset(dataset.tables, dataset.states, dataset.next_states, {RECOMMENDER: (0, 4)})


def test_an_advertiser_action_violating_the_stored_mask_raises(dataset: MultiAgentDataset):
    ad = dataset.tables[ADVERTISER]
    masks = dataset.action_masks(ADVERTISER)
    row = int(np.flatnonzero(~masks[:, 1:].any(1))[0])  # the cap binds here: only "no ad" allowed
    actions = ad.actions.copy()
    actions[row] = 2
    tables = {**dataset.tables, ADVERTISER: ad._replace(actions=actions)}
    with pytest.raises(ValueError, match=f"action 2 at row {row} violates the action mask"):
        MultiAgentDataset(tables, dataset.states, dataset.next_states, dataset.action_mask_columns)
    # without the mask declaration the table itself is valid
    MultiAgentDataset(tables, dataset.states, dataset.next_states)


def test_save_is_atomic_and_refuses_foreign_folders(dataset: MultiAgentDataset, tmp_path: Path, monkeypatch):
    path = dataset.save(tmp_path / "joint")
    original = MultiAgentDataset.load(path)
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a saved multi-agent dataset"):
        dataset.save(foreign)
    assert (foreign / "keep.txt").read_text() == "mine"
    with pytest.raises(FileExistsError, match="already exists"):
        dataset.save(path, overwrite=False)

    real_write = storage._write_column

    def failing_write(file, array):  # every agent table is written, then the state columns fail
        if file.name == "next_states.npy":
            raise OSError("disk full")
        return real_write(file, array)

    monkeypatch.setattr(storage, "_write_column", failing_write)
    changed = relabel(dataset, "mixed", 4.0)
    with pytest.raises(OSError, match="disk full"):
        changed.save(path)
    monkeypatch.undo()
    after = MultiAgentDataset.load(path)  # the previous dataset is intact, nothing half-written
    np.testing.assert_array_equal(after.tables[RECOMMENDER].rewards, original.tables[RECOMMENDER].rewards)
    assert not list(tmp_path.glob(".joint*"))


def test_corrupted_or_foreign_files_raise_clear_errors(dataset: MultiAgentDataset, tmp_path: Path):
    path = dataset.save(tmp_path / "joint")
    states = path / "states.npy"
    data = bytearray(states.read_bytes())
    data[-1] ^= 0xFF
    states.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="'states'.*corrupted"):
        MultiAgentDataset.load(path)
    meta = json.loads((path / "metadata.json").read_text())
    meta["format"] = "something else"
    (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format"):
        MultiAgentDataset.load(path)
    with pytest.raises(FileNotFoundError):
        MultiAgentDataset.load(tmp_path / "missing")


def test_evaluate_joint_uses_common_users_and_counts_ads():
    env = small_env()
    never = {RECOMMENDER: ConstantPolicy([0, 0, 0, 0]), ADVERTISER: ThresholdAdPolicy(1, min_satisfaction=2.0)}
    always = {RECOMMENDER: ConstantPolicy([0, 0, 0, 0]), ADVERTISER: ThresholdAdPolicy(1)}
    a, b = evaluate_joint(env, never, 200, seed=5), evaluate_joint(env, never, 200, seed=5)
    np.testing.assert_array_equal(a.engagement, b.engagement)
    assert a.ads_shown.sum() == 0 and a.revenue.sum() == 0
    c = evaluate_joint(env, always, 200, seed=5).summary(4.0)
    assert 0.15 < c["ad_load"] <= 0.25 and c["revenue"] > 0 and c["invalid_action_rate"] == 0
    s = a.summary(4.0)
    assert s["team_return"] == pytest.approx(s["engagement"])
    with pytest.raises(ValueError, match="num_users"):
        evaluate_joint(env, never, 0, seed=5)
