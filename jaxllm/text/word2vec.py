"""word2vec in JAX: skip-gram and CBOW, negative sampling and hierarchical softmax.

    kv, stats = train_word2vec(sentences, Word2VecConfig(sg=True, negative=5))
    kv.most_similar("king")                      # a KeyedVectors (text/vectors.py)

The algorithm is Mikolov et al.'s as word2vec.c and gensim run it, with gensim's defaults:

- vocabulary: words seen at least `min_count` times, most frequent first;
- frequent-word subsampling: a word of count c is kept with probability
  (sqrt(c / t) + 1) * t / c (capped at 1), t = sample * (total count of the vocabulary);
- dynamic windows: each position draws b in [0, window) and looks window - b words either side,
  inside its sentence, after subsampling and without out-of-vocabulary words;
- skip-gram predicts the centre word from each context word's input vector; CBOW predicts it from
  the mean (or sum) of the context vectors and adds the input-side error to each context vector;
- negative sampling draws `negative` words per prediction from counts^0.75 (Walker's alias table:
  exact; drawn by numpy on the host), skipping a draw equal to the centre word; hierarchical softmax
  walks the centre word's Huffman path; both may be on at once (two output tables, as in gensim);
- the learning rate decays linearly from `alpha` to `min_alpha` over all epochs, by the raw
  corpus position of each centre word; input vectors start uniform in [-1/D, 1/D) (numpy's
  default_rng(seed), as gensim), output vectors at zero.

Where this differs from word2vec.c: the C code updates the vectors after every pair, one thread
per core racing on shared memory (Hogwild). Here the host (numpy) turns each epoch into blocks of
training examples in corpus order, and one jitted call per block scans over them `batch_size`
examples at a time: each step gathers its rows, computes every example's update from the same
parameters and scatter-adds the sum, so a word that occurs twice in one step gets both updates
at once. The sigmoid is exact (the C code reads a 1,000-entry table and skips scores beyond +-6),
and a sentence is not cut after 10,000 words (gensim's limit).
On a mesh, each step's examples are split over the `data` axis: every device gathers and computes
its share, the updates are all-gathered and every device applies all of them, so the tables stay
replicated and the result is the single-device result.
"""

from __future__ import annotations

import functools
import heapq
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxllm.errors import ConfigError, DataError
from jaxllm.text.vectors import KeyedVectors


@dataclass(frozen=True)
class Word2VecConfig:
    sg: bool = True             # skip-gram (True) or CBOW (False)
    vector_size: int = 100
    window: int = 5             # the largest distance to a context word; each position draws less
    min_count: int = 5          # rarer words are dropped from the corpus before windowing
    sample: float = 1e-3        # subsampling threshold (0 keeps every word)
    negative: int = 5           # negative samples per prediction (0: none)
    hs: bool = False            # hierarchical softmax over a Huffman tree
    ns_exponent: float = 0.75   # negatives are drawn from counts ** ns_exponent
    cbow_mean: bool = True      # CBOW input: mean of the context vectors (False: their sum)
    alpha: float = 0.025        # learning rate at the start, falling linearly to min_alpha
    min_alpha: float = 0.0001
    epochs: int = 5
    seed: int = 0
    # Examples (skip-gram: pairs, CBOW: centre words) summed into one update. Small batches
    # behave like the sequential C code, and a step's rows stay in a CPU's cache; an
    # accelerator wants a few thousand to keep busy.
    batch_size: int = 256
    steps_per_call: int = 256   # updates per jitted call (one block of examples from the host)

    def validate(self) -> None:
        checks = [("vector_size", self.vector_size >= 1, "an integer >= 1"),
                  ("window", self.window >= 1, "an integer >= 1"),
                  ("min_count", self.min_count >= 1, "an integer >= 1"),
                  ("sample", self.sample >= 0, ">= 0 (0 keeps every word)"),
                  ("negative", self.negative >= 0, "an integer >= 0"),
                  ("alpha", self.alpha > 0, "> 0"),
                  ("min_alpha", 0 <= self.min_alpha <= self.alpha, "between 0 and alpha"),
                  ("epochs", self.epochs >= 1, "an integer >= 1"),
                  ("batch_size", self.batch_size >= 1, "an integer >= 1"),
                  ("steps_per_call", self.steps_per_call >= 1, "an integer >= 1")]
        for name, ok, accepted in checks:
            if not ok:
                raise ConfigError(f"word2vec {name}={getattr(self, name)!r} is out of range; use "
                                  f"{accepted}")
        if not self.hs and self.negative == 0:
            raise ConfigError("word2vec needs negative > 0 or hs=True (negative=0 with hs=False "
                              "trains nothing)")


# ----------------------------------------------------------------------------- vocabulary

_WORD = re.compile(r"\w+")


def sentences_from_text(text: str, lowercase: bool = True) -> list[list[str]]:
    """One sentence per non-empty line: its words (runs of letters, digits and underscores),
    lower-cased by default."""
    if lowercase:
        text = text.lower()
    return [words for line in text.splitlines() if (words := _WORD.findall(line))]


@dataclass(frozen=True)
class Vocab:
    words: list[str]        # most frequent first; ties: the later first occurrence first (gensim)
    counts: np.ndarray      # (V,) int64
    total_words: int        # every token of the corpus, in the vocabulary or not

    @property
    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.words)}


def build_vocab(sentences: Iterable[Sequence[str]], min_count: int = 5) -> Vocab:
    counts = Counter()
    for s in sentences:
        counts.update(s)
    total = sum(counts.values())
    kept = [(w, c) for w, c in counts.items() if c >= min_count]  # in order of first occurrence
    if not kept:
        raise DataError(f"no word occurs min_count={min_count} times in the corpus "
                        f"({total} tokens); lower min_count or give more text")
    order = np.lexsort((-np.arange(len(kept)), -np.array([c for _, c in kept], np.int64)))
    kept = [kept[i] for i in order]  # gensim's sort_by_descending_frequency
    return Vocab([w for w, _ in kept], np.array([c for _, c in kept], np.int64), total)


@dataclass(frozen=True)
class Corpus:
    """The corpus as vocabulary ids: out-of-vocabulary tokens removed, as gensim does before
    windowing (so a window reaches over them)."""
    ids: np.ndarray         # (N,) int32
    sentence: np.ndarray    # (N,) int32: which sentence each token belongs to
    raw_pos: np.ndarray     # (N,) int64: position among all tokens (drives the learning rate)
    total_words: int


def encode_corpus(sentences: Iterable[Sequence[str]], vocab: Vocab) -> Corpus:
    index = vocab.index
    ids, sent, pos = [], [], []
    raw = 0
    for n, s in enumerate(sentences):
        found = [(index[w], raw + k) for k, w in enumerate(s) if w in index]
        raw += len(s)
        if found:
            ids.extend(i for i, _ in found)
            pos.extend(p for _, p in found)
            sent.extend([n] * len(found))
    return Corpus(np.asarray(ids, np.int32), np.asarray(sent, np.int32),
                  np.asarray(pos, np.int64), raw)


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """Probability of keeping each word in an epoch (gensim's `sample_int` / (2**32 - 1))."""
    counts = counts.astype(np.float64)
    if sample == 0:
        return np.ones_like(counts)
    t = sample * counts.sum() if sample < 1 else sample * (3 + math.sqrt(5)) / 2
    return np.minimum(1.0, (np.sqrt(counts / t) + 1) * t / counts)


def alias_table(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias method (Vose's construction): draw i uniform, keep it with probability
    prob[i], else take alias[i]. The draws follow weights / weights.sum() exactly."""
    n = len(weights)
    scaled = weights.astype(np.float64) * n / weights.sum()
    prob, alias = np.ones(n), np.arange(n)
    small = [i for i in range(n) if scaled[i] < 1.0]
    large = [i for i in range(n) if scaled[i] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        prob[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    return prob.astype(np.float32), alias.astype(np.int32)


class _ByCount:
    """A heap entry ordered by count alone, so that ties fall as heapq leaves them (as in
    gensim's tree: equal counts make the same codes)."""
    __slots__ = ("count", "node")

    def __init__(self, count: int, node: int):
        self.count, self.node = count, node

    def __lt__(self, other: _ByCount) -> bool:
        return self.count < other.count


def huffman(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Huffman codes of the words (word2vec.c's tree: the two rarest nodes merge first; gensim's
    tie-breaking).

    Returns points (V, L) int32: the inner nodes (0..V-2, the root is V-2) from the root down to
    the word; codes (V, L) uint8: the branch taken at each (the label to predict is 1 - code);
    lengths (V,). Rows are zero-padded to the longest code L."""
    v = len(counts)
    heap = [_ByCount(int(c), i) for i, c in enumerate(counts)]
    heapq.heapify(heap)
    parent = np.zeros(2 * v - 1, np.int64)
    branch = np.zeros(2 * v - 1, np.uint8)
    for inner in range(v, 2 * v - 1):
        first, second = heapq.heappop(heap), heapq.heappop(heap)
        parent[first.node], parent[second.node], branch[second.node] = inner, inner, 1
        heapq.heappush(heap, _ByCount(first.count + second.count, inner))
    root = 2 * v - 2
    paths = []
    for w in range(v):
        node, codes, points = w, [], []
        while node != root:
            codes.append(branch[node])
            points.append(parent[node] - v)
            node = parent[node]
        paths.append((codes[::-1], points[::-1]))
    length = max(1, max(len(c) for c, _ in paths))
    codes_arr = np.zeros((v, length), np.uint8)
    points_arr = np.zeros((v, length), np.int32)
    lengths = np.zeros(v, np.int32)
    for w, (c, p) in enumerate(paths):
        codes_arr[w, :len(c)], points_arr[w, :len(p)], lengths[w] = c, p, len(c)
    return points_arr, codes_arr, lengths


# ----------------------------------------------------------------------------- examples


def _windows(ids: np.ndarray, sentence: np.ndarray, reach: np.ndarray, lo: int, hi: int,
             window: int) -> np.ndarray:
    """Context positions of the centres lo..hi-1: (hi - lo, 2 * window), -1 where a slot is past
    the centre's reach or its sentence. Slots run left to right, as the C code visits them."""
    offsets = np.concatenate([np.arange(-window, 0), np.arange(1, window + 1)])
    centre = np.arange(lo, hi)
    pos = centre[:, None] + offsets[None, :]
    inside = (pos >= 0) & (pos < len(ids)) & (np.abs(offsets)[None, :] <= reach[lo:hi, None])
    pos = np.where(inside, pos, 0)
    inside &= sentence[pos] == sentence[lo:hi, None]
    return np.where(inside, pos, -1)


class _Epochs:
    """Yields the training examples of every epoch in corpus order, in blocks of a fixed size
    (the last one padded with zero learning rate)."""

    def __init__(self, corpus: Corpus, keep: np.ndarray, cfg: Word2VecConfig,
                 rng: np.random.Generator):
        self.corpus, self.keep, self.cfg, self.rng = corpus, keep, cfg, rng
        self.block = cfg.batch_size * cfg.steps_per_call
        self.done = 0.0  # the fraction of the corpus x epochs turned into examples so far

    def _alpha(self, epoch: int, raw_pos: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        progress = (epoch + raw_pos / max(1, self.corpus.total_words)) / cfg.epochs
        return np.maximum(cfg.min_alpha, cfg.alpha - (cfg.alpha - cfg.min_alpha) * progress
                          ).astype(np.float32)

    def _examples(self, epoch: int):
        """Per epoch, chunks of (centre ids, context ids, alpha): skip-gram as flat pairs,
        CBOW as (n, 2 * window) context rows with -1 for empty slots."""
        c, cfg = self.corpus, self.cfg
        kept = np.flatnonzero(self.rng.random(len(c.ids)) < self.keep[c.ids])
        ids, sentence, raw = c.ids[kept], c.sentence[kept], c.raw_pos[kept]
        reach = cfg.window - self.rng.integers(0, cfg.window, len(ids))
        step = max(1, self.block // (2 * cfg.window))
        for lo in range(0, len(ids), step):
            hi = min(len(ids), lo + step)
            self.done = (epoch + hi / len(ids)) / cfg.epochs
            ctx = _windows(ids, sentence, reach, lo, hi, cfg.window)
            if cfg.sg:
                r, s = np.nonzero(ctx >= 0)
                yield ids[lo + r], ids[ctx[r, s]], self._alpha(epoch, raw[lo + r])
            else:
                has = (ctx >= 0).any(1)
                ctx = np.where(ctx >= 0, ids[np.maximum(ctx, 0)], -1)[has]
                yield ids[lo:hi][has], ctx, self._alpha(epoch, raw[lo:hi][has])

    def blocks(self):
        parts, filled = [], 0
        for epoch in range(self.cfg.epochs):
            for part in self._examples(epoch):
                parts.append(part)
                filled += len(part[0])
                while filled >= self.block:
                    block, parts = _take(parts, self.block)
                    filled -= self.block
                    yield block
        if filled:
            block, _ = _take(parts, filled)
            pad = self.block - filled
            yield tuple(np.concatenate([a, np.zeros((pad,) + a.shape[1:], a.dtype)]) for a in block)


def _take(parts: list, n: int) -> tuple[tuple, list]:
    """The first n examples of a list of chunks, and the rest."""
    joined = [np.concatenate([p[k] for p in parts]) for k in range(3)]
    return tuple(a[:n] for a in joined), ([tuple(a[n:] for a in joined)]
                                          if len(joined[0]) > n else [])


# ----------------------------------------------------------------------------- the jitted step


def _heads(cfg: Word2VecConfig, centre, negs, tree) -> list:
    """(output table, targets (B, T), labels (B, T), mask (B, T)) of each output layer."""
    out = []
    if cfg.negative:
        targets = jnp.concatenate([centre[:, None], negs], 1)                 # (B, 1 + K)
        labels = jnp.zeros(cfg.negative + 1, jnp.float32).at[0].set(1.0)
        mask = jnp.concatenate([jnp.ones_like(centre[:, None], bool),
                                negs != centre[:, None]], 1)  # a draw of the centre is skipped
        out.append(("syn1neg", targets, jnp.broadcast_to(labels, targets.shape),
                    mask.astype(jnp.float32)))
    if cfg.hs:
        points, codes, lengths = tree
        valid = jnp.arange(points.shape[1])[None, :] < lengths[centre][:, None]
        out.append(("syn1", points[centre], 1.0 - codes[centre].astype(jnp.float32),
                    valid.astype(jnp.float32)))
    return out


def sgd_step(cfg: Word2VecConfig, tables: dict, centre, ctx, alpha, negs, tree=None,
             axis: str | None = None) -> dict:
    """One update from a batch of examples; every update is computed from the tables as they
    are at the start of the step, and their sum is applied.

    tables: "syn0" (V, D) input vectors, "syn1neg" (V, D) and/or "syn1" (V - 1, D) output
    vectors. centre (B,) the words to predict; ctx (B,) skip-gram: the input word of each pair,
    or (B, 2W) CBOW: the context words, -1 in empty slots; alpha (B,) learning rate per example
    (0 for padding); negs (B, K) negative samples; tree: huffman()'s (points, codes, lengths).
    axis: inside shard_map, the mesh axis the batch is split over (updates are all-gathered)."""
    def everyone(x):  # every device's share of the step, in order
        return x if axis is None else jax.lax.all_gather(x, axis, axis=0, tiled=True)

    syn0 = tables["syn0"]
    d = syn0.shape[1]
    if cfg.sg:
        h = syn0[ctx]                                                         # (B, D)
    else:
        m = (ctx >= 0).astype(jnp.float32)                                    # (B, 2W)
        count = jnp.maximum(m.sum(1, keepdims=True), 1.0)
        h = jnp.einsum("bw,bwd->bd", m, syn0[jnp.maximum(ctx, 0)])
        if cfg.cbow_mean:
            h = h / count
    new = dict(tables)
    dh = jnp.zeros_like(h)
    for name, targets, labels, mask in _heads(cfg, centre, negs, tree):
        out = tables[name][targets]                                           # (B, T, D)
        g = (labels - jax.nn.sigmoid(jnp.einsum("bd,btd->bt", h, out))) * mask * alpha[:, None]
        dh = dh + jnp.einsum("bt,btd->bd", g, out)
        new[name] = new[name].at[everyone(targets).reshape(-1)].add(
            everyone(g[..., None] * h[:, None, :]).reshape(-1, d))
    if cfg.sg:
        new["syn0"] = syn0.at[everyone(ctx)].add(everyone(dh))
    else:  # every context word gets the error (divided by their number for a summed input)
        dh = dh if cfg.cbow_mean else dh / count
        upd = (m[..., None] * dh[:, None, :]).reshape(-1, d)
        new["syn0"] = syn0.at[everyone(jnp.maximum(ctx, 0).reshape(-1))].add(everyone(upd))
    return new


def draw_negatives(rng: np.random.Generator, alias: tuple[np.ndarray, np.ndarray],
                   shape: tuple[int, ...]) -> np.ndarray:
    """Word ids from the alias table (prob, alias) of alias_table(): a uniform slot, kept with
    its probability or handed to its alias. Drawn on the host (numpy), where they cost a few
    milliseconds per million and no compilation."""
    prob, alias_idx = alias
    slot = rng.integers(0, len(prob), shape, dtype=np.int32)
    return np.where(rng.random(shape, dtype=np.float32) < prob[slot], slot, alias_idx[slot])


@functools.lru_cache(maxsize=16)
def _make_block_fn(cfg: Word2VecConfig, mesh: Mesh | None):
    """The jitted function that trains on one block of examples (centre, ctx, alpha, negs):
    a scan of sgd_step over its batches."""
    n_dev = 1 if mesh is None else mesh.shape["data"]
    per_dev = cfg.batch_size // n_dev
    # a mesh with Explicit axes wants its arrays resharded by hand before shard_map
    explicit = mesh is not None and jax.sharding.AxisType.Explicit in mesh.axis_types

    def scan_block(tables, block, tree):
        centre, ctx, alpha, negs = block
        steps = centre.shape[0] // per_dev
        xs = (centre.reshape(steps, per_dev), ctx.reshape((steps, per_dev) + ctx.shape[1:]),
              alpha.reshape(steps, per_dev), negs.reshape(steps, per_dev, cfg.negative))
        axis = None if mesh is None else "data"
        tables, _ = jax.lax.scan(lambda t, x: (sgd_step(cfg, t, *x, tree, axis=axis), None),
                                 tables, xs)
        return tables

    def block_fn(tables, block, tree):
        if mesh is None:
            return scan_block(tables, block, tree)
        # Device i takes the i-th share of every batch: lay the block out device-major,
        # (steps, devices, per-device) -> (devices, steps, per-device), flattened.
        n = block[0].shape[0]

        def by_device(x):
            x = x.reshape((n // cfg.batch_size, n_dev, per_dev) + x.shape[1:])
            x = jnp.swapaxes(x, 0, 1).reshape((n,) + x.shape[3:])
            return jax.reshard(x, NamedSharding(mesh, P("data"))) if explicit else x

        return jax.shard_map(scan_block, mesh=mesh, in_specs=(P(), (P("data"),) * 4, P()),
                             out_specs=P(), check_vma=False)(
            tables, tuple(by_device(x) for x in block), tree)

    return jax.jit(block_fn, donate_argnums=0)


# ----------------------------------------------------------------------------- training


@dataclass
class TrainStats:
    seconds: float              # training time (vocabulary and corpus encoding excluded)
    raw_words: int              # corpus tokens x epochs
    examples: int               # skip-gram pairs or CBOW centre words trained on
    vocab_size: int

    @property
    def words_per_second(self) -> float:
        return self.raw_words / self.seconds

    def to_dict(self) -> dict:
        return {**asdict(self), "words_per_second": self.words_per_second}


def train_word2vec(sentences: Sequence[Sequence[str]], cfg: Word2VecConfig = Word2VecConfig(),
                   mesh: Mesh | None = None, vocab: Vocab | None = None,
                   progress: Callable[[float], None] | None = None
                   ) -> tuple[KeyedVectors, TrainStats]:
    """Train word vectors on tokenized sentences (a list of lists of words, iterated twice).

    mesh: a jax.sharding.Mesh with a `data` axis to split each step's examples over (the tables
    are replicated); cfg.batch_size must divide by its size. progress: called with the fraction
    done after every block."""
    cfg.validate()
    if mesh is not None:
        if "data" not in mesh.shape:
            raise ConfigError(f"word2vec mesh axes {tuple(mesh.shape)} have no 'data' axis; "
                              f"make one with jax.make_mesh((n,), ('data',))")
        if cfg.batch_size % mesh.shape["data"]:
            raise ConfigError(f"word2vec batch_size={cfg.batch_size} does not divide over the "
                              f"mesh's data axis of {mesh.shape['data']} devices")
    vocab = vocab or build_vocab(sentences, cfg.min_count)
    corpus = encode_corpus(sentences, vocab)
    v, d = len(vocab.words), cfg.vector_size
    rng = np.random.default_rng(cfg.seed)
    syn0 = rng.random((v, d), dtype=np.float32) * 2.0 - 1.0
    syn0 /= d
    tables = {"syn0": syn0}
    if cfg.negative:
        tables["syn1neg"] = np.zeros((v, d), np.float32)
    alias = alias_table(vocab.counts.astype(np.float64) ** cfg.ns_exponent)
    tree = huffman(vocab.counts) if cfg.hs else (np.zeros((1, 1), np.int32),) * 3
    if cfg.hs:
        tables["syn1"] = np.zeros((max(1, v - 1), d), np.float32)
    replicated = None if mesh is None else NamedSharding(mesh, P())
    put = (lambda x: jax.device_put(x, replicated)) if mesh is not None else jnp.asarray
    tables = {name: put(t) for name, t in tables.items()}
    tree = jax.tree.map(put, tree)
    # one compiled program per (model, output layers, batch): seeds, epochs or rates share it
    block_fn = _make_block_fn(Word2VecConfig(sg=cfg.sg, negative=cfg.negative, hs=cfg.hs,
                                             cbow_mean=cfg.cbow_mean,
                                             batch_size=cfg.batch_size), mesh)

    epochs = _Epochs(corpus, keep_probabilities(vocab.counts, cfg.sample), cfg, rng)
    examples = 0
    start = time.perf_counter()
    for block in epochs.blocks():  # the host prepares a block while the device trains on one
        examples += int(np.count_nonzero(block[2]))
        negs = draw_negatives(rng, alias, (len(block[0]), cfg.negative))
        tables = block_fn(tables, tuple(put(x) for x in block + (negs,)), tree)
        if progress is not None:
            progress(epochs.done)
    syn0 = np.asarray(tables["syn0"])
    seconds = time.perf_counter() - start
    kv = KeyedVectors(list(vocab.words), syn0, counts=vocab.counts.copy())
    return kv, TrainStats(seconds, corpus.total_words * cfg.epochs, examples, v)
