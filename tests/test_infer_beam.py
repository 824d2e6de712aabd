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
from jaxllm.infer.generate import generate
from jaxllm.infer.seq2seq import seq2seq_generate

EOS = 2
TINY = ModelConfig(vocab_size=3, max_len=8, n_layers=1, n_heads=2, d_model=16,
                   attention="reference")


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_exhaustive_search_on_a_decoder():
    """16 beams over 2 ordinary tokens + EOS and 4 new tokens: nothing is pruned (at most 8
    running prefixes, 15 finished hypotheses), so the result is the exhaustive optimum."""
    params = random_params(TINY, seed=4, scale=1.0)  # a seed where greedy is not optimal
    prompts, M = [[0, 1], [1]], 4
    seqs = [list(p) + [EOS] for n in range(M) for p in itertools.product([0, 1], repeat=n)]
    seqs += [list(p) for p in itertools.product([0, 1], repeat=M)]  # unfinished at the limit
    rows = np.zeros((len(prompts) * len(seqs), 2 + M), np.int32)
    for r, (p, s) in enumerate(itertools.product(prompts, seqs)):
        rows[r, :len(p) + len(s)] = p + s
    logp = _log_softmax(np.asarray(jax.jit(models.build(TINY).apply)({"params": params}, rows),
                                   np.float64))
    differs = 0
    for alpha in (0.0, 1.0, 3.0, -1.0):
        for i, p in enumerate(prompts):
            def score(s, i=i, p=p, alpha=alpha):
                r = i * len(seqs) + seqs.index(s)  # token t is predicted at slot len(p) + t - 1
                total = sum(logp[r, len(p) + t - 1, tok] for t, tok in enumerate(s))
                return total / len(s) ** alpha
            best = max(seqs, key=score)
            got = generate(models.build(TINY), params, [p], max_new_tokens=M, num_beams=16,
                           length_penalty=alpha, stop_tokens=(EOS,))[0]
            assert got == [t for t in best if t != EOS], (alpha, p)
            greedy = generate(models.build(TINY), params, [p], max_new_tokens=M,
                              temperature=0, stop_tokens=(EOS,))[0]
            differs += greedy != got
    assert differs  # the search is not simply greedy on this model
