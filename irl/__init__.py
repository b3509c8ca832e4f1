"""Reward learning: recover the reward users really optimise from what they do.

- :mod:`marl_rec.irl.maxent` — maximum (causal) entropy IRL on the topic graph (tabular).
- :mod:`marl_rec.irl.preferences` — Bradley–Terry reward models from segment preferences, a
  synthetic B-Pref oracle on the true utility, uniform / disagreement query selection.
- :mod:`marl_rec.irl.airl` — adversarial IRL with potential shaping, generator in the simulator.
- :mod:`marl_rec.irl.metrics` — Pearson, Spearman, EPIC distance, preference accuracy.
- :mod:`marl_rec.irl.data` — reward features, logged data with the true utility beside it, relabelling.
- :mod:`marl_rec.irl.experiments.reward_learning` — all methods on one simulator, one table of metrics.
"""
