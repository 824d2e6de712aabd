"""Causal language-modelling objective: next-token cross-entropy.

    loss_fn = causal_lm_loss(model, z_loss=1e-4)
    loss, metrics = loss_fn(params, batch, rng)

The batch holds `inputs` and `targets` (B, T) int32 and optionally `loss_mask` (B, T) (0 for
padding and for targets across a document boundary), `segment_ids` and `positions` (packed
documents). The loss is the mean cross-entropy over the tokens the mask keeps, plus
z_loss * mean(log(Z)^2) when z_loss > 0 (PaLM: it keeps the softmax normaliser near 1 so logits
do not drift, which matters for low-precision training).

Large logits are never materialised whole: above LOGITS_CHUNK_ABOVE bytes of float32 logits
(batch x length x vocabulary x 4) the loss takes the model's final hidden states and runs the
output head and the cross-entropy over chunks of CHUNK_BYTES of logits in a rematerialised scan,
so forward and backward hold one chunk of logits at a time (the backward recomputes the chunk's
head matmul). SmolLM2-135M's 49k-entry vocabulary at 4 x 256 tokens is 0.2 GB of float32
logits and as much again for their gradient; chunked, 16 MiB.

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


LOGITS_CHUNK_ABOVE = 2 ** 26  # bytes of float32 logits (64 MiB) above which the loss is chunked
CHUNK_BYTES = 2 ** 24  # float32 logits per chunk (16 MiB)


def chunk_rows(tokens: int, vocab: int) -> int:
    """Tokens per chunk of the chunked cross-entropy, or 0 for the plain one: chunked when the
    whole float32 logits (tokens x vocab) exceed LOGITS_CHUNK_ABOVE."""
    if tokens * vocab * 4 <= LOGITS_CHUNK_ABOVE:
        return 0
    return max(8, CHUNK_BYTES // (4 * vocab) // 8 * 8)


def chunked_lm_loss_and_metrics(head, x, targets, loss_mask=None, z_loss: float = 0.0,
                                rows: int = 1024):
    """lm_loss_and_metrics of logits = head(x), computed `rows` tokens at a time.

    x (B, T, D) hidden states, head (n, D) -> (n, V). The tokens are flattened and padded to a
    multiple of `rows` (padding weighs 0); a lax.scan over the chunks sums the cross-entropy,
    log(Z)^2 and correct predictions, and jax.checkpoint on its body makes the backward pass
    recompute each chunk's logits instead of keeping them."""
    B, T = x.shape[:2]
    n = B * T
    weights = jnp.ones((B, T), jnp.float32) if loss_mask is None else loss_mask.astype(jnp.float32)
    pad = -n % rows

    def chunks(a):  # (B, T, ...) -> (n_chunks, rows, ...)
        a = a.reshape(n, *a.shape[2:])
        a = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1))
        return a.reshape(-1, rows, *a.shape[1:])

    @jax.checkpoint
    def body(sums, chunk):
        xc, tc, wc = chunk
        logits = head(xc)  # (rows, V)
        ce, log_z = token_cross_entropy(logits, tc)
        correct = (jnp.argmax(logits, axis=-1) == tc) * wc
        return sums + jnp.stack([jnp.sum(ce * wc), jnp.sum(jnp.square(log_z) * wc),
                                 jnp.sum(correct)]), None

    sums, _ = jax.lax.scan(body, jnp.zeros(3, jnp.float32),
                           (chunks(x), chunks(targets), chunks(weights)))
    loss_sum, z_sum, correct = sums[0], sums[1], sums[2]
    tokens = jnp.sum(weights)
    denom = jnp.maximum(tokens, 1.0)
    loss = loss_sum / denom
    if z_loss:
        loss = loss + z_loss * z_sum / denom
    metrics = {"loss_sum": loss_sum, "z_sum": z_sum, "correct": jax.lax.stop_gradient(correct),
               "tokens": tokens}
    return loss, metrics


def causal_lm_loss(model, z_loss: float = 0.0, rows: int | None = None):
    """The objective for a decoder `model`: (params, batch, rng) -> (loss, metrics).

    rng None means evaluation (no dropout); otherwise it seeds dropout. rows: tokens per chunk
    of the cross-entropy; None decides by `chunk_rows` (the size of the logits), 0 never chunks.
    """

    def loss_fn(params, batch, rng=None):
        train = rng is not None
        B, T = batch["inputs"].shape
        n = chunk_rows(B * T, model.cfg.vocab_size) if rows is None else rows
        kw = {"positions": batch.get("positions"), "segment_ids": batch.get("segment_ids"),
              "train": train, "rngs": {"dropout": rng} if train else None}
        if not n:
            logits = model.apply({"params": params}, batch["inputs"], **kw)
            return lm_loss_and_metrics(logits, batch["targets"], batch.get("loss_mask"), z_loss)
        x = model.apply({"params": params}, batch["inputs"], head="hidden", **kw)

        def head(xc):
            return model.apply({"params": params}, xc, method="lm_head")

        return chunked_lm_loss_and_metrics(head, x, batch["targets"], batch.get("loss_mask"),
                                           z_loss, n)

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
