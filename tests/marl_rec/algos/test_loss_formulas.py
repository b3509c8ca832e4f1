"""Each algorithm's losses, targets, penalties and weights, recomputed BY HAND on a tiny batch.

For every algorithm: build it with small networks, snapshot its networks and its generator
before one ``update``, then recompute from the snapshot -- with the formulas written out here
(explicit loops over states and proposals, torch.distributions densities, explicit dropout
masks), drawing the same random numbers in the same order from a clone of the generator --
the targets, the penalty, the weights and the losses, and compare them with the metrics
``update`` returns (float tolerance). Where a loss term is not a metric, the gradient the
optimiser received (captured at ``optimizer.step``) is compared with autograd of the hand loss.
Target networks are checked against Polyak averaging, and schedules (TD3's delayed actor,
discrete CQL's target interval) by which parameters moved.

These tests pin the maths: an optimisation of an update (e.g. fusing the critic passes) must
keep them passing.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from marl_rec.algos.bc import BC, BCConfig
from marl_rec.algos.bcq import BCQ, BCQConfig
from marl_rec.algos.cql import CQL, CQLConfig
from marl_rec.algos.ddpg import DDPG, DDPGConfig
from marl_rec.algos.discrete_bcq import DiscreteBCQ, DiscreteBCQConfig
from marl_rec.algos.discrete_cql import DiscreteCQL, DiscreteCQLConfig
from marl_rec.algos.td3 import TD3, TD3Config
from marl_rec.algos.uwac import UWAC, UWACConfig
from marl_rec.contracts import ActionSpec, Batch

OBS, B, GAMMA = 3, 6, 0.9
TOL = {"rtol": 1e-5, "atol": 1e-5}


def make_batch(seed: int, k: int = 2, low: float = -1.0, high: float = 1.0, num_actions: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn((B, OBS), generator=g)
    if num_actions:
        actions = torch.randint(num_actions, (B,), generator=g)
    else:
        actions = torch.rand((B, k), generator=g) * (high - low) + low
    rewards = torch.rand(B, generator=g) * 3.0
    dones = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 1.0])  # two terminal rows: no bootstrap there
    return Batch(obs, actions, rewards, torch.randn((B, OBS), generator=g), dones)


def clone_generator(algo) -> torch.Generator:
    g = torch.Generator()
    g.set_state(algo.generator.get_state())
    return g


def capture_grads(optimizer: torch.optim.Optimizer, store: dict, key: str) -> None:
    """Record the gradient each parameter holds when ``optimizer.step`` is called."""
    step = optimizer.step

    def recording_step(*args, **kwargs):
        store[key] = [p.grad.detach().clone() for group in optimizer.param_groups for p in group["params"]]
        return step(*args, **kwargs)

    optimizer.step = recording_step


def hand_grads(loss: torch.Tensor, module_or_params) -> list[torch.Tensor]:
    params = list(module_or_params.parameters()) if hasattr(module_or_params, "parameters") else list(module_or_params)
    return list(torch.autograd.grad(loss, params))


def assert_close(actual, expected, **kwargs) -> None:
    torch.testing.assert_close(torch.as_tensor(actual, dtype=torch.float64),
                               torch.as_tensor(expected, dtype=torch.float64).detach(), **(TOL | kwargs))


def assert_grads_close(captured: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    assert len(captured) == len(expected)
    for got, want in zip(captured, expected):
        torch.testing.assert_close(got, want, **TOL)


def assert_polyak(target_after, target_before, source_after, tau: float) -> None:
    for t1, t0, s in zip(target_after.parameters(), target_before.parameters(), source_after.parameters()):
        torch.testing.assert_close(t1, (1.0 - tau) * t0 + tau * s, **TOL)


def frozen(module: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(module).requires_grad_(True)


def q1(ensemble, obs, action) -> torch.Tensor:
    """Critic i of an ensemble, evaluated by hand: an MLP on the concatenated (s, a)."""
    return ensemble.critics[0](torch.cat([obs, action], -1)).squeeze(-1)


def qi(ensemble, index, obs, action) -> torch.Tensor:
    return ensemble.critics[index](torch.cat([obs, action], -1)).squeeze(-1)


# --------------------------------------------------------------------------- BC


def test_bc_regression_loss_and_sarsa_evaluation_target() -> None:
    algo = BC(OBS, ActionSpec("continuous", dim=2), BCConfig(actor_hidden=(5,), critic_hidden=(5,), gamma=GAMMA,
                                                               tau=0.3), seed=1)
    batch = make_batch(0)
    actor0, critic0, target0 = frozen(algo.actor), frozen(algo.critic), frozen(algo.critic_target)
    grads: dict = {}
    capture_grads(algo.actor_optimizer, grads, "actor")
    capture_grads(algo.critic_optimizer, grads, "critic")
    metrics = algo.update(batch)

    actor_loss = sum(((actor0(batch.observations[i]) - batch.actions[i]) ** 2).sum() for i in range(B)) / (B * 2)
    assert_close(metrics["actor_loss"], actor_loss)
    assert_grads_close(grads["actor"], hand_grads(actor_loss, actor0))
    # the critic evaluates the (already updated) BC actor: a' = π_BC(s'), no max, no noise
    next_action = algo.actor(batch.next_observations)
    y = [batch.rewards[i] + GAMMA * (1 - batch.dones[i]) * q1(target0, batch.next_observations[i:i + 1],
                                                               next_action[i:i + 1])[0] for i in range(B)]
    q = q1(critic0, batch.observations, batch.actions)
    critic_loss = sum((q[i] - y[i]) ** 2 for i in range(B)) / B
    assert_close(metrics["critic_loss"], critic_loss)
    assert_grads_close(grads["critic"], hand_grads(critic_loss, critic0))
    assert_polyak(algo.critic_target, target0, algo.critic, 0.3)


# --------------------------------------------------------------------------- DDPG


def test_ddpg_target_critic_and_actor_losses_and_polyak_targets() -> None:
    spec = ActionSpec("continuous", dim=2, low=-2.0, high=2.0)
    algo = DDPG(OBS, spec, DDPGConfig(actor_hidden=(5,), critic_hidden=(5,), gamma=GAMMA, tau=0.2,
                                      critic_weight_decay=0.0), seed=2)
    batch = make_batch(1, low=-2.0, high=2.0)
    actor0, critic0 = frozen(algo.actor), frozen(algo.critic)
    actor_t0, critic_t0 = frozen(algo.actor_target), frozen(algo.critic_target)
    grads: dict = {}
    capture_grads(algo.actor_optimizer, grads, "actor")
    capture_grads(algo.critic_optimizer, grads, "critic")
    metrics = algo.update(batch)

    # actor a = max_action · tanh(MLP(s)): max_action = 2 here
    assert_close(actor0(batch.observations), 2.0 * torch.tanh(actor0.net[:-1](batch.observations)))
    y = torch.stack([batch.rewards[i] + GAMMA * (1 - batch.dones[i]) * q1(
        critic_t0, batch.next_observations[i:i + 1], actor_t0(batch.next_observations[i:i + 1]))[0] for i in range(B)])
    critic_loss = ((q1(critic0, batch.observations, batch.actions) - y) ** 2).mean()
    assert_close(metrics["target_mean"], y.mean())
    assert_close(metrics["critic_loss"], critic_loss)
    assert_grads_close(grads["critic"], hand_grads(critic_loss, critic0))
    # the actor ascends the *updated* critic at its own action
    actor_loss = -q1(algo.critic, batch.observations, actor0(batch.observations)).mean()
    assert_close(metrics["actor_loss"], actor_loss)
    assert_grads_close(grads["actor"], hand_grads(actor_loss, actor0))
    assert_polyak(algo.critic_target, critic_t0, algo.critic, 0.2)
    assert_polyak(algo.actor_target, actor_t0, algo.actor, 0.2)


# --------------------------------------------------------------------------- TD3


def test_td3_target_smoothing_clipped_double_q_and_delayed_actor() -> None:
    m = 2.0  # max_action: every noise scale is × max_action
    spec = ActionSpec("continuous", dim=2, low=-m, high=m)
    config = TD3Config(actor_hidden=(5,), critic_hidden=(5,), gamma=GAMMA, tau=0.25, policy_noise=0.6,
                       noise_clip=0.5, policy_delay=2)
    algo = TD3(OBS, spec, config, seed=3)
    batch = make_batch(2, low=-m, high=m)
    for update in (1, 2):
        actor0, critic0 = frozen(algo.actor), frozen(algo.critic)
        actor_t0, critic_t0 = frozen(algo.actor_target), frozen(algo.critic_target)
        g = clone_generator(algo)
        grads: dict = {}
        capture_grads(algo.critic_optimizer, grads, "critic")
        capture_grads(algo.actor_optimizer, grads, "actor")
        metrics = algo.update(batch)

        noise = torch.randn(batch.actions.shape, generator=g)
        y = []
        for i in range(B):
            smoothed = [min(max(0.6 * m * noise[i, j].item(), -0.5 * m), 0.5 * m) for j in range(2)]
            a_next = actor_t0(batch.next_observations[i:i + 1])[0]
            a_next = torch.stack([torch.clamp(a_next[j] + smoothed[j], -m, m) for j in range(2)])[None]
            s_next = batch.next_observations[i:i + 1]
            q_next = torch.minimum(qi(critic_t0, 0, s_next, a_next), qi(critic_t0, 1, s_next, a_next))[0]
            y.append(batch.rewards[i] + GAMMA * (1 - batch.dones[i]) * q_next)
        y = torch.stack(y)
        assert (noise.abs() * 0.6 > 0.5).any(), "the test batch must exercise the noise clip"
        critic_loss = sum(((qi(critic0, c, batch.observations, batch.actions) - y) ** 2).mean() for c in (0, 1))
        assert_close(metrics["target_mean"], y.mean())
        assert_close(metrics["critic_loss"], critic_loss)
        assert_grads_close(grads["critic"], hand_grads(critic_loss, critic0))
        if update == 1:  # delayed: neither the actor nor any target moves on odd updates
            assert "actor_loss" not in metrics and "actor" not in grads
            for after, before in ((algo.actor, actor0), (algo.actor_target, actor_t0), (algo.critic_target, critic_t0)):
                for p1, p0 in zip(after.parameters(), before.parameters()):
                    assert torch.equal(p1, p0)
        else:
            actor_loss = -q1(algo.critic, batch.observations, actor0(batch.observations)).mean()
            assert_close(metrics["actor_loss"], actor_loss)
            assert_grads_close(grads["actor"], hand_grads(actor_loss, actor0))
            assert_polyak(algo.critic_target, critic_t0, algo.critic, 0.25)
            assert_polyak(algo.actor_target, actor_t0, algo.actor, 0.25)


# --------------------------------------------------------------------------- BCQ and UWAC


def decoder_by_hand(vae, obs: torch.Tensor, z: torch.Tensor, m: float, output: str) -> torch.Tensor:
    """m·tanh(MLP(s, z)) (Fujimoto's), or the unbounded m·MLP(s, z) (d3rlpy's linear output)."""
    if output == "tanh":
        return m * torch.tanh(vae.decoder[:-1](torch.cat([obs, z], -1)))
    assert isinstance(vae.decoder[-1], torch.nn.Linear)
    return m * vae.decoder(torch.cat([obs, z], -1))


def vae_loss_by_hand(vae, batch: Batch, noise: torch.Tensor, kl_weight: float, m: float,
                     output: str = "tanh") -> torch.Tensor:
    h = torch.relu(vae.encoder(torch.cat([batch.observations, batch.actions], -1)))
    mean, log_std = vae.mean(h), vae.log_std(h).clamp(-4.0, 15.0)
    z = mean + log_std.exp() * noise
    reconstruction = decoder_by_hand(vae, batch.observations, z, m, output)  # not clipped: the loss sees it all
    kl = kl_divergence(Normal(mean, log_std.exp()), Normal(torch.zeros_like(mean), torch.ones_like(mean)))
    return ((reconstruction - batch.actions) ** 2).mean() + kl_weight * kl.mean()


def perturb_by_hand(actor, obs, action, phi: float, m: float) -> torch.Tensor:
    """ξ(s, a) = clip(a + Φ·m·tanh(MLP(s, a)), −m, m)."""
    raw = actor.net[:-1](torch.cat([obs, action], -1))
    return torch.clamp(action + phi * m * torch.tanh(raw), -m, m)


@pytest.mark.parametrize("vae_output", ["tanh", "linear"])
def test_bcq_vae_lambda_clipped_double_q_target_and_perturbation_bound(vae_output: str) -> None:
    m, n, lmbda, phi = 2.0, 4, 0.75, 0.3
    spec = ActionSpec("continuous", dim=2, low=-m, high=m)
    config = BCQConfig(vae_hidden=(6, 5), latent_dim=3, actor_hidden=(5,), critic_hidden=(5,), phi=phi, lmbda=lmbda,
                       num_sampled_actions=n, gamma=GAMMA, tau=0.1, kl_weight=0.5, vae_output=vae_output)
    algo = BCQ(OBS, spec, config, seed=4)
    batch = make_batch(3, low=-m, high=m)
    vae0, actor0, critic0 = frozen(algo.vae), frozen(algo.actor), frozen(algo.critic)
    actor_t0, critic_t0 = frozen(algo.actor_target), frozen(algo.critic_target)
    g = clone_generator(algo)
    grads: dict = {}
    capture_grads(algo.actor_optimizer, grads, "actor")
    capture_grads(algo.critic_optimizer, grads, "critic")
    metrics = algo.update(batch)

    # 1. VAE: reconstruction MSE + kl_weight · mean KL(N(μ, σ²) ‖ N(0, I))
    assert_close(metrics["vae_loss"], vae_loss_by_hand(vae0, batch, torch.randn((B, 3), generator=g), 0.5, m,
                                                       vae_output))
    # proposals are the decoder's output clipped to the box (a no-op for tanh)
    far = torch.full((5, 3), 40.0) * torch.tensor([[1.0], [-1.0], [0.5], [-0.5], [0.0]])
    s5 = batch.observations[:1].expand(5, -1)
    assert torch.equal(algo.vae.decode(s5, far), decoder_by_hand(algo.vae, s5, far, m, vae_output).clamp(-m, m))
    # 2. target: r + γ(1−d) max_j [λ min(Q1', Q2') + (1−λ) max(Q1', Q2')](s', ξ'(s', G(s', z_j))), z clipped to ±0.5
    latent = torch.randn((B * n, 3), generator=g).clamp(-0.5, 0.5)
    y = []
    for i in range(B):
        s = batch.next_observations[i:i + 1]
        values = []
        for j in range(n):
            proposal = algo.vae.decode(s, latent[i * n + j:i * n + j + 1])  # the VAE was updated first
            a = perturb_by_hand(actor_t0, s, proposal, phi, m)
            q_a, q_b = qi(critic_t0, 0, s, a)[0], qi(critic_t0, 1, s, a)[0]
            values.append(lmbda * torch.minimum(q_a, q_b) + (1 - lmbda) * torch.maximum(q_a, q_b))
        y.append(batch.rewards[i] + GAMMA * (1 - batch.dones[i]) * torch.stack(values).max())
    y = torch.stack(y)
    critic_loss = sum(((qi(critic0, c, batch.observations, batch.actions) - y) ** 2).mean() for c in (0, 1))
    assert_close(metrics["target_mean"], y.mean())
    assert_close(metrics["critic_loss"], critic_loss)
    assert_grads_close(grads["critic"], hand_grads(critic_loss, critic0))
    # 3. actor: −Q1 (updated critic) of the perturbed proposal of a fresh latent
    proposals = algo.vae.decode(batch.observations, torch.randn((B, 3), generator=g).clamp(-0.5, 0.5))
    actor_loss = -q1(algo.critic, batch.observations, perturb_by_hand(actor0, batch.observations, proposals, phi, m)).mean()
    assert_close(metrics["actor_loss"], actor_loss)
    assert_grads_close(grads["actor"], hand_grads(actor_loss, actor0))
    assert_polyak(algo.critic_target, critic_t0, algo.critic, 0.1)
    assert_polyak(algo.actor_target, actor_t0, algo.actor, 0.1)
    # the perturbation never moves an action by more than Φ·max_action (saturated inputs included)
    obs = torch.randn((200, OBS)) * 50.0
    action = torch.rand((200, 2)) * 2 * m - m
    moved = (algo.actor(obs, action) - action).abs()
    assert moved.max() <= phi * m + 1e-6 and moved.max() > 0.9 * phi * m


def dropout_mlp(net: torch.nn.Sequential, x: torch.Tensor, p: float, g: torch.Generator | None) -> torch.Tensor:
    """An MLP with inverted dropout after each hidden ReLU, masks drawn from ``g`` layer by
    layer (``g=None``: dropout off)."""
    linears = [layer for layer in net if isinstance(layer, torch.nn.Linear)]
    for index, linear in enumerate(linears):
        x = linear(x)
        if index < len(linears) - 1:
            x = torch.relu(x)
            if g is not None:
                x = x * torch.empty_like(x).bernoulli_(1.0 - p, generator=g) / (1.0 - p)
    return x.squeeze(-1)


def test_uwac_inverse_variance_weights_and_mc_dropout_target() -> None:
    m, n, M, lmbda, p, beta, clip = 1.0, 3, 5, 0.75, 0.3, 0.003, 1.0
    spec = ActionSpec("continuous", dim=2)
    config = UWACConfig(vae_hidden=(6, 5), latent_dim=3, actor_hidden=(5,), critic_hidden=(8, 8), phi=0.05,
                        lmbda=lmbda, num_sampled_actions=n, gamma=GAMMA, tau=0.1, dropout=p, beta=beta,
                        weight_clip=clip, num_dropout_samples=M)
    algo = UWAC(OBS, spec, config, seed=5)
    batch = make_batch(4)
    vae0, actor0 = frozen(algo.vae), frozen(algo.actor)
    critic_t0, actor_t0 = frozen(algo.critic_target), frozen(algo.actor_target)
    critic0 = [copy.deepcopy(c).requires_grad_(True) for c in algo.critic.critics]
    g = clone_generator(algo)
    metrics = algo.update(batch)

    assert_close(metrics["vae_loss"], vae_loss_by_hand(vae0, batch, torch.randn((B, 3), generator=g), 0.5, m))
    latent = torch.randn((B * n, 3), generator=g).clamp(-0.5, 0.5)
    obs, next_obs = batch.observations, batch.next_observations

    def lam(qa, qb):
        return lmbda * torch.minimum(qa, qb) + (1 - lmbda) * torch.maximum(qa, qb)

    def critic_in(s, a):
        return torch.cat([s, a], -1)

    # next action: BCQ's best proposal under the dropout-free target critics
    next_actions = []
    for i in range(B):
        s = next_obs[i:i + 1]
        candidates = [perturb_by_hand(actor_t0, s, algo.vae.decode(s, latent[i * n + j:i * n + j + 1]), 0.05, m)
                      for j in range(n)]
        scores = [lam(*(dropout_mlp(critic_t0.critics[c], critic_in(s, a), p, None) for c in (0, 1)))[0]
                  for a in candidates]
        next_actions.append(candidates[int(torch.stack(scores).argmax())])
    next_action = torch.cat(next_actions)
    # M dropout samples of λ-clipped Q' at (s', a'): critic 1's masks are drawn, then critic 2's
    x = critic_in(next_obs.repeat(M, 1), next_action.repeat(M, 1))
    samples = [dropout_mlp(critic_t0.critics[c], x, p, g).view(M, B) for c in (0, 1)]
    q_mc = lam(samples[0], samples[1])  # (M, B)
    mean_q = q_mc.mean(0)
    variance = ((q_mc - mean_q) ** 2).sum(0) / (M - 1)
    weight = torch.clamp(beta / variance, max=clip)
    assert (weight < clip).any() and (weight == clip).any(), "the test batch must exercise the weight clip"
    y = batch.rewards + GAMMA * (1 - batch.dones) * mean_q
    assert_close(metrics["target_mean"], y.mean())
    assert_close(metrics["target_std"], variance.sqrt().mean())
    assert_close(metrics["critic_weight"], weight.mean())
    x = critic_in(obs, batch.actions)
    q = [dropout_mlp(critic0[c], x, p, g) for c in (0, 1)]  # one mask each
    critic_loss = sum((weight * (q[c] - y) ** 2).mean() for c in (0, 1))
    assert_close(metrics["critic_loss"], critic_loss)
    # actor: −E[β/Var[Q1] · Q1(s, ξ(s, G(s, z)))] with the updated critic, weight under M masks
    proposals = algo.vae.decode(obs, torch.randn((B, 3), generator=g).clamp(-0.5, 0.5))
    policy_action = perturb_by_hand(actor0, obs, proposals, 0.05, m)
    q1_samples = dropout_mlp(algo.critic.critics[0], critic_in(obs.repeat(M, 1), policy_action.repeat(M, 1)),
                             p, g).view(M, B)
    actor_weight = torch.clamp(beta / q1_samples.var(0, unbiased=True), max=clip)
    actor_loss = -(actor_weight * dropout_mlp(algo.critic.critics[0], critic_in(obs, policy_action), p, g)).mean()
    assert_close(metrics["actor_weight"], actor_weight.mean())
    assert_close(metrics["actor_loss"], actor_loss)


# --------------------------------------------------------------------------- CQL


def tanh_gaussian_by_hand(actor, obs, noise, low, high):
    """SAC's squashed Gaussian: a = c + h·tanh(u), u = μ + σ·ε; log π(a) = Σ log N(u; μ, σ)
    − Σ log(h·(1 − tanh(u)²)) (change of variables), computed directly in float64."""
    mean, log_std = actor.net(obs).chunk(2, -1)
    log_std = log_std.clamp(-5.0, 2.0)
    u = mean + log_std.exp() * noise
    c, h = (high + low) / 2, (high - low) / 2
    log_prob = Normal(mean.double(), log_std.exp().double()).log_prob(u.double()) - torch.log(
        h * (1 - torch.tanh(u.double()) ** 2))
    return c + h * torch.tanh(u), log_prob.sum(-1)


def cql_penalty_by_hand(critic, obs, actions, uniform, pi, pi_log, next_pi, next_pi_log, n, k, low, high, temp,
                        importance_sampling=True):
    """Per critic: mean_s [ T·log( Σ_j exp((Q(s, a_j) − log p(a_j)) / T) ) ] − mean Q(s, a_data), with
    n uniform actions (p = 1/(high−low)^k), n policy actions at s and n at s' (p = π's density).
    Without importance sampling: no log p terms, and the logged action joins the sum."""
    gaps = []
    for c in (0, 1):
        soft = []
        for i in range(obs.shape[0]):
            terms = []
            s = obs[i:i + 1]
            for j in range(n):
                r = i * n + j
                w = 1.0 if importance_sampling else 0.0
                terms.append((qi(critic, c, s, uniform[r:r + 1])[0] + w * k * math.log(high - low)) / temp)
                terms.append((qi(critic, c, s, pi[r:r + 1])[0] - w * pi_log[r].float()) / temp)
                terms.append((qi(critic, c, s, next_pi[r:r + 1])[0] - w * next_pi_log[r].float()) / temp)
            if not importance_sampling:
                terms.append(qi(critic, c, s, actions[i:i + 1])[0] / temp)
            terms = torch.stack(terms)
            soft.append(temp * (terms.max() + torch.log(torch.exp(terms - terms.max()).sum())))
        gaps.append(torch.stack(soft).mean() - qi(critic, c, obs, actions).mean())
    return torch.stack(gaps)


@pytest.mark.parametrize(("lagrange", "importance_sampling"), [(False, True), (True, True), (False, False)])
def test_cql_importance_sampled_logsumexp_penalty_td_target_and_sac_actor(lagrange: bool,
                                                                         importance_sampling: bool) -> None:
    low, high, k, n, alpha, temp = -1.0, 2.0, 2, 3, 2.5, 0.7  # an asymmetric box pins the densities
    spec = ActionSpec("continuous", dim=k, low=low, high=high)
    config = CQLConfig(actor_hidden=(6,), critic_hidden=(6,), gamma=GAMMA, tau=0.3, cql_alpha=alpha,
                       num_sampled_actions=n, cql_temperature=temp, bc_warmup_updates=1, lagrange=lagrange,
                       lagrange_threshold=0.5, lagrange_lr=0.1, initial_entropy_alpha=0.2, backup_entropy=True,
                       importance_sampling=importance_sampling)
    algo = CQL(OBS, spec, config, seed=6)
    batch = make_batch(5, k=k, low=low + 0.05, high=high - 0.05)
    obs, next_obs = batch.observations, batch.next_observations
    for update in (1, 2):  # update 1: BC warm start of the actor; update 2: SAC actor on min Q
        actor0, critic0, target0 = frozen(algo.actor), frozen(algo.critic), frozen(algo.critic_target)
        log_alpha0 = algo.log_alphas["entropy"].detach().clone()
        log_cql0 = algo.log_alphas["cql"].detach().clone()
        g = clone_generator(algo)
        grads: dict = {}
        capture_grads(algo.actor_optimizer, grads, "actor")
        capture_grads(algo.entropy_optimizer, grads, "entropy")
        capture_grads(algo.critic_optimizer, grads, "critic")
        metrics = algo.update(batch)

        entropy_alpha = log_alpha0.exp()
        new_actions, log_pi = tanh_gaussian_by_hand(actor0, obs, torch.randn((B, k), generator=g), low, high)
        if update == 1:  # maximum likelihood of the logged actions: log π(a_data | s) by the inverse squash
            mean, log_std = actor0.net(obs).chunk(2, -1)
            u = torch.atanh((batch.actions - 0.5) / 1.5)
            objective = (Normal(mean, log_std.clamp(-5, 2).exp()).log_prob(u)
                         - torch.log(1.5 * (1 - torch.tanh(u) ** 2))).sum(-1)
        else:
            objective = torch.minimum(qi(critic0, 0, obs, new_actions), qi(critic0, 1, obs, new_actions))
        actor_loss = (entropy_alpha * log_pi.float() - objective).mean()
        assert_close(metrics["actor_loss"], actor_loss)
        assert_close(metrics["entropy"], -log_pi.mean())
        assert_grads_close(grads["actor"], hand_grads(actor_loss, actor0))
        # temperature: d/d log α of −log α·(log π + target_entropy), target entropy −k
        assert_close(grads["entropy"][0], -(log_pi.mean() - k))

        # TD target with the (updated) actor at s' and the soft backup −α log π'
        next_actions, next_log_pi = tanh_gaussian_by_hand(algo.actor, next_obs, torch.randn((B, k), generator=g),
                                                          low, high)
        y = torch.stack([batch.rewards[i] + GAMMA * (1 - batch.dones[i]) * (torch.minimum(
            qi(target0, 0, next_obs[i:i + 1], next_actions[i:i + 1]),
            qi(target0, 1, next_obs[i:i + 1], next_actions[i:i + 1]))[0] - entropy_alpha * next_log_pi[i].float())
            for i in range(B)])
        uniform = torch.rand((B * n, k), generator=g) * (high - low) + low
        pi, pi_log = tanh_gaussian_by_hand(algo.actor, obs.repeat_interleave(n, 0),
                                           torch.randn((B * n, k), generator=g), low, high)
        next_pi, next_pi_log = tanh_gaussian_by_hand(algo.actor, next_obs.repeat_interleave(n, 0),
                                                     torch.randn((B * n, k), generator=g), low, high)
        gap = cql_penalty_by_hand(critic0, obs, batch.actions, uniform, pi, pi_log, next_pi, next_pi_log,
                                  n, k, low, high, temp, importance_sampling)
        td = sum(((qi(critic0, c, obs, batch.actions) - y) ** 2).mean() for c in (0, 1))
        if lagrange:  # α' = exp(log α'), penalty α'·(α·gap − threshold) per critic
            cql_weight = log_cql0.exp()
            critic_loss = td + (cql_weight * (alpha * gap - 0.5)).sum()
            assert_close(metrics["cql_alpha"], cql_weight * alpha)
        else:
            critic_loss = td + alpha * gap.sum()
            assert_close(metrics["cql_alpha"], alpha)
        assert_close(metrics["target_mean"], y.mean())
        assert_close(metrics["td_loss"], td)
        assert_close(metrics["cql_penalty"], gap.mean())
        assert_close(metrics["critic_loss"], critic_loss)
        assert_grads_close(grads["critic"], hand_grads(critic_loss, critic0))
        assert_polyak(algo.critic_target, target0, algo.critic, 0.3)
    if lagrange:  # the dual step raises α' when α·gap exceeds the threshold, lowers it otherwise
        moved = algo.log_alphas["cql"].detach() - log_cql0
        assert torch.sign(moved) == torch.sign((alpha * gap - 0.5).mean())


@pytest.mark.parametrize("penalty", [True, False])
def test_cql_as_online_sac_without_penalty_passes_and_with_a_fixed_temperature(penalty: bool) -> None:
    """Online SAC's options (issue #16): ``penalty=False`` trains the critics on the TD loss alone
    and draws no proposals; ``learn_entropy_alpha=False`` leaves the temperature where it started."""
    k, n = 2, 1
    spec = ActionSpec("continuous", dim=k)
    config = CQLConfig(actor_hidden=(6,), critic_hidden=(6, 5), gamma=GAMMA, tau=0.3, cql_alpha=0.0,
                       num_sampled_actions=n, bc_warmup_updates=0, initial_entropy_alpha=0.2, backup_entropy=True,
                       penalty=penalty, learn_entropy_alpha=penalty)
    algo = CQL(OBS, spec, config, seed=3)
    batch = make_batch(8, k=k)
    obs, next_obs = batch.observations, batch.next_observations
    for _ in range(2):
        actor0, critic0, target0 = frozen(algo.actor), frozen(algo.critic), frozen(algo.critic_target)
        entropy_alpha = algo.log_alphas["entropy"].detach().exp()
        log_alpha_before = algo.log_alphas["entropy"].detach().clone()
        g = clone_generator(algo)
        grads: dict = {}
        capture_grads(algo.actor_optimizer, grads, "actor")
        capture_grads(algo.critic_optimizer, grads, "critic")
        metrics = algo.update(batch)
        new_actions, log_pi = tanh_gaussian_by_hand(actor0, obs, torch.randn((B, k), generator=g), -1.0, 1.0)
        objective = torch.minimum(qi(critic0, 0, obs, new_actions), qi(critic0, 1, obs, new_actions))
        actor_loss = (entropy_alpha * log_pi.float() - objective).mean()
        assert_close(metrics["actor_loss"], actor_loss)
        assert_grads_close(grads["actor"], hand_grads(actor_loss, actor0))
        # learn_entropy_alpha=False (here with penalty=False): the temperature stays where it started
        assert torch.equal(algo.log_alphas["entropy"].detach(), log_alpha_before) is (not penalty)
        next_actions, next_log_pi = tanh_gaussian_by_hand(algo.actor, next_obs, torch.randn((B, k), generator=g),
                                                          -1.0, 1.0)
        next_q = torch.minimum(qi(target0, 0, next_obs, next_actions), qi(target0, 1, next_obs, next_actions))
        y = batch.rewards + GAMMA * (1 - batch.dones) * (next_q - entropy_alpha * next_log_pi.float())
        td = sum(((qi(critic0, c, obs, batch.actions) - y) ** 2).mean() for c in (0, 1))
        assert_close(metrics["target_mean"], y.mean())
        assert_close(metrics["td_loss"], td)
        assert_grads_close(grads["critic"], hand_grads(td, critic0))  # α = 0: the penalty weighs nothing
        assert_polyak(algo.critic_target, target0, algo.critic, 0.3)
        # without the penalty nothing is drawn after the TD target; with it, the proposals are
        assert torch.equal(g.get_state(), algo.generator.get_state()) is (not penalty)


def test_cql_actor_average_is_a_polyak_average_of_the_actor_and_acts_greedily() -> None:
    """``actor_average_tau``: after each actor step the averaged actor moves by τ toward the live
    one; the greedy action is the averaged actor's, the stochastic one the live actor's; the
    average is saved and restored with the algorithm."""
    spec = ActionSpec("continuous", dim=2)
    config = CQLConfig(actor_hidden=(6,), critic_hidden=(6,), gamma=GAMMA, cql_alpha=0.0, bc_warmup_updates=0,
                       penalty=False, actor_average_tau=0.25)
    algo = CQL(OBS, spec, config, seed=2)
    batch = make_batch(9)
    for _ in range(3):
        average0 = frozen(algo.actor_average)
        algo.update(batch)
        assert_polyak(algo.actor_average, average0, algo.actor, 0.25)
    obs = batch.observations
    with torch.no_grad():
        mean = algo.actor_average.net(obs).chunk(2, -1)[0]
        live_mean = algo.actor.net(obs).chunk(2, -1)[0]
    greedy = torch.as_tensor(algo.act(obs.numpy(), deterministic=True))
    torch.testing.assert_close(greedy, torch.tanh(mean))
    assert not torch.allclose(greedy, torch.tanh(live_mean))
    g = clone_generator(algo)
    sampled = torch.as_tensor(algo.act(obs.numpy(), deterministic=False))
    expected, _ = tanh_gaussian_by_hand(algo.actor, obs, torch.randn((B, 2), generator=g), -1.0, 1.0)
    torch.testing.assert_close(sampled, expected.detach())
    restored = CQL(OBS, spec, config, seed=5)
    restored.load_state_dict(algo.state_dict())
    torch.testing.assert_close(torch.as_tensor(restored.act(obs.numpy(), deterministic=True)), greedy)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("learn_entropy_alpha", "no", "learn_entropy_alpha must be a bool"),
    ("actor_average_tau", 1.5, r"actor_average_tau must be in \[0.0, 1.0\]"),
    ("penalty", False, r"penalty=False \(SAC alone\) needs cql_alpha=0")])
def test_cql_critic_options_are_validated_by_name(field: str, value, message: str) -> None:
    with pytest.raises(ValueError, match=f"CQLConfig.{message}"):
        CQLConfig(**{field: value})


def test_checkpoint_from_before_a_config_field_existed_loads_only_where_the_field_is_default() -> None:
    """A checkpoint saved before online SAC's options were added lacks their fields: it ran as
    their defaults, so it loads into a default config and is refused by one that sets them."""
    spec, small = ActionSpec("continuous", dim=2), dict(actor_hidden=(6,), critic_hidden=(6,))
    state = CQL(OBS, spec, CQLConfig(**small), seed=0).state_dict()
    for name in ("penalty", "learn_entropy_alpha", "actor_average_tau"):
        del state["config"][name]
    CQL(OBS, spec, CQLConfig(**small), seed=1).load_state_dict(state)
    with pytest.raises(ValueError, match="learn_entropy_alpha: checkpoint '<missing>' vs this False"):
        CQL(OBS, spec, CQLConfig(**small, learn_entropy_alpha=False), seed=1).load_state_dict(state)


def test_checkpoint_file_from_before_a_config_field_existed_restores(tmp_path) -> None:
    """The same through a checkpoint file (``restore_algorithm``, as resuming and the benches do):
    the structural check leaves the config to ``load_state_dict``'s rule, and a non-default
    setting of the newer field is still refused, naming it."""
    from marl_rec.checkpoint import CheckpointError, load_checkpoint, restore_algorithm, save_checkpoint
    spec, small = ActionSpec("continuous", dim=2), dict(actor_hidden=(6,), critic_hidden=(6,))
    algo = CQL(OBS, spec, CQLConfig(**small), seed=0)
    save_checkpoint(tmp_path / "checkpoint.pt", algo)
    payload = load_checkpoint(tmp_path / "checkpoint.pt")["algorithm"]
    del payload["state"]["config"]["greedy_action"]  # as written before the field existed
    restored = CQL(OBS, spec, CQLConfig(**small), seed=1)
    restore_algorithm(restored, payload)
    for mine, saved in zip(restored.actor.state_dict().values(), algo.actor.state_dict().values()):
        assert torch.equal(mine, saved)
    with pytest.raises(CheckpointError, match="greedy_action: checkpoint '<missing>' vs this 'mean'"):
        restore_algorithm(CQL(OBS, spec, CQLConfig(**small, greedy_action="mean"), seed=1), payload)


# --------------------------------------------------------------------------- discrete


def huber(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x.abs() < 1.0, 0.5 * x ** 2, x.abs() - 0.5)


def test_discrete_bcq_threshold_restricted_double_q_target_and_losses() -> None:
    num_actions, threshold = 5, 0.6
    spec = ActionSpec("discrete", num_actions=num_actions)
    config = DiscreteBCQConfig(q_hidden=(6,), imitation_hidden=(6,), gamma=GAMMA, tau=0.4, threshold=threshold,
                               logit_penalty=0.05, td_loss="huber")
    algo = DiscreteBCQ(OBS, spec, config, seed=7)
    with torch.no_grad():  # spread the imitation logits so the threshold excludes actions
        algo.imitation[-1].weight.mul_(6.0)
    batch = make_batch(6, num_actions=num_actions)
    batch.rewards = torch.tensor([0.2, 3.0, 0.5, 4.0, 0.1, 2.5])  # TD errors on both sides of the Huber kink
    critic0, target0, imitation0 = frozen(algo.critic), frozen(algo.critic_target), frozen(algo.imitation)
    grads: dict = {}
    capture_grads(algo.optimizer, grads, "all")
    metrics = algo.update(batch)

    y, restricted = [], 0
    for i in range(B):
        s = batch.next_observations[i:i + 1]
        probs = torch.softmax(imitation0(s)[0], 0)
        allowed = [a for a in range(num_actions) if probs[a] / probs.max() >= threshold]
        q_online = critic0.critics[0](s)[0]
        best = max(allowed, key=lambda a: q_online[a].item())
        restricted += best != int(q_online.argmax())
        y.append(batch.rewards[i] + GAMMA * (1 - batch.dones[i]) * target0.critics[0](s)[0, best])
    assert restricted > 0, "the threshold must change the next action somewhere in the test batch"
    y = torch.stack(y)
    q = critic0.critics[0](batch.observations).gather(1, batch.actions[:, None]).squeeze(1)
    assert ((q - y).abs() > 1).any() and ((q - y).abs() < 1).any()
    q_loss = huber(q - y).mean()
    logits = imitation0(batch.observations)
    nll = -torch.stack([torch.log_softmax(logits[i], 0)[batch.actions[i]] for i in range(B)]).mean()
    assert_close(metrics["target_mean"], y.mean())
    assert_close(metrics["critic_loss"], q_loss)
    assert_close(metrics["imitation_loss"], nll)
    loss = q_loss + nll + 0.05 * (logits ** 2).mean()
    assert_grads_close(grads["all"], hand_grads(loss, [*critic0.parameters(), *imitation0.parameters()]))
    assert_polyak(algo.critic_target, target0, algo.critic, 0.4)


def test_discrete_cql_exact_logsumexp_penalty_double_dqn_target_and_target_interval() -> None:
    num_actions, alpha = 4, 0.7
    spec = ActionSpec("discrete", num_actions=num_actions)
    config = DiscreteCQLConfig(hidden=(6,), num_critics=2, gamma=GAMMA, cql_alpha=alpha, tau=0.5,
                               target_update_interval=2, td_loss="mse")
    algo = DiscreteCQL(OBS, spec, config, seed=8)
    batch = make_batch(7, num_actions=num_actions)
    for update in (1, 2):
        critic0, target0 = frozen(algo.critic), frozen(algo.critic_target)
        grads: dict = {}
        capture_grads(algo.optimizer, grads, "critic")
        metrics = algo.update(batch)

        y = []
        for i in range(B):
            s = batch.next_observations[i:i + 1]
            q_online = torch.minimum(critic0.critics[0](s)[0], critic0.critics[1](s)[0])
            best = int(q_online.argmax())  # the online network picks, the target networks value (min)
            value = torch.minimum(target0.critics[0](s)[0, best], target0.critics[1](s)[0, best])
            y.append(batch.rewards[i] + GAMMA * (1 - batch.dones[i]) * value)
        y = torch.stack(y)
        td, gaps = 0.0, []
        for c in (0, 1):
            q_all = critic0.critics[c](batch.observations)
            q = q_all.gather(1, batch.actions[:, None]).squeeze(1)
            td = td + ((q - y) ** 2).mean()
            gaps.append(torch.stack([torch.log(torch.exp(q_all[i]).sum()) - q[i] for i in range(B)]).mean())
        loss = td + alpha * sum(gaps)
        assert_close(metrics["target_mean"], y.mean())
        assert_close(metrics["td_loss"], td)
        assert_close(metrics["cql_penalty"], torch.stack(gaps).mean())
        assert_close(metrics["critic_loss"], loss)
        assert_grads_close(grads["critic"], hand_grads(loss, critic0))
        if update == 1:  # the target network moves every 2nd update only
            for p1, p0 in zip(algo.critic_target.parameters(), target0.parameters()):
                assert torch.equal(p1, p0)
        else:
            assert_polyak(algo.critic_target, target0, algo.critic, 0.5)
