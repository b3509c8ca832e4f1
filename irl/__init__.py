"""Reward learning: recover the reward users really optimise from what they do.

- :mod:`irl.maxent` — maximum (causal) entropy IRL on the topic graph (tabular).
- :mod:`irl.preferences` — Bradley–Terry reward models from segment preferences, a
  synthetic B-Pref oracle on the true utility, uniform / disagreement query selection.
- :mod:`irl.airl` — adversarial IRL with potential shaping, generator in the simulator.
- :mod:`irl.metrics` — Pearson, Spearman, EPIC distance, preference accuracy.
- :mod:`irl.data` — reward features, logged data with the true utility beside it, relabelling.
- :mod:`irl.experiment` — all methods on one simulator, one table of metrics.
"""
