"""The headline study's run (``+experiment=fusion_offline``, and its reduced ``demo`` and
``cql_alpha`` sweeps): log data → train offline → OPE → simulated A/B test.

``run(cfg, run_dir)`` is the default ``task`` of the ``marl-rec`` CLI. It writes into
``run_dir``: TensorBoard events (training curves, ``eval/return`` vs ``eval/q_estimate``,
hparams), ``checkpoint.pt``, ``metrics.json`` (the final figures) and ``eval_history.json``.
A run whose training diverges (:class:`~marl_rec.trainer.DivergenceError`) has ``status:
"diverged"``, the update it diverged by (``diverged_at``) and the reason (``error``); where a
checkpoint was written before it, its policy is evaluated like a finished one (OPE, A/B test, Q
estimate) and ``evaluated_update`` says at which update: what the learner was just before its
critic blew up.
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
from marl_rec.checkpoint import load_checkpoint, restore_algorithm
from marl_rec.data.dataset import OfflineDataset
from marl_rec.experiments.common import flatten, learner_spaces, load_dataset, simulator_factory, validate_run
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
    train_cfg = validate_run(cfg)  # every setting, before the data is logged or anything trains
    torch.set_num_threads(int(cfg.torch_threads))
    torch.manual_seed(int(cfg.seed))  # the entry point seeds the global stream (dropout)
    run_dir = Path(run_dir)
    factory = simulator_factory(cfg)
    obs_dim, action_spec = learner_spaces(factory())
    algorithm, loop = build_algorithm(cfg, obs_dim, action_spec)
    behaviour_arms(cfg)  # builds the behaviour policies the final A/B test runs: a bad node fails now
    gamma = float(cfg.evaluation.gamma)
    evaluator = SimulatorEvaluator(factory, int(cfg.evaluation.num_users), int(cfg.evaluation.seed), gamma)
    dataset, data_info = load_dataset(cfg, learner=algorithm)
    hparams = flatten({"algo": OmegaConf.to_container(cfg.algo, resolve=True),
                       "data": {"name": cfg.data.name}, "seed": int(cfg.seed)})
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
        if error.checkpoint is not None:  # evaluate the last state before it diverged
            restore_algorithm(algorithm, load_checkpoint(error.checkpoint).get("algorithm"),
                              source=str(error.checkpoint))
            final["evaluated_update"] = error.checkpoint_step
    train_seconds = time.perf_counter() - started

    metrics: dict[str, Any] = {"status": status, "algo": cfg.algo.name, "data": cfg.data.name,
                               "seed": int(cfg.seed), "train_seconds": train_seconds, **data_info}
    metrics.update(behaviour_evaluation(cfg, dataset, factory, gamma))
    if "online_final_return" in dataset.metadata:
        metrics["online_agent_return"] = float(dataset.metadata["online_final_return"])
    if status == "completed":
        metrics.update({k.replace("eval/", "final_"): v for k, v in final.items()
                        if isinstance(v, (int, float)) and k.startswith("eval/")})
        metrics.update(final_evaluation(cfg, algorithm, dataset, factory, gamma))
    else:  # diverged: why and when, and the last good checkpoint's evaluation where there is one
        metrics.update(final)
        if "evaluated_update" in final:
            metrics.update(final_evaluation(cfg, algorithm, dataset, factory, gamma))
    write_json(run_dir / "metrics.json", metrics)
    write_json(run_dir / "eval_history.json", {"eval": history, "batch_loop": loop_history})
    return metrics


def ab_test_seed(cfg: DictConfig) -> int:
    """The seed of every arm of a run's simulated A/B test: the learned policy's and the
    behaviour policy's groups are the same users (common random numbers)."""
    return int(cfg.evaluation.seed) + 1


def behaviour_arms(cfg: DictConfig) -> dict[str, tuple[Any, float]] | None:
    """The logging policy of ``cfg.data`` as A/B arms ``{name: (policy, share of the logged
    transitions)}``: one arm for a ``policy`` pipeline, one per component for a ``mixture``;
    None for ``online`` pipelines, whose logging policy changed while it logged (or, with
    ``collect_after``, is an agent the pipeline does not keep)."""
    kind = cfg.data.get("kind")
    if kind == "policy":
        nodes = [("behaviour", cfg.data.behaviour, 1.0)]
    elif kind == "mixture":
        nodes = [(f"behaviour_{i}", c.behaviour, float(c.fraction)) for i, c in enumerate(cfg.data.components)]
    else:
        return None
    arms = {}
    for index, (name, node, fraction) in enumerate(nodes):
        node = OmegaConf.to_container(node, resolve=True)
        policy = instantiate(node)
        if node.get("_partial_"):  # its noise: a generator of its own, the same in every run
            policy = policy(rng=np.random.default_rng([int(cfg.evaluation.seed), index]))
        arms[name] = (policy, fraction)
    return arms


def behaviour_evaluation(cfg: DictConfig, dataset: OfflineDataset, factory: Any, gamma: float) -> dict[str, Any]:
    """The behaviour policy's value for the tables: from the simulated A/B test the learned
    policy gets in :func:`final_evaluation` (same seed, so the same users: common random
    numbers), where the logging policy is known (:func:`behaviour_arms`); else the logged
    episodes' mean (``behaviour_source: "logged"``). ``behaviour_logged_return`` is always the
    logged mean. A mixture's value weights each component's arm by its share of the logged
    sessions (its share of the transitions over its mean session length)."""
    from marl_rec.ope import simulated_ab_test

    out: dict[str, Any] = {"behaviour_logged_return": float(dataset.episode_returns(1.0).mean()),
                           "behaviour_logged_discounted_return": float(dataset.episode_returns(gamma).mean())}
    arms = behaviour_arms(cfg)
    if arms is None:
        out.update({"behaviour_return": out["behaviour_logged_return"],
                    "behaviour_discounted_return": out["behaviour_logged_discounted_return"],
                    "behaviour_source": "logged"})
        return out
    results = simulated_ab_test(factory, {name: policy for name, (policy, _) in arms.items()},
                                int(cfg.evaluation.ab_users_per_group), seed=ab_test_seed(cfg), gamma=gamma)
    sessions = np.array([fraction / results[name].session_lengths.mean() for name, (_, fraction) in arms.items()])
    share = sessions / sessions.sum()
    out.update({"behaviour_return": float(sum(w * results[n].undiscounted.value for w, n in zip(share, arms))),
                "behaviour_discounted_return": float(sum(w * results[n].discounted.value for w, n in zip(share, arms))),
                "behaviour_source": "ab_test"})
    if len(arms) == 1:
        arm = results["behaviour"]
        out.update({"behaviour_return_ci_low": arm.undiscounted.ci_low,
                    "behaviour_return_ci_high": arm.undiscounted.ci_high})
    return out


def final_evaluation(cfg: DictConfig, algorithm: Any, dataset: OfflineDataset, factory: Any,
                     gamma: float) -> dict[str, float]:
    """OPE estimates of the final policy from the logged data, and its simulated A/B truth."""
    from marl_rec.ope import DeterministicView, MissingBehaviourLogProbs, OPEContext, simulated_ab_test

    out: dict[str, float] = {}
    users = int(cfg.evaluation.ab_users_per_group)
    arm = simulated_ab_test(factory, {"learned": algorithm}, users, seed=ab_test_seed(cfg), gamma=gamma)["learned"]
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
            except MissingBehaviourLogProbs as error:  # IS/DR on a deterministic logging policy: not applicable
                out[f"ope_{name}_error"] = str(error)  # type: ignore[assignment]
                continue
            out[f"ope_{name}"] = float(estimate.value)
            out[f"ope_{name}_ci_low"] = float(estimate.ci_low)
            out[f"ope_{name}_ci_high"] = float(estimate.ci_high)
    return {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in out.items()}
