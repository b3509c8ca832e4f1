"""The reward-learning experiment (``reward_learning``), ``run(cfg, run_dir)`` like every experiment."""
