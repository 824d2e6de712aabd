"""Beam search (infer/beam.py) for decoders and the encoder-decoder.

- On a decoder whose every sequence is scored by its own uncached forward pass, beam search with
  enough beams that none is pruned returns the best-scoring sequence of an exhaustive search
  (score = sum of log-probabilities / generated length ** length_penalty, Hugging Face's).
- On a toy model with a known table of next-token scores, beam search with few beams makes the
  choices of a plain-Python re-statement of Hugging Face's BeamSearchScorer (list of
  hypotheses, sorted), with and without early stopping.
- One beam is greedy decoding, for a decoder and for the encoder-decoder.
"""

import itertools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import SEQ2SEQ, random_params, seq2seq_batch

from jaxllm import models
from jaxllm.config import ModelConfig
from jaxllm.infer.beam import beam_search
from jaxllm.infer.generate import _beam_generate, best_beams, generate
from jaxllm.infer.seq2seq import _beams, pad_sources, seq2seq_generate

EOS = 2
TINY = ModelConfig(vocab_size=3, max_len=8, n_layers=1, n_heads=2, d_model=16,
                   attention="reference")


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_exhaustive_search_on_a_decoder():
    """A decoder's beam search with one beam is its greedy decoding; with 16 beams over 2
    ordinary tokens + EOS and 4 new tokens: nothing is pruned (at most 8 running prefixes, 15
    finished hypotheses), so the result is the exhaustive optimum, on both decode paths (the
    CPU one reorders per-layer caches of a (B*K, ...) layout)."""
    params = random_params(TINY, seed=4, scale=1.0)  # a seed where greedy is not optimal
    prompts, M = [[0, 1], [1]], 4
    seqs = [list(p) + [EOS] for n in range(M) for p in itertools.product([0, 1], repeat=n)]
    seqs += [list(p) for p in itertools.product([0, 1], repeat=M)]  # unfinished at the limit
    rows = np.zeros((len(prompts) * len(seqs), 2 + M), np.int32)
    for r, (p, s) in enumerate(itertools.product(prompts, seqs)):
        rows[r, :len(p) + len(s)] = p + s
    logp = _log_softmax(np.asarray(jax.jit(models.build(TINY).apply)({"params": params}, rows),
                                   np.float64))
    model = models.build(TINY)
    greedy = generate(model, params, prompts, max_new_tokens=M, temperature=0,
                      stop_tokens=(EOS,))
    differs = 0
    for path, alpha in itertools.product(("cpu", "accelerator"), (0.0, 1.0, 3.0, -1.0)):
        got = generate(model, params, prompts, max_new_tokens=M, num_beams=16,
                       length_penalty=alpha, stop_tokens=(EOS,), decode_path=path)
        for i, p in enumerate(prompts):
            def score(s, i=i, p=p, alpha=alpha):
                r = i * len(seqs) + seqs.index(s)  # token t is predicted at slot len(p) + t - 1
                total = sum(logp[r, len(p) + t - 1, tok] for t, tok in enumerate(s))
                return total / len(s) ** alpha
            best = max(seqs, key=score)
            assert got[i] == [t for t in best if t != EOS], (alpha, p)
            differs += greedy[i] != got[i]
    assert differs  # the search is not simply greedy on this model
    # one beam is greedy (prompts of different lengths: left padding)
    tokens, mask = np.zeros((2, 2), np.int32), np.zeros((2, 2), bool)
    for r, p in enumerate(prompts):
        tokens[r, 2 - len(p):], mask[r, 2 - len(p):] = p, True
    seqs, lengths = _beam_generate(params, None, tokens, mask, jnp.float32(1.0), model=model,
                                   path="accelerator", num_beams=1, max_new_tokens=M,
                                   stop_tokens=(EOS,), early_stopping=True, n_tokens=3)
    assert best_beams(seqs, lengths, (EOS,)) == greedy


# --- a toy model with known scores ----------------------------------------------------------

TOY_V, TOY_EOS = 6, 5  # V >= 2 x beams: every candidate of the first step is a real one


def hf_beam_search(logp, first, W, M, alpha, early_stopping):
    """Hugging Face's BeamSearchScorer restated in plain Python for a model whose next-token
    log-probabilities depend on the last token only (logp[last]): [(score, tokens)] of the W
    kept hypotheses, best first."""
    beams, hyps = [(0.0, [])], []

    def add(score, tokens):  # BeamHypotheses.add: keep the W best
        hyps.append((score, tokens))
        hyps.sort(key=lambda h: -h[0])
        del hyps[W:]

    done = False
    for i in range(M):
        cands = sorted(((s + logp[toks[-1] if toks else first][v], toks + [v])
                        for s, toks in beams for v in range(TOY_V)), key=lambda c: -c[0])[:2 * W]
        beams = []
        for rank, (s, toks) in enumerate(cands):
            if toks[-1] == TOY_EOS:
                if rank < W:
                    add(s / (i + 1) ** alpha, toks)
            elif len(beams) < W:
                beams.append((s, toks))
        if len(hyps) >= W:
            done = early_stopping or hyps[-1][0] >= cands[0][0] / (i + 1) ** alpha
        if done:
            break
    if not done:
        for s, toks in beams:
            add(s / M ** alpha, toks)
    return hyps


@partial(jax.jit, static_argnames=("W", "M", "early_stopping"))
def _toy_beams(table, first, alpha, *, W, M, early_stopping):
    """beam_search over the toy model: the state of a row is its last token."""
    state = jnp.repeat(first, W)
    return beam_search(table[state], state, lambda tok, _: (table[tok], tok),
                       lambda state, rows: state[rows], batch=first.shape[0], num_beams=W,
                       max_new_tokens=M, end_ids=(TOY_EOS,), length_penalty=alpha,
                       early_stopping=early_stopping)


@pytest.mark.parametrize("early_stopping", [True, False])
def test_matches_hf_rules_on_a_toy_model(early_stopping):
    rng = np.random.default_rng(0)
    M, W = 5, 3
    for trial in range(6):
        table = rng.normal(size=(TOY_V, TOY_V)) * 2
        table[:, TOY_EOS] += rng.uniform(-1, 2)  # some tables finish early, some late
        first = np.arange(4) % (TOY_V - 1)
        for alpha in (0.0, 1.0, 2.0, -1.0):
            seqs, lengths, scores = _toy_beams(jnp.asarray(table, jnp.float32),
                                               jnp.asarray(first), jnp.float32(alpha), W=W, M=M,
                                               early_stopping=early_stopping)
            for b, f in enumerate(first):
                want = hf_beam_search(_log_softmax(table), f, W, M, alpha, early_stopping)
                np.testing.assert_allclose(np.asarray(scores)[b], [h[0] for h in want],
                                           rtol=1e-5, atol=1e-5)
                got = np.asarray(seqs)[b, 0, :int(lengths[b, 0])].tolist()
                assert got == want[0][1], (trial, alpha, b)


# --- one beam is greedy (for a decoder: in the exhaustive test above) ----------------------

def test_one_beam_is_greedy_for_seq2seq():
    cfg = SEQ2SEQ["modern"]
    params = random_params(cfg, scale=0.3)
    src, src_mask, _, _ = seq2seq_batch()
    sources = [row[m].tolist() for row, m in zip(src, src_mask)]
    model = models.build(cfg)
    greedy = seq2seq_generate(model, params, sources, start_id=11, end_id=12, max_new_tokens=8)
    seqs, lengths = _beams(params, *pad_sources(sources, cfg.max_len), jnp.float32(1.0),
                           model=model, start_id=11, end_id=12, max_new_tokens=8, num_beams=1,
                           early_stopping=True, n_tokens=13)
    assert best_beams(seqs, lengths, (12,)) == greedy
    assert any(len(g) < 8 for g in greedy)  # some row ends: the end token is handled alike


def test_seq2seq_beam_scores_are_the_models_log_probabilities():
    """Three beams over the encoder-decoder's cached decoding, started as _beams starts them
    (each source encoded once, its cache repeated per beam): every kept hypothesis's score
    equals its teacher-forced log-probability (one uncached forward of the whole target) over
    its length. A beam that continued from another beam's cache (Seq2SeqCache.take not
    reordering the self-attention keys/values), or read another source's memory (rows repeated
    in the wrong order), would score a different history."""
    from jaxllm.infer.seq2seq import _beam_start
    from jaxllm.models.seq2seq import Seq2SeqCache

    cfg, W, M, start, end = SEQ2SEQ["modern"], 3, 6, 11, 12
    params = random_params(cfg, scale=0.3)
    src, src_mask, _, _ = seq2seq_batch()
    model = models.build(cfg)
    B = src.shape[0]

    @jax.jit
    def search(src, src_mask):
        logits, cache, step = _beam_start(model, params, src, src_mask, start, M, W)
        return beam_search(logits, cache, step, Seq2SeqCache.take, batch=B, num_beams=W,
                           max_new_tokens=M, end_ids=(end,), length_penalty=1.0,
                           n_tokens=cfg.vocab_size)

    seqs, lengths, scores = (np.asarray(a) for a in search(src, src_mask))
    # every hypothesis teacher-forced in one uncached forward: row b * W + w is source b and
    # [start] + hypothesis w's tokens, right-padded to M (the decoder is causal: position i
    # reads no token after it, so the first n logits are those of the unpadded target)
    target_in = np.concatenate([np.full((B, W, 1), start), seqs[:, :, :M - 1]], -1)
    forward = jax.jit(lambda s, t, m: model.apply({"params": params}, s, t, m))
    all_logits = np.asarray(forward(np.repeat(src, W, 0), target_in.reshape(B * W, M)
                                    .astype(np.int32), np.repeat(src_mask, W, 0)))
    checked = 0
    for b in range(B):
        for w in range(W):
            n = int(lengths[b, w])
            seq = seqs[b, w, :n]
            z = np.asarray(all_logits[b * W + w, :n], np.float64)
            z[:, start] = -np.inf  # the start token never follows (as decoding masks it)
            logp = z - np.logaddexp.reduce(z, axis=-1, keepdims=True)
            want = logp[np.arange(n), seq].sum() / n
            np.testing.assert_allclose(scores[b, w], want, rtol=2e-5, atol=2e-5)
            checked += 1
    assert checked == B * W and len({tuple(s) for s in seqs[0]}) == W  # distinct hypotheses


def test_translate_refuses_an_empty_source():
    """A source with no tokens is refused with its index (it was decoded as token 0)."""
    from jaxllm.errors import DataError
    from jaxllm.infer.seq2seq import translate
    from jaxllm.text import CharTokenizer

    cfg = SEQ2SEQ["modern"]
    with pytest.raises(DataError, match=r"source 1 \(''\) has no tokens"):
        translate(models.build(cfg), None, CharTokenizer.train(["abc"]), ["ab", ""])
