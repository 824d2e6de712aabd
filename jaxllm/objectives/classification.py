"""Image (or sequence) classification: cross-entropy over class logits."""

from __future__ import annotations

import jax.numpy as jnp

from jaxllm.objectives.causal_lm import token_cross_entropy


def classifier_loss(model):
    """The ViT objective: (params, batch, rng) -> (mean cross-entropy, sums), for any module
    whose apply(images) returns {"logits": (B, classes)}.

    batch: images (B, H, W, C) float32, labels (B,) int32. The sums use the causal objective's
    names (loss_sum, correct, tokens = images) so the trainer's logging works unchanged."""

    def loss_fn(params, batch, rng=None):
        train = rng is not None
        logits = model.apply({"params": params}, batch["images"], train=train,
                             rngs={"dropout": rng} if train else None)["logits"]
        ce, _ = token_cross_entropy(logits, batch["labels"])  # (B,)
        n = jnp.asarray(ce.shape[0], jnp.float32)
        correct = jnp.sum(jnp.argmax(logits, -1) == batch["labels"])
        return jnp.mean(ce), {"loss_sum": jnp.sum(ce), "correct": correct, "tokens": n}

    return loss_fn
