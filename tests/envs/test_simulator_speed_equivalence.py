"""The simulator's speed work (issue #19) changes no result: the current ``UserSimulator`` and the
frozen copy of it from before that work (tests/helpers/frozen_simulator.py) give bit-identical
observations, rewards, flags, infos, user states and candidates for the same seeds, on every
path (the batched core with and without ads, replaced users, new sessions and frozen users;
the lean one-user path; small batches; many candidates; the legacy world; many topics) and
through ``FusionRankingEnv``."""

from __future__ import annotations

import numpy as np
import pytest
from frozen_simulator import FrozenSimulator
from marl_rec.envs.fusion_env import AGENT, FusionRankingEnv
from marl_rec.envs.simulator import ACTION_DIM, SimulatorConfig, UserSimulator


def trajectory(cls: type[UserSimulator], config: SimulatorConfig, batch: int, seed: int, steps: int,
               ads: bool, lean: bool = True) -> list[np.ndarray]:
    """Everything observable of ``steps`` requests: after each one the users whose session ended are
    replaced, start a new session or (every third step) stay done and frozen."""
    sim = cls(config)
    sim._single_user_path = lean
    actions = np.random.default_rng(seed + 1)
    out = [sim.reset(batch, np.random.default_rng(seed))]
    for i in range(steps):
        action = actions.uniform(-1.3, 1.3, (batch, ACTION_DIM))
        ad_slot = actions.integers(0, config.slate_size + 1, batch) if ads and i % 2 else None
        out += [sim.rank(action), sim.fused_scores(action)]
        result = sim.step(action, ad_slot)
        out += [result.observation, result.reward, result.terminated, result.truncated]
        out += [np.asarray(value) for _, value in sorted(result.info.items())]
        ended = result.terminated | result.truncated
        if i % 3 == 0:
            out.append(sim.reset_users(ended))
        elif i % 3 == 1:
            out.append(sim.start_new_sessions(ended))
        out.append(sim.observe())
        if i % 4 == 0:
            out += [value.copy() for _, value in sorted(sim.state.items())]
            out += [sim.cand_items, sim.cand_topics, sim.cand_pred, sim.cand_log_pred, sim.cand_utility,
                    sim.cand_true, sim.ad_candidate_values(), sim.predicted_utility()]
    return out


def assert_identical(new: list[np.ndarray], old: list[np.ndarray]) -> None:
    assert len(new) == len(old)
    for i, (x, y) in enumerate(zip(new, old)):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape, f"entry {i}: {x.dtype}{x.shape} vs {y.dtype}{y.shape}"
        np.testing.assert_array_equal(x, y, err_msg=f"entry {i}", strict=True)


@pytest.mark.parametrize("config,batch,steps,ads,lean", [
    (SimulatorConfig(), 300, 24, True, True),  # the batched core: Box–Muller, vectorised topics
    (SimulatorConfig(), 4096, 4, False, True),  # the benchmark's batch
    (SimulatorConfig(num_candidates=100), 500, 12, True, True),  # top 32 of 100 candidates
    (SimulatorConfig(num_topics=20), 120, 12, True, True),  # binary-search retrieval
    (SimulatorConfig.legacy(), 64, 12, True, True),  # summary-only observation
    (SimulatorConfig(), 7, 40, True, True),  # a small batch: ziggurat normals, binary search
    (SimulatorConfig(), 1, 300, False, True),  # the lean one-user path
    (SimulatorConfig(), 1, 60, True, True),  # one user with ads: the lean retrieval, its pending ad predictions
    (SimulatorConfig(), 1, 60, True, False),  # one user on the batched path
])
def test_current_simulator_matches_the_frozen_reference(config, batch, steps, ads, lean):
    for seed in (0, 1):
        assert_identical(trajectory(UserSimulator, config, batch, seed, steps, ads, lean),
                         trajectory(FrozenSimulator, config, batch, seed, steps, ads, lean))


def test_fusion_env_matches_the_frozen_reference():
    def run(frozen: bool) -> list[np.ndarray]:
        env = FusionRankingEnv()
        if frozen:
            env.sim = FrozenSimulator(env.config)
        actions = np.random.default_rng(3).uniform(-1.2, 1.2, (400, ACTION_DIM)).astype(np.float32)
        observations, _ = env.reset(seed=5)
        out = [observations[AGENT]]
        for action in actions:
            observations, rewards, terminations, truncations, infos = env.step({AGENT: action})
            out += [observations[AGENT], np.float64(rewards[AGENT]), np.bool_(terminations[AGENT]),
                    np.bool_(truncations[AGENT])] + [np.asarray(v) for _, v in sorted(infos[AGENT].items())]
            if not env.agents:
                out.append(env.reset()[0][AGENT])
        return out

    assert_identical(run(False), run(True))


def test_editing_a_returned_observation_changes_nothing_later():
    """Observations are fresh arrays the caller owns: writing into one (after ``step``, after
    ``reset_users``) changes nothing the simulator returns later."""
    sim, reference = UserSimulator(SimulatorConfig()), FrozenSimulator(SimulatorConfig())
    sim.reset(64, np.random.default_rng(0))[:] = -1.0
    reference.reset(64, np.random.default_rng(0))
    actions = np.random.default_rng(1).uniform(-1.0, 1.0, (40, 64, ACTION_DIM))
    for action in actions:
        result, expected = sim.step(action), reference.step(action)
        np.testing.assert_array_equal(result.observation, expected.observation)
        result.observation[:] = 2.0
        ended = result.terminated | result.truncated
        observation = sim.reset_users(ended)
        np.testing.assert_array_equal(observation, reference.reset_users(ended))
        observation[:] = 3.0
