"""IPS, SNIPS, DM, DR and SNDR with a user-supplied reward model, checked against values worked
out by hand on a 4-row table, and the importer of obp-style bandit feedback dicts."""

from __future__ import annotations

import numpy as np
import pytest

from marl_rec.ope.bandit import from_obp_feedback
from marl_rec.ope.bandit_estimators import bandit_estimates

# row: logged action, reward, propensity μ(a|x), slot
FEEDBACK = {
    "n_rounds": 4, "n_actions": 2, "len_list": 2,
    "action": np.array([0, 1, 1, 0]), "reward": np.array([1.0, 0.0, 1.0, 0.0]),
    "pscore": np.array([0.5, 0.25, 0.5, 0.8]), "position": np.array([0, 1, 0, 1]),
    "context": np.array([[0.1], [0.2], [0.3], [0.4]]),
    "action_context": np.eye(2),  # ignored
}
PI = np.array([[0.8, 0.2], [0.3, 0.7], [0.5, 0.5], [1.0, 0.0]])
Q = np.array([[0.6, 0.2], [0.1, 0.4], [0.3, 0.9], [0.2, 0.5]])
# by hand:
#   w = π(a_i)/μ = 0.8/0.5, 0.7/0.25, 0.5/0.5, 1.0/0.8 = 1.6, 2.8, 1.0, 1.25   (Σw = 6.65)
#   w·r = 1.6, 0, 1.0, 0                                                    (Σ = 2.6)
#   q̂_π = 0.8·0.6+0.2·0.2, 0.3·0.1+0.7·0.4, 0.5·0.3+0.5·0.9, 1.0·0.2 = 0.52, 0.31, 0.6, 0.2
#   r - q̂(a_i) = 1-0.6, 0-0.4, 1-0.9, 0-0.2 = 0.4, -0.4, 0.1, -0.2;  w·(r - q̂) Σ = 0.64-1.12+0.1-0.25 = -0.63
HAND = {
    "ips": 2.6 / 4,                       # 0.65
    "snips": 2.6 / 6.65,                  # 0.390977...
    "dm": (0.52 + 0.31 + 0.6 + 0.2) / 4,  # 0.4075
    "dr": 0.4075 - 0.63 / 4,              # 0.25
    "sndr": 0.4075 - 0.63 / 6.65,         # 0.312763...
}


def test_estimators_match_the_hand_computed_values():
    log = from_obp_feedback(FEEDBACK)
    estimates = bandit_estimates(log, PI, Q)
    for name, value in HAND.items():
        assert estimates[name].value == pytest.approx(value, rel=1e-6), name  # propensities are stored as float32 log-probs
        assert estimates[name].ci_low <= value <= estimates[name].ci_high
    assert estimates["ips"].diagnostics["effective_sample_size"] == pytest.approx(6.65 ** 2 / (
        1.6 ** 2 + 2.8 ** 2 + 1.0 ** 2 + 1.25 ** 2))


def test_positions_select_the_slot_of_each_row():
    # a third axis: row i reads slot position[i]; the other slot holds values that would change every result
    q3 = np.full((4, 2, 2), 50.0)
    pi3 = np.tile(np.array([0.0, 1.0]), (4, 2, 1)).transpose(0, 2, 1).copy()  # π = (0, 1) in every slot
    for i, slot in enumerate(FEEDBACK["position"]):
        q3[i, :, slot] = Q[i]
        pi3[i, :, slot] = PI[i]
    estimates = bandit_estimates(from_obp_feedback(FEEDBACK), pi3, q3)
    for name, value in HAND.items():
        assert estimates[name].value == pytest.approx(value, rel=1e-6), name  # propensities are stored as float32 log-probs


def test_importer_builds_the_log_and_refuses_bad_feedback():
    log = from_obp_feedback(FEEDBACK)
    data = log.dataset
    assert data.actions.tolist() == [0, 1, 1, 0] and log.positions.tolist() == [0, 1, 0, 1]
    np.testing.assert_allclose(np.exp(data.behaviour_log_probs), FEEDBACK["pscore"], rtol=1e-6)
    # the context, then a one-hot of the slot (policies and reward models condition on it)
    np.testing.assert_allclose(data.observations, [[0.1, 1, 0], [0.2, 0, 1], [0.3, 1, 0], [0.4, 0, 1]], rtol=1e-6)
    assert data.terminals.all()
    with pytest.raises(ValueError, match="missing key 'pscore'"):
        from_obp_feedback({k: v for k, v in FEEDBACK.items() if k != "pscore"})
    with pytest.raises(ValueError, match="'propensity' row 1"):
        from_obp_feedback({**FEEDBACK, "pscore": np.array([0.5, 1.5, 0.5, 0.8])})
    with pytest.raises(ValueError, match="need a reward_model"):
        bandit_estimates(log, PI, estimators=("dr",))
    with pytest.raises(ValueError, match=r"reward_model must have shape \(n_rows, n_actions\) = \(4, 2\)"):
        bandit_estimates(log, PI, Q[:, :1])
    with pytest.raises(ValueError, match="sum to 1"):
        bandit_estimates(log, PI * 2, Q)
    assert set(bandit_estimates(log, PI, estimators=("ips", "snips"))) == {"ips", "snips"}
