"""The data pipelines: how an offline dataset is logged from the simulator.

The names follow Fujimoto et al. (2019) and the offline-RL literature:

- ``final_buffer``: the whole replay buffer of an online TD3 agent trained in the
  simulator with high exploration noise (σ = 0.5);
- ``concurrent``: the replay buffer of an online TD3 agent trained with σ = 0.1; an offline
  learner is trained on the same, growing buffer at the same time (``concurrent_learner``
  below) and its result is reported beside the behaviour agent's;
- ``imitation``: an expert acting without noise (the heuristic expert, which reads the
  true user state) — no behaviour log-probabilities (the policy is deterministic);
- ``random``: uniform actions; ``expert``: the heuristic expert with truncated-Gaussian
  noise (σ = 0.1); ``medium``: a partially trained online agent with σ = 0.1;
  ``mixed``: half random, half expert episodes (each episode keeps the log-probability of
  the policy that logged it).

A pipeline is a config (``conf/data/*.yaml``): ``kind`` is ``policy`` (collect with a
behaviour policy built from ``behaviour``), ``mixture`` (several ``components``) or
``online`` (train TD3 online first). Datasets are cached in ``cache_dir`` under
``<name>-<hash>`` where the hash covers the pipeline config and the simulator config: an
unchanged config reuses the saved dataset, a changed one makes a new one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from marl_rec.data.collect import collect
from marl_rec.data.dataset import OfflineDataset

Factory = Callable[..., Any]


def config_hash(*configs: Any) -> str:
    """A stable 12-hex-digit content hash of JSON-serialisable configs."""
    text = json.dumps(configs, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cached_dataset(cache_dir: str | Path, name: str, key: str,
                   build: Callable[[], OfflineDataset]) -> tuple[OfflineDataset, Path, bool]:
    """Load ``cache_dir/<name>-<key>`` if it exists, else build and save it.

    Returns (dataset, path, reused)."""
    path = Path(cache_dir) / f"{name}-{key}"
    if path.exists():
        return OfflineDataset.load(path), path, True
    dataset = build()
    dataset.save(path)
    return dataset, path, False


def collect_mixture(sim: Any, components: list[tuple[Callable, float]], num_transitions: int,
                    rng: np.random.Generator, batch_size: int) -> OfflineDataset:
    """Episodes from several behaviour policies, ``fraction`` of the transitions each."""
    parts = []
    for policy, fraction in components:
        n = max(1, int(round(fraction * num_transitions)))
        parts.append(collect(sim, policy, n, rng, batch_size=batch_size))
    return OfflineDataset.concatenate(parts)


def _online_agent(spec: Any, obs_dim: int, seed: int):
    """The online TD3/DDPG agent of an ``online`` pipeline (rec-sized networks)."""
    from marl_rec.algos.base import ActionSpec
    from marl_rec.algos.registry import make_algorithm

    overrides = dict(spec.get("agent_overrides") or {})
    return make_algorithm(spec.get("agent", "td3"), obs_dim, ActionSpec("continuous", dim=4),
                          preset=spec.get("agent_preset", "rec"), seed=seed, **overrides)


def build_dataset(spec: dict[str, Any], sim_factory: Callable[[], Any], instantiate: Callable[..., Any],
                  seed: int, concurrent_learner: Any = None) -> OfflineDataset:
    """Log the dataset that the pipeline ``spec`` (a ``conf/data`` node as a dict) describes.

    ``instantiate`` builds behaviour policies from their ``_target_`` nodes (Hydra's
    ``instantiate``; marl_rec does not import the policies' package). ``concurrent_learner``
    (``concurrent`` only): an offline algorithm updated once per online update on the same,
    growing buffer."""
    sim = sim_factory()
    rng = np.random.default_rng(seed)
    kind = spec.get("kind")
    n = int(spec["num_transitions"])
    users = int(spec.get("batch_users", 512))
    meta = {"pipeline": spec.get("name"), "seed": seed}

    def policy(node: dict[str, Any]) -> Any:
        # a `_partial_` behaviour needs the pipeline's generator to be built
        return instantiate(node)(rng=rng) if node.get("_partial_") else instantiate(node)

    if kind == "policy":
        data = collect(sim, policy(spec["behaviour"]), n, rng, batch_size=users, metadata=meta)
    elif kind == "mixture":
        components = [(policy(c["behaviour"]), float(c["fraction"])) for c in spec["components"]]
        data = collect_mixture(sim, components, n, rng, users)
        data.metadata.update(meta)
    elif kind == "online":
        from marl_rec.algos.online import ExplorationPolicy, train_online

        obs_dim = sim.reset(1, np.random.default_rng(seed)).shape[1]
        agent = _online_agent(spec, obs_dim, seed)
        steps = int(spec["online_steps"])
        hook = None
        if concurrent_learner is not None:
            generator = concurrent_learner.generator
            batch = int(getattr(concurrent_learner.config, "batch_size", 256))

            def hook(buffer: Any) -> None:
                concurrent_learner.update(buffer.sample(batch, generator))
        result = train_online(sim, agent, steps, rng, batch_users=users,
                              exploration_sigma=float(spec["exploration_sigma"]),
                              start_steps=int(spec.get("start_steps", 0)),
                              updates_per_step=int(spec.get("updates_per_step", 1)), on_update=hook,
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
