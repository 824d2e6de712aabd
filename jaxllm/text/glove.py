"""GloVe in JAX: the co-occurrence matrix, built once, and the weighted least-squares fit.

    kv, stats = train_glove(sentences, GloveConfig(vector_size=100, window=10, epochs=25))
    cooc = cooccurrence(encode_corpus(sentences, vocab), len(vocab.words), window=10)

Pennington, Socher and Manning (2014), as Stanford's glove.c computes it:

- co-occurrence: X[i, j] += 1 / d for every word j at distance d <= window from word i in the
  same sentence, counted over the corpus without its out-of-vocabulary words (cooccur.c
  skips them too); symmetric (both directions) by default. Built once, kept sparse: the sorted
  nonzero (row, column, value) triples.
- objective: J = sum over X[i, j] > 0 of f(X[i, j]) (w_i . c_j + b_i + b~_j - log X[i, j])^2,
  f(x) = min(1, (x / x_max)^alpha); x_max = 100 and alpha = 3/4 as in the paper.
- vectors: W + C (glove.c's default output, and mittens').

Two solvers run that objective:

- "sparse" (glove.c's): each epoch visits the nonzero entries in a new random order,
  `batch_size` at a time; each entry's AdaGrad step is computed from the parameters as they were
  at the start of its batch and the steps are scatter-added (glove.c runs one entry at a time
  per thread). glove.c's AdaGrad and start: weights and biases uniform in [-0.5, 0.5) / D,
  accumulators G at 1; an entry moves a parameter by -s / sqrt(G) with s = eta * gradient,
  then G += s^2. One jitted scan per epoch. Any vocabulary size.
- "dense" (mittens'): one full-batch step per iteration over the dense V x V matrix, three
  matrix products (zero entries weigh f(0) = 0), with mittens' AdaGrad and start (TensorFlow's
  rule: G starts at 0.1, G += g^2, then the step is -eta g / sqrt(G); weights and biases uniform
  in +-sqrt(6 / (V + D)), Glorot's bound). Only for vocabularies whose V x V float32 matrices
  fit in memory (V up to about 20k); it needs more iterations than "sparse" needs epochs, but
  each costs a few products.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jaxllm.errors import ConfigError
from jaxllm.text.vectors import KeyedVectors
from jaxllm.text.word2vec import Corpus, Vocab, build_vocab, encode_corpus

DENSE_MAX_VOCAB = 20000


@dataclass(frozen=True)
class GloveConfig:
    vector_size: int = 100
    window: int = 10            # glove.c's demo uses 15; the paper's 10 is the default here
    min_count: int = 5
    symmetric: bool = True      # count context words on both sides
    x_max: float = 100.0        # f(x) = min(1, (x / x_max) ** alpha)
    alpha: float = 0.75
    eta: float = 0.05           # AdaGrad's initial learning rate (glove.c's default)
    epochs: int = 25            # passes over the nonzero entries (dense: full-batch steps)
    batch_size: int = 1024      # nonzero entries per update (sparse solver)
    solver: str = "sparse"      # "sparse" (glove.c) or "dense" (full batch, mittens)
    seed: int = 0

    def validate(self) -> None:
        checks = [("vector_size", self.vector_size >= 1, "an integer >= 1"),
                  ("window", self.window >= 1, "an integer >= 1"),
                  ("min_count", self.min_count >= 1, "an integer >= 1"),
                  ("x_max", self.x_max > 0, "> 0"), ("alpha", self.alpha >= 0, ">= 0"),
                  ("eta", self.eta > 0, "> 0"), ("epochs", self.epochs >= 1, "an integer >= 1"),
                  ("batch_size", self.batch_size >= 1, "an integer >= 1"),
                  ("solver", self.solver in ("sparse", "dense"), "'sparse' or 'dense'")]
        for name, ok, accepted in checks:
            if not ok:
                raise ConfigError(f"glove {name}={getattr(self, name)!r} is out of range; use "
                                  f"{accepted}")


@dataclass(frozen=True)
class Cooccurrence:
    rows: np.ndarray        # (nnz,) int32, sorted by (row, col)
    cols: np.ndarray        # (nnz,) int32
    values: np.ndarray      # (nnz,) float64
    vocab_size: int

    def dense(self) -> np.ndarray:
        x = np.zeros((self.vocab_size, self.vocab_size), np.float32)
        x[self.rows, self.cols] = self.values
        return x


def cooccurrence(corpus: Corpus, vocab_size: int, window: int = 10, symmetric: bool = True,
                 chunk: int = 1 << 20) -> Cooccurrence:
    """The 1/distance-weighted co-occurrence counts of a corpus, as sorted sparse triples.

    Works through the corpus `chunk` positions at a time: each chunk's (row * V + col) keys are
    summed (sort + reduce) and merged into the running sums, so memory stays near the number of
    distinct pairs."""
    ids, sentence = corpus.ids.astype(np.int64), corpus.sentence
    keys, vals = np.zeros(0, np.int64), np.zeros(0)
    for lo in range(0, len(ids), chunk):
        hi = min(len(ids), lo + chunk)
        k_parts, v_parts = [keys], [vals]
        for d in range(1, window + 1):
            left = np.arange(lo, min(hi, len(ids) - d))
            same = sentence[left] == sentence[left + d]
            a, b = ids[left[same]], ids[left[same] + d]
            k_parts.append(a * vocab_size + b)
            if symmetric:
                k_parts.append(b * vocab_size + a)
            v_parts.extend([np.full(len(a), 1.0 / d)] * (2 if symmetric else 1))
        keys, vals = _sum_by_key(np.concatenate(k_parts), np.concatenate(v_parts))
    return Cooccurrence((keys // vocab_size).astype(np.int32),
                        (keys % vocab_size).astype(np.int32), vals, vocab_size)


def _sum_by_key(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not len(keys):
        return keys, values
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return keys[starts], np.add.reduceat(values, starts)


# ----------------------------------------------------------------------------- the fit


def weighting(x, x_max: float, alpha: float):
    """GloVe's f(x) = min(1, (x / x_max) ** alpha)."""
    return jnp.minimum(1.0, (x / x_max) ** alpha)


def init_params(vocab_size: int, dim: int, seed: int, solver: str = "sparse") -> dict:
    """The starting point of each solver (see the module docstring). Words and contexts share
    one table: rows 0..V-1 are the words (w, b), rows V..2V-1 the contexts (c, b~); the last
    column is the bias. "gradsq" holds the AdaGrad accumulators."""
    rng = np.random.default_rng(seed)
    u = rng.random((2 * vocab_size, dim + 1), dtype=np.float32)
    if solver == "sparse":
        table, g0 = (u - 0.5) / dim, 1.0
    else:
        table, g0 = (2 * u - 1) * np.float32(np.sqrt(6.0 / (vocab_size + dim))), 0.1
    return {"table": jnp.asarray(table), "gradsq": jnp.full(table.shape, g0, jnp.float32)}


def _entry_terms(table, rows, cols, x, x_max, alpha):
    """Per entry: the weighted residual f(x) (w.c + b + b~ - log x) and the loss 0.5 f diff^2."""
    w, c = table[rows], table[cols]                                  # (B, D + 1) each
    diff = jnp.sum(w[:, :-1] * c[:, :-1], -1) + w[:, -1] + c[:, -1] - jnp.log(x)
    fdiff = weighting(x, x_max, alpha) * diff
    return w, c, fdiff, 0.5 * fdiff * diff


@functools.partial(jax.jit, static_argnames=("x_max", "alpha", "eta", "batch_size"),
                   donate_argnums=0)
def sparse_epoch(params: dict, rows, cols, x, key, *, x_max: float, alpha: float, eta: float,
                 batch_size: int):
    """One epoch of glove.c's AdaGrad over the entries in a random order. rows/cols index the
    word rows (0..V-1) and context rows (V..2V-1) of params["table"]; padding has x = 0 after
    the real entries' count and is skipped. Returns (params, summed loss)."""
    n = rows.shape[0]
    order = jax.random.permutation(key, n)
    xs = tuple(a[order].reshape(-1, batch_size) for a in (rows, cols, x))

    def step(p, batch):
        r, c_idx, xb = batch
        real = xb > 0
        w, c, fdiff, loss = _entry_terms(p["table"], r, c_idx, jnp.where(real, xb, 1.0),
                                         x_max, alpha)
        fdiff = jnp.where(real, fdiff, 0.0) * eta
        ones = jnp.ones_like(fdiff)[:, None]
        # d/dw = fdiff c, d/db = fdiff (and symmetrically for the context row)
        g_w = fdiff[:, None] * jnp.concatenate([c[:, :-1], ones], 1)
        g_c = fdiff[:, None] * jnp.concatenate([w[:, :-1], ones], 1)
        idx = jnp.concatenate([r, c_idx])
        g = jnp.concatenate([g_w, g_c])
        step = g / jnp.sqrt(p["gradsq"][idx])
        table = p["table"].at[idx].add(-step)
        gradsq = p["gradsq"].at[idx].add(g * g)
        return {"table": table, "gradsq": gradsq}, jnp.sum(jnp.where(real, loss, 0.0))

    params, losses = jax.lax.scan(step, params, xs)
    return params, losses.sum()


@functools.partial(jax.jit, static_argnames=("x_max", "alpha", "eta"), donate_argnums=0)
def dense_step(params: dict, x, *, x_max: float, alpha: float, eta: float):
    """One full-batch AdaGrad step over the dense (V, V) co-occurrence matrix x."""
    v = x.shape[0]
    table = params["table"]
    w, c = table[:v], table[v:]
    present = x > 0
    log_x = jnp.log(jnp.where(present, x, 1.0))
    diff = w[:, :-1] @ c[:, :-1].T + w[:, -1:] + c[:, -1][None, :] - log_x   # (V, V)
    fdiff = jnp.where(present, weighting(x, x_max, alpha), 0.0) * diff
    loss = 0.5 * jnp.sum(fdiff * diff)
    g_w = jnp.concatenate([fdiff @ c[:, :-1], fdiff.sum(1, keepdims=True)], 1)
    g_c = jnp.concatenate([fdiff.T @ w[:, :-1], fdiff.sum(0)[:, None]], 1)
    g = jnp.concatenate([g_w, g_c])
    gradsq = params["gradsq"] + g * g
    return {"table": table - eta * g / jnp.sqrt(gradsq), "gradsq": gradsq}, loss


@dataclass
class GloveStats:
    seconds: float              # fitting time (co-occurrence excluded)
    cooccurrence_seconds: float
    nonzeros: int
    vocab_size: int
    losses: list[float]         # per epoch / iteration: 0.5 sum f (residual)^2

    @property
    def seconds_per_epoch(self) -> float:
        return self.seconds / max(1, len(self.losses))


def fit_glove(cooc: Cooccurrence, cfg: GloveConfig = GloveConfig()) -> tuple[np.ndarray, list]:
    """Fit GloVe to a co-occurrence matrix; returns (W + C as (V, D) float32, losses)."""
    cfg.validate()
    v = cooc.vocab_size
    params = init_params(v, cfg.vector_size, cfg.seed, cfg.solver)
    losses = []
    if cfg.solver == "dense":
        if v > DENSE_MAX_VOCAB:
            raise ConfigError(f"glove solver='dense' keeps V x V matrices; V={v} is over "
                              f"{DENSE_MAX_VOCAB}: use solver='sparse'")
        x = jnp.asarray(cooc.dense())
        for _ in range(cfg.epochs):
            params, loss = dense_step(params, x, x_max=cfg.x_max, alpha=cfg.alpha, eta=cfg.eta)
            losses.append(loss)
    else:
        n = len(cooc.values)
        pad = (-n) % cfg.batch_size
        rows = jnp.asarray(np.r_[cooc.rows, np.zeros(pad, np.int32)])
        cols = jnp.asarray(np.r_[cooc.cols, np.zeros(pad, np.int32)] + v)
        x = jnp.asarray(np.r_[cooc.values, np.zeros(pad)].astype(np.float32))
        key = jax.random.key(cfg.seed)
        for epoch in range(cfg.epochs):
            params, loss = sparse_epoch(params, rows, cols, x, jax.random.fold_in(key, epoch),
                                        x_max=cfg.x_max, alpha=cfg.alpha, eta=cfg.eta,
                                        batch_size=cfg.batch_size)
            losses.append(loss)
    table = np.asarray(params["table"])
    return table[:v, :-1] + table[v:, :-1], [float(l) for l in losses]


def train_glove(sentences: Sequence[Sequence[str]], cfg: GloveConfig = GloveConfig(),
                vocab: Vocab | None = None) -> tuple[KeyedVectors, GloveStats]:
    """Vocabulary, co-occurrence and fit from tokenized sentences (a list of lists of words)."""
    cfg.validate()
    vocab = vocab or build_vocab(sentences, cfg.min_count)
    t0 = time.perf_counter()
    cooc = cooccurrence(encode_corpus(sentences, vocab), len(vocab.words), cfg.window,
                        cfg.symmetric)
    t1 = time.perf_counter()
    vectors, losses = fit_glove(cooc, cfg)
    t2 = time.perf_counter()
    kv = KeyedVectors(list(vocab.words), vectors, counts=vocab.counts.copy())
    return kv, GloveStats(t2 - t1, t1 - t0, len(cooc.values), len(vocab.words), losses)
