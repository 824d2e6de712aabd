"""Classification objectives: images (the ViT) and the encoder's task heads (model.head).

    loss_fn = classifier_loss(vit)                       # batch: images, labels
    loss_fn = task_loss(encoder, "sequence")             # batch: tokens, mask, labels (B,)
    loss_fn = task_loss(encoder, "token")                # batch: tokens, mask, labels (B, T)
    loss_fn = task_loss(encoder, "span", max_answer=30)  # batch: tokens, mask, starts, ends (B,)
    loss, sums = loss_fn(params, batch, rng)             # rng None: evaluation (no dropout)

The encoder batches hold `tokens` (B, T) int32 and `mask` (B, T) bool (True on real tokens),
optionally `types` (B, T) token types, and the labels of the head:

- sequence: labels (B,), one class per text; cross-entropy of the pooled logits.
- token: labels (B, T), a tag per token; positions with a negative label (special tokens, a
  word's later word pieces) and padding are left out of the loss and the counts.
- span: starts, ends (B,), the answer's first and last token; the loss is the mean of the start
  and end cross-entropies over the real tokens (BERT's SQuAD loss, padding masked), and an
  answer counts as correct when `best_span` decodes exactly it. An optional `context` (B, T)
  bool limits where answers may lie (default: every real token).

The sums use the causal objective's names (loss_sum, correct, tokens = what is counted: images,
texts, tagged tokens, questions), so the trainer's logging and evaluation work unchanged.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxllm.objectives.causal_lm import token_cross_entropy

NEG = -1e9  # the logit of a position an answer cannot start or end at
MAX_ANSWER = 30  # the longest answer span (tokens) decoded by default


def classifier_loss(model):
    """The ViT objective: (params, batch, rng) -> (mean cross-entropy, sums), for any module
    whose apply(images) returns {"logits": (B, classes)}.

    batch: images (B, H, W, C) float32, labels (B,) int32."""

    def loss_fn(params, batch, rng=None):
        train = rng is not None
        logits = model.apply({"params": params}, batch["images"], train=train,
                             rngs={"dropout": rng} if train else None)["logits"]
        return _mean_and_sums(logits, batch["labels"], jnp.ones(logits.shape[:1], jnp.float32))

    return loss_fn


def _mean_and_sums(logits, labels, weights):
    """(weighted mean cross-entropy, sums) of logits (..., C) against labels (...)."""
    ce, _ = token_cross_entropy(logits, jnp.maximum(labels, 0))
    n = jnp.sum(weights)
    correct = jnp.sum((jnp.argmax(logits, -1) == labels) * weights)
    loss_sum = jnp.sum(ce * weights)
    return loss_sum / jnp.maximum(n, 1.0), {"loss_sum": loss_sum, "correct": correct,
                                            "tokens": n}


def best_span(start_logits, end_logits, valid, max_answer: int):
    """The highest-scoring answer span of each row: (starts, ends, scores), each (B,).

    A span (i, j) is valid when i <= j < i + max_answer and both i and j are valid positions
    (valid (B, T) bool); its score is start_logits[i] + end_logits[j]. Ties go to the smallest
    (i, j) in row-major order. A row without a valid position gets (0, 0) and score NEG-ish."""
    T = start_logits.shape[-1]
    i, j = jnp.arange(T)[:, None], jnp.arange(T)[None, :]
    allowed = (j >= i) & (j - i < max_answer)  # (T, T)
    ok = allowed[None] & valid[:, :, None] & valid[:, None, :]  # (B, T, T)
    scores = start_logits[:, :, None] + end_logits[:, None, :]  # (B, T, T)
    flat = jnp.where(ok, scores, 2 * NEG).reshape(scores.shape[0], T * T)
    best = jnp.argmax(flat, axis=-1)
    return best // T, best % T, jnp.max(flat, axis=-1)


def task_loss(model, head: str, *, max_answer: int = MAX_ANSWER):
    """The objective of an encoder `model` with task head `head` ("sequence", "token", "span"):
    (params, batch, rng) -> (loss, sums). max_answer: the longest span (tokens) decoded."""

    def loss_fn(params, batch, rng=None):
        train = rng is not None
        mask = batch["mask"]
        out = model.apply({"params": params}, batch["tokens"], batch.get("types"), mask,
                          train=train, rngs={"dropout": rng} if train else None)
        if head == "sequence":
            labels = batch["labels"]
            return _mean_and_sums(out["logits"], labels, jnp.ones(labels.shape, jnp.float32))
        if head == "token":
            labels = batch["labels"]
            return _mean_and_sums(out["logits"], labels, (mask & (labels >= 0)).astype(
                jnp.float32))
        start = jnp.where(mask, out["start_logits"], NEG)  # (B, T): padding never an answer
        end = jnp.where(mask, out["end_logits"], NEG)
        ce_start, _ = token_cross_entropy(start, batch["starts"])  # (B,)
        ce_end, _ = token_cross_entropy(end, batch["ends"])
        ce = (ce_start + ce_end) / 2
        s, e, _ = best_span(start, end, batch.get("context", mask), max_answer)
        correct = jnp.sum((s == batch["starts"]) & (e == batch["ends"]))
        n = jnp.asarray(ce.shape[0], jnp.float32)
        return jnp.mean(ce), {"loss_sum": jnp.sum(ce), "correct": correct, "tokens": n}

    return loss_fn
