"""Hierarchical offline learners for :mod:`marl_rec.envs.hierarchical`: a long-term controller that sets
one goal per session and a goal-conditioned short-term controller, both trained offline from
one logged dataset of user lifetimes; and the flat baseline trained on the same data.

Data (:func:`collect_lifetimes` → :class:`LifetimeLog`)
    Whole lifetimes of a batch of users under a behaviour *pair*: a goal policy (e.g.
    :class:`UniformGoalPolicy`) and a short-term policy that sees the goal (e.g. a
    :class:`GoalFollowingPolicy` with truncated-Gaussian noise), with the environment's rules
    (the same :class:`marl_rec.envs.hierarchical.LifetimeTracker`, the same return draws as
    :func:`marl_rec.envs.hierarchical.run_lifetimes`). Both levels' exact behaviour log-probabilities
    are kept. Three :class:`OfflineDataset` views are built from one log:

    - :func:`session_level_dataset` (long term, one row per session): the long-term observation
      at the session start, the goal action, the *discounted session return*
      ``Σ_{t<k} γ^t r_t`` over its k requests, the next session's start observation, terminal
      when the lifetime ends. Semi-MDP: the bootstrap discount of a session is ``γ^k``, not a
      constant; :class:`SemiMDPSampler` puts ``γ^k`` into the batch (``dones = 1 - γ^k`` on
      non-terminal rows) and the algorithm runs with ``gamma = 1``, so its target
      ``r + 1·(1 - done)·Q'`` is exactly ``R_session + γ^k·Q(s', g')``. The high level thus
      optimises the same per-request-discounted lifetime engagement as the flat learner,
      with ~25× fewer bootstrap steps.
    - :func:`goal_conditioned_dataset` (short term, one row per request, one episode per
      session): observation = simulator observation + goal (the env's short-term
      observation), reward = engagement + ``goal_reward_weight · goal_reward(achieved, goal)``
      (the env's short-term reward), terminal at the end of every session (the goal's
      episode ends: the next session has another goal). **Goal relabelling** (hindsight,
      Andrychowicz et al. 2017, "episode" strategy adapted to session-constant goals): a
      logged goal is often unreachable (random goals cover [0, 1]², the candidates reach
      only part of it), so sessions that missed their goal by more than ``tolerance``
      (``-goal_reward`` of the session's mean achieved statistics: for ceilings, by how
      much they went over) are,
      with probability ``fraction``, *copied* with the goal replaced by an achieved one —
      the ``achieved_goal`` of a uniformly random request of that session (``"episode"``),
      or the session's mean achieved goal (``"mean"``) — and their rewards recomputed. The
      copies are added to the original sessions, never replace them.
    - :func:`flat_dataset` (the baseline, one row per request, one episode per lifetime):
      observation = the plain simulator observation, reward = engagement; the return
      crosses session boundaries (the last request of a session whose user comes back has
      the next session's first observation as its next observation), terminal only when
      the lifetime ends. It has no behaviour log-probabilities: the logging policy acted on
      a goal the flat state does not contain, so its density given the flat state is a
      mixture that was never computed.

    The lifetime cap (``max_sessions``) is *terminal* in all three views: the evaluation
    objective is the engagement of the capped lifetime and both observations carry the
    session count (long term: ``session_fraction``; simulator: ``session_index / 10``, exact
    up to 10 sessions), so nothing is earned after the cap.

Learners
    :func:`train_short_term`, :func:`train_long_term` and :func:`train_flat` build any
    continuous algorithm of :func:`marl_rec.algos.registry.make_algorithm` (BCQ or CQL for
    the issue) and train it with :class:`marl_rec.trainer.Trainer` under the agent names
    ``short_term`` / ``long_term`` / ``flat`` (TensorBoard ``train/<agent>/...``), with
    :class:`LifetimeEvaluator` hooks that log ``eval/retention`` (sessions per user),
    ``eval/lifetime_engagement`` and ``eval/session_length`` from whole simulated lifetimes.
    :class:`HierarchicalAgent` puts the two learned controllers together for
    :func:`marl_rec.envs.hierarchical.run_lifetimes`.


The package's modules, one job each: :mod:`.behaviour` (the behaviour pair),
:mod:`.collection` (logging lifetimes), :mod:`.datasets` (the three views), :mod:`.learners`
(training), :mod:`.evaluation` (the learned pair over simulated lifetimes).
"""

from marl_rec.agents.hierarchical.behaviour import GoalFollowingPolicy, UniformGoalPolicy
from marl_rec.agents.hierarchical.collection import LifetimeLog, collect_lifetimes
from marl_rec.agents.hierarchical.datasets import (FLAT_AGENT, LONG_TERM_AGENT, SHORT_TERM_AGENT,
                                                   RelabelConfig, SemiMDPSampler, discounted_lifetime_returns,
                                                   discounted_session_returns, flat_dataset, goal_conditioned_dataset,
                                                   relabelled_goals, session_level_dataset)
from marl_rec.agents.hierarchical.evaluation import HierarchicalAgent, LifetimeEvaluator, greedy, lifetime_metrics
from marl_rec.agents.hierarchical.learners import LevelConfig, make_learner, train_flat, train_long_term, train_short_term

__all__ = ["UniformGoalPolicy", "GoalFollowingPolicy", "LifetimeLog", "collect_lifetimes",
           "discounted_session_returns", "discounted_lifetime_returns", "session_level_dataset", "RelabelConfig", "relabelled_goals",
           "goal_conditioned_dataset", "flat_dataset", "SemiMDPSampler", "LevelConfig", "make_learner",
           "train_short_term", "train_long_term", "train_flat", "HierarchicalAgent", "greedy",
           "LifetimeEvaluator", "lifetime_metrics", "LONG_TERM_AGENT", "SHORT_TERM_AGENT", "FLAT_AGENT"]
