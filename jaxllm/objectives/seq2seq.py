"""Encoder-decoder objective: next-token cross-entropy of the target under teacher forcing.

    loss_fn = seq2seq_loss(model, start_id=V)
    loss, sums = loss_fn(params, batch, rng)

The batch holds `source`, `target` (B, S) / (B, T) int32 and their masks `source_mask`,
`target_mask` (bool, True for real tokens; the target ends with its end token, then right
padding). The decoder reads the target shifted right behind the start token,
    target     y1 y2 y3 </s> pad
    decoder in <s> y1 y2 y3 </s>
and is scored on predicting each real target token; padding is masked out of the loss and out
of the source attention. Sums as the causal objective's (causal_lm.lm_loss_and_metrics).
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxllm.objectives.causal_lm import lm_loss_and_metrics


def seq2seq_ids(tokenizer_vocab: int) -> tuple[int, int]:
    """(start id, end id) of an encoder-decoder over a tokenizer of tokenizer_vocab ids: the
    two ids above the tokenizer's."""
    return tokenizer_vocab, tokenizer_vocab + 1


def shift_right(target, start_id: int):
    """target (B, T) -> (B, T): start_id, then target[:, :-1]."""
    start = jnp.full((target.shape[0], 1), start_id, target.dtype)
    return jnp.concatenate([start, target[:, :-1]], axis=1)


def seq2seq_loss(model, start_id: int, z_loss: float = 0.0):
    """The objective of an encoder-decoder `model`: (params, batch, rng) -> (loss, sums).
    rng None means evaluation (no dropout)."""

    def loss_fn(params, batch, rng=None):
        train = rng is not None
        target = batch["target"]
        logits = model.apply({"params": params}, batch["source"], shift_right(target, start_id),
                             batch["source_mask"], None, train=train,
                             rngs={"dropout": rng} if train else None)
        return lm_loss_and_metrics(logits, target, batch["target_mask"], z_loss)

    return loss_fn
