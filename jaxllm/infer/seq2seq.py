"""Decoding an encoder-decoder (models/seq2seq.py): greedy, sampling, beam search.

    out = seq2seq_generate(model, params, [[5, 8, 2], [7]], start_id=V, end_id=V + 1,
                           max_new_tokens=32, num_beams=4)
    # out[i]: the target ids for source i, without the end token

The sources are right-padded into one batch and encoded once; the decoder then runs one token
per step from the start token, with a cache of its self-attention keys/values and of every
layer's cross-attention keys/values, which the first step computes from the encoder output and
every later step reuses (Seq2SeqCache). Everything is one jit: a lax.while_loop that stops once
every row has produced the end token (sampling), or infer/beam.py's loop (num_beams > 1).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxllm.errors import DataError
from jaxllm.infer.beam import beam_search
from jaxllm.infer.generate import best_beams, sample_logits
from jaxllm.metrics import corpus_bleu, rouge
from jaxllm.models.seq2seq import Seq2Seq, Seq2SeqCache
from jaxllm.objectives.seq2seq import seq2seq_ids


def _start(model, params, source, source_mask, start_id, max_new_tokens):
    """The encoder output, and the first step (the start token) through an empty cache."""
    memory = model.apply({"params": params}, source, source_mask, method=Seq2Seq.encode)
    cache = Seq2SeqCache.empty(model.cfg, source.shape[0], max_new_tokens)
    first = jnp.full((source.shape[0], 1), start_id, jnp.int32)
    logits, cache = model.apply({"params": params}, first, memory, source_mask, cache,
                                method=Seq2Seq.decode)
    return logits[:, 0].at[:, start_id].set(-jnp.inf), cache  # the start token never follows


def _beam_start(model, params, source, source_mask, start_id, max_new_tokens, num_beams):
    """Beam search's start: the encoder and the first step run once per source (B rows), then
    the logits, the cache (cross-attention keys/values included) and the source mask repeated
    for each source's num_beams beams (row b * W + w). Returns (logits (B*W, V), cache, the
    decode step of the B*W rows)."""
    logits, cache = _start(model, params, source, source_mask, start_id, max_new_tokens)
    rows = jnp.repeat(jnp.arange(source.shape[0]), num_beams)
    return logits[rows], cache.select(rows), _step(model, params, source_mask[rows], start_id)


def _step(model, params, source_mask, start_id):
    def step(tokens, cache):
        logits, cache = model.apply({"params": params}, tokens[:, None], None, source_mask, cache,
                                    method=Seq2Seq.decode)
        return logits[:, 0].at[:, start_id].set(-jnp.inf), cache
    return step


@partial(jax.jit, static_argnames=("model", "start_id", "end_id", "max_new_tokens",
                                   "temperature", "top_k", "top_p", "n_tokens"))
def _sample(params, source, source_mask, rng, *, model: Seq2Seq, start_id: int, end_id: int,
            max_new_tokens: int, temperature: float, top_k: int, top_p: float, n_tokens: int):
    """Greedy (temperature 0) or sampled targets (B, max_new_tokens); after a row's end token
    its slots hold the end token."""
    logits, cache = _start(model, params, source, source_mask, start_id, max_new_tokens)
    step = _step(model, params, source_mask, start_id)
    B, V = logits.shape

    def cond(carry):
        return (carry[0] < max_new_tokens) & ~jnp.all(carry[4])

    def body(carry):
        i, logits, cache, out, done = carry
        logits = jnp.where(jnp.arange(V) < n_tokens, logits, -jnp.inf)
        tok = sample_logits(logits, jax.random.fold_in(rng, i), temperature, top_k, top_p)
        tok = jnp.where(done, end_id, tok)
        out = jax.lax.dynamic_update_slice_in_dim(out, tok[:, None], i, axis=1)
        logits, cache = step(tok, cache)
        return i + 1, logits, cache, out, done | (tok == end_id)

    out = jnp.full((B, max_new_tokens), end_id, jnp.int32)
    carry = (jnp.zeros((), jnp.int32), logits, cache, out, jnp.zeros((B,), bool))
    return jax.lax.while_loop(cond, body, carry)[3]


@partial(jax.jit, static_argnames=("model", "start_id", "end_id", "max_new_tokens",
                                   "num_beams", "early_stopping", "n_tokens"))
def _beams(params, source, source_mask, length_penalty, *, model: Seq2Seq, start_id: int,
           end_id: int, max_new_tokens: int, num_beams: int, early_stopping: bool,
           n_tokens: int):
    """Beam search: (sequences, lengths) of each source's best hypothesis."""
    logits, cache, step = _beam_start(model, params, source, source_mask, start_id,
                                      max_new_tokens, num_beams)
    seqs, lengths, _ = beam_search(
        logits, cache, step, Seq2SeqCache.take, batch=source.shape[0], num_beams=num_beams,
        max_new_tokens=max_new_tokens, end_ids=(end_id,), length_penalty=length_penalty,
        early_stopping=early_stopping, n_tokens=n_tokens)
    return seqs[:, 0], lengths[:, 0]


def pad_sources(sources: list[list[int]], max_len: int, width: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded ids (B, S) and mask (B, S) of the sources, S the longest source or `width`
    if larger; DataError for an empty one or one longer than max_len."""
    if not sources:
        raise DataError("no sources given; pass at least one list of token ids")
    lengths = [len(s) for s in sources]
    if min(lengths) == 0:
        raise DataError("a source is empty; give every source at least one token")
    if max(lengths) > max_len:
        raise DataError(f"a source has {max(lengths)} tokens but the model reads at most "
                        f"{max_len} (model.max_len); shorten it")
    ids = np.zeros((len(sources), max(max(lengths), width)), np.int32)
    for row, s in enumerate(sources):
        ids[row, :len(s)] = s
    return ids, np.arange(ids.shape[1])[None, :] < np.asarray(lengths)[:, None]


def seq2seq_generate(model: Seq2Seq, params, sources: list[list[int]], *, start_id: int,
                     end_id: int, max_new_tokens: int = 64, temperature: float = 0.0,
                     top_k: int = 0, top_p: float = 1.0, seed: int = 0, num_beams: int = 1,
                     length_penalty: float = 1.0, early_stopping: bool = True,
                     vocab_size: int | None = None, pad_to: int = 0) -> list[list[int]]:
    """Target ids for each source (a list of token ids), without the end token.

    temperature 0 is greedy; num_beams > 1 is beam search (temperature, top_k, top_p unused).
    vocab_size: the ids the model knows when its vocabulary is larger (a mesh pads it); ids
    from there up, and the start id, are never generated. pad_to: pad the sources to at least
    this many tokens (batches of one width share one compiled loop)."""
    cfg = model.cfg
    if not 1 <= max_new_tokens <= cfg.max_len:
        raise DataError(f"max_new_tokens={max_new_tokens}: must be between 1 and the model's "
                        f"target length {cfg.max_len} (model.max_len)")
    if temperature < 0:
        raise DataError(f"temperature={temperature}: must be >= 0 (0 is greedy)")
    if num_beams < 1:
        raise DataError(f"num_beams={num_beams}: must be at least 1 (1 is no beam search)")
    n_tokens = cfg.vocab_size if vocab_size is None else int(vocab_size)
    source, mask = pad_sources(sources, cfg.max_len, pad_to)
    bad = source[mask & ((source < 0) | (source >= n_tokens))]
    if bad.size:
        raise DataError(f"token ids {bad[:5].tolist()} are outside the vocabulary [0, "
                        f"{n_tokens})")
    common = {"model": model, "start_id": int(start_id), "end_id": int(end_id),
              "max_new_tokens": int(max_new_tokens), "n_tokens": n_tokens}
    if num_beams > 1:
        seqs, lengths = _beams(params, jnp.asarray(source), jnp.asarray(mask),
                               jnp.float32(length_penalty), num_beams=int(num_beams),
                               early_stopping=bool(early_stopping), **common)
        return best_beams(seqs, lengths, (end_id,))
    out = np.asarray(_sample(params, jnp.asarray(source), jnp.asarray(mask),
                             jax.random.PRNGKey(seed), temperature=float(temperature),
                             top_k=int(top_k), top_p=float(top_p), **common))
    return [row[:row.index(end_id)] if end_id in row else row for row in out.tolist()]


def translate(model: Seq2Seq, params, tokenizer, sources: list[str], *, batch_size: int = 64,
              max_new_tokens: int | None = None, **options) -> list[str]:
    """The decoded target text of every source text, in batches of batch_size sources padded
    to model.max_len tokens (one compiled loop for all; a source is cut to model.max_len; one
    with no tokens is refused). options: those of seq2seq_generate (temperature, num_beams,
    ...)."""
    cfg = model.cfg
    start, end = seq2seq_ids(tokenizer.vocab_size)
    ids = [tokenizer.encode(s)[:cfg.max_len] for s in sources]
    empty = next((i for i, x in enumerate(ids) if not x), None)
    if empty is not None:
        raise DataError(f"source {empty} ({sources[empty][:40]!r}) has no tokens; give every "
                        f"source some text")
    out = []
    for i in range(0, len(ids), batch_size):
        chunk = ids[i:i + batch_size]
        full = chunk + [chunk[0]] * (batch_size - len(chunk))  # one batch shape for all
        res = seq2seq_generate(model, params, full, start_id=start, end_id=end,
                               max_new_tokens=max_new_tokens or cfg.max_len,
                               vocab_size=end + 1, pad_to=cfg.max_len, **options)
        out += [tokenizer.decode(r) for r in res[:len(chunk)]]
    return out


def score_texts(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """exact_match (fraction of hypotheses equal to their reference after stripping), corpus
    BLEU (sacrebleu's 13a defaults, 0-100) and the mean ROUGE-1/2/L F-measures (0-1)."""
    exact = float(np.mean([h.strip() == r.strip() for h, r in zip(hypotheses, references)]))
    out = {"exact_match": exact, "bleu": corpus_bleu(hypotheses, references).score}
    for name, s in rouge(hypotheses, references).items():
        out[name] = float(np.mean(s.fmeasure))
    return out


def evaluate_pairs(model: Seq2Seq, params, tokenizer, pairs: list[tuple[str, str]],
                   **options) -> tuple[dict[str, float], list[str]]:
    """(score_texts of the decoded targets against the pairs' targets, the decoded targets);
    options: those of translate."""
    hyps = translate(model, params, tokenizer, [s for s, _ in pairs], **options)
    return score_texts(hyps, [t for _, t in pairs]), hyps
