"""A small, real training run for the trainer/checkpoint tests, usable as a subprocess.

``python tests/helpers/trainer_worker.py RUN_DIR --num-updates N [--resume] [--out final.pt]`` trains
on a fixed synthetic dataset (shaped like ``small_simulator``'s observations and fusion actions) with a
simulator evaluator, then saves the algorithm's full state (and the final metrics) to
``--out``. The kill/resume test runs it, SIGKILLs it mid-run, resumes it, and compares the
result with an uninterrupted run bit for bit.

``TinyTD3`` is a genuine (small) TD3 with a dropout critic, so a resume has to restore the
networks, both Adam optimisers, the algorithm's generator (target noise), the global torch
RNG (dropout) and the trainer's batch-sampling generator to end identical.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from marl_rec.envs.simulator import ACTION_DIM, SimulatorConfig, UserSimulator  # noqa: E402
from marl_rec.algos.base import OfflineAlgorithm  # noqa: E402
from marl_rec.contracts import ActionSpec, Batch  # noqa: E402
from marl_rec.data.dataset import OfflineDataset  # noqa: E402
from marl_rec.nets import CriticEnsemble, DeterministicActor, soft_update  # noqa: E402
from marl_rec.trainer import SimulatorEvaluator, Trainer, TrainerConfig  # noqa: E402

SMALL_WORLD = SimulatorConfig(items_per_topic=40, ads_per_topic=4, max_requests=10)
OBS_DIM = SMALL_WORLD.obs_dim  # the evaluator's simulator observes exactly this


@dataclass
class TinyTD3Config:
    hidden: tuple[int, ...] = (32, 32)
    gamma: float = 0.99
    tau: float = 0.005
    lr: float = 1e-3
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    policy_delay: int = 2
    dropout: float = 0.1


class TinyTD3(OfflineAlgorithm):
    """TD3 with small networks; metrics come back as detached tensors (no per-step sync)."""

    name = "tiny_td3"

    def __init__(self, obs_dim: int, action_spec: ActionSpec, config: TinyTD3Config | None = None,
                 seed: int = 0) -> None:
        config = config or TinyTD3Config()
        super().__init__(obs_dim, action_spec, config, seed)
        self.actor = DeterministicActor(obs_dim, action_spec.dim, config.hidden)
        self.critic = CriticEnsemble(obs_dim, action_spec.dim, config.hidden, 2, dropout=config.dropout)
        self.actor_target, self.critic_target = copy.deepcopy(self.actor), copy.deepcopy(self.critic)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.lr)
        self.updates = 0

    def update(self, batch: Batch) -> dict[str, Any]:
        c = self.config
        with torch.no_grad():
            noise = torch.randn(batch.actions.shape, generator=self.generator) * c.policy_noise
            next_action = (self.actor_target(batch.next_observations) + noise.clamp(-c.noise_clip, c.noise_clip)
                           ).clamp(-1.0, 1.0)
            next_q = self.critic_target(batch.next_observations, next_action).min(0).values
            target = batch.rewards + c.gamma * (1.0 - batch.dones) * next_q
        q = self.critic(batch.observations, batch.actions)
        critic_loss = ((q - target) ** 2).mean()
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        metrics = {"critic_loss": critic_loss.detach(), "q_mean": q.detach().mean()}
        self.updates += 1
        if self.updates % c.policy_delay == 0:
            actor_loss = -self.critic(batch.observations, self.actor(batch.observations))[0].mean()
            self.actor_optimizer.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_optimizer.step()
            soft_update(self.actor_target, self.actor, c.tau)
            soft_update(self.critic_target, self.critic, c.tau)
            metrics["actor_loss"] = actor_loss.detach()
        return metrics

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return self.actor(torch.as_tensor(obs, dtype=torch.float32)).numpy()

    @torch.no_grad()
    def q_value(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        self.critic.eval()  # no dropout when estimating
        q = self.critic(torch.as_tensor(obs, dtype=torch.float32), torch.as_tensor(action, dtype=torch.float32))
        self.critic.train()
        return q.min(0).values.numpy()

    def state_dict(self) -> dict[str, Any]:
        return {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "actor_target": self.actor_target.state_dict(), "critic_target": self.critic_target.state_dict(),
                "actor_optimizer": self.actor_optimizer.state_dict(),
                "critic_optimizer": self.critic_optimizer.state_dict(),
                "updates": self.updates, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("actor", "critic", "actor_target", "critic_target", "actor_optimizer", "critic_optimizer"):
            getattr(self, name).load_state_dict(state[name])
        self.updates = int(state["updates"])
        self.generator.set_state(state["generator"])


def synthetic_dataset(num_episodes: int = 128, length: int = 16, seed: int = 0) -> OfflineDataset:
    """Fixed random transitions shaped like the simulator's (reward depends on obs and action)."""
    rng = np.random.default_rng(seed)
    n = num_episodes * length
    obs = rng.random((n, OBS_DIM), dtype=np.float32)
    actions = rng.uniform(-1, 1, (n, ACTION_DIM)).astype(np.float32)
    rewards = (obs[:, :ACTION_DIM] * actions).sum(1).astype(np.float32) + 0.1 * rng.standard_normal(n, np.float32)
    starts = np.zeros(n, dtype=bool)
    starts[::length] = True
    terminals = np.zeros(n, dtype=bool)
    terminals[length - 1::length] = True
    return OfflineDataset(observations=obs, actions=actions, rewards=rewards,
                          next_observations=rng.random((n, OBS_DIM), dtype=np.float32), terminals=terminals,
                          truncations=np.zeros(n, dtype=bool), episode_starts=starts,
                          action_spec=ActionSpec("continuous", dim=ACTION_DIM))


def small_simulator() -> UserSimulator:
    return UserSimulator(SMALL_WORLD)


def make_algorithm(name: str = "tiny_td3", seed: int = 0, hidden: tuple[int, ...] = (32, 32)) -> OfflineAlgorithm:
    """``tiny_td3`` (this file; its weights come from the global torch RNG, seeded here as an
    entry point would) or a registered algorithm ("td3", "bc", ...) with ``hidden`` layers."""
    spec = ActionSpec("continuous", dim=ACTION_DIM)
    if name == "tiny_td3":
        torch.manual_seed(seed)
        return TinyTD3(OBS_DIM, spec, TinyTD3Config(hidden=hidden), seed=seed)
    from marl_rec.algos.registry import ALGORITHMS
    from marl_rec.algos.registry import make_algorithm as make_registered

    sizes = {f.name: hidden for f in dataclasses.fields(ALGORITHMS[name][1]) if f.name.endswith("_hidden")}
    return make_registered(name, OBS_DIM, spec, preset="rec", seed=seed, **sizes)


def train(run_dir: str | Path, algo: str = "td3", hidden: tuple[int, ...] = (32, 32), num_updates: int = 600,
          checkpoint_every: int = 50, log_every: int = 25, eval_every: int = 200,
          resume: bool = False) -> tuple[OfflineAlgorithm, dict[str, float]]:
    """One training run (fresh or resumed) on the synthetic dataset; returns the algorithm and final metrics."""
    torch.set_num_threads(1)
    algorithm = make_algorithm(algo, hidden=hidden)
    config = TrainerConfig(num_updates=num_updates, batch_size=64, eval_every=eval_every,
                           checkpoint_every=checkpoint_every, log_every=log_every,
                           q_divergence_bound=1e6, seed=0, progress=False)
    trainer = Trainer(algorithm, synthetic_dataset(), config, run_dir,
                      evaluators=[SimulatorEvaluator(small_simulator, num_users=8, seed=1)])
    return algorithm, trainer.fit(resume=resume)


def assert_states_equal(a: Any, b: Any, path: str = "state") -> None:
    """Nested state dicts are equal: same keys, bit-identical tensors (and dtypes), equal values."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert set(a) == set(b), path
        for key in a:
            assert_states_equal(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_states_equal(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--algo", default="td3", help="tiny_td3 or a registered algorithm")
    parser.add_argument("--hidden", type=int, nargs="+", default=[32, 32])
    parser.add_argument("--num-updates", type=int, default=600)
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--out", default=None, help="save the final algorithm state and metrics here")
    args = parser.parse_args(argv)
    algorithm, final = train(args.run_dir, args.algo, tuple(args.hidden), args.num_updates, args.checkpoint_every,
                             args.log_every, args.eval_every, args.resume)
    if args.out:
        torch.save({"state": algorithm.state_dict(), "final": final}, args.out)
    print(json.dumps(final))


if __name__ == "__main__":
    main()
