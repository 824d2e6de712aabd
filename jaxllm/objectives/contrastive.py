"""The symmetric InfoNCE loss of CLIP, on one device and over a data-parallel mesh.

    loss = info_nce(image_emb, text_emb, scale)             # (B, E), (B, E) unit rows, () scale
    loss = sharded_info_nce(mesh)(image_emb, text_emb, scale)   # rows sharded over mesh "data"

Row i of the images and row i of the texts are a positive pair; every other row of the batch is
a negative. The loss is the mean of the image->text and text->image cross-entropies of the
scaled cosine similarities.

Under data parallelism each device holds B/n rows. Following open_clip (local_loss=True,
gather_with_grad=True), each device all-gathers the other devices' embeddings, scores its own
B/n rows against all B columns, and takes the cross-entropy against the columns of its own rows
(offset by its index on the axis); the device losses are averaged. That is exactly the
single-device loss of the global batch, at B/n x B logits per device instead of B x B, and
because `lax.all_gather` is differentiable (its transpose is a reduce-scatter), the gradient of
every embedding collects the terms of all devices' losses: the gradients are the global ones too.

`clip_loss(model)` wraps this as a trainer objective (params, batch, rng) -> (loss, sums).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from jaxllm.objectives.causal_lm import token_cross_entropy


def _cross_entropies(img, txt_all, txt, img_all, scale, labels):
    """Mean image->text and text->image cross-entropy of local rows against all columns."""
    logits_i = scale * jnp.dot(img, txt_all.T)  # (b, B)
    logits_t = scale * jnp.dot(txt, img_all.T)  # (b, B)
    ce_i, _ = token_cross_entropy(logits_i, labels)
    ce_t, _ = token_cross_entropy(logits_t, labels)
    return 0.5 * (jnp.mean(ce_i) + jnp.mean(ce_t)), logits_i


def info_nce(image_emb, text_emb, scale):
    """Symmetric InfoNCE of a whole batch on one device: image_emb, text_emb (B, E) -> ()."""
    labels = jnp.arange(image_emb.shape[0])
    return _cross_entropies(image_emb, text_emb, text_emb, image_emb, scale, labels)[0]


def _local_info_nce(image_emb, text_emb, scale, *, axis: str):
    """Per-device body of sharded_info_nce: local rows (b, E) against the gathered batch."""
    all_img = jax.lax.all_gather(image_emb, axis, tiled=True)  # (B, E), gradients flow back
    all_txt = jax.lax.all_gather(text_emb, axis, tiled=True)
    b = image_emb.shape[0]
    labels = jax.lax.axis_index(axis) * b + jnp.arange(b)  # this device's rows in the batch
    loss, _ = _cross_entropies(image_emb, all_txt, text_emb, all_img, scale, labels)
    return jax.lax.pmean(loss, axis)  # every device's rows count once: the global mean


def sharded_info_nce(mesh: jax.sharding.Mesh, axis: str = "data"):
    """info_nce over a batch sharded along the mesh axis `axis` (B divisible by its size)."""
    return jax.shard_map(partial(_local_info_nce, axis=axis), mesh=mesh,
                         in_specs=(P(axis), P(axis), P()), out_specs=P())


def clip_loss(model, mesh: jax.sharding.Mesh | None = None):
    """The CLIP objective for the trainer: (params, batch, rng) -> (loss, sums).

    batch: images (B, H, W, C) float32, tokens (B, T) int32, eot (B,) int32, labels (B,) int32.
    sums: loss_sum (loss x B, so the trainer's mean is the loss), tokens (= B) and correct: the
    images whose most similar caption in the batch describes their digit (same label; several
    captions of one digit are equally right). With a mesh the loss is sharded_info_nce over it.
    """
    loss_of = info_nce if mesh is None else sharded_info_nce(mesh)

    def loss_fn(params, batch, rng=None):
        train = rng is not None
        out = model.apply({"params": params}, batch["images"], batch["tokens"], batch["eot"],
                          train=train, rngs={"dropout": rng} if train else None)
        loss = loss_of(out["image"], out["text"], out["scale"])
        best = jnp.argmax(jnp.dot(out["image"], out["text"].T), axis=-1)  # (B,)
        correct = jnp.sum(batch["labels"][best] == batch["labels"])
        n = jnp.asarray(out["image"].shape[0], jnp.float32)
        return loss, {"loss_sum": loss * n, "correct": correct, "tokens": n,
                      "logit_scale": out["scale"] * n}

    return loss_fn
