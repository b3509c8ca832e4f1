"""The multi-agent (``joint_rec_ads``) and hierarchical (``hierarchical``) experiments, one module each,
named after its ``conf/experiment/<name>.yaml``; the CLI calls ``run(cfg, run_dir)``."""
