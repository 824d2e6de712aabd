"""Beam search with length penalty and early stopping, for any model that decodes step by step.

    seqs, lengths, scores = beam_search(first_logits, state, step, reorder, batch=B,
                                        num_beams=4, max_new_tokens=32, end_ids=(eos,))

It is traced inside the caller's jit (infer/generate.py for decoders, infer/seq2seq.py for the
encoder-decoder) as one lax.while_loop over fixed shapes; the model is reached only through
    step(tokens (B*W,), state) -> (logits (B*W, V), state)   one token per beam row
    reorder(state, rows (B*W,)) -> state                     the rows the beams continue from
with beam w of example b in row b * W + w.

The rules are Hugging Face transformers' (generation/beam_search.py, BeamSearchScorer and
BeamHypotheses):
- each step, the 2W best continuations (sum of log-probabilities) of the W running beams are
  ranked; an end token among the first W of them finishes that hypothesis, the W best
  continuations that do not end carry on;
- a finished hypothesis scores sum_logprobs / generated_len ** length_penalty, where
  generated_len counts the new tokens including the end token (BeamHypotheses.add with
  generated_len = cur_len - decoder_prompt_len); the W best finished ones are kept;
- early_stopping=True: an example is done once it has W finished hypotheses; False: once, in
  addition, the best continuation's sum / cur_len ** length_penalty cannot beat the worst kept
  one (HF's heuristic for early_stopping=False);
- at max_new_tokens, the running beams of the examples not done join their finished ones.
length_penalty > 0 favours longer sequences, < 0 shorter ones; 0 ranks by the plain sum.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _take(a, idx):
    """a (B, N, ...) rows idx (B, M) along axis 1."""
    return jnp.take_along_axis(a, idx.reshape(idx.shape + (1,) * (a.ndim - 2)), axis=1)


def beam_search(first_logits, state, step, reorder, *, batch: int, num_beams: int,
                max_new_tokens: int, end_ids: tuple[int, ...], length_penalty: float = 1.0,
                early_stopping: bool = True, n_tokens: int | None = None):
    """(sequences (B, W, max_new_tokens) int32, lengths (B, W) int32, scores (B, W) float32)
    of the W best hypotheses of each example, best first. A sequence's `length` tokens count
    its end token when it has one (then its last); slots past it hold 0.

    first_logits (B*W, V): the next-token logits after the prompt, the same in the W rows of an
    example; state: the model's decoding state for B*W rows. n_tokens: ids >= n_tokens are
    never chosen (rows a mesh padded the vocabulary with)."""
    B, W, M = batch, num_beams, max_new_tokens
    V = first_logits.shape[-1]
    n_tokens = V if n_tokens is None else n_tokens
    ends = jnp.asarray(end_ids or (-1,), jnp.int32)
    neg = jnp.float32(-jnp.inf)

    def norm(length):
        return jnp.asarray(length, jnp.float32) ** length_penalty

    def body(carry):
        i, logits, state, seqs, run_lp, fin_seqs, fin_sc, fin_len, done = carry
        logits = jnp.where(jnp.arange(V) < n_tokens, logits.astype(jnp.float32), neg)
        logp = jax.nn.log_softmax(logits, axis=-1).reshape(B, W, V)
        total = (run_lp[..., None] + logp).reshape(B, W * V)
        cand_lp, cand = jax.lax.top_k(total, 2 * W)  # (B, 2W), best first
        beam, tok = cand // V, (cand % V).astype(jnp.int32)
        cand_seqs = _take(seqs, beam)  # (B, 2W, M)
        cand_seqs = jnp.where(jnp.arange(M) == i, tok[..., None], cand_seqs)
        is_end = jnp.isin(tok, ends)
        # finished: an end token ranked among the first W, in an example not yet done
        new = is_end & (jnp.arange(2 * W) < W) & ~done[:, None] & (cand_lp > neg)
        scores = jnp.concatenate([fin_sc, jnp.where(new, cand_lp / norm(i + 1), neg)], axis=1)
        fin_sc, keep = jax.lax.top_k(scores, W)
        fin_seqs = _take(jnp.concatenate([fin_seqs, cand_seqs], axis=1), keep)
        fin_len = _take(jnp.concatenate([fin_len, jnp.full((B, 2 * W), i + 1, jnp.int32)], 1),
                        keep)
        # running: the W best continuations that do not end
        run_lp, pick = jax.lax.top_k(jnp.where(is_end, neg, cand_lp), W)
        seqs = _take(cand_seqs, pick)
        full = jnp.sum(fin_sc > neg, axis=1) >= W
        if early_stopping:
            done = done | full
        else:
            done = done | (full & (fin_sc[:, -1] >= cand_lp[:, 0] / norm(i + 1)))
        rows = (jnp.arange(B)[:, None] * W + _take(beam, pick)).reshape(-1)
        logits, state = step(_take(tok, pick).reshape(-1), reorder(state, rows))
        return i + 1, logits, state, seqs, run_lp, fin_seqs, fin_sc, fin_len, done

    def cond(carry):
        return (carry[0] < M) & ~jnp.all(carry[-1])

    run_lp = jnp.tile(jnp.where(jnp.arange(W) == 0, 0.0, neg)[None], (B, 1))
    zeros = jnp.zeros((B, W, M), jnp.int32)
    carry = (jnp.zeros((), jnp.int32), first_logits, state, zeros, run_lp, zeros,
             jnp.full((B, W), neg), jnp.zeros((B, W), jnp.int32), jnp.zeros((B,), bool))
    i, _, _, seqs, run_lp, fin_seqs, fin_sc, fin_len, done = jax.lax.while_loop(cond, body,
                                                                               carry)
    # examples still open at max_new_tokens: their running beams join the finished ones
    late = jnp.where(done[:, None], neg, run_lp / norm(i))
    scores, keep = jax.lax.top_k(jnp.concatenate([fin_sc, late], axis=1), W)
    seqs = _take(jnp.concatenate([fin_seqs, seqs], axis=1), keep)
    lengths = _take(jnp.concatenate([fin_len, jnp.full((B, W), i, jnp.int32)], 1), keep)
    return seqs, lengths, scores

