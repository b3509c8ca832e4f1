"""The offline training loop: updates, TensorBoard, evaluation hooks, divergence, checkpoints.

One run lives in one folder (``run_dir``): TensorBoard event files, ``checkpoint.pt`` (the
latest good state, replaced atomically) and ``trainer_status.json`` (status and final metrics;
an experiment writes its own ``metrics.json`` beside it).

Per update the loop only samples a batch (index-gather on preloaded tensors), calls
``algorithm.update`` and appends the returned metrics to per-metric lists. Metrics that come
back as 0-d tensors are reduced and turned into numbers once per ``log_every`` updates (one
host sync per interval; return fresh tensors, not views of buffers you later overwrite);
plain floats are averaged as floats. Divergence is checked at those log points, before every
checkpoint and after every evaluation, so a checkpoint never holds a diverged state.

Resuming: ``fit(resume=True)`` (or :meth:`Trainer.resume`) restores the algorithm (networks,
optimisers), the update counter, the batch-sampling ``torch.Generator``, the trainer's numpy
``Generator``, the algorithm's generator, the global torch RNG (dropout), the metric values
pending since the last log point and the evaluation history. A run killed at any moment and resumed ends with
parameters bit-identical to an uninterrupted run. The trainer never seeds the *global*
torch RNG itself: an entry point that needs two fresh runs to match (dropout) seeds it.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from marl_rec.checkpoint import (
    CheckpointError,
    load_checkpoint,
    numpy_rng_state,
    remove_stale_temporaries,
    restore_algorithm,
    save_checkpoint,
    set_numpy_rng_state,
)
from marl_rec.data.dataset import OfflineDataset, TensorSampler
from marl_rec.files import write_json
from marl_rec.logging import TensorBoardLogger

Evaluator = Callable[[Any, int], Mapping[str, float]]

# A metric counts as a Q estimate (checked against q_divergence_bound) when its last tag
# component matches this: "q", "q_mean", "mean_q", "q1", "target_q", "q_estimate", ...
Q_METRIC = re.compile(r"(^|_)q(\d|_|$)")


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss/metric or a Q estimate beyond the bound.

    Checked: every training metric (non-finite), Q-estimate metrics (see ``Q_METRIC``) from
    training and evaluation against the bound, and the algorithm's state before each
    checkpoint. Other evaluation values (an OPE estimate that is NaN) do not stop the run.
    The run stops; ``checkpoint`` (if any) still holds the last good state, at update
    ``checkpoint_step``. ``run_dir/trainer_status.json`` records ``status: "diverged"``."""

    def __init__(self, message: str, step: int, metric: str, value: float,
                 checkpoint: Path | None, checkpoint_step: int | None) -> None:
        super().__init__(message)
        self.step, self.metric, self.value = step, metric, value
        self.checkpoint, self.checkpoint_step = checkpoint, checkpoint_step


@dataclass
class TrainerConfig:
    """How long to train and how often to log, evaluate and checkpoint (in updates).

    ``eval_every = 0`` evaluates only at the end; ``q_divergence_bound = math.inf`` turns
    the Q check off. The last update is always logged, evaluated and checkpointed.
    ``device`` is where a dataset is loaded for sampling (ignored for a given sampler).
    ``batch_size = None`` (the default) trains on the algorithm config's ``batch_size``: the
    algorithm owns it, so ``algo.batch_size=64`` on the command line takes effect. These
    defaults are the ``marl-rec`` app's ``train`` defaults (``marl_rec.schema`` derives its
    ``train`` node from this class, less ``batch_size``, ``seed``, ``progress`` and ``device``)."""

    num_updates: int = 20_000
    batch_size: int | None = None
    eval_every: int = 2_000
    checkpoint_every: int = 5_000
    log_every: int = 500
    q_divergence_bound: float = 1e4
    seed: int = 0
    progress: bool = True
    device: str = "cpu"
    bootstrap_truncated: bool = False  # TD targets bootstrap through truncations (see marl_rec.data.dataset)

    def __post_init__(self) -> None:
        names = ("num_updates", "checkpoint_every", "log_every") + (() if self.batch_size is None else ("batch_size",))
        for name in names:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainerConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_every < 0:
            raise ValueError(f"TrainerConfig.eval_every must be >= 0 (0: only at the end), got {self.eval_every}")
        if not self.q_divergence_bound > 0:
            raise ValueError(f"TrainerConfig.q_divergence_bound must be > 0, got {self.q_divergence_bound}")
        _check_trainer_types(self)


def _check_trainer_types(config: TrainerConfig) -> None:
    """Each field of the type it is used as (a checkpoint's stored config, a script's typo):
    a seed of None or a progress flag of "no" would fail much later, or silently."""
    kinds = {"seed": (int,), "progress": (bool,), "bootstrap_truncated": (bool,), "device": (str,),
             "q_divergence_bound": (int, float)}
    kinds.update({name: (int,) for name in ("num_updates", "eval_every", "checkpoint_every", "log_every")})
    if config.batch_size is not None:
        kinds["batch_size"] = (int,)
    for name, types in kinds.items():
        value = getattr(config, name)
        numeric = isinstance(value, (np.integer, np.floating)) and not isinstance(value, np.bool_)
        if types != (bool,) and isinstance(value, (bool, np.bool_)) or not (
                isinstance(value, types) or (numeric and float in types)
                or (isinstance(value, np.integer) and int in types)):
            raise TypeError(f"TrainerConfig.{name} must be {' or '.join(t.__name__ for t in types)}, got {value!r}")


class Trainer:
    """Train ``algorithm`` on ``data`` for ``config.num_updates`` updates; see module doc.

    ``data``: an :class:`OfflineDataset` (loaded onto ``config.device``) or anything with
    ``sample(batch_size, generator) -> Batch``, ``size`` and ``device`` (a TensorSampler).
    ``evaluators``: callables ``(algorithm, step) -> {name: value}`` run every
    ``eval_every`` updates; names without a ``/`` are logged as ``eval/<name>``.
    ``hparams``: extra hyperparameters recorded with TensorBoard's HParams (e.g. the
    experiment config); the trainer and algorithm configs are always recorded.
    """

    checkpoint_name = "checkpoint.pt"
    status_name = "trainer_status.json"

    def __init__(self, algorithm: Any, data: OfflineDataset | TensorSampler, config: TrainerConfig,
                 run_dir: str | Path, evaluators: Sequence[Evaluator] = (), agent_name: str = "recommender",
                 hparams: Mapping[str, Any] | None = None) -> None:
        if isinstance(data, OfflineDataset):
            if data.obs_dim != algorithm.obs_dim:
                raise ValueError(f"dataset observations have dim {data.obs_dim}, the algorithm expects "
                                 f"obs_dim={algorithm.obs_dim}")
            data = TensorSampler(data, device=config.device, bootstrap_truncated=config.bootstrap_truncated)
        elif not callable(getattr(data, "sample", None)):
            raise ValueError(f"data must be an OfflineDataset or a sampler with .sample(batch_size, generator), "
                             f"got {type(data).__name__}")
        if not agent_name or "/" in agent_name:
            raise ValueError(f"agent_name must be non-empty without '/', got {agent_name!r}")
        if config.batch_size is None:
            batch_size = getattr(getattr(algorithm, "config", None), "batch_size", None)
            if not isinstance(batch_size, int) or batch_size < 1:
                raise ValueError(f"TrainerConfig.batch_size is None (use the algorithm's) but "
                                 f"{type(algorithm).__name__}'s config has no batch_size >= 1 (got {batch_size!r}); "
                                 f"set TrainerConfig.batch_size")
            config = dataclasses.replace(config, batch_size=batch_size)  # checkpoints record the number used
        self.algorithm, self.sampler, self.config = algorithm, data, config
        self.run_dir = Path(run_dir)
        self.evaluators = list(evaluators)
        self.agent_name = agent_name
        self.hparams = dict(hparams or {})
        device = getattr(data, "device", torch.device("cpu"))
        self.generator = torch.Generator(device=device).manual_seed(config.seed)  # batch sampling
        self.rng = np.random.default_rng(config.seed)  # for hooks that need numpy randomness
        self.step = 0
        # {"step": [updates], tag: [values]}, lists aligned (NaN where an evaluator skipped a tag)
        self.eval_history: dict[str, list[float]] = {"step": []}
        self.last_train: dict[str, float] = {}
        # every metric value since the last log point, as returned (0-d tensor or float); an
        # algorithm may report a metric only on some updates (a delayed actor loss)
        self._pending: dict[str, list[torch.Tensor | float]] = {}
        self._checkpoint_step: int | None = None
        self._logger: TensorBoardLogger | None = None

    # ------------------------------------------------------------------ public
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / self.checkpoint_name

    @classmethod
    def resume(cls, run_dir: str | Path, algorithm: Any, data: OfflineDataset | TensorSampler,
               evaluators: Sequence[Evaluator] = (), agent_name: str = "recommender",
               hparams: Mapping[str, Any] | None = None, num_updates: int | None = None) -> dict[str, float]:
        """Continue the run in ``run_dir`` with the trainer config stored in its checkpoint
        (``num_updates`` may extend it) and return the final metrics."""
        checkpoint = load_checkpoint(Path(run_dir) / cls.checkpoint_name)
        if checkpoint.get("trainer") is None:
            raise CheckpointError(f"{Path(run_dir) / cls.checkpoint_name} holds no trainer state")
        try:
            stored = dict(checkpoint["trainer"]["config"])
            if num_updates is not None:
                stored["num_updates"] = num_updates
            # every field, or a default would silently replace what the run was started with
            missing = [f.name for f in dataclasses.fields(TrainerConfig) if f.name not in stored]
            if missing:
                raise KeyError(f"trainer config lacks {missing}")
            config = TrainerConfig(**stored)
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{Path(run_dir) / cls.checkpoint_name} holds no valid trainer config: "
                                  f"{type(error).__name__}: {error}") from error
        return cls(algorithm, data, config, run_dir, evaluators, agent_name, hparams).fit(resume=True)

    def fit(self, resume: bool = False) -> dict[str, float]:
        """Run the remaining updates and return the final metrics.

        ``resume=True`` continues from ``run_dir/checkpoint.pt`` if it exists (and starts
        fresh if not: a run killed before its first checkpoint). ``resume=False`` refuses a
        folder that already holds a checkpoint rather than overwrite it.
        Raises :class:`DivergenceError` when training diverges."""
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.checkpoint_path)
        if self.checkpoint_path.exists():
            if not resume:
                raise ValueError(f"{self.run_dir} already holds a checkpoint; pass resume=True to continue "
                                 f"it or use a new run_dir")
            self._restore(load_checkpoint(self.checkpoint_path))  # RNG states must stay on the CPU
        if self.step >= cfg.num_updates:
            return self._final_metrics()
        self._logger = TensorBoardLogger(self.run_dir, purge_step=self.step + 1)
        bar = self._progress_bar()
        last_bar_step = last_log_step = self.step
        last_log_time = time.perf_counter()
        try:
            for step in range(self.step + 1, cfg.num_updates + 1):
                metrics = self.algorithm.update(self.sampler.sample(cfg.batch_size, self.generator))
                self._accumulate(metrics)
                self.step = step
                last = step == cfg.num_updates
                if step % cfg.log_every == 0 or last:
                    now = time.perf_counter()  # the interval's rate, evaluation and checkpoints included
                    self._log_train(step, (step - last_log_step) / max(now - last_log_time, 1e-9))
                    last_log_step, last_log_time = step, now
                    if bar is not None:
                        bar.update(step - last_bar_step)
                        last_bar_step = step
                        bar.set_postfix(self._postfix(), refresh=False)
                if (cfg.eval_every and step % cfg.eval_every == 0) or last:
                    self._evaluate(step)
                if step % cfg.checkpoint_every == 0 or last:
                    self._save_checkpoint()
            final = self._final_metrics()
            self._logger.log_hparams(self._all_hparams(), final, step=self.step)
            self._write_status("completed", final)
            return final
        finally:
            if bar is not None:
                bar.close()
            self._logger.close()

    # ----------------------------------------------------------------- metrics
    def _accumulate(self, metrics: Mapping[str, Any]) -> None:
        """Keep the values (a list append: no tensor op, no sync); reduce them at log points."""
        for key, value in metrics.items():
            if isinstance(value, torch.Tensor) and value.requires_grad:
                value = value.detach()  # do not keep the update's graph alive until the log point
            self._pending.setdefault(key, []).append(value)

    def _interval_means(self) -> dict[str, float]:
        """Means of the metrics since the last log point: one host sync for all tensors."""
        means: dict[str, float] = {}
        tensor_means: dict[str, torch.Tensor] = {}
        for key, values in self._pending.items():
            if any(isinstance(v, torch.Tensor) for v in values):
                try:  # the usual case, one op: 0-d tensors on one device
                    stacked = torch.stack(values)
                except (TypeError, RuntimeError):  # floats mixed in, (1,)-shaped, or restored on the CPU
                    device = next(v.device for v in reversed(values) if isinstance(v, torch.Tensor))
                    stacked = torch.stack([torch.as_tensor(v, device=device).reshape(()) for v in values])
                tensor_means[key] = stacked.float().mean()
            else:
                means[key] = math.fsum(values) / len(values)
        if tensor_means:
            means.update(zip(tensor_means, torch.stack(list(tensor_means.values())).tolist()))
        return means

    def _log_train(self, step: int, updates_per_second: float) -> None:
        means = self._interval_means()
        self._pending = {}
        prefix = f"train/{self.agent_name}/"
        self.last_train = {prefix + k: v for k, v in means.items()}
        self._logger.log_scalars(self.last_train, step)
        self._logger.log_scalars({"time/updates_per_second": updates_per_second}, step)
        self._check_divergence(self.last_train, step)

    def _evaluate(self, step: int) -> None:
        results: dict[str, float] = {}
        for evaluator in self.evaluators:
            for key, value in evaluator(self.algorithm, step).items():
                results[key if "/" in key else f"eval/{key}"] = float(value)
        if not results:
            return
        self._logger.log_scalars(results, step)
        self._logger.flush()
        history, done = self.eval_history, len(self.eval_history["step"])
        history["step"].append(step)
        for key, value in results.items():
            history.setdefault(key, [math.nan] * done).append(value)
        for values in history.values():
            if len(values) == done:  # a tag this evaluation did not report
                values.append(math.nan)
        self._check_divergence({k: v for k, v in results.items() if Q_METRIC.search(k.rsplit("/", 1)[-1])}, step)

    def _check_divergence(self, metrics: Mapping[str, float], step: int) -> None:
        bound = self.config.q_divergence_bound
        for key, value in metrics.items():
            if not math.isfinite(value):
                self._diverged(step, key, value, f"{key} is {value} (non-finite)")
            if Q_METRIC.search(key.rsplit("/", 1)[-1]) and abs(value) > bound:
                self._diverged(step, key, value, f"|{key}| = {abs(value):.4g} exceeds q_divergence_bound={bound:g}")

    def _diverged(self, step: int, key: str, value: float, reason: str) -> None:
        where = (f"the last good checkpoint is {self.checkpoint_path} (update {self._checkpoint_step})"
                 if self._checkpoint_step is not None else "no checkpoint was written before it")
        message = f"training diverged by update {step}: {reason}; {where}"
        if self._logger is not None:
            self._logger.flush()
        self._write_status("diverged", {"step": step, "metric": key, "value": repr(value), "reason": message})
        raise DivergenceError(message, step, key, value,
                              self.checkpoint_path if self._checkpoint_step is not None else None,
                              self._checkpoint_step)

    def _final_metrics(self) -> dict[str, float]:
        final: dict[str, float] = {"step": self.step}
        final.update(self.last_train)
        final.update({key: values[-1] for key, values in self.eval_history.items() if key != "step"})
        return final

    def _postfix(self) -> dict[str, str]:
        postfix = {}
        loss = next((k for k in self.last_train if k.endswith("critic_loss")), None) or \
            next((k for k in self.last_train if k.endswith("loss")), None)
        if loss is not None:
            postfix["loss"] = f"{self.last_train[loss]:.4g}"
        if self.eval_history.get("eval/return"):
            postfix["return"] = f"{self.eval_history['eval/return'][-1]:.4g}"
        return postfix

    def _progress_bar(self) -> Any:
        if not (self.config.progress and sys.stderr.isatty()):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.config.num_updates, initial=self.step, desc=f"train {self.agent_name}",
                    unit="upd", dynamic_ncols=True)

    def _all_hparams(self) -> dict[str, Any]:
        algorithm_config = getattr(self.algorithm, "config", None)
        hparams: dict[str, Any] = {"trainer": dataclasses.asdict(self.config),
                                   "algorithm": {"name": getattr(self.algorithm, "name", "")}}
        if algorithm_config is not None and (dataclasses.is_dataclass(algorithm_config)
                                             or isinstance(algorithm_config, Mapping)):
            hparams["algorithm"]["config"] = algorithm_config
        hparams.update(self.hparams)
        return hparams

    def _write_status(self, status: str, metrics: Mapping[str, Any]) -> None:
        write_json(self.run_dir / self.status_name, {"status": status, **metrics})

    # ------------------------------------------------------------- checkpoints
    def _trainer_state(self) -> dict[str, Any]:
        algorithm_generator = getattr(self.algorithm, "generator", None)
        return {
            "step": self.step,
            "config": dataclasses.asdict(self.config),
            "agent_name": self.agent_name,
            "dataset_size": int(getattr(self.sampler, "size", -1)),
            "sampler_generator": self.generator.get_state(),
            "numpy_rng": numpy_rng_state(self.rng),
            "algorithm_generator": (algorithm_generator.get_state()
                                    if isinstance(algorithm_generator, torch.Generator) else None),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
            "pending_metrics": {k: torch.stack([torch.as_tensor(v).reshape(()) for v in values])
                                if any(isinstance(v, torch.Tensor) for v in values) else list(values)
                                for k, values in self._pending.items()},
            "eval_history": {k: list(v) for k, v in self.eval_history.items()},
            "last_train": dict(self.last_train),
        }

    def _save_checkpoint(self) -> None:
        # never checkpoint a diverged state: check the pending metrics and every float tensor
        self._check_divergence({f"train/{self.agent_name}/{k}": v for k, v in self._interval_means().items()},
                               self.step)
        bad = _first_non_finite(self.algorithm.state_dict())
        if bad is not None:
            self._diverged(self.step, bad, math.nan, f"algorithm state {bad} holds non-finite values")
        save_checkpoint(self.checkpoint_path, self.algorithm, self._trainer_state())
        self._checkpoint_step = self.step

    def _restore(self, checkpoint: Mapping[str, Any]) -> None:
        state = checkpoint.get("trainer")
        if state is None:
            raise CheckpointError(f"{self.checkpoint_path} holds no trainer state")
        missing = [key for key in self._trainer_state() if key not in state]
        if missing:
            raise CheckpointError(f"{self.checkpoint_path} is malformed: its trainer state lacks the keys {missing}")
        try:
            self._restore_state(checkpoint, state)
        except (KeyError, TypeError, AttributeError, IndexError, RuntimeError) as error:
            # a well-formed key holding the wrong kind of value (a string step, a list for a dict)
            raise CheckpointError(f"{self.checkpoint_path} is malformed: {type(error).__name__}: {error}") from error

    def _restore_state(self, checkpoint: Mapping[str, Any], state: Mapping[str, Any]) -> None:
        size = int(getattr(self.sampler, "size", -1))
        if state["dataset_size"] != size:
            raise CheckpointError(f"{self.checkpoint_path} was trained on a dataset of {state['dataset_size']} "
                                  f"transitions, this run has {size}")
        saved = state["config"]
        for name in ("batch_size", "seed"):
            if saved[name] != getattr(self.config, name):
                raise CheckpointError(f"{self.checkpoint_path} was trained with TrainerConfig.{name}="
                                      f"{saved[name]}, this run has {getattr(self.config, name)}: "
                                      f"resuming would not continue the same run")
        restore_algorithm(self.algorithm, checkpoint.get("algorithm"), source=str(self.checkpoint_path))
        self.step = int(state["step"])
        self.generator.set_state(state["sampler_generator"])
        set_numpy_rng_state(self.rng, state["numpy_rng"])
        algorithm_generator = getattr(self.algorithm, "generator", None)
        if state["algorithm_generator"] is not None and isinstance(algorithm_generator, torch.Generator):
            algorithm_generator.set_state(state["algorithm_generator"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self._pending = {k: list(v.unbind()) if isinstance(v, torch.Tensor) else list(v)
                         for k, v in state["pending_metrics"].items()}
        self.eval_history = {k: list(v) for k, v in state["eval_history"].items()}
        self.last_train = dict(state["last_train"])
        self._checkpoint_step = self.step


class SimulatorEvaluator:
    """Ground truth in the simulator: the algorithm's greedy policy runs one whole session
    for each of ``num_users`` users, the same users (and the same random draws) at every
    call because the simulator is reset with ``numpy.random.default_rng(seed)``.

    Returns ``eval/return`` (mean undiscounted session engagement), ``eval/discounted_return``
    (γ per served request), ``eval/q_estimate`` (mean ``q_value(s0, act(s0))`` over the same
    users' initial observations — compare it with the discounted return to see
    overestimation) and ``eval/session_length``.

    ``sim_factory``: a simulator instance (reused) or a zero-argument callable building one.
    Duck-typed on ``marl_rec.envs.simulator.UserSimulator`` (marl_rec does not import envs):
    ``reset(B, rng) -> obs``, ``step(action) -> result`` with ``reward`` and
    ``info["active"]``, and ``done``.
    """

    def __init__(self, sim_factory: Any, num_users: int = 256, seed: int = 0, gamma: float = 0.99) -> None:
        if num_users < 1:
            raise ValueError(f"SimulatorEvaluator.num_users must be >= 1, got {num_users}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"SimulatorEvaluator.gamma must be in [0, 1], got {gamma}")
        if not (callable(sim_factory) or callable(getattr(sim_factory, "reset", None))):
            raise ValueError("SimulatorEvaluator.sim_factory must be a simulator or a callable returning one, "
                             f"got {type(sim_factory).__name__}")
        self.sim_factory, self.num_users, self.seed, self.gamma = sim_factory, num_users, seed, gamma

    def __call__(self, algorithm: Any, step: int) -> dict[str, float]:
        sim = self.sim_factory() if callable(self.sim_factory) else self.sim_factory
        n = self.num_users
        obs = sim.reset(n, np.random.default_rng(self.seed))
        action = np.asarray(algorithm.act(obs, deterministic=True))
        q_estimate = float(np.mean(algorithm.q_value(obs, action)))
        returns, discounted, discount = np.zeros(n), np.zeros(n), np.ones(n)
        lengths = np.zeros(n, dtype=np.int64)
        while True:
            result = sim.step(action)
            active = np.asarray(result.info["active"], dtype=bool)
            returns += result.reward
            discounted += discount * result.reward
            discount = np.where(active, discount * self.gamma, discount)
            lengths += active
            live = ~np.asarray(sim.done, dtype=bool)
            if not live.any():
                break
            action = np.zeros_like(action)  # users whose session ended are ignored by step()
            action[live] = algorithm.act(result.observation[live], deterministic=True)
        return {"eval/return": float(returns.mean()), "eval/discounted_return": float(discounted.mean()),
                "eval/q_estimate": q_estimate, "eval/session_length": float(lengths.mean())}


def _first_non_finite(state: Any, path: str = "state") -> str | None:
    """Path of the first floating tensor in a nested state holding NaN/inf, or None."""
    if isinstance(state, torch.Tensor):
        return path if state.is_floating_point() and not bool(torch.isfinite(state).all()) else None
    if isinstance(state, Mapping):
        items = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        return None
    for key, value in items:
        found = _first_non_finite(value, f"{path}.{key}")
        if found:
            return found
    return None
