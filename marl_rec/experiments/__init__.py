"""The core experiments, one module each, named after its ``conf/experiment/<name>.yaml`` and
called by the CLI as ``run(cfg, run_dir)``: :mod:`.fusion_offline` (the headline study, also
``demo`` and ``cql_alpha``), :mod:`.ope_benchmark`; :mod:`.common` is what they share.
The multi-agent, hierarchical and reward-learning experiments live in
``marl_rec.agents.experiments`` and ``marl_rec.irl.experiments``."""
