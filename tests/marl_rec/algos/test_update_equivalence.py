"""Speed-ups of an update must not change its numbers.

The updates of CQL and BCQ were restructured for speed (issue #19: the critic evaluated once
per proposal kind instead of on one concatenated batch, in-place ReLUs). The functions
``reference_cql_update`` and ``reference_bcq_update`` below are the updates as they were
before that work (copied verbatim from marl_rec/algos/cql.py and bcq.py at commit c1567ad,
only ``self`` renamed to ``algo``). Each test runs the reference and the current ``update`` on
two identical copies of one algorithm, on the same batches:

- the first update's losses and metrics are bit-for-bit equal (same random draws, the same
  per-row arithmetic);
- the gradients each optimiser receives agree to float rounding (a weight gradient summed over
  the proposal kinds one at a time adds the same numbers in another order), and so do the
  losses of later updates.
"""

from __future__ import annotations

import pytest
import torch

from marl_rec.algos import ActionSpec, Batch
from marl_rec.algos.bcq import BCQ, BCQConfig
from marl_rec.algos.cql import CQL, CQLConfig
from marl_rec.nets import MLP, soft_update

OBS_DIM, BATCH = 7, 32


# ------------------------------------------------------------------ the updates before #19


def reference_cql_update(algo: CQL, batch: Batch) -> dict[str, float]:
    c, g, n = algo.config, algo.generator, algo.config.num_sampled_actions
    obs, actions, next_obs = batch.observations, batch.actions, batch.next_observations
    b, k = actions.shape
    algo.num_updates += 1
    new_actions, log_pi = algo.actor(obs, g)
    log_entropy_alpha = algo.log_alphas["entropy"]
    entropy_alpha = log_entropy_alpha.exp().detach()
    algo.critic.requires_grad_(False)
    objective = (algo.actor.log_prob(obs, actions) if algo.num_updates <= c.bc_warmup_updates
                 else algo.critic(obs, new_actions).min(0).values)
    actor_loss = (entropy_alpha * log_pi - objective).mean()
    algo.critic.requires_grad_(True)
    entropy_loss = -(log_entropy_alpha * (log_pi.detach() + algo.target_entropy)).mean()
    algo.actor_optimizer.zero_grad()
    actor_loss.backward()
    algo.actor_optimizer.step()
    algo.entropy_optimizer.zero_grad()
    entropy_loss.backward()
    algo.entropy_optimizer.step()

    with torch.no_grad():
        next_actions, next_log_pi = algo.actor(next_obs, g)
        next_q = algo.critic_target(next_obs, next_actions).min(0).values
        if c.backup_entropy:
            next_q = next_q - entropy_alpha * next_log_pi
        target = batch.rewards + c.gamma * (1.0 - batch.dones) * next_q
        obs_rep = obs.repeat_interleave(n, 0)
        uniform = torch.rand((b * n, k), generator=g, device=algo.device) * (algo.high - algo.low) + algo.low
        pi_actions, pi_log = algo.actor.sample(obs, n, g)
        next_pi_actions, next_pi_log = algo.actor.sample(next_obs, n, g)
        log_density = torch.stack([torch.full_like(pi_log, algo.uniform_log_density), pi_log, next_pi_log])
    q_all = algo.critic(torch.cat([obs, obs_rep, obs_rep, obs_rep]),
                        torch.cat([actions, uniform, pi_actions, next_pi_actions]))  # (2, B + 3Bn)
    q, q_sampled = q_all[:, :b], q_all[:, b:].view(2, 3, b, n)
    scaled = (q_sampled - log_density.view(1, 3, b, n)) / c.cql_temperature
    soft_max = c.cql_temperature * torch.logsumexp(scaled.permute(0, 2, 1, 3).reshape(2, b, 3 * n), dim=2)
    gap = soft_max.mean(1) - q.mean(1)
    if c.lagrange:
        cql_alpha = algo.log_alphas["cql"].exp().clamp(0.0, 1e6)
        penalty = cql_alpha.detach() * (c.cql_alpha * gap - c.lagrange_threshold)
        lagrange_loss = -(cql_alpha * (c.cql_alpha * gap.detach() - c.lagrange_threshold)).mean()
        algo.lagrange_optimizer.zero_grad()
        lagrange_loss.backward()
        algo.lagrange_optimizer.step()
    else:
        cql_alpha = algo._unit
        penalty = c.cql_alpha * gap
    td_loss = (q - target).pow(2).mean(1).sum()
    critic_loss = td_loss + penalty.sum()
    algo.critic_optimizer.zero_grad()
    critic_loss.backward()
    algo.critic_optimizer.step()
    soft_update(algo.critic_target, algo.critic, c.tau)
    return algo._metrics({"critic_loss": critic_loss, "td_loss": td_loss, "actor_loss": actor_loss,
                          "cql_penalty": gap.mean(), "q_mean": q.mean(), "target_mean": target.mean(),
                          "alpha": entropy_alpha, "cql_alpha": cql_alpha * c.cql_alpha,
                          "entropy": -log_pi.mean()})


def reference_bcq_update(algo: BCQ, batch: Batch) -> dict[str, float]:
    c, n = algo.config, algo.config.num_sampled_actions
    obs, actions, next_obs = batch.observations, batch.actions, batch.next_observations
    algo.num_updates += 1
    reconstruction, mean, log_std = algo.vae(obs, actions, algo.generator)
    kl = -0.5 * (1.0 + 2.0 * log_std - mean.pow(2) - (2.0 * log_std).exp()).mean()
    vae_loss = (reconstruction - actions).pow(2).mean() + c.kl_weight * kl
    algo.vae_optimizer.zero_grad()
    vae_loss.backward()
    algo.vae_optimizer.step()

    with torch.no_grad():
        next_rep = next_obs.repeat_interleave(n, 0)
        latent = algo.vae.sample_latent(next_rep.shape[0], algo.generator, algo.device)
        next_q = algo.critic_target(next_rep, algo.actor_target(next_rep, algo.vae.decode(next_rep, latent)))
        next_q = c.lmbda * next_q.min(0).values + (1.0 - c.lmbda) * next_q.max(0).values
        target = batch.rewards + c.gamma * (1.0 - batch.dones) * next_q.view(-1, n).max(1).values
    q = algo.critic(obs, actions)
    critic_loss = (q - target).pow(2).mean(1).sum()
    algo.critic_optimizer.zero_grad()
    critic_loss.backward()
    algo.critic_optimizer.step()

    with torch.no_grad():
        proposals = algo.vae.decode(obs, algo.vae.sample_latent(obs.shape[0], algo.generator, algo.device))
    algo.critic.requires_grad_(False)
    actor_loss = -algo.critic.single(obs, algo.actor(obs, proposals)).mean()
    algo.actor_optimizer.zero_grad()
    actor_loss.backward()
    algo.actor_optimizer.step()
    algo.critic.requires_grad_(True)

    soft_update(algo.critic_target, algo.critic, c.tau)
    soft_update(algo.actor_target, algo.actor, c.tau)
    return algo._metrics({"critic_loss": critic_loss, "actor_loss": actor_loss, "vae_loss": vae_loss,
                          "q_mean": q.mean(), "target_mean": target.mean()})


# ------------------------------------------------------------------ helpers


def batches(count: int, k: int, seed: int = 0) -> list[Batch]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        dones = (torch.rand(BATCH, generator=g) < 0.2).float()
        out.append(Batch(torch.randn((BATCH, OBS_DIM), generator=g), torch.rand((BATCH, k), generator=g) * 1.8 - 0.9,
                         torch.rand(BATCH, generator=g), torch.randn((BATCH, OBS_DIM), generator=g), dones))
    return out


def record_gradients(algo) -> dict[str, list[torch.Tensor]]:
    """Wrap every optimiser's ``step`` to keep the gradients it receives, one list per call."""
    store: dict[str, list[torch.Tensor]] = {}
    for name, part in algo._parts().items():
        if isinstance(part, torch.optim.Optimizer):
            step = part.step

            def recording_step(*args, _name=name, _part=part, _step=step, **kwargs):
                store.setdefault(_name, []).extend(p.grad.detach().clone() for group in _part.param_groups
                                                   for p in group["params"] if p.grad is not None)
                return _step(*args, **kwargs)

            part.step = recording_step
    return store


def set_row_block(algo, rows: int) -> None:
    for part in algo._parts().values():
        if isinstance(part, torch.nn.Module):
            for module in part.modules():
                if isinstance(module, MLP):
                    module.row_block = rows


def compare(make, reference, num_updates: int, k: int) -> None:
    ours, theirs = make(), make()
    set_row_block(ours, 24)  # the test's batches are small: blocks of 24 rows exercise the blocking
    set_row_block(theirs, 10**9)  # the reference ran every network on the whole batch at once
    ours_grads, theirs_grads = record_gradients(ours), record_gradients(theirs)
    for index, batch in enumerate(batches(num_updates, k)):
        got, want = ours.update(batch), reference(theirs, batch)
        assert got.keys() == want.keys()
        if index == 0:
            assert got == want, "the first update's losses changed"
        else:
            for key in want:
                assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), key
    assert ours_grads.keys() == theirs_grads.keys()
    for name in ours_grads:
        assert len(ours_grads[name]) == len(theirs_grads[name])
        for got, want in zip(ours_grads[name], theirs_grads[name]):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ the tests


@pytest.mark.parametrize("lagrange", [False, True])
def test_cql_update_matches_the_reference(lagrange: bool) -> None:
    config = CQLConfig(actor_hidden=(32, 32), critic_hidden=(32, 32), num_sampled_actions=5, bc_warmup_updates=1,
                       lagrange=lagrange, backup_entropy=lagrange, batch_size=BATCH)
    compare(lambda: CQL(OBS_DIM, ActionSpec("continuous", dim=3), config, seed=3), reference_cql_update, 4, 3)


def test_bcq_update_matches_the_reference() -> None:
    config = BCQConfig(vae_hidden=(48, 48), actor_hidden=(32, 32), critic_hidden=(32, 32), num_sampled_actions=5,
                       batch_size=BATCH)
    compare(lambda: BCQ(OBS_DIM, ActionSpec("continuous", dim=3), config, seed=4), reference_bcq_update, 4, 3)
