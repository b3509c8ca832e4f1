"""The headline study's run (``+experiment=fusion_offline``, and its reduced ``demo`` and
``cql_alpha`` sweeps): log data → train offline → OPE → simulated A/B test.

``run(cfg, run_dir)`` is the default ``task`` of the ``marl-rec`` CLI. It writes into
``run_dir``: TensorBoard events (training curves, ``eval/return`` vs ``eval/q_estimate``,
hparams), ``checkpoint.pt``, ``metrics.json`` (the final figures) and ``eval_history.json``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from marl_rec.contracts import ActionSpec
from marl_rec.algos.bcq_ee import BatchLoopConfig
from marl_rec.algos.registry import make_algorithm
from marl_rec.batch_loop import run_batch_loop
from marl_rec.data.dataset import OfflineDataset
from marl_rec.experiments.common import flatten, learner_spaces, load_dataset, simulator_factory, trainer_config
from marl_rec.files import write_json
from marl_rec.logging import TensorBoardLogger
from marl_rec.schema import algorithm_overrides
from marl_rec.trainer import DivergenceError, SimulatorEvaluator, Trainer, TrainerConfig


def build_algorithm(cfg: DictConfig, obs_dim: int, action_spec: ActionSpec) -> tuple[Any, BatchLoopConfig | None]:
    """The registered algorithm ``cfg.algo.name`` with its preset and overrides, and its batch
    loop settings when its config is a :class:`BatchLoopConfig` (BCQ-EE/RE), else None."""
    algorithm = make_algorithm(cfg.algo.name, obs_dim, action_spec, preset=cfg.algo.preset, seed=int(cfg.seed),
                               device=cfg.device, **algorithm_overrides(cfg.algo))
    loop = algorithm.config if isinstance(algorithm.config, BatchLoopConfig) else None
    return algorithm, loop


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Log (or reuse) the dataset, train ``cfg.algo`` offline, estimate with OPE, A/B test."""
    torch.set_num_threads(int(cfg.torch_threads))
    torch.manual_seed(int(cfg.seed))  # the entry point seeds the global stream (dropout)
    run_dir = Path(run_dir)
    factory = simulator_factory(cfg)
    obs_dim, action_spec = learner_spaces(factory())
    algorithm, loop = build_algorithm(cfg, obs_dim, action_spec)
    dataset, data_info = load_dataset(cfg, learner=algorithm)
    gamma = float(cfg.evaluation.gamma)
    evaluator = SimulatorEvaluator(factory, int(cfg.evaluation.num_users), int(cfg.evaluation.seed), gamma)
    hparams = flatten({"algo": OmegaConf.to_container(cfg.algo, resolve=True),
                       "data": {"name": cfg.data.name}, "seed": int(cfg.seed)})
    train_cfg = trainer_config(cfg)
    status, history, loop_history = "completed", {}, []
    started = time.perf_counter()
    try:
        if data_info["dataset"] == "concurrent" and cfg.data.get("concurrent"):
            # trained while the data was logged: evaluate it as it is
            final = evaluator(algorithm, 0)
            with TensorBoardLogger(run_dir) as logger:
                logger.log_scalars(final, 0)
        else:
            trainer = Trainer(algorithm, dataset, train_cfg, run_dir, [evaluator], hparams=hparams)
            final = trainer.fit(resume=True)
            history = trainer.eval_history
            if loop is not None:
                def retrain(algo: Any, data: OfflineDataset, round_index: int) -> dict[str, float]:
                    sub = Trainer(algo, data, TrainerConfig(**{**train_cfg.__dict__,
                                                               "num_updates": loop.updates_per_round,
                                                               "eval_every": 0, "progress": False}),
                                  run_dir / f"round{round_index}", [evaluator])
                    return sub.fit(resume=True)

                dataset, loop_history = run_batch_loop(algorithm, dataset, factory(), loop,
                                                       np.random.default_rng(int(cfg.seed) + 1), retrain)
                final = loop_history[-1]
    except DivergenceError as error:
        status, final = "diverged", {"error": str(error), "diverged_at": error.step}
    train_seconds = time.perf_counter() - started

    metrics: dict[str, Any] = {"status": status, "algo": cfg.algo.name, "data": cfg.data.name,
                               "seed": int(cfg.seed), "train_seconds": train_seconds, **data_info}
    metrics["behaviour_return"] = float(dataset.episode_returns(1.0).mean())
    metrics["behaviour_discounted_return"] = float(dataset.episode_returns(gamma).mean())
    if "online_final_return" in dataset.metadata:
        metrics["online_agent_return"] = float(dataset.metadata["online_final_return"])
    if status == "completed":
        metrics.update({k.replace("eval/", "final_"): v for k, v in final.items()
                        if isinstance(v, (int, float)) and k.startswith("eval/")})
        metrics.update(final_evaluation(cfg, algorithm, dataset, factory, gamma))
    write_json(run_dir / "metrics.json", metrics)
    write_json(run_dir / "eval_history.json", {"eval": history, "batch_loop": loop_history})
    return metrics


def final_evaluation(cfg: DictConfig, algorithm: Any, dataset: OfflineDataset, factory: Any,
                     gamma: float) -> dict[str, float]:
    """OPE estimates of the final policy from the logged data, and its simulated A/B truth."""
    from marl_rec.ope import DeterministicView, OPEContext, simulated_ab_test

    out: dict[str, float] = {}
    users = int(cfg.evaluation.ab_users_per_group)
    arm = simulated_ab_test(factory, {"learned": algorithm}, users, seed=int(cfg.evaluation.seed) + 1,
                            gamma=gamma)["learned"]
    out.update({"true_value": arm.discounted.value, "true_value_ci_low": arm.discounted.ci_low,
                "true_value_ci_high": arm.discounted.ci_high, "true_return": arm.undiscounted.value,
                "true_session_length": float(arm.session_lengths.mean())})
    obs0 = dataset.initial_observations()
    out["q_estimate"] = float(np.mean(algorithm.q_value(obs0, algorithm.act(obs0, deterministic=True))))
    if cfg.evaluation.ope and cfg.get("ope") is not None:
        context = OPEContext(dataset, gamma=gamma)
        policy = DeterministicView(algorithm)  # one object: estimators with one FQE config share its fit
        for name, node in cfg.ope.estimators.items():
            estimator = instantiate(node)
            try:
                estimate = estimator.estimate(context, policy)
            except ValueError as error:  # e.g. IS on a dataset without behaviour log-probs
                out[f"ope_{name}_error"] = str(error)  # type: ignore[assignment]
                continue
            out[f"ope_{name}"] = float(estimate.value)
            out[f"ope_{name}_ci_low"] = float(estimate.ci_low)
            out[f"ope_{name}_ci_high"] = float(estimate.ci_high)
    return {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in out.items()}
