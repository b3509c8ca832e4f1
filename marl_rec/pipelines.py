"""The data pipelines: how an offline dataset is logged from the simulator.

It sits above :mod:`marl_rec.data` and :mod:`marl_rec.algos` (an ``online`` pipeline trains an
algorithm to log with), so that neither of those two packages imports the other.

The names follow Fujimoto et al. (2019) and the offline-RL literature:

- ``final_buffer``: the whole replay buffer of an online agent (SAC held steady,
  :data:`~marl_rec.algos.online.SAC_STEADY_OVERRIDES`, 2,000 batched steps; Fujimoto et al. used
  DDPG) trained in the simulator with high truncated-Gaussian exploration noise (σ = 0.5);
- ``concurrent``: the replay buffer of the same online agent trained with σ = 0.1; an offline
  learner is trained on the same, growing buffer at the same time (``concurrent_learner``
  below) and its result is reported beside the behaviour agent's;
- ``imitation``: an expert acting without noise (the trained online SAC agent acting
  greedily) — no behaviour log-probabilities (the policy is deterministic);
- ``random``: uniform actions; ``expert``: the production policy (``ProductionPolicy``: a
  lookahead on the predictions and the observation only) with truncated-Gaussian noise
  (σ = 0.1); ``medium``: a partially trained online agent with σ = 0.1; ``mixed``: half
  random, half expert episodes (each episode keeps the log-probability of the policy that
  logged it); ``noisy_expert``: the production policy with σ = 0.5 (the OPE benchmark's logs);
- ``oracle``: the privileged ``HeuristicExpertPolicy`` (true responses, true utilities, hidden
  user state) with σ = 0.1 — the example of confounded logs.

A pipeline is a config (``conf/data/*.yaml``): ``kind`` is ``policy`` (collect with a
behaviour policy built from ``behaviour``), ``mixture`` (several ``components``) or
``online`` (train an agent online first: ``agent``, TD3 by default). Datasets are cached in ``cache_dir`` under
``<name>-<key>`` where :func:`dataset_key` hashes everything that determines the data: the
pipeline config with the values it leaves to code filled in (the pipeline's own defaults,
each ``_target_``'s default arguments, and for ``online`` pipelines the agent's resolved
config, not just its preset's name), the resolved simulator config, and the format versions
(:data:`DATA_FORMAT_VERSION`, the storage format). An unchanged config reuses the saved
dataset; a change to any of these, in a YAML file or in code, makes a new one.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import inspect
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from marl_rec.algos.online import ONLINE_AGENTS, ExplorationPolicy, train_online
from marl_rec.algos.registry import make_algorithm, make_config
from marl_rec.contracts import ActionSpec
from marl_rec.data.collect import collect
from marl_rec.data.dataset import OfflineDataset
from marl_rec.data.storage import FORMAT_VERSION as STORAGE_FORMAT_VERSION
from marl_rec.data.storage import remove_temporaries
from marl_rec.files import exclusive_lock
from marl_rec.parallel import check_num_workers, map_jobs

Factory = Callable[..., Any]
logger = logging.getLogger(__name__)

#: Bump when the code of a pipeline changes what it logs for the same config (a new column, a
#: changed collection loop): every cached dataset is then logged again.
DATA_FORMAT_VERSION = 3  # 2: online agents stop TD targets at the session cap (truncation convention);
# 3: the world of issue #16 (negative feedback, candidates observed, actions relative to the click weight)

#: What :func:`build_dataset` uses where a pipeline config is silent (part of the cache key);
#: ``ONLINE_DEFAULTS`` for ``online`` pipelines only.
PIPELINE_DEFAULTS: dict[str, Any] = {"batch_users": 512}
ONLINE_DEFAULTS: dict[str, Any] = {"start_steps": 0, "updates_per_step": 1, "agent": "td3", "agent_preset": "rec",
                                   "agent_overrides": {}}


def _with_defaults(spec: Mapping[str, Any]) -> dict[str, Any]:
    online = ONLINE_DEFAULTS if spec.get("kind") == "online" else {}
    return {**PIPELINE_DEFAULTS, **online, **spec}


def config_hash(*configs: Any) -> str:
    """A stable 12-hex-digit content hash of JSON-serialisable configs."""
    text = json.dumps(configs, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _plain(value: Any) -> Any:
    """A JSON-ready copy of a default argument (dataclasses as dicts, arrays as lists); anything
    else by ``repr`` (an object whose repr holds its address then never matches a cached key:
    the dataset is logged again rather than reused stale)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray | np.generic):
        return _plain(value.tolist())
    return repr(value)


def _default_arguments(target: Any, num_positional: int = 0) -> dict[str, Any]:
    """The defaults a call of ``target`` with ``num_positional`` positional arguments fills
    in: a dataclass's field defaults (factories called), otherwise its signature's defaults."""
    if dataclasses.is_dataclass(target):
        out = {}
        for f in [f for f in dataclasses.fields(target) if f.init][num_positional:]:
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
        return out
    try:
        parameters = list(inspect.signature(target).parameters.values())[num_positional:]
    except (TypeError, ValueError):  # a builtin without a signature: nothing to fill in
        return {}
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def resolve_targets(node: Any) -> Any:
    """A Hydra config with every ``_target_`` node completed by the target's default arguments:
    what the node builds, written out, so that a default changed in code changes the hash.
    Targets are imported by name (``hydra.utils.get_object``), as ``instantiate`` does."""
    if isinstance(node, Mapping):
        resolved = {str(k): resolve_targets(v) for k, v in node.items()}
        if isinstance(node.get("_target_"), str):
            from hydra.utils import get_object

            defaults = _default_arguments(get_object(node["_target_"]), len(node.get("_args_") or ()))
            for name, value in defaults.items():
                resolved.setdefault(name, _plain(value))
        return resolved
    if isinstance(node, (list, tuple)):
        return [resolve_targets(v) for v in node]
    return _plain(node)


def _online_agent_choice(spec: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(algorithm name, preset, overrides) of an ``online`` pipeline's agent: a registered
    algorithm, or an :data:`~marl_rec.algos.online.ONLINE_AGENTS` name (``sac``, ``sac_steady``)."""
    spec = _with_defaults(spec)
    name, overrides = str(spec["agent"]), dict(spec["agent_overrides"] or {})
    if name in ONLINE_AGENTS:
        name, fixed = ONLINE_AGENTS[name]
        overrides = {**fixed, **overrides}
    return name, str(spec["agent_preset"]), overrides


def resolved_pipeline(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The pipeline config ``spec`` with everything it leaves to code written out: the
    pipeline defaults, each behaviour ``_target_``'s default arguments, and for ``online``
    pipelines ``agent_config``, every field of the agent's config after its preset and
    overrides, in place of the preset's name and the overrides (so a preset value changed in
    code changes the cache key, and two ways of asking for the same config do not)."""
    resolved = resolve_targets(_with_defaults(spec))
    if resolved.get("num_workers") == 1:  # the default (one process): the same data as no setting
        del resolved["num_workers"]
    if spec.get("kind") == "online":
        name, preset, overrides = _online_agent_choice(spec)
        resolved["agent_config"] = _plain(make_config(name, preset, **overrides))
        del resolved["agent_preset"], resolved["agent_overrides"]  # what they select is agent_config
    return resolved


def dataset_key(data_spec: Mapping[str, Any], simulator_spec: Mapping[str, Any]) -> str:
    """The cache key of the dataset that pipeline ``data_spec`` logs in the simulator that
    ``simulator_spec`` (a Hydra node) builds: a hash of both, resolved (:func:`resolved_pipeline`,
    :func:`resolve_targets`), and of :data:`DATA_FORMAT_VERSION` and the storage format version."""
    return config_hash({"data_format_version": DATA_FORMAT_VERSION, "storage_format_version": STORAGE_FORMAT_VERSION,
                        "data": resolved_pipeline(data_spec), "simulator": resolve_targets(simulator_spec)})


def cached_dataset(cache_dir: str | Path, name: str, key: str, build: Callable[[], Any],
                   load: Callable[[Path], Any] = OfflineDataset.load) -> tuple[Any, Path, bool]:
    """Load ``cache_dir/<name>-<key>`` with ``load`` if it exists, else ``build()`` and save it
    (``.save(path)``, atomic). ``load``: ``MultiAgentDataset.load`` for multi-agent datasets.

    Safe for processes sharing ``cache_dir`` (a parallel sweep): each entry is built once. The
    build runs under an exclusive lock on ``.<name>-<key>.lock`` (:func:`marl_rec.files.exclusive_lock`),
    and whoever takes the lock checks again whether the entry exists, so the processes that
    waited load the first one's entry. An entry is never replaced (its key fixes its content):
    a complete entry appears at once by a rename, so loading one needs no lock. Temporaries of
    builds that were killed are removed before building.

    Returns (dataset, path, reused)."""
    path = Path(cache_dir) / f"{name}-{key}"
    if path.exists():
        return load(path), path, True

    def say_waiting() -> None:
        logger.info("waiting for another process that is building the dataset %s", path)

    with exclusive_lock(path.parent / f".{path.name}.lock", on_wait=say_waiting):
        if path.exists():  # built by the process that held the lock before
            return load(path), path, True
        remove_temporaries(path)  # the lock is ours: any temporary left is a killed build's
        dataset = build()
        try:
            dataset.save(path, overwrite=False)
        except FileExistsError:
            # saved meanwhile by a process this lock does not reach (another host on a shared
            # disk without flock): its entry is kept, and has the same content (the same key)
            logger.warning("dataset %s was saved by another process meanwhile; keeping that one", path)
    return dataset, path, False


def collect_mixture(sim: Any, components: list[tuple[Callable, float]], num_transitions: int,
                    rng: np.random.Generator, batch_size: int) -> OfflineDataset:
    """Episodes from several behaviour policies, ``fraction`` of the transitions each."""
    parts = []
    for policy, fraction in components:
        n = max(1, int(round(fraction * num_transitions)))
        parts.append(collect(sim, policy, n, rng, batch_size=batch_size))
    return OfflineDataset.concatenate(parts)


def _online_agent(spec: Mapping[str, Any], obs_dim: int, action_dim: int, seed: int):
    """The online agent of an ``online`` pipeline (TD3, DDPG, SAC; rec-sized networks)."""
    name, preset, overrides = _online_agent_choice(spec)
    return make_algorithm(name, obs_dim, ActionSpec("continuous", dim=action_dim), preset=preset, seed=seed,
                          **overrides)


def build_dataset(spec: dict[str, Any], sim_factory: Callable[[], Any], instantiate: Callable[..., Any],
                  seed: int, concurrent_learner: Any = None) -> OfflineDataset:
    """Log the dataset that the pipeline ``spec`` (a ``conf/data`` node as a dict) describes.

    ``instantiate`` builds behaviour policies from their ``_target_`` nodes (Hydra's
    ``instantiate``; marl_rec does not import the policies' package). ``concurrent_learner``
    (``concurrent`` only): an offline algorithm updated once per online update on the same,
    growing buffer.

    ``num_workers`` (``policy`` and ``mixture`` pipelines; default 1): log in that many shards
    on as many processes, shard i with its own simulator, behaviour policies and generator from
    ``np.random.SeedSequence(seed).spawn(num_workers)[i]``, about ``num_transitions /
    num_workers`` transitions each on ``batch_users / num_workers`` users (rounded up: the
    sessions still running at the end, logged whole, stay as many as in one process),
    concatenated in shard order. The
    data depend on the seed and the number of workers (so a dataset's cache key includes it
    when it is not 1), not on the machine."""
    spec = _with_defaults(spec)
    rng = np.random.default_rng(seed)
    kind = spec.get("kind")
    n = int(spec["num_transitions"])
    users = int(spec["batch_users"])
    workers = check_num_workers(spec.get("num_workers", 1), "data.num_workers")
    sharded = kind in ("policy", "mixture") and workers > 1
    # the shards build their own simulators: none here (serial work before the fork, issue #19)
    sim = None if sharded else sim_factory()
    meta = {"pipeline": spec.get("name"), "seed": seed}
    if workers > 1 and kind not in ("policy", "mixture"):
        raise ValueError(f"data.num_workers > 1 needs data.kind 'policy' or 'mixture' (an online agent learns "
                         f"in one process), got kind {kind!r}")

    def policy(node: dict[str, Any], generator: np.random.Generator) -> Any:
        # a `_partial_` behaviour needs the pipeline's (or the shard's) generator to be built
        return instantiate(node)(rng=generator) if node.get("_partial_") else instantiate(node)

    def log(sim: Any, generator: np.random.Generator, num_transitions: int, users: int) -> OfflineDataset:
        if kind == "policy":
            return collect(sim, policy(spec["behaviour"], generator), num_transitions, generator,
                           batch_size=users, metadata=meta)
        components = [(policy(c["behaviour"], generator), float(c["fraction"])) for c in spec["components"]]
        logged = collect_mixture(sim, components, num_transitions, generator, users)
        logged.metadata.update(meta)
        return logged

    if sharded:
        shards = np.random.SeedSequence(seed).spawn(workers)
        shares = [n // workers + (index < n % workers) for index in range(workers)]
        shard_users = -(-users // workers)  # as many sessions at a time as one process would run
        data = OfflineDataset.concatenate(map_jobs(
            lambda index: log(sim_factory(), np.random.default_rng(shards[index]), shares[index], shard_users),
            workers, workers))
        data.metadata.update(meta, num_workers=workers)
    elif kind in ("policy", "mixture"):
        data = log(sim, rng, n, users)
    elif kind == "online":
        obs_dim = sim.reset(1, np.random.default_rng(seed)).shape[1]
        agent = _online_agent(spec, obs_dim, int(sim.action_dim), seed)
        steps = int(spec["online_steps"])
        hook = None
        if concurrent_learner is not None:
            generator = concurrent_learner.generator
            batch = int(getattr(concurrent_learner.config, "batch_size", 256))

            def hook(buffer: Any) -> None:
                concurrent_learner.update(buffer.sample(batch, generator))
        result = train_online(sim, agent, steps, rng, batch_users=users,
                              exploration_sigma=float(spec["exploration_sigma"]),
                              start_steps=int(spec["start_steps"]),
                              updates_per_step=int(spec["updates_per_step"]), on_update=hook,
                              metadata=meta)
        if spec.get("collect_after") is not None:
            # log with the (partially) trained agent instead of keeping its replay buffer
            sigma = float(spec["collect_after"]["sigma"])
            actor = ExplorationPolicy(agent, sigma, rng) if sigma > 0 else (
                lambda s, o: agent.act(o, deterministic=True))
            data = collect(sim, actor, n, rng, batch_size=users, metadata=meta)
        else:
            data = result.dataset
        data.metadata["online_final_return"] = float(np.mean(result.episode_returns[-users:])) \
            if len(result.episode_returns) else float("nan")
    else:
        raise ValueError(f"data.kind must be 'policy', 'mixture' or 'online', got {kind!r}")
    return data
