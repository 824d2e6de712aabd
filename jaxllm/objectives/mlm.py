"""Masked-LM and next-sentence-prediction objectives for the encoder (BERT).

    loss_fn = mlm_loss(Encoder(cfg), mask_id=V, cls_id=V + 1, vocab_size=V, rate=0.15,
                       nsp_weight=1.0)
    loss, metrics = loss_fn(params, batch, rng)

Masking (`mask_tokens`): each maskable token is chosen with probability `rate`; a chosen token
becomes [MASK] 80% of the time, a uniformly random token 10%, and stays itself 10%; the loss is
the cross-entropy of the original token at the chosen positions only.

Next sentence (`nsp_pairs`): each row (a window of text) becomes [CLS] A B, where A is the first
half and B the second half of the same window ("is next", class 0) or, for half of the rows, the
second half of the next row in the batch ("random", class 1); token types are 0 on [CLS] A and 1
on B, as BERT's segment embeddings.

The batch is the decoder's: `inputs` (B, T) token windows (targets are ignored), so the same
batch iterators feed both objectives. The masks are drawn from `rng` inside the jitted step;
evaluation (rng None) uses one fixed key, so every evaluation scores the same masked positions.
Metrics are sums like the causal objective's (loss_sum, correct, tokens over masked positions;
perplexity is the masked-LM one) plus nsp_loss_sum, nsp_correct and sequences.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxllm.objectives.causal_lm import lm_loss_and_metrics, token_cross_entropy

EVAL_KEY = 20240  # the fixed masking key of evaluation


def mask_tokens(rng, tokens, maskable, *, mask_id: int, vocab_size: int, rate: float = 0.15):
    """BERT's 80/10/10 corruption. tokens (B, T) int, maskable (B, T) bool (False on special
    tokens and padding). Returns (inputs, chosen): the corrupted tokens and the bool (B, T)
    positions whose originals the loss predicts."""
    k_choose, k_kind, k_random = jax.random.split(rng, 3)
    chosen = jax.random.bernoulli(k_choose, rate, tokens.shape) & maskable
    kind = jax.random.uniform(k_kind, tokens.shape)
    random_tokens = jax.random.randint(k_random, tokens.shape, 0, vocab_size, tokens.dtype)
    inputs = jnp.where(chosen & (kind < 0.8), mask_id, tokens)
    inputs = jnp.where(chosen & (kind >= 0.8) & (kind < 0.9), random_tokens, inputs)
    return inputs, chosen


def nsp_pairs(rng, windows, *, cls_id: int):
    """[CLS] A B rows from windows (B, W): returns (tokens (B, W + 1), token_types (B, W + 1),
    labels (B,)): label 0 when B is the true continuation of A, 1 when it is another row's."""
    B, W = windows.shape
    half = W // 2
    first, second = windows[:, :half], windows[:, half:]
    other = jnp.roll(second, 1, axis=0)  # another row's second half (B >= 2)
    labels = jax.random.bernoulli(rng, 0.5, (B,)).astype(jnp.int32) if B > 1 else jnp.zeros(
        (B,), jnp.int32)
    second = jnp.where(labels[:, None] == 1, other, second)
    tokens = jnp.concatenate([jnp.full((B, 1), cls_id, windows.dtype), first, second], axis=1)
    types = jnp.concatenate([jnp.zeros((B, half + 1), jnp.int32),
                             jnp.ones((B, W - half), jnp.int32)], axis=1)
    return tokens, types, labels


def mlm_loss(model, *, mask_id: int, cls_id: int, vocab_size: int, rate: float = 0.15,
             nsp_weight: float = 0.0):
    """The objective for an encoder `model`: (params, batch, rng) -> (loss, metrics).

    Windows of the batch's `inputs` lose their last token to make room for [CLS] (the model's
    context is max_len). Only ids below vocab_size (the tokenizer's) are ever masked or drawn
    as random replacements; [MASK] and [CLS] sit above them.
    """

    def loss_fn(params, batch, rng=None):
        train = rng is not None
        key = rng if train else jax.random.PRNGKey(EVAL_KEY)
        k_pair, k_mask, k_drop = jax.random.split(key, 3)
        windows = batch["inputs"][:, :-1]  # (B, T - 1)
        tokens, types, labels = nsp_pairs(k_pair, windows, cls_id=cls_id)
        maskable = tokens < vocab_size
        inputs, chosen = mask_tokens(k_mask, tokens, maskable, mask_id=mask_id,
                                     vocab_size=vocab_size, rate=rate)
        heads = ("mlm", "nsp") if nsp_weight else ("mlm",)
        out = model.apply({"params": params}, inputs, types, None, train=train, heads=heads,
                          rngs={"dropout": k_drop} if train else None)
        loss, metrics = lm_loss_and_metrics(out["mlm_logits"], tokens, chosen)
        if nsp_weight:
            ce, _ = token_cross_entropy(out["nsp_logits"], labels)  # (B,)
            loss = loss + nsp_weight * jnp.mean(ce)
            metrics.update(nsp_loss_sum=jnp.sum(ce), sequences=jnp.asarray(ce.shape[0], jnp.float32),
                           nsp_correct=jnp.sum(jnp.argmax(out["nsp_logits"], -1) == labels))
        return loss, metrics

    return loss_fn
