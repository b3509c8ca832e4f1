"""Train every environment a few thousand steps in the RL libraries users bring (``make clients``).

Runs in ``.venv-clients`` (bench/clients/setup_clients_venv.sh), never in the project's .venv:

- Stable-Baselines3: PPO and SAC on ``marl_rec/FusionRanking-v0`` through ``make_vec_env``
  (which passes ``render_mode="rgb_array"``), plus one rendered frame;
- Tianshou: one PPO per agent (``MultiAgentOnPolicyAlgorithm``) on each PettingZoo env through
  ``tianshou.env.PettingZooEnv``; the multi-agent envs through
  ``marl_rec.envs.shared_spaces.shared_spaces`` (Tianshou needs identical spaces);
- RLlib: PPO on each PettingZoo env (AEC form, ``ray.rllib.env.PettingZooEnv``), one policy
  per agent; JointRecAds without action masking (Dict observations flattened by RLlib's
  connector; masked actions become the documented no-op) and with RLlib's action-masking
  module.

Also measures how each client books rewards (``reward_accounting``): per agent, the reward on
its own transitions summed over random episodes, against what the environment booked.

    .venv-clients/bin/python bench/clients/train_clients.py [--clients sb3 tianshou rllib]
        [--steps 2000] [--out bench/results/clients.json]

Exits non-zero if any client raised; prints one line per run (steps, seconds, mean reward).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import marl_rec.envs  # noqa: F401  (registers the environments)

SMALL = dict(max_requests=20)  # shorter sessions: more episodes per step budget
HIER = dict(max_sessions=3, max_requests=10)
MULTI_AGENT = {
    "marl_rec/FusionRanking-v0": SMALL,
    "marl_rec/JointRecAds-v0": SMALL,
    "marl_rec/HierarchicalInterest-v0": HIER,
}


# ------------------------------------------------------------------------------------ SB3
def run_sb3(steps: int) -> list[dict[str, Any]]:
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    out = []
    for name, algo, kwargs in (("PPO", PPO, dict(n_steps=256, batch_size=64)),
                               ("SAC", SAC, dict(learning_starts=200, batch_size=64))):
        start = time.perf_counter()
        venv = make_vec_env("marl_rec/FusionRanking-v0", n_envs=2, seed=0, env_kwargs=SMALL)
        model = algo("MlpPolicy", venv, seed=0, device="cpu", verbose=0, **kwargs)
        model.learn(total_timesteps=steps)
        mean, _ = evaluate_policy(model, venv, n_eval_episodes=4)
        frame = venv.render()  # the default render_mode of make_vec_env is rgb_array
        assert frame is not None and frame.ndim == 3, f"render returned {type(frame)}"
        venv.close()
        out.append(dict(client="sb3", algo=name, env="marl_rec/FusionRanking-v0", steps=steps,
                        seconds=time.perf_counter() - start, mean_return=float(mean)))
    return out


# ------------------------------------------------------------------------------- Tianshou
def tianshou_env(env_id: str, patched: bool = True):
    """``tianshou.env.PettingZooEnv`` over the env (multi-agent ones through ``shared_spaces``).

    ``patched``: work around a Tianshou 2.0.1 bug (also on main): ``MultiAgentPolicy.forward``
    evaluates ``batch.obs_next`` whenever the observation has no ``mask``, and collection
    batches have no ``obs_next`` (``AttributeError: 'dict' object has no attribute 'obs_next'``),
    so no continuous-action agent can act. Adding an all-True ``mask`` (continuous actions have
    nothing to mask) takes the other branch; the actor then receives the observation Batch and
    reads ``.obs`` (:func:`tianshou_net`).
    """
    import pettingzoo
    from tianshou.env.pettingzoo_env import PettingZooEnv

    from marl_rec.envs.shared_spaces import shared_spaces

    class MaskedPettingZooEnv(PettingZooEnv):
        def _with_mask(self, obs: dict) -> dict:
            if "mask" not in obs:
                obs["mask"] = [True] * int(np.prod(self.action_space.shape))
            return obs

        def reset(self, *args, **kwargs):
            obs, info = super().reset(*args, **kwargs)
            return self._with_mask(obs), info

        def step(self, action):
            obs, rewards, terminated, truncated, info = super().step(action)
            return self._with_mask(obs), rewards, terminated, truncated, info

    env = pettingzoo.make("aec", env_id, **MULTI_AGENT[env_id])
    env = shared_spaces(env) if len(env.possible_agents) > 1 else env
    return MaskedPettingZooEnv(env) if patched else PettingZooEnv(env)


def tianshou_net(obs_dim: int):
    """Tianshou's MLP, reading ``.obs`` when it gets the observation Batch (see tianshou_env)."""
    from tianshou.data import Batch
    from tianshou.utils.net.common import Net

    class ObsNet(Net):
        def forward(self, obs, state=None, info=None):
            return super().forward(obs.obs if isinstance(obs, Batch) else obs, state, info)

    return ObsNet(state_shape=obs_dim, hidden_sizes=[64, 64])


def tianshou_critic(critic_class, obs_dim: int):
    """Tianshou's critic, reading ``.obs`` when it gets the observation Batch (see tianshou_env)."""
    from tianshou.data import Batch

    class ObsCritic(critic_class):
        def forward(self, obs, *args, **kwargs):
            return super().forward(obs.obs if isinstance(obs, Batch) else obs, *args, **kwargs)

    return ObsCritic(preprocess_net=tianshou_net(obs_dim))


def run_tianshou(steps: int) -> list[dict[str, Any]]:
    from torch.distributions import Independent, Normal
    from tianshou.algorithm import PPO
    from tianshou.algorithm.modelfree.reinforce import ProbabilisticActorPolicy
    from tianshou.algorithm.multiagent.marl import MultiAgentOnPolicyAlgorithm
    from tianshou.algorithm.optim import AdamOptimizerFactory
    from tianshou.data import Collector, CollectStats, VectorReplayBuffer
    from tianshou.env import DummyVectorEnv
    from tianshou.trainer import OnPolicyTrainerParams
    from tianshou.utils.net.continuous import ContinuousActorProbabilistic, ContinuousCritic

    def dist(loc_scale):
        loc, scale = loc_scale
        return Independent(Normal(loc, scale), 1)

    out = []
    for env_id in MULTI_AGENT:
        start = time.perf_counter()
        env = tianshou_env(env_id)
        obs_dim, act_shape = env.observation_space.shape[0], env.action_space.shape
        algorithms = []
        for _ in env.agents:
            actor = ContinuousActorProbabilistic(preprocess_net=tianshou_net(obs_dim), action_shape=act_shape)
            critic = tianshou_critic(ContinuousCritic, obs_dim)
            policy = ProbabilisticActorPolicy(actor=actor, dist_fn=dist, action_space=env.action_space,
                                              action_scaling=True, action_bound_method="clip")
            algorithms.append(PPO(policy=policy, critic=critic, optim=AdamOptimizerFactory(lr=3e-4)))
        algorithm = MultiAgentOnPolicyAlgorithm(algorithms=algorithms, env=env)
        train_envs = DummyVectorEnv([lambda e=env_id: tianshou_env(e) for _ in range(2)])
        train_envs.seed(0)
        collector = Collector[CollectStats](algorithm, train_envs, VectorReplayBuffer(2048, 2))
        algorithm.run_training(OnPolicyTrainerParams(
            training_collector=collector, test_collector=None, max_epochs=2, epoch_num_steps=steps // 2,
            collection_step_num_env_steps=500, update_step_num_repetitions=2, batch_size=64,
            test_in_training=False, show_progress=False))
        stats = collector.collect(n_episode=4, reset_before_collect=True)
        out.append(dict(client="tianshou", algo="PPO per agent", env=env_id, steps=steps,
                        seconds=time.perf_counter() - start,
                        mean_return=float(np.mean(stats.returns[:, 0] if stats.returns.ndim == 2
                                                  else stats.returns))))
    return out


# ---------------------------------------------------------------------------------- RLlib
def rllib_module_with_masking():
    """RLlib's example action-masking module reads the keys ``"observations"`` / ``"action_mask"``;
    PettingZoo's convention (ours, Tianshou's, the API tests') is ``"observation"``: map the key."""
    import gymnasium
    from ray.rllib.core.columns import Columns
    from ray.rllib.examples.rl_modules.classes.action_masking_rlm import ActionMaskingTorchRLModule

    class PettingZooActionMaskingModule(ActionMaskingTorchRLModule):
        def __init__(self, *, observation_space=None, **kwargs):
            if isinstance(observation_space, gymnasium.spaces.Dict) and "observation" in observation_space.spaces:
                observation_space = gymnasium.spaces.Dict({"observations": observation_space["observation"],
                                                           "action_mask": observation_space["action_mask"]})
            super().__init__(observation_space=observation_space, **kwargs)

        def _preprocess_batch(self, batch, **kwargs):
            obs = batch[Columns.OBS]
            if "observation" in obs:
                obs["observations"] = obs.pop("observation")
            obs["action_mask"] = obs["action_mask"].float()  # int8 in PettingZoo; log() needs floats
            return super()._preprocess_batch(batch, **kwargs)

    return PettingZooActionMaskingModule


def rllib_config(env_id: str, masking: bool, steps: int):
    import pettingzoo
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.connectors.env_to_module import FlattenObservations
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from ray.rllib.env.wrappers.pettingzoo_env import PettingZooEnv
    from ray.tune.registry import register_env

    name = f"{env_id.split('/')[-1]}-{'masked' if masking else 'plain'}"
    register_env(name, lambda cfg, e=env_id: PettingZooEnv(pettingzoo.make("aec", e, **MULTI_AGENT[e])))
    agents = pettingzoo.make("aec", env_id, **MULTI_AGENT[env_id]).possible_agents
    config = (PPOConfig().environment(name)
              .framework("torch")
              .env_runners(num_env_runners=0, rollout_fragment_length="auto")
              .learners(num_learners=0)
              .training(train_batch_size_per_learner=steps // 2, minibatch_size=128, num_epochs=2)
              .multi_agent(policies=set(agents), policy_mapping_fn=lambda agent_id, *a, **k: agent_id))
    if masking:
        module = rllib_module_with_masking()
        config = config.rl_module(rl_module_spec=MultiRLModuleSpec(rl_module_specs={
            agent: RLModuleSpec(module_class=module) if agent == "advertiser" else RLModuleSpec()
            for agent in agents}))
    else:
        config = config.env_runners(env_to_module_connector=lambda env, spaces=None, device=None:
                                    FlattenObservations(multi_agent=True))
    return config


def run_rllib(steps: int) -> list[dict[str, Any]]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    out = []
    try:
        runs = [(env_id, False) for env_id in MULTI_AGENT] + [("marl_rec/JointRecAds-v0", True)]
        for env_id, masking in runs:
            start = time.perf_counter()
            algo = rllib_config(env_id, masking, steps).build_algo()
            for _ in range(2):
                result = algo.train()
            runner = result["env_runners"]
            invalid = rllib_invalid_share(algo) if env_id.endswith("JointRecAds-v0") else None
            algo.stop()
            out.append(dict(client="rllib", algo="PPO" + (" + action masking" if masking else ""), env=env_id,
                            steps=int(result.get("num_env_steps_sampled_lifetime", steps)),
                            seconds=time.perf_counter() - start,
                            mean_return=float(runner.get("episode_return_mean", float("nan"))),
                            advertiser_invalid_share=invalid))
    finally:
        ray.shutdown()
    return out


def rllib_invalid_share(algo, episodes: int = 5) -> float:
    """Share of the advertiser's actions the ad-load cap forbade, under the trained modules
    (sampled actions, as in training)."""
    import gymnasium
    import pettingzoo
    from ray.rllib.core.columns import Columns

    module = algo.get_module("advertiser")
    env = pettingzoo.make("parallel", "marl_rec/JointRecAds-v0", **SMALL)
    invalid = total = 0
    for episode in range(episodes):
        obs, _ = env.reset(seed=100 + episode)
        while env.agents:
            ad = obs["advertiser"]
            batch_obs = {k: torch.as_tensor(v[None]) for k, v in ad.items()}
            if not _is_masking_module(module):  # RLlib's FlattenObservations: the Dict's keys in sorted order
                flat = gymnasium.spaces.utils.flatten(env.observation_space("advertiser"), ad)
                batch_obs = torch.as_tensor(flat[None], dtype=torch.float32)
            logits = module.forward_inference({Columns.OBS: batch_obs})[Columns.ACTION_DIST_INPUTS]
            action = int(torch.distributions.Categorical(logits=logits[0]).sample())
            obs, _, _, _, infos = env.step({"recommender": np.zeros(4, np.float32), "advertiser": action})
            invalid += infos["advertiser"]["invalid_action"]
            total += 1
    return invalid / max(total, 1)


def _is_masking_module(module) -> bool:
    return hasattr(module, "observation_space_with_mask")  # set by RLlib's ActionMaskingTorchRLModule


# --------------------------------------------------------------------- reward accounting
def reward_accounting(env_id: str, episodes: int = 20) -> dict[str, Any]:
    """Per agent: rewards the env booked vs rewards each client puts on the agent's own transitions.

    Booked: the sum of the AEC env's per-step ``rewards[agent]`` over every step (a ledger
    wrapper reads them right after each step). Tianshou (``PettingZooEnv.step``) stores
    ``env.rewards`` right after the acting agent's step, and its multi-agent algorithm keeps,
    for each agent, the reward column on that agent's own transitions only. RLlib's AEC wrapper
    returns ``last()`` — the rewards accumulated since the agent last acted — when the agent is
    next selected (and at the episode's end).
    """
    import pettingzoo
    from pettingzoo.utils.wrappers import BaseWrapper
    from ray.rllib.env.wrappers.pettingzoo_env import PettingZooEnv as RLlibEnv

    class Ledger(BaseWrapper):
        def __init__(self, env):
            super().__init__(env)
            self.booked: dict[str, float] = {}

        def step(self, action):
            self.env.step(action)
            for agent, reward in self.env.rewards.items():
                self.booked[agent] = self.booked.get(agent, 0.0) + float(reward)

    # Tianshou: its wrapper over shared_spaces (identical spaces), random actions
    from tianshou.env.pettingzoo_env import PettingZooEnv as TianshouEnv

    from marl_rec.envs.shared_spaces import shared_spaces

    ledger = Ledger(pettingzoo.make("aec", env_id, **MULTI_AGENT[env_id]))
    ts_env = TianshouEnv(shared_spaces(ledger))
    ts_env.action_space.seed(0)
    tianshou: dict[str, float] = {}
    for episode in range(episodes):
        obs, _ = ts_env.reset(seed=episode)
        done = False
        while not done:
            agent = obs["agent_id"]
            obs, rewards, terminated, truncated, _ = ts_env.step(ts_env.action_space.sample())
            tianshou[agent] = tianshou.get(agent, 0.0) + float(rewards[ts_env.agent_idx[agent]])
            done = terminated or truncated
    ts_booked = ledger.booked
    # RLlib: its AEC wrapper, random allowed actions
    ledger = Ledger(pettingzoo.make("aec", env_id, **MULTI_AGENT[env_id]))
    rl_env = RLlibEnv(ledger)
    rllib: dict[str, float] = {}
    for episode in range(episodes):
        obs, _ = rl_env.reset(seed=episode)
        done = False
        while not done:
            (agent,) = obs
            space = rl_env.action_spaces[agent]
            space.seed(episode)
            mask = obs[agent].get("action_mask") if isinstance(obs[agent], dict) else None
            action = space.sample(mask=mask) if mask is not None else space.sample()
            obs, rewards, terminated, truncated, _ = rl_env.step({agent: action})
            for a, r in rewards.items():
                rllib[a] = rllib.get(a, 0.0) + float(r)
            done = terminated["__all__"] or truncated["__all__"]
    return {"env": env_id, "episodes": episodes,
            "tianshou": {a: {"env_booked": ts_booked[a], "on_own_transitions": tianshou.get(a, 0.0)}
                         for a in ts_booked},
            "rllib": {a: {"env_booked": ledger.booked[a], "on_own_transitions": rllib.get(a, 0.0)}
                      for a in ledger.booked}}


def check_accounting(rows: list[dict[str, Any]]) -> None:
    """RLlib must book every agent's rewards exactly; Tianshou books nothing on the first mover's
    (recommender) and the once-per-session agent's (long_term) own transitions — its convention,
    documented in marl_rec.envs.shared_spaces; this fails when either changes."""
    for row in rows:
        for agent, ledger in row["rllib"].items():
            assert np.isclose(ledger["on_own_transitions"], ledger["env_booked"]), (row["env"], agent, ledger)
        for agent, ledger in row["tianshou"].items():
            starved = agent in ("recommender", "long_term")
            expected = 0.0 if starved else ledger["env_booked"]
            assert ledger["env_booked"] > 0 and np.isclose(ledger["on_own_transitions"], expected), (
                row["env"], agent, ledger)


# -------------------------------------------------------------------------------------- main
CLIENTS: dict[str, Callable[[int], list[dict[str, Any]]]] = {"sb3": run_sb3, "tianshou": run_tianshou,
                                                              "rllib": run_rllib}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", nargs="+", default=list(CLIENTS) + ["accounting"],
                        choices=list(CLIENTS) + ["accounting"])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    runs, failures, accounting = [], [], []
    for client in args.clients:
        try:
            if client == "accounting":
                accounting = [reward_accounting(env_id) for env_id in MULTI_AGENT if env_id != "marl_rec/FusionRanking-v0"]
                for row in accounting:
                    print(json.dumps(row))
                check_accounting(accounting)
                continue
            for row in CLIENTS[client](args.steps):
                runs.append(row)
                print(f"{row['client']:9s} {row['algo']:24s} {row['env']:34s} {row['steps']:6d} steps "
                      f"{row['seconds']:6.1f} s  mean return {row['mean_return']:.2f}"
                      + (f"  advertiser invalid share {row['advertiser_invalid_share']:.2f}"
                         if row.get("advertiser_invalid_share") is not None else ""), flush=True)
        except Exception:  # report every client, then fail
            failures.append(client)
            traceback.print_exc()
            print(f"FAILED: {client}", file=sys.stderr, flush=True)
    if args.out:
        from marl_rec.files import write_json

        write_json(args.out, {"runs": runs, "reward_accounting": accounting, "failed": failures})
    return 1 if failures else 0


if __name__ == "__main__":
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    sys.exit(main())
