"""d3rlpy 2.8.1 algorithms built with settings matched to marl-rec's, for side-by-side benchmarks.

Only the benchmark environment has d3rlpy (``bench/setup_bench_venv.sh`` builds
``.venv-bench``); marl-rec itself never imports it. What "matched" means here:

- the same network sizes as our ``paper`` configs (d3rlpy's encoders default to 256-256);
- batch 256 everywhere (d3rlpy's BC, BCQ and FQE default to 100);
- BCQ: 10 sampled actions (d3rlpy: 100; Fujimoto et al. and ours: 10), VAE 750-750 and a
  tanh decoder output. d3rlpy's ``VAEDecoder`` has its squash flag inverted: its default
  call (``with_squash=True``) returns the *linear* output; :func:`make_d3rlpy` swaps in
  Fujimoto's ``max_action·tanh`` decoder (:class:`TanhVAEDecoder`);
- CQL: 3×256 actor and critics, CQL(H) with a fixed α = 5 (``alpha_learning_rate=0``: with
  ``initial_alpha=1`` the penalty is 5·(gap − threshold), whose gradient is exactly
  5·∇gap, our ``lagrange=False``); d3rlpy's default tunes α (CQL-Lagrange);
- FQE: a twin 256-256 critic, Adam 3e-4 (d3rlpy's defaults: one critic, 1e-4); it keeps
  its hard target copy every 100 updates (ours: Polyak τ = 0.005) and queries the target
  policy at every update (ours tabulates it once per fit).

Remaining differences (d3rlpy's algorithm, not a setting): CQL's TD target uses the mean
action tanh(μ(s')) where ours samples a' ~ π(·|s'); d3rlpy's Adam is the for-loop one,
ours the fused one; d3rlpy draws from the global torch RNG (seed it with ``d3rlpy.seed``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

import d3rlpy
from d3rlpy.models.encoders import VectorEncoderFactory
from d3rlpy.models.torch.imitators import VAEDecoder

D3RLPY_VERSION = "2.8.1"
BATCH_SIZE = 256


class TanhVAEDecoder(VAEDecoder):
    """Fujimoto's BCQ decoder: ``tanh`` output whatever ``with_squash`` says (d3rlpy's own
    decoder applies tanh only when called with ``with_squash=False``, and no caller does)."""

    def forward(self, x: Any, latent: torch.Tensor, with_squash: bool = True) -> torch.Tensor:
        return torch.tanh(self._fc(self._encoder(x, latent)))


def _encoder(hidden: tuple[int, ...]) -> VectorEncoderFactory:
    return VectorEncoderFactory(hidden_units=list(hidden))


def d3rlpy_config(name: str, marl_config: Any) -> Any:
    """The d3rlpy config of algorithm ``name`` ("bc", "td3", "bcq", "cql") with the sizes and
    hyper-parameters of our ``marl_config`` (a BCConfig / TD3Config / BCQConfig / CQLConfig)."""
    c = marl_config
    if name == "bc":
        return d3rlpy.algos.BCConfig(batch_size=c.batch_size, learning_rate=c.actor_lr,
                                     policy_type="deterministic", encoder_factory=_encoder(c.actor_hidden))
    if name == "td3":
        return d3rlpy.algos.TD3Config(
            batch_size=c.batch_size, actor_learning_rate=c.actor_lr, critic_learning_rate=c.critic_lr,
            actor_encoder_factory=_encoder(c.actor_hidden), critic_encoder_factory=_encoder(c.critic_hidden),
            gamma=c.gamma, tau=c.tau, n_critics=2, target_smoothing_sigma=c.policy_noise,
            target_smoothing_clip=c.noise_clip, update_actor_interval=c.policy_delay)
    if name == "bcq":
        if c.latent_dim not in (0, None):
            raise ValueError("d3rlpy's BCQ fixes the latent size at 2·action_dim; use latent_dim=0")
        return d3rlpy.algos.BCQConfig(
            batch_size=c.batch_size, actor_learning_rate=c.actor_lr, critic_learning_rate=c.critic_lr,
            imitator_learning_rate=c.vae_lr, actor_encoder_factory=_encoder(c.actor_hidden),
            critic_encoder_factory=_encoder(c.critic_hidden), imitator_encoder_factory=_encoder(c.vae_hidden),
            gamma=c.gamma, tau=c.tau, n_critics=2, lam=c.lmbda, n_action_samples=c.num_sampled_actions,
            action_flexibility=c.phi, beta=c.kl_weight)
    if name == "cql":
        if c.lagrange or c.backup_entropy or c.bc_warmup_updates:
            raise ValueError("the d3rlpy CQL adapter matches CQL(H) with a fixed alpha, no entropy backup and "
                             "no BC warm start (lagrange=False, backup_entropy=False, bc_warmup_updates=0)")
        return d3rlpy.algos.CQLConfig(
            batch_size=c.batch_size, actor_learning_rate=c.actor_lr, critic_learning_rate=c.critic_lr,
            temp_learning_rate=c.entropy_lr, alpha_learning_rate=0.0, initial_alpha=1.0,
            initial_temperature=c.initial_entropy_alpha, conservative_weight=c.cql_alpha,
            actor_encoder_factory=_encoder(c.actor_hidden), critic_encoder_factory=_encoder(c.critic_hidden),
            gamma=c.gamma, tau=c.tau, n_critics=2, n_action_samples=c.num_sampled_actions,
            soft_q_backup=False, max_q_backup=False)
    raise ValueError(f"no d3rlpy adapter for algorithm {name!r}; choose bc, td3, bcq or cql")


BCQ_DECODERS = ("tanh", "linear")


def make_d3rlpy(name: str, marl_config: Any, obs_dim: int, action_dim: int, bcq_decoder: str = "tanh") -> Any:
    """A built (``create_impl``) d3rlpy algorithm matching ``marl_config``, on the CPU.

    ``bcq_decoder``: ``"tanh"`` (Fujimoto's and ours: the matched setting, what throughput is
    timed with) or ``"linear"`` (d3rlpy as it ships). On the default world's production logs
    d3rlpy's BCQ with the tanh decoder stays at the all-(-1) corner while its linear decoder
    follows the logged actions (``bench/d3rlpy_bcq_decoder.py``), so a learning-speed comparison
    can ask for d3rlpy as users run it."""
    if bcq_decoder not in BCQ_DECODERS:
        raise ValueError(f"bcq_decoder must be one of {BCQ_DECODERS}, got {bcq_decoder!r}")
    if d3rlpy.__version__ != D3RLPY_VERSION:
        raise RuntimeError(f"the adapters are checked against d3rlpy {D3RLPY_VERSION}, found {d3rlpy.__version__}")
    algo = d3rlpy_config(name, marl_config).create(device="cpu:0")
    algo.create_impl((obs_dim,), action_dim)
    if name == "bcq" and bcq_decoder == "tanh":
        decoder = algo.impl.modules.vae_decoder
        if type(decoder) is not VAEDecoder:
            raise RuntimeError(f"unexpected d3rlpy VAE decoder type {type(decoder).__name__}")
        decoder.__class__ = TanhVAEDecoder
    return algo


def make_d3rlpy_fqe(target: Any, hidden: tuple[int, ...], num_critics: int, learning_rate: float,
                    gamma: float, batch_size: int = BATCH_SIZE) -> Any:
    """d3rlpy's continuous FQE of the (built) d3rlpy algorithm ``target``, at our FQE's sizes."""
    config = d3rlpy.ope.FQEConfig(batch_size=batch_size, learning_rate=learning_rate, gamma=gamma,
                                  n_critics=num_critics, encoder_factory=_encoder(hidden))
    fqe = d3rlpy.ope.FQE(algo=target, config=config, device="cpu:0")
    fqe.create_impl(target.impl.observation_shape, target.impl.action_size)
    return fqe


class D3rlpyPolicy:
    """A d3rlpy algorithm behind marl-rec's duck-typed policy interface (``act`` / ``q_value``),
    so that :class:`marl_rec.trainer.SimulatorEvaluator` can evaluate it.

    ``act`` is d3rlpy's ``predict`` (greedy; BCQ's still samples its candidate latents from the
    global torch RNG), ``q_value`` is ``predict_value`` (the mean over d3rlpy's critics)."""

    def __init__(self, algo: Any) -> None:
        self.algo = algo

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float32)
        single = obs.ndim == 1
        actions = self.algo.predict(obs[None] if single else obs)
        return actions[0] if single else actions

    def q_value(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float32)
        action = np.asarray(action, dtype=np.float32)
        single = obs.ndim == 1
        values = self.algo.predict_value(obs[None] if single else obs, action[None] if single else action)
        return values[0] if single else values
