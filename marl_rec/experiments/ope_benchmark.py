"""The OPE estimator benchmark: many policies, every estimator, one logged dataset, A/B truth.

``marl-rec +experiment=ope_benchmark`` logs one dataset (``cfg.data``), builds the target
policies of ``cfg.ope.targets`` (clearly different in quality), estimates each with every
estimator of ``cfg.ope.estimators`` from the logs alone, measures each policy's true value with a simulated A/B
test, and reports per estimator: median absolute and relative error, Spearman rank
correlation with the truth, regret@1, the share of policies it underestimates (a lower
bound should be near 1), the share it underestimates while staying clear of the a-priori
floor (an estimate collapsed to the floor is "below the truth" without information) and its
interval coverage (the share of policies whose true value lies inside the 95% interval).

Target policies act on the observation only (OPE evaluates π(s') on logged states, so a
policy that reads the simulator's latent state — like the heuristic expert — cannot be a
target): uniform random; constant fusion weights (neutral, quality-heavy, click-heavy);
a behaviour-cloned copy of the logging policy; and TD3, BCQ and CQL checkpoints at two
training steps each.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from marl_rec.algos.registry import make_algorithm
from marl_rec.data.dataset import TensorSampler
from marl_rec.experiments.common import load_dataset, simulator_factory, validate_run
from marl_rec.files import save_figure, write_json
from marl_rec.ope import OPEContext, evaluate_policies, simulated_ab_test, summarize, true_values
from marl_rec.ope.fqe import value_floor


class ConstantActor:
    """Constant fusion action (deterministic), observation-based."""

    def __init__(self, action: list[float]) -> None:
        self.action = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return np.broadcast_to(self.action, (np.shape(obs)[0], self.action.size)).copy()


class UniformRandomActor:
    """Uniform actions on [-1, 1]^dim: a stochastic target with an exact density."""

    def __init__(self, dim: int, rng: np.random.Generator) -> None:
        self.dim, self.rng = dim, rng

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, (np.shape(obs)[0], self.dim)).astype(np.float32)

    def log_prob(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return np.full(np.shape(obs)[0], -self.dim * np.log(2.0))


def train_checkpoints(name: str, dataset: Any, steps: list[int], seed: int, preset: str) -> dict[str, Any]:
    """Train ``name`` on ``dataset`` and keep a frozen copy at each of ``steps`` updates."""
    algorithm = make_algorithm(name, dataset.obs_dim, dataset.action_spec, preset=preset, seed=seed)
    sampler, generator = TensorSampler(dataset), torch.Generator().manual_seed(seed)
    batch = int(getattr(algorithm.config, "batch_size", 256))
    snapshots, done = {}, 0
    for target in sorted(steps):
        for _ in range(target - done):
            algorithm.update(sampler.sample(batch, generator))
        done = target
        snapshots[f"{name}@{target}"] = copy.deepcopy(algorithm)
    return snapshots


def build_policies(cfg: DictConfig, dataset: Any) -> dict[str, Any]:
    """The target policies that ``cfg.ope.targets`` lists, sized by the dataset's action space."""
    spec = cfg.ope.targets
    rng = np.random.default_rng(int(cfg.seed))
    policies: dict[str, Any] = {"random": UniformRandomActor(dataset.action_spec.dim, rng)}
    for name, action in spec.constant_policies.items():
        policies[f"constant_{name}"] = ConstantActor(list(action))
    policies.update(train_checkpoints("bc", dataset, [int(spec.bc_updates)], int(cfg.seed), "rec"))
    for name in spec.algorithms:
        policies.update(train_checkpoints(name, dataset, list(spec.checkpoint_steps), int(cfg.seed), "rec"))
    return policies


def markdown(summary: list[dict[str, Any]]) -> str:
    columns = [("estimator", "estimator"), ("spearman", "Spearman"), ("median_rel_error", "median rel. error"),
               ("median_abs_error", "median abs. error"), ("regret@1", "regret@1"),
               ("fraction_below_truth", "share below truth"),
               ("fraction_below_truth_off_floor", "below truth, off the floor"), ("ci_coverage", "CI coverage"),
               ("seconds", "seconds")]
    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "---|" * len(columns)]
    for row in summary:
        cells = []
        for key, _ in columns:
            value = row.get(key)
            cells.append(f"{value:.3f}" if isinstance(value, float) else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    validate_run(cfg)  # every setting (cache_dir, data, evaluation, estimators) before the data is logged
    torch.set_num_threads(int(cfg.torch_threads))
    torch.manual_seed(int(cfg.seed))
    run_dir = Path(run_dir)
    dataset, data_info = load_dataset(cfg)
    gamma = float(cfg.evaluation.gamma)
    policies = build_policies(cfg, dataset)
    factory = simulator_factory(cfg)
    ab_policies = {name: (p if not isinstance(p, UniformRandomActor) else
                          (lambda sim, obs, p=p: p.act(obs))) for name, p in policies.items()}
    arms = simulated_ab_test(factory, ab_policies, int(cfg.evaluation.ab_users_per_group),
                             seed=int(cfg.evaluation.seed), gamma=gamma)
    truth = true_values(arms)
    estimators = {name: instantiate(node) for name, node in cfg.ope.estimators.items()}
    context = OPEContext(dataset, gamma=gamma)
    rows = evaluate_policies(context, policies, estimators, truth=truth)
    summary = summarize(rows, floor=value_floor(dataset, gamma))
    table = markdown(summary)
    truth_lines = "\n".join(f"| {name} | {arm.discounted.value:.1f} ± {(arm.discounted.ci_high - arm.discounted.value):.1f} |"
                            for name, arm in arms.items())
    text = (f"## OPE benchmark: {len(policies)} policies, dataset {data_info['dataset']} "
            f"({data_info['dataset_transitions']} transitions)\n\n{table}\n\n"
            f"| policy | true value (A/B, 95% CI) |\n|---|---|\n{truth_lines}\n")
    (run_dir / "ope_benchmark.md").write_text(text)
    write_json(run_dir / "ope_rows.json", rows)
    best = max(summary, key=lambda r: (r.get("spearman") if r.get("spearman") == r.get("spearman") else -2))
    metrics = {"task": "ope_benchmark", "num_policies": len(policies), **data_info,
               "best_estimator": best["estimator"], "best_spearman": best.get("spearman"),
               "summary": summary, "truth": truth}
    write_json(run_dir / "metrics.json", metrics)
    _plot(rows, run_dir / "ope_benchmark.png")
    print(text, flush=True)
    return {"data": data_info["dataset"], "algo": "ope_benchmark", "seed": int(cfg.seed),
            "best_estimator": best["estimator"], "best_spearman": best.get("spearman")}


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    estimators = sorted({r["estimator"] for r in rows})
    fig, ax = plt.subplots(figsize=(6, 5.5))
    for name in estimators:
        points = [(r["truth"], r["value"]) for r in rows if r["estimator"] == name and np.isfinite(r["value"])]
        if points:
            xs, ys = zip(*points)
            ax.scatter(xs, ys, s=16, label=name)
    truths = [r["truth"] for r in rows]
    ax.plot([min(truths), max(truths)], [min(truths), max(truths)], "k--", label="estimate = truth")
    ax.set(xlabel="true value (simulated A/B test)", ylabel="estimate", title="OPE estimators vs truth")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


__all__ = ["ConstantActor", "UniformRandomActor", "build_policies", "run"]
