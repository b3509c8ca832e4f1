"""Network building blocks shared by every algorithm: MLPs and the one critic ensemble.

The critic ensemble is written once here and used by all algorithms (TD3, BCQ, CQL,
UWAC, FQE, the multi-agent critics). Its layout is a plain list of independent MLPs:
on a 2-core CPU two plain critics measured ~12% faster than one batched (vmapped /
bmm) network; on a GPU batching wins — see bench/updates.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from numpy.polynomial.hermite_e import hermegauss
from torch import nn


def mlp(input_dim: int, hidden: Sequence[int], output_dim: int, dropout: float = 0.0,
        output_activation: nn.Module | None = None, layer_norm: bool = False) -> nn.Sequential:
    """Linear-ReLU stack (an :class:`MLP` without dropout); ``dropout`` > 0 adds Dropout after every hidden layer (UWAC).
    ``layer_norm`` puts a LayerNorm between every hidden Linear and its ReLU: the features the
    output layer reads then have a fixed norm, which damps a critic's runaway growth where the
    data cover the actions thinly (Ball et al. 2023, Yue et al. 2023; FQE's option — measured in
    bench/results/README.md: it helps on uniform logs, and not where a target leaves the support).

    The ReLUs work in place on the Linear output (which nothing else keeps): one activation
    tensor less per layer. On a CPU, where an update's big tensors (CQL: ~8k rows × 256) are
    memory-bound, that measured a few per cent (issue #19); the numbers are the same."""
    layers: list[nn.Module] = []
    last = input_dim
    for width in hidden:
        layers += [nn.Linear(last, width), *([nn.LayerNorm(width)] if layer_norm else []), nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(GeneratorDropout(dropout))
        last = width
    layers.append(nn.Linear(last, output_dim))
    if output_activation is not None:
        layers.append(output_activation)
    return MLP(*layers) if dropout == 0 else nn.Sequential(*layers)


class MLP(nn.Sequential):
    """An ``nn.Sequential`` that, on a CPU, runs a batch of more than ``row_block`` rows block by
    block (each block through every layer, then the next block).

    An update's big evaluations (BCQ's target: 2,560 rows × 750 units; CQL's penalty: 7,936 rows
    × 256) otherwise pass activations of several MB from layer to layer, more than a core's
    cache; in blocks of 512 rows they stay in it. Measured at the paper sizes on the 2-core
    host (issue #19, bench/results/README.md): BCQ's update 1.18x faster (its target evaluation
    1.33x); blocks of 256 / 1,024 rows: 1.17x / 1.02x; CQL's calls of 2,560 rows gained within
    the noise. Each
    row gets the same arithmetic, but the matrix-multiply library may round a row differently
    in a smaller call (an ulp), and weight gradients are summed block by block. Not used with
    dropout (its masks must be drawn as one tensor) nor on other devices, where one call is
    faster. Same parameters and state-dict keys as the ``nn.Sequential``."""

    row_block: int = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or x.shape[0] <= self.row_block or x.device.type != "cpu":
            return super().forward(x)
        return torch.cat([nn.Sequential.forward(self, block) for block in x.split(self.row_block)])


class CriticEnsemble(nn.Module):
    """``num_critics`` independent Q(s, a) networks (or Q(s, ·) heads for discrete actions).

    Continuous: ``forward(obs, action) -> (num_critics, B)``.
    Discrete:   ``forward(obs) -> (num_critics, B, num_actions)`` (pass ``action_dim=0``
    and ``num_actions``).
    """

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int], num_critics: int = 2,
                 dropout: float = 0.0, num_actions: int = 0, layer_norm: bool = False) -> None:
        super().__init__()
        if num_critics < 1:
            raise ValueError(f"num_critics must be >= 1, got {num_critics}")
        self.discrete = num_actions > 0
        out = num_actions if self.discrete else 1
        self.critics = nn.ModuleList(
            mlp(obs_dim + action_dim, hidden, out, dropout, layer_norm=layer_norm) for _ in range(num_critics))

    def forward(self, obs: torch.Tensor, action: torch.Tensor | None = None) -> torch.Tensor:
        x = obs if self.discrete else torch.cat([obs, action], dim=-1)
        if self.discrete:
            return torch.stack([critic(x) for critic in self.critics])
        return torch.stack([critic(x).squeeze(-1) for critic in self.critics])

    def single(self, obs: torch.Tensor, action: torch.Tensor | None = None, index: int = 0) -> torch.Tensor:
        """One member only: (B,) continuous, (B, num_actions) discrete. The actor losses of
        TD3/BCQ use Q_1 alone; evaluating one critic instead of all halves that cost."""
        critic = self.critics[index]
        if self.discrete:
            return critic(obs)
        return critic(torch.cat([obs, action], dim=-1)).squeeze(-1)


class DeterministicActor(nn.Module):
    """a = max_action · tanh(MLP(s)) (DDPG, TD3, BC)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int], max_action: float = 1.0) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, action_dim, output_activation=nn.Tanh())
        self.max_action = max_action

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.max_action * self.net(obs)


class PerturbationActor(nn.Module):
    """BCQ's perturbation model ξ_φ(s, a): a + Φ·max_action·tanh(MLP(s, a)), clipped to the box.

    It nudges an action proposed by the generative model within ±Φ·max_action, so the policy
    stays close to the data (Fujimoto et al., 2019, Φ = 0.05)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int], phi: float,
                 max_action: float = 1.0) -> None:
        super().__init__()
        self.net = mlp(obs_dim + action_dim, hidden, action_dim, output_activation=nn.Tanh())
        self.phi, self.max_action = phi, max_action

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        perturbation = (self.phi * self.max_action) * self.net(torch.cat([obs, action], dim=-1))
        return (action + perturbation).clamp(-self.max_action, self.max_action)


VAE_OUTPUTS = ("tanh", "linear")


class ConditionalVAE(nn.Module):
    """Generative model of the logged actions G(a | s) (BCQ's VAE).

    Encoder MLP(s, a) -> (mean, log_std) of z (log_std clamped to [-4, 15] for stability);
    decoder MLP(s, z) -> max_action·tanh(·) (``output="tanh"``, Fujimoto's), or a linear output
    (``output="linear"``, d3rlpy's): trained unbounded, its proposals clipped to the box. Logged
    actions on the box's faces pull a tanh output into saturation, where its gradient vanishes;
    a linear output reaches them in a few updates (bench/results/README.md, "Time to quality").
    Sampling draws z ~ N(0, I) clipped to [-latent_clip, latent_clip], which keeps proposals
    near the mode of the data."""

    def __init__(self, obs_dim: int, action_dim: int, latent_dim: int, hidden: Sequence[int],
                 max_action: float = 1.0, latent_clip: float = 0.5, output: str = "tanh") -> None:
        super().__init__()
        if output not in VAE_OUTPUTS:
            raise ValueError(f"ConditionalVAE output must be one of {VAE_OUTPUTS}, got {output!r}")
        self.encoder = mlp(obs_dim + action_dim, hidden[:-1], hidden[-1]) if len(hidden) > 1 else \
            nn.Linear(obs_dim + action_dim, hidden[-1])
        self.mean = nn.Linear(hidden[-1], latent_dim)
        self.log_std = nn.Linear(hidden[-1], latent_dim)
        self.decoder = mlp(obs_dim + latent_dim, hidden, action_dim,
                           output_activation=nn.Tanh() if output == "tanh" else None)
        self.latent_dim, self.max_action, self.latent_clip = latent_dim, max_action, latent_clip
        self.linear_output = output == "linear"

    def forward(self, obs: torch.Tensor, action: torch.Tensor, generator: torch.Generator,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction (unclipped), latent mean and latent log-std of (s, a) (reparameterised
        sample)."""
        h = torch.relu(self.encoder(torch.cat([obs, action], dim=-1)))
        mean, log_std = self.mean(h), self.log_std(h).clamp(-4.0, 15.0)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return self._decode(obs, mean + log_std.exp() * noise), mean, log_std

    def _decode(self, obs: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        return self.max_action * self.decoder(torch.cat([obs, latent], dim=-1))

    def decode(self, obs: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """Action proposals for ``latent``, inside the box."""
        actions = self._decode(obs, latent)
        return actions.clamp(-self.max_action, self.max_action) if self.linear_output else actions

    def sample_latent(self, n: int, generator: torch.Generator, device: torch.device | str = "cpu",
                      ) -> torch.Tensor:
        z = torch.randn((n, self.latent_dim), generator=generator, device=device)
        return z.clamp_(-self.latent_clip, self.latent_clip)


def init_linear_(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-initialise every ``nn.Linear`` in ``module`` exactly as PyTorch's default does, but
    drawing from ``generator`` (so networks depend on the algorithm's seed, not on global RNG
    state). Returns ``module``."""
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.Linear):
                nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
                if layer.bias is not None:
                    bound = 1.0 / math.sqrt(layer.in_features) if layer.in_features > 0 else 0.0
                    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return module


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging target ← (1 - τ)·target + τ·source, fused over all parameters."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


class GeneratorDropout(nn.Dropout):
    """``nn.Dropout`` whose masks come from an explicit ``torch.Generator`` once one is set.

    Without a generator it is exactly ``nn.Dropout`` (global RNG). UWAC's MC-dropout critic
    sets the algorithm's generator (``CriticEnsemble.set_dropout_generator``) so that its
    dropout masks, like all its other sampling, are reproducible from the algorithm's seed."""

    generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.generator is None or not self.training or self.p == 0.0:
            return super().forward(x)
        keep = torch.empty_like(x).bernoulli_(1.0 - self.p, generator=self.generator)
        return x * keep.div_(1.0 - self.p)


def set_dropout_generator(module: nn.Module, generator: torch.Generator | None) -> None:
    """Make every ``GeneratorDropout`` inside ``module`` draw its masks from ``generator``."""
    for layer in module.modules():
        if isinstance(layer, GeneratorDropout):
            layer.generator = generator


class TanhGaussianActor(nn.Module):
    """SAC's squashed Gaussian policy (CQL): a = center + half_range · tanh(u), u ~ N(μ(s), σ(s)²).

    ``forward`` returns the sampled action and its exact log-density under the squashed
    distribution (tanh change of variables, computed stably as 2·(log 2 − u − softplus(−2u)),
    plus the affine rescaling to [low, high]); with ``deterministic=True`` it returns the
    mode-like action center + half_range · tanh(μ) and a log-density of None.
    ``mean_action`` returns the distribution's mean instead (see there)."""

    LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
    # Gauss–Hermite nodes of mean_action; error against adaptive quadrature, in units of the half range:
    # < 1e-7 up to σ = 2, 3.4e-4 at σ = 4.4, 5.6e-3 at the clamp σ = e² (where tanh(u) is nearly a step)
    MEAN_NODES = 128

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int],
                 low: float = -1.0, high: float = 1.0) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, 2 * action_dim)
        self.action_dim = action_dim
        self.center, self.half_range = (high + low) / 2.0, (high - low) / 2.0
        self._log_constant = action_dim * (0.5 * math.log(2.0 * math.pi) + math.log(self.half_range))
        nodes, weights = hermegauss(self.MEAN_NODES)  # ∫ f(z) N(z; 0, 1) dz ≈ Σ w f(x) / Σ w
        self.register_buffer("_mean_nodes", torch.tensor(nodes, dtype=torch.float32), persistent=False)
        self.register_buffer("_mean_weights", torch.tensor(weights / weights.sum(), dtype=torch.float32),
                             persistent=False)

    def _distribution(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        return mean, log_std.clamp(self.LOG_STD_MIN, self.LOG_STD_MAX)

    def _squash_log_prob(self, noise: torch.Tensor, log_std: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        log_det = 2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))  # log(1 - tanh(u)²)
        return (-0.5 * noise.square() - log_std - log_det).sum(-1) - self._log_constant

    def forward(self, obs: torch.Tensor, generator: torch.Generator | None = None,
                deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        mean, log_std = self._distribution(obs)
        if deterministic:
            return self.center + self.half_range * torch.tanh(mean), None
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        u = mean + log_std.exp() * noise
        return self.center + self.half_range * torch.tanh(u), self._squash_log_prob(noise, log_std, u)

    def mean_action(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, action_dim) mean of the squashed distribution, center + half_range · E[tanh(u)].
        tanh acts entrywise on a diagonal Gaussian, so each entry is a one-dimensional integral,
        computed by Gauss–Hermite quadrature: deterministic, no draws. It differs from
        tanh(μ) where the distribution is wide: a maximum-likelihood fit of logged actions piled
        against one end of the box puts μ far out in the tanh's flat tail, and tanh(μ) then sits
        nearer the end than the actions do (bench/results/README.md, "Algorithm presets")."""
        mean, log_std = self._distribution(obs)
        u = mean.unsqueeze(-1) + log_std.exp().unsqueeze(-1) * self._mean_nodes  # (B, k, nodes)
        return self.center + self.half_range * (torch.tanh(u) * self._mean_weights).sum(-1)

    def sample(self, obs: torch.Tensor, num_samples: int, generator: torch.Generator | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """``num_samples`` actions per state from one network pass: (B·n, action_dim) actions
        and (B·n,) log-densities, in ``obs.repeat_interleave(n, 0)`` order (CQL's proposals;
        n times cheaper than running the network on the repeated observations)."""
        mean, log_std = (t.repeat_interleave(num_samples, 0) for t in self._distribution(obs))
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        u = mean + log_std.exp() * noise
        return self.center + self.half_range * torch.tanh(u), self._squash_log_prob(noise, log_std, u)

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
        """(B,) log-density of given actions (e.g. the logged ones, for a BC warm start)."""
        mean, log_std = self._distribution(obs)
        u = torch.atanh(((action - self.center) / self.half_range).clamp(-1.0 + eps, 1.0 - eps))
        return self._squash_log_prob((u - mean) / log_std.exp(), log_std, u)
