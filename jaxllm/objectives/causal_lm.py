"""Causal language-modelling objective: next-token cross-entropy.

    loss_fn = causal_lm_loss(model, z_loss=1e-4)
    loss, metrics = loss_fn(params, batch, rng)

The batch holds `inputs` and `targets` (B, T) int32 and optionally `loss_mask` (B, T) (0 for
padding and for targets across a document boundary), `segment_ids` and `positions` (packed
documents). The loss is the mean cross-entropy over the tokens the mask keeps, plus
z_loss * mean(log(Z)^2) when z_loss > 0 (PaLM: it keeps the softmax normaliser near 1 so logits
do not drift, which matters for low-precision training).

Metrics are sums and counts (`loss_sum`, `correct`, `tokens`, ...) as well as means, so that
micro-batches, devices and evaluation batches combine exactly: see `finalize_metrics`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def token_cross_entropy(logits, targets):
    """Per-token cross-entropy and log-normaliser, computed in float32. logits (..., V)."""
    logits = logits.astype(jnp.float32)
    log_z = jax.nn.logsumexp(logits, axis=-1)  # (...,)
    target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    return log_z - target_logit, log_z


def lm_loss_and_metrics(logits, targets, loss_mask=None, z_loss: float = 0.0):
    """(loss, metrics) of next-token prediction given logits (B, T, V) and targets (B, T)."""
    ce, log_z = token_cross_entropy(logits, targets)
    weights = jnp.ones_like(ce) if loss_mask is None else loss_mask.astype(jnp.float32)
    tokens = jnp.sum(weights)
    denom = jnp.maximum(tokens, 1.0)
    loss_sum = jnp.sum(ce * weights)
    loss = loss_sum / denom
    z_sum = jnp.sum(jnp.square(log_z) * weights)
    if z_loss:
        loss = loss + z_loss * z_sum / denom
    correct = jnp.sum((jnp.argmax(logits, axis=-1) == targets) * weights)
    metrics = {"loss_sum": loss_sum, "z_sum": z_sum, "correct": correct, "tokens": tokens}
    return loss, metrics


def causal_lm_loss(model, z_loss: float = 0.0):
    """The objective for a decoder `model`: (params, batch, rng) -> (loss, metrics).

    rng None means evaluation (no dropout); otherwise it seeds dropout.
    """

    def loss_fn(params, batch, rng=None):
        train = rng is not None
        logits = model.apply({"params": params}, batch["inputs"],
                             positions=batch.get("positions"), segment_ids=batch.get("segment_ids"),
                             train=train, rngs={"dropout": rng} if train else None)
        return lm_loss_and_metrics(logits, batch["targets"], batch.get("loss_mask"), z_loss)

    return loss_fn


def finalize_metrics(sums: dict) -> dict:
    """Turn summed metrics (over micro-batches, devices or batches) into means.

    loss is the mean cross-entropy per token (without z-loss), perplexity exp(loss), accuracy
    the fraction of tokens whose argmax is the target. Other objectives count pairs, rankings
    or sequences as "tokens"; their `<name>_total` sums become means named <name>.
    """
    tokens = max(float(sums["tokens"]), 1.0)
    loss = float(sums["loss_sum"]) / tokens
    return {"loss": loss, "perplexity": math.exp(min(loss, 80.0)),
            "accuracy": float(sums["correct"]) / tokens, "tokens": float(sums["tokens"]),
            **{k[:-6]: float(v) / tokens for k, v in sums.items() if k.endswith("_total")}}
