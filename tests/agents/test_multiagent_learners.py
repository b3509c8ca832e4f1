"""Multi-agent learners: the centralised (CTDE) learner's update, masking, state dicts and
trainer integration; independent learners' masked acting; a small-budget learning test."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from marl_rec.agents.ctde import CentralisedConfig, CentralisedLearner
from marl_rec.agents.independent import IndependentLearners, LearnerSpec, masked_act
from marl_rec.agents.multiagent_data import RandomAdPolicy, collect_joint, evaluate_joint, relabel
from marl_rec.agents.policies import ConstantPolicy, GaussianNoisePolicy
from marl_rec.envs.joint_rec_ads import ADVERTISER, RECOMMENDER, JointRecAdsBatch, JointRecAdsConfig
from marl_rec.envs.simulator import SimulatorConfig, UserSimulator
from marl_rec.contracts import ActionSpec
from marl_rec.data.multiagent import JointSampler, MultiAgentDataset
from marl_rec.trainer import Trainer, TrainerConfig

# the summary-only observation: tiny networks, a few hundred updates
SMALL = SimulatorConfig(max_requests=12, items_per_topic=40, ads_per_topic=6, observed_candidates=0)
TINY = CentralisedConfig(critic_hidden=(32, 32), actor_hidden=(32, 32), num_sampled_actions=3, batch_size=64,
                         critic_lr=1e-3, actor_lr=1e-3)


def behaviour(rng: np.random.Generator, sigma: float = 0.8) -> dict:
    """A poor behaviour pair: neutral constant fusion weights with wide noise, random ads."""
    return {RECOMMENDER: GaussianNoisePolicy(ConstantPolicy([0.0, 0.0, 0.0, 0.0]), sigma, rng),
            ADVERTISER: RandomAdPolicy(5 / 6, rng)}


def make_dataset(num_transitions: int, seed: int, revenue_weight: float = 4.0) -> MultiAgentDataset:
    env = JointRecAdsBatch(UserSimulator(SMALL), JointRecAdsConfig(revenue_weight=revenue_weight))
    rng = np.random.default_rng(seed)
    return collect_joint(env, behaviour(rng), num_transitions, rng, batch_size=128)


@pytest.fixture(scope="module")
def dataset() -> MultiAgentDataset:
    return make_dataset(1500, seed=0)


def test_update_trains_the_joint_critic_and_both_actors(dataset: MultiAgentDataset):
    learner = CentralisedLearner.for_dataset(dataset, TINY, seed=0)
    assert learner.agents == [RECOMMENDER, ADVERTISER] and learner.critic_names == ["team"]
    assert learner.obs_dim == dataset.state_dim and learner.mask_columns == dataset.action_mask_columns[ADVERTISER]
    sampler = JointSampler(dataset)
    generator = torch.Generator().manual_seed(0)
    before = {k: v.clone() for k, v in learner.discrete_actor.state_dict().items()}
    metrics = [learner.update(sampler.sample(64, generator)) for _ in range(4)]
    assert set(metrics[0]) == {"td_loss", "cql_penalty", "q_mean", "target_mean", "critic_loss"}
    assert {"recommender_actor_loss", "advertiser_actor_loss"} <= set(metrics[1])  # delayed actor updates
    assert all(np.isfinite(v) for m in metrics for v in m.values())
    assert any(not torch.equal(before[k], v) for k, v in learner.discrete_actor.state_dict().items())
    actions = learner.act({agent: dataset.tables[agent].observations[:10] for agent in learner.agents})
    assert actions[RECOMMENDER].shape == (10, 4) and np.abs(actions[RECOMMENDER]).max() <= 1.0
    assert actions[ADVERTISER].shape == (10,) and actions[ADVERTISER].dtype == np.int64
    q = learner.q_value(dataset.states[:10], {RECOMMENDER: dataset.tables[RECOMMENDER].actions[:10],
                                              ADVERTISER: dataset.tables[ADVERTISER].actions[:10]})
    assert q.shape == (10,) and np.isfinite(q).all()


def test_mixed_mode_has_one_critic_per_agent_on_its_own_reward(dataset: MultiAgentDataset):
    mixed = relabel(dataset, "mixed", 4.0)
    with pytest.raises(ValueError, match="rewards differ"):
        CentralisedLearner.for_dataset(mixed, TINY)  # a team critic needs one reward
    config = dataclasses.replace(TINY, shared_critic=False)
    learner = CentralisedLearner.for_dataset(mixed, config, seed=0)
    assert learner.critic_names == [RECOMMENDER, ADVERTISER]
    metrics = learner.update(JointSampler(mixed).sample(64, torch.Generator().manual_seed(0)))
    assert {"recommender_td_loss", "advertiser_td_loss", "critic_loss"} <= set(metrics)
    states = dataset.states[:5]
    actions = {RECOMMENDER: np.zeros((5, 4), np.float32), ADVERTISER: np.zeros(5, np.int64)}
    assert learner.q_value(states, actions, critic=ADVERTISER).shape == (5,)
    with pytest.raises(ValueError, match="unknown critic"):
        learner.q_value(states, actions, critic="team")


def test_the_discrete_actor_never_chooses_a_masked_action(dataset: MultiAgentDataset):
    learner = CentralisedLearner.for_dataset(dataset, TINY, seed=0)
    with torch.no_grad():  # make "ad at slot 3" overwhelmingly preferred
        learner.discrete_actor[-1].bias.copy_(torch.tensor([0.0, 0.0, 0.0, 50.0, 0.0, 0.0]))
    obs = dataset.tables[ADVERTISER].observations
    masks = dataset.action_masks(ADVERTISER)
    capped = ~masks[:, 1:].any(1)
    assert capped.any() and (~capped).any()
    greedy = learner.policies()[ADVERTISER](None, obs).action
    np.testing.assert_array_equal(greedy[capped], 0)
    np.testing.assert_array_equal(greedy[~capped], 3)
    sampled = learner.act({RECOMMENDER: dataset.tables[RECOMMENDER].observations, ADVERTISER: obs},
                          deterministic=False)[ADVERTISER]
    assert masks[np.arange(len(obs)), sampled].all()


def test_state_dict_round_trip_and_mismatch(dataset: MultiAgentDataset, tmp_path: Path):
    learner = CentralisedLearner.for_dataset(dataset, TINY, seed=0)
    sampler, generator = JointSampler(dataset), torch.Generator().manual_seed(0)
    for _ in range(3):
        learner.update(sampler.sample(64, generator))
    copy = CentralisedLearner.for_dataset(dataset, TINY, seed=1)
    copy.load_state_dict(learner.state_dict())
    obs = {agent: dataset.tables[agent].observations[:50] for agent in learner.agents}
    for agent, action in learner.act(obs).items():
        np.testing.assert_array_equal(action, copy.act(obs)[agent])
    other = CentralisedLearner.for_dataset(dataset, dataclasses.replace(TINY, critic_hidden=(16, 16)), seed=0)
    with pytest.raises(ValueError, match="critic_hidden"):
        other.load_state_dict(learner.state_dict())


def test_constructor_and_config_validation(dataset: MultiAgentDataset):
    specs = {RECOMMENDER: ActionSpec("continuous", dim=4), ADVERTISER: ActionSpec("discrete", num_actions=6)}
    dims = {RECOMMENDER: 33, ADVERTISER: 42}
    with pytest.raises(ValueError, match="continuous one then a discrete one"):
        CentralisedLearner(42, dims, dict(reversed(list(specs.items()))))
    with pytest.raises(ValueError, match="mask_columns"):
        CentralisedLearner(42, dims, specs, mask_columns=(30, 33))
    with pytest.raises(ValueError, match="cql_alpha"):
        CentralisedConfig(cql_alpha=-1.0)
    with pytest.raises(ValueError, match="shared_critic"):
        CentralisedConfig(shared_critic="yes")
    learner = CentralisedLearner(42, dims, specs, TINY)
    with pytest.raises(ValueError, match="observations of 'advertiser'"):
        learner.act({RECOMMENDER: np.zeros((2, 33)), ADVERTISER: np.zeros((2, 40))})


def test_masked_act_replaces_forbidden_choices_by_the_best_allowed_action():
    class Fixed:
        """Always picks action 4; Q prefers action 2 over 0 and 1."""
        action_spec = ActionSpec("discrete", num_actions=5)

        def act(self, obs, deterministic=True):
            return np.full(len(obs), 4)

        def q_value(self, obs, action):
            return np.array([0.0, -1.0, 3.0, 9.0, 10.0])[action]

    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=bool)
    np.testing.assert_array_equal(masked_act(Fixed(), np.zeros((3, 2)), mask), [4, 2, 0])
    np.testing.assert_array_equal(masked_act(Fixed(), np.zeros((3, 2)), None), [4, 4, 4])


def test_independent_learners_train_each_agent_on_its_own_table(dataset: MultiAgentDataset, tmp_path: Path):
    specs = {RECOMMENDER: LearnerSpec("td3", overrides={"actor_hidden": (16, 16), "critic_hidden": (16, 16)}),
             ADVERTISER: LearnerSpec("discrete_bcq", overrides={"q_hidden": (16, 16), "imitation_hidden": (16, 16)})}
    learners = IndependentLearners.for_dataset(dataset, specs, seed=0)
    assert learners.algorithms[ADVERTISER].obs_dim == dataset.tables[ADVERTISER].obs_dim
    config = TrainerConfig(num_updates=20, batch_size=32, eval_every=0, checkpoint_every=20, log_every=10,
                           progress=False)
    finals = learners.fit(dataset, config, tmp_path)
    assert "train/recommender/critic_loss" in finals[RECOMMENDER]
    assert "train/advertiser/critic_loss" in finals[ADVERTISER]
    assert (tmp_path / RECOMMENDER / "checkpoint.pt").is_file() and (tmp_path / ADVERTISER / "checkpoint.pt").is_file()
    obs = dataset.tables[ADVERTISER].observations
    chosen = learners.policies()[ADVERTISER](None, obs).action
    assert dataset.action_masks(ADVERTISER)[np.arange(len(obs)), chosen].all()
    with pytest.raises(ValueError, match="no learner given"):
        IndependentLearners.for_dataset(dataset, {RECOMMENDER: specs[RECOMMENDER]})


def test_centralised_learner_trains_with_the_trainer_and_resumes(dataset: MultiAgentDataset, tmp_path: Path):
    from marl_rec.agents.experiments.joint_rec_ads import JointEvaluator

    config = TrainerConfig(num_updates=30, batch_size=64, eval_every=15, checkpoint_every=15, log_every=15,
                           progress=False)
    evaluator = JointEvaluator(SMALL, JointRecAdsConfig(), num_users=16, seed=0)
    learner = CentralisedLearner.for_dataset(dataset, TINY, seed=0)
    final = Trainer(learner, JointSampler(dataset), config, tmp_path, [evaluator], agent_name="centralised").fit()
    for tag in ("train/centralised/critic_loss", "train/centralised/advertiser_actor_loss", "eval/revenue",
                "eval/team_return", "eval/ad_load"):
        assert tag in final
    resumed = CentralisedLearner.for_dataset(dataset, TINY, seed=5)
    again = Trainer(resumed, JointSampler(dataset), config, tmp_path, [evaluator], agent_name="centralised").fit(
        resume=True)
    assert again["eval/team_return"] == final["eval/team_return"]
    obs = {agent: dataset.tables[agent].observations[:20] for agent in learner.agents}
    np.testing.assert_array_equal(resumed.act(obs)[RECOMMENDER], learner.act(obs)[RECOMMENDER])


def test_centralised_learner_beats_the_behaviour_pair_on_the_team_objective():
    """Cooperative mode, small budget: trained on a poor behaviour pair's data (wide noise around
    neutral fusion weights, random ads), the decentralised CTDE policies earn a higher team
    return than the behaviour pair on the same simulated users."""
    data = make_dataset(6000, seed=1, revenue_weight=4.0)
    learner = CentralisedLearner.for_dataset(data, dataclasses.replace(TINY, gamma=0.9), seed=0)
    sampler, generator = JointSampler(data), torch.Generator().manual_seed(0)
    for _ in range(1000):
        learner.update(sampler.sample(64, generator))
    env = JointRecAdsBatch(UserSimulator(SMALL), JointRecAdsConfig(revenue_weight=4.0))
    learned = evaluate_joint(env, learner.policies(), 1500, seed=7).summary(4.0)
    behaved = evaluate_joint(env, behaviour(np.random.default_rng(3)), 1500, seed=7).summary(4.0)
    margin = 2.0 * np.hypot(learned["team_return_se"], behaved["team_return_se"])
    assert learned["team_return"] > behaved["team_return"] + margin, (learned, behaved)


def test_default_discrete_action_is_left_only_where_every_critic_agrees():
    specs = {RECOMMENDER: ActionSpec("continuous", dim=4), ADVERTISER: ActionSpec("discrete", num_actions=3)}
    dims = {RECOMMENDER: 5, ADVERTISER: 5}
    q = torch.tensor([[[10.0, 10.5, 9.0], [10.0, 11.0, 12.0], [10.0, 9.0, 9.5]],     # critic 1
                      [[20.0, 19.8, 18.0], [20.0, 21.5, 20.8], [20.0, 21.0, 18.0]]])  # critic 2 (E, B, N)
    allowed = torch.tensor([[True, True, True], [True, True, True], [False, True, True]])
    plain = CentralisedLearner(5, dims, specs, TINY)
    # argmax of min_i Q_i: the second critic's offset decides nothing here, the first critic's heads do
    assert plain.discrete_choice(q, allowed).tolist() == [1, 2, 2]
    default = CentralisedLearner(5, dims, specs, dataclasses.replace(TINY, default_discrete_action=0))
    # row 0: the critics disagree on action 1 -> stay at 0; row 1: the worst case of 1 (+1) beats that of
    # 2 (+0.8) although critic 1 prefers 2; row 2: the default is masked -> the plain rule among the allowed
    assert default.discrete_choice(q, allowed).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="default_discrete_action"):
        CentralisedLearner(5, dims, specs, dataclasses.replace(TINY, default_discrete_action=3))
    with pytest.raises(ValueError, match="default_discrete_action"):
        CentralisedConfig(default_discrete_action=-1)


def test_team_weights_make_both_actors_follow_the_weighted_agent_critics(dataset: MultiAgentDataset):
    """A decomposed team critic (engagement and revenue critics, weights (1, λ)): both actors
    follow w_rec·Q_rec + w_adv·Q_adv, member by member; without weights each follows its own."""
    mixed = relabel(dataset, "mixed", 4.0)
    own = CentralisedLearner.for_dataset(mixed, dataclasses.replace(TINY, shared_critic=False), seed=0)
    team = CentralisedLearner.for_dataset(mixed, dataclasses.replace(TINY, shared_critic=False,
                                                                      team_weights=(1.0, 4.0)), seed=0)
    inputs = torch.as_tensor(np.concatenate([dataset.states[:8], dataset.tables[RECOMMENDER].actions[:8]], 1))
    with torch.no_grad():
        for learner in (own, team):
            rec, adv = (learner.critics[name](inputs) for name in (RECOMMENDER, ADVERTISER))
            if learner is own:
                torch.testing.assert_close(learner._actor_values(RECOMMENDER, learner.critics, inputs, False), rec)
                torch.testing.assert_close(learner._actor_values(ADVERTISER, learner.critics, inputs, False), adv)
                continue
            for agent in (RECOMMENDER, ADVERTISER):
                torch.testing.assert_close(learner._actor_values(agent, learner.critics, inputs, False), rec + 4.0 * adv)
            single = learner.critics[RECOMMENDER].single(inputs) + 4.0 * learner.critics[ADVERTISER].single(inputs)
            torch.testing.assert_close(learner._actor_values(RECOMMENDER, learner.critics, inputs, True), single)
    # continuous_own_critic: the recommender follows its own critic, the advertiser still the weighted sum
    split = CentralisedLearner.for_dataset(mixed, dataclasses.replace(TINY, shared_critic=False, team_weights=(1.0, 4.0),
                                                                       continuous_own_critic=True), seed=0)
    with torch.no_grad():
        rec, adv = (split.critics[name](inputs) for name in (RECOMMENDER, ADVERTISER))
        torch.testing.assert_close(split._actor_values(RECOMMENDER, split.critics, inputs, False), rec)
        torch.testing.assert_close(split._actor_values(ADVERTISER, split.critics, inputs, False), rec + 4.0 * adv)
    with pytest.raises(ValueError, match="team_weights.*shared_critic=False"):
        CentralisedConfig(team_weights=(1.0, 4.0))
    with pytest.raises(ValueError, match="team_weights"):
        CentralisedConfig(shared_critic=False, team_weights=(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="team_weights"):
        CentralisedConfig(shared_critic=False, team_weights=(1.0, float("nan")))


def test_critic_gammas_give_each_agent_critic_its_own_discount(dataset: MultiAgentDataset):
    """critic_gammas=(γ, 0): the revenue critic's target is the immediate reward (a myopic
    critic), the engagement critic's bootstraps."""
    mixed = relabel(dataset, "mixed", 4.0)
    batch = JointSampler(mixed).sample(64, torch.Generator().manual_seed(0))
    targets = {}
    for gammas in ((0.99, 0.0), (0.0, 0.99)):
        learner = CentralisedLearner.for_dataset(mixed, dataclasses.replace(TINY, shared_critic=False,
                                                                            critic_gammas=gammas), seed=0)
        metrics = learner.update(batch)
        targets[gammas] = {agent: metrics[f"{agent}_target_mean"] - float(batch[agent].rewards.mean())
                           for agent in (RECOMMENDER, ADVERTISER)}  # the discounted bootstrap's mean
    assert targets[(0.99, 0.0)][ADVERTISER] == pytest.approx(0.0, abs=1e-6)
    assert targets[(0.0, 0.99)][RECOMMENDER] == pytest.approx(0.0, abs=1e-6)
    assert abs(targets[(0.99, 0.0)][RECOMMENDER]) > 1e-4 and abs(targets[(0.0, 0.99)][ADVERTISER]) > 1e-4
    with pytest.raises(ValueError, match="critic_gammas.*shared_critic=False"):
        CentralisedConfig(critic_gammas=(0.99, 0.0))
    with pytest.raises(ValueError, match="critic_gammas"):
        CentralisedConfig(shared_critic=False, critic_gammas=(0.99, 1.5))
