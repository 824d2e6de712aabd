"""Policy optimisation from rewards: PPO (clipped ratio, value loss, GAE, KL penalty to the
reference) and GRPO (group-relative advantages, no critic).

    rewards = kl_penalized_rewards(scores, logps, ref_logps, mask, kl_coef)   # (B, T)
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=0.95)
    loss = ppo_policy_loss(logps, old_logps, whiten(advantages, mask), mask, clip=0.2)
         + vf_coef * ppo_value_loss(new_values, values, returns, mask, clip=0.2)

    advantages = group_advantages(scores, group_size)       # (B,), zero mean per group
    loss, kl = grpo_loss(logps, old_logps, ref_logps, advantages, mask, clip=0.2, kl_coef=0.04)

Every array is (B, T) over a rollout's positions, aligned like next-token targets: position t
holds the log-probability of target token t and the value of the state before it; `mask` is 1
on the completion's tokens (never the prompt or padding).

Definitions. PPO follows TRL's PPOTrainer (Ouyang et al. 2022): per-token reward
-kl_coef (log pi - log ref), plus the sequence's score on its last token; GAE (Schulman et al.
2016) delta_t = r_t + gamma V_{t+1} - V_t, A_t = delta_t + gamma lambda A_{t+1}, skipping
positions outside the mask (as tunix's compute_gae_advantages), returns A + V; advantages
whitened over the batch's completion tokens; policy loss the masked mean of
max(-A r, -A clip(r, 1 - c, 1 + c)) with r = exp(log pi - log pi_old); value loss
0.5 masked mean of max((V - R)^2, (clip(V, V_old - c_v, V_old + c_v) - R)^2).
GRPO follows tunix's GRPO learner (Shao et al. 2024): A = (s - mean_group) / (std_group + 1e-4)
(std with ddof=1), per-token loss -min(r A, clip(r) A) + kl_coef KL with the k3 estimator
KL = exp(ref - pi) - (ref - pi) - 1, averaged over each completion's tokens, then over the batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxllm.objectives.causal_lm import token_cross_entropy

GROUP_EPS = 1e-4  # tunix's and TRL's epsilon in the group advantage's denominator


def masked_mean(x, mask, axis=None):
    mask = mask.astype(jnp.float32)
    return jnp.sum(x * mask, axis=axis) / jnp.maximum(jnp.sum(mask, axis=axis), 1.0)


def whiten(x, mask, eps: float = 1e-8):
    """(x - mean) / std over the masked entries (std with Bessel's correction, as TRL/tunix)."""
    mean = masked_mean(x, mask)
    n = jnp.sum(mask.astype(jnp.float32))
    var = masked_mean(jnp.square(x - mean), mask) * n / jnp.maximum(n - 1.0, 1.0)
    return (x - mean) * jax.lax.rsqrt(var + eps)


def token_logprobs(logits, targets):
    """log p(target) at every position (B, T), in float32."""
    return -token_cross_entropy(logits, targets)[0]


def kl_penalized_rewards(scores, logps, ref_logps, mask, kl_coef: float):
    """PPO's per-token rewards (B, T): -kl_coef (logps - ref_logps) on completion tokens, and the
    sequence score (B,) added at each row's last completion token."""
    mask = mask.astype(jnp.float32)
    T = mask.shape[1]
    last = T - 1 - jnp.argmax(mask[:, ::-1], axis=1)  # (B,) index of the last masked position
    at_last = (jnp.arange(T)[None, :] == last[:, None]) * mask
    return (-kl_coef * (logps - ref_logps) * mask + scores[:, None] * at_last)


def gae(rewards, values, mask, *, gamma: float = 1.0, lam: float = 0.95):
    """(advantages, returns) (B, T) by generalized advantage estimation over the masked
    positions, from the last to the first; the value after a completion's end is 0."""
    mask = mask.astype(jnp.float32)

    def step(carry, xs):
        next_adv, next_value = carry
        r, v, m = xs
        delta = r + gamma * next_value - v
        adv = delta + gamma * lam * next_adv
        # outside the completion the running advantage and value pass through unchanged
        return (m * adv + (1 - m) * next_adv, m * v + (1 - m) * next_value), m * adv

    zeros = jnp.zeros(rewards.shape[0], jnp.float32)
    _, adv = jax.lax.scan(step, (zeros, zeros), (rewards.T, values.T, mask.T), reverse=True)
    adv = adv.T  # (B, T)
    return adv, (adv + values) * mask


def ppo_policy_loss(logps, old_logps, advantages, mask, *, clip: float = 0.2):
    """(clipped surrogate loss, fraction of tokens where the clip is active)."""
    ratio = jnp.exp(logps - old_logps)
    unclipped = -advantages * ratio
    clipped = -advantages * jnp.clip(ratio, 1.0 - clip, 1.0 + clip)
    return masked_mean(jnp.maximum(unclipped, clipped), mask), masked_mean(
        (clipped > unclipped).astype(jnp.float32), mask)


def ppo_value_loss(new_values, old_values, returns, mask, *, clip: float = 0.2):
    """0.5 masked mean of the larger of the plain and the clipped squared value errors."""
    clipped = jnp.clip(new_values, old_values - clip, old_values + clip)
    losses = jnp.maximum(jnp.square(new_values - returns), jnp.square(clipped - returns))
    return 0.5 * masked_mean(losses, mask)


def group_advantages(scores, group_size: int):
    """GRPO's advantages (B,): each score minus its group's mean, over the group's standard
    deviation (+1e-4); rows b*G .. b*G + G - 1 are the G completions of one prompt."""
    groups = scores.astype(jnp.float32).reshape(-1, group_size)  # (B / G, G)
    mean = jnp.mean(groups, axis=1, keepdims=True)
    std = jnp.std(groups, axis=1, keepdims=True, ddof=1)
    return ((groups - mean) / (std + GROUP_EPS)).reshape(-1)


def k3_kl(logps, ref_logps):
    """Per-token estimate of KL(pi || ref) from samples of pi: exp(d) - d - 1, d = ref - pi."""
    d = ref_logps - logps
    return jnp.exp(d) - d - 1.0


def grpo_loss(logps, old_logps, ref_logps, advantages, mask, *, clip: float = 0.2,
              kl_coef: float = 0.04):
    """(GRPO loss, mean per-token KL to the reference). advantages (B,) per completion."""
    ratio = jnp.exp(logps - old_logps)
    a = advantages[:, None]
    per_token = -jnp.minimum(ratio * a, jnp.clip(ratio, 1.0 - clip, 1.0 + clip) * a)
    kl = k3_kl(logps, ref_logps)
    per_token = per_token + kl_coef * kl
    per_sequence = masked_mean(per_token, mask, axis=1)  # (B,)
    return jnp.mean(per_sequence), masked_mean(kl, mask)


# --- trainer objectives ---------------------------------------------------------------------

def _forward(model, params, batch, rng, head):
    train = rng is not None
    return model.apply({"params": params}, batch["inputs"], train=train, head=head,
                       rngs={"dropout": rng} if train else None)


def _rollout_sums(loss, batch, kl):
    n = jnp.asarray(batch["inputs"].shape[0], jnp.float32)
    return {"loss_sum": loss * n, "tokens": n, "correct": jnp.sum(batch["solved"]),
            "reward_total": jnp.sum(batch["scores"]), "kl_total": kl * n}


def ppo_objective(model, *, clip: float = 0.2, value_clip: float = 0.2, vf_coef: float = 0.1):
    """PPO for the trainer, on a rollout batch (jaxllm.train.rollout): inputs, targets, mask,
    old_logps, ref_logps, old_values, advantages (whitened), returns (B, T); scores and solved
    (B,). The model has a value head (model.value_head): policy and critic share the decoder.

    sums: loss_sum, tokens (sequences), correct (solved sequences), reward_total, kl_total
    (mean log pi_old - log ref per completion token), clip_total and value_loss_total."""

    def loss_fn(params, batch, rng=None):
        logits, values = _forward(model, params, batch, rng, "both")
        logps = token_logprobs(logits, batch["targets"])
        mask = batch["mask"]
        pg, clipped = ppo_policy_loss(logps, batch["old_logps"], batch["advantages"], mask,
                                      clip=clip)
        vf = ppo_value_loss(values.astype(jnp.float32), batch["old_values"], batch["returns"],
                            mask, clip=value_clip)
        loss = pg + vf_coef * vf
        kl = masked_mean(batch["old_logps"] - batch["ref_logps"], mask)
        sums = _rollout_sums(loss, batch, kl)
        n = sums["tokens"]
        sums.update(clip_total=clipped * n, value_loss_total=vf * n)
        return loss, sums

    return loss_fn


def grpo_objective(model, *, clip: float = 0.2, kl_coef: float = 0.04):
    """GRPO for the trainer, on a rollout batch: inputs, targets, mask, old_logps, ref_logps
    (B, T); advantages, scores and solved (B,). sums as ppo_objective's (kl: the k3 estimate)."""

    def loss_fn(params, batch, rng=None):
        logps = token_logprobs(_forward(model, params, batch, rng, "lm"), batch["targets"])
        loss, kl = grpo_loss(logps, batch["old_logps"], batch["ref_logps"],
                             batch["advantages"], batch["mask"], clip=clip, kl_coef=kl_coef)
        return loss, _rollout_sums(loss, batch, kl)

    return loss_fn
