"""word2vec and GloVe training: vocabulary, subsampling and Huffman tree equal to gensim's; the
alias table exact; windows as gensim's loop; one SGD step against hand-written numpy updates;
a mesh run equal to the single-device run; GloVe's co-occurrence against a loop and its two
solvers' steps against glove.c's and mittens' update rules."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxllm.errors import ConfigError, DataError
from jaxllm.files import package_folder
from jaxllm.text import glove, word2vec
from jaxllm.text.word2vec import Word2VecConfig

LEE = package_folder("gensim") / "test/test_data/lee_background.cor" if package_folder("gensim") \
    else None
logging.getLogger("gensim").setLevel(logging.ERROR)


def _lee_sentences():
    return [line.lower().split() for line in LEE.read_text(encoding="utf-8").splitlines()]


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


@pytest.mark.skipif(LEE is None, reason="gensim not installed")
def test_vocab_subsampling_and_huffman_equal_gensim():
    gensim_models = pytest.importorskip("gensim.models")
    sentences = _lee_sentences()
    ref = gensim_models.Word2Vec(min_count=3, sample=1e-3, hs=1, negative=5)
    ref.build_vocab(sentences)
    vocab = word2vec.build_vocab(sentences, min_count=3)
    assert vocab.words == ref.wv.index_to_key
    np.testing.assert_array_equal(vocab.counts, ref.wv.expandos["count"])
    keep = word2vec.keep_probabilities(vocab.counts, 1e-3)
    np.testing.assert_allclose(keep, ref.wv.expandos["sample_int"] / (2**32 - 1), atol=1e-9)
    assert keep.min() < 0.2  # the frequent words are subsampled
    points, codes, lengths = word2vec.huffman(vocab.counts)
    for i in range(len(vocab.words)):
        assert list(codes[i, :lengths[i]]) == list(ref.wv.expandos["code"][i]), i
        assert list(points[i, :lengths[i]]) == list(ref.wv.expandos["point"][i]), i


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(1, 1000), min_size=1, max_size=40))
def test_alias_table_draws_the_exact_distribution(counts):
    weights = np.array(counts, np.float64) ** 0.75
    prob, alias = word2vec.alias_table(weights)
    n = len(weights)
    p = prob.astype(np.float64) / n  # i keeps its own slot with prob[i] ...
    np.add.at(p, alias, (1 - prob.astype(np.float64)) / n)  # ... else gives it to alias[i]
    np.testing.assert_allclose(p, weights / weights.sum(), atol=1e-6)


def test_negatives_follow_counts_to_the_075():
    counts = np.array([400, 100, 50, 10, 1])
    alias = word2vec.alias_table(counts ** 0.75)
    draws = word2vec.draw_negatives(np.random.default_rng(0), alias, (200_000, 5))
    freq = np.bincount(draws.ravel(), minlength=5) / draws.size
    np.testing.assert_allclose(freq, counts ** 0.75 / (counts ** 0.75).sum(), atol=2e-3)


def _gensim_window_loop(sentence, reach, window):
    """gensim's train_batch_sg index loop: for centre i, j from i - reach to i + reach inside
    the sentence, skipping i (reach = window - reduced_window)."""
    out = []
    n = len(sentence)
    for i in range(n):
        start = i
        while start > 0 and sentence[start - 1] == sentence[i]:
            start -= 1
        end = i
        while end < n and sentence[end] == sentence[i]:
            end += 1
        row = [j for j in range(max(start, i - reach[i]), min(end, i + reach[i] + 1)) if j != i]
        out.append(row)
    return out


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=8), st.integers(1, 4), st.data())
def test_windows_match_gensims_loop(lengths, window, data):
    sentence = np.repeat(np.arange(len(lengths)), lengths).astype(np.int32)
    n = len(sentence)
    reach = np.array(data.draw(st.lists(st.integers(1, window), min_size=n, max_size=n)))
    ctx = word2vec._windows(np.zeros(n, np.int32), sentence, reach, 0, n, window)
    expected = _gensim_window_loop(sentence, reach, window)
    assert [[j for j in row if j >= 0] for row in ctx.tolist()] == expected


def test_skipgram_blocks_order_and_learning_rate():
    """window 1, no subsampling: the pairs are the neighbours, centre by centre in corpus order;
    alpha falls linearly with the centre's raw position (out-of-vocabulary words count)."""
    sentences = [["a", "b", "c"], ["oov", "b", "a"], ["c"]]
    vocab = word2vec.Vocab(["a", "b", "c"], np.array([2, 2, 2]), total_words=7)
    corpus = word2vec.encode_corpus(sentences, vocab)
    cfg = Word2VecConfig(window=1, sample=0, epochs=2, batch_size=4, steps_per_call=2,
                         alpha=0.1, min_alpha=0.01)
    epochs = word2vec._Epochs(corpus, np.ones(3), cfg, np.random.default_rng(0))
    blocks = list(epochs.blocks())
    centre = np.concatenate([b[0] for b in blocks])
    ctx = np.concatenate([b[1] for b in blocks])
    alpha = np.concatenate([b[2] for b in blocks])
    # a b c | b a: pairs (centre, context) a-b, b-a, b-c, c-b, b-a, a-b ; per epoch
    one = [(0, 1), (1, 0), (1, 2), (2, 1), (1, 0), (0, 1)]
    raw = [0, 1, 1, 2, 4, 5]
    assert list(zip(centre[:12].tolist(), ctx[:12].tolist())) == one * 2
    expect = [0.1 - 0.09 * (e + r / 7) / 2 for e in range(2) for r in raw]
    np.testing.assert_allclose(alpha[:12], expect, rtol=1e-6)
    assert len(centre) == 16 and not alpha[12:].any()  # padded to whole blocks, at alpha 0


def _reference_step(cfg, syn0, outs, centre, ctx, alpha, negs, tree):
    """The batched SGD update written out with numpy loops: every example's update from the
    same starting tables, summed (gensim's per-example arithmetic, exact sigmoid)."""
    d0 = np.zeros_like(syn0)
    d_out = {k: np.zeros_like(v) for k, v in outs.items()}
    for e in range(len(centre)):
        c = centre[e]
        if cfg.sg:
            inputs = [ctx[e]]
            h = syn0[ctx[e]]
        else:
            inputs = [j for j in ctx[e] if j >= 0]
            h = syn0[inputs].sum(0) / (len(inputs) if cfg.cbow_mean else 1)
        targets = []
        if cfg.negative:
            targets += [("syn1neg", c, 1.0)] + [("syn1neg", t, 0.0) for t in negs[e] if t != c]
        if cfg.hs:
            points, codes, lengths = tree
            targets += [("syn1", points[c, k], 1.0 - codes[c, k]) for k in range(lengths[c])]
        err = np.zeros_like(h)
        for name, t, label in targets:
            g = (label - _sigmoid(h @ outs[name][t])) * alpha[e]
            err += g * outs[name][t]
            d_out[name][t] += g * h
        for j in inputs:
            d0[j] += err if (cfg.sg or cfg.cbow_mean) else err / len(inputs)
    return syn0 + d0, {k: outs[k] + d_out[k] for k in outs}


@pytest.mark.parametrize("kind", ["sg-ns", "sg-hs", "cbow-mean-ns", "cbow-sum-ns-hs"])
def test_one_step_matches_numpy(kind):
    cfg = Word2VecConfig(sg=kind.startswith("sg"), cbow_mean="sum" not in kind,
                         hs="hs" in kind, negative=3 if "ns" in kind else 0, window=2)
    rng = np.random.default_rng(3)
    v, d, b = 9, 4, 6
    counts = np.array([50, 30, 20, 10, 8, 5, 3, 2, 1])
    tree = word2vec.huffman(counts)
    syn0 = rng.normal(0, 0.5, (v, d)).astype(np.float32)
    outs = {}
    if cfg.negative:
        outs["syn1neg"] = rng.normal(0, 0.5, (v, d)).astype(np.float32)
    if cfg.hs:
        outs["syn1"] = rng.normal(0, 0.5, (v - 1, d)).astype(np.float32)
    centre = np.array([0, 1, 1, 4, 7, 0], np.int32)  # repeated words: their updates add up
    if cfg.sg:
        ctx = np.array([2, 0, 3, 3, 8, 5], np.int32)
    else:
        ctx = rng.integers(0, v, (b, 4)).astype(np.int32)
        ctx[rng.random((b, 4)) < 0.4] = -1
        ctx[:, 0] = np.maximum(ctx[:, 0], 0)  # every centre has a context word
    negs = rng.integers(0, v, (b, max(cfg.negative, 1)))[:, :cfg.negative].astype(np.int32)
    if cfg.negative:
        negs[0, 0] = centre[0]  # a negative draw of the centre word is skipped
    alpha = np.linspace(0.5, 0.3, b).astype(np.float32)
    tables = {"syn0": jnp.asarray(syn0), **{k: jnp.asarray(t) for k, t in outs.items()}}
    new = jax.jit(lambda t, *a: word2vec.sgd_step(cfg, t, *a))(
        tables, centre, ctx, alpha, negs, tuple(map(jnp.asarray, tree)))
    ref0, ref_outs = _reference_step(cfg, syn0.astype(np.float64),
                                     {k: t.astype(np.float64) for k, t in outs.items()},
                                     centre, ctx, alpha, negs, tree)
    np.testing.assert_allclose(new["syn0"], ref0, atol=1e-5)
    for k in outs:
        np.testing.assert_allclose(new[k], ref_outs[k], atol=1e-5)
    assert not np.allclose(new["syn0"], syn0)


def _toy_sentences(n=300, seed=0):
    """Two topics: each sentence takes its words from one of two disjoint groups."""
    rng = np.random.default_rng(seed)
    groups = [[f"a{i}" for i in range(8)], [f"b{i}" for i in range(8)]]
    return [list(rng.choice(groups[k % 2], 6)) for k in range(n)], groups


def _topic_gap(kv, groups):
    unit = kv.vectors / np.linalg.norm(kv.vectors, axis=1, keepdims=True)
    rows = [[kv.index[w] for w in g] for g in groups]
    within = np.mean([unit[r] @ unit[r].T for r in rows])
    across = np.mean(unit[rows[0]] @ unit[rows[1]].T)
    return within - across


def test_skipgram_learns_the_toy_topics():
    sentences, groups = _toy_sentences()
    cfg = Word2VecConfig(vector_size=8, window=3, min_count=1, sample=0, epochs=3,
                         batch_size=16, steps_per_call=32, alpha=0.05)
    kv, stats = word2vec.train_word2vec(sentences, cfg)
    assert kv.words == word2vec.build_vocab(sentences, 1).words
    assert stats.raw_words == 3 * 300 * 6 and stats.examples > 3 * 300 * 6
    assert _topic_gap(kv, groups) > 0.3


@pytest.mark.slow
@pytest.mark.parametrize("sg", [True, False], ids=["sg", "cbow"])
def test_mesh_run_equals_single_device(sg):
    """Both output layers: each step's examples split over 8 devices give the single-device
    tables, and the toy corpus's two topics come apart."""
    sentences, groups = _toy_sentences(150)
    cfg = Word2VecConfig(sg=sg, hs=True, negative=3, vector_size=8, window=3, min_count=1,
                         sample=0, epochs=3, batch_size=16, steps_per_call=8, alpha=0.05)
    kv1, _ = word2vec.train_word2vec(sentences, cfg)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    kv8, _ = word2vec.train_word2vec(sentences, cfg, mesh=mesh)
    np.testing.assert_allclose(kv8.vectors, kv1.vectors, atol=1e-6)
    assert _topic_gap(kv1, groups) > 0.3


def test_config_and_data_errors():
    with pytest.raises(ConfigError, match="negative > 0 or hs"):
        Word2VecConfig(negative=0).validate()
    with pytest.raises(ConfigError, match="window=0"):
        Word2VecConfig(window=0).validate()
    with pytest.raises(DataError, match="min_count=5"):
        word2vec.build_vocab([["a", "b"]], min_count=5)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    with pytest.raises(ConfigError, match="batch_size=12 does not divide"):
        word2vec.train_word2vec([["a"] * 6], Word2VecConfig(batch_size=12, min_count=1), mesh)
    with pytest.raises(ConfigError, match="glove solver='x'"):
        glove.GloveConfig(solver="x").validate()


# ----------------------------------------------------------------------------- GloVe


@settings(max_examples=15, deadline=None)
@given(st.lists(st.lists(st.integers(0, 4), min_size=1, max_size=7), min_size=1, max_size=5),
       st.integers(1, 3), st.booleans())
def test_cooccurrence_matches_a_loop(sentences, window, symmetric):
    corpus = word2vec.Corpus(np.concatenate([np.array(s, np.int32) for s in sentences]),
                             np.repeat(np.arange(len(sentences)), [len(s) for s in sentences]
                                       ).astype(np.int32), np.zeros(0, np.int64), 0)
    expected = np.zeros((5, 5))
    for s in sentences:
        for i in range(len(s)):
            for d in range(1, window + 1):
                if i + d < len(s):
                    expected[s[i], s[i + d]] += 1 / d
                    if symmetric:
                        expected[s[i + d], s[i]] += 1 / d
    cooc = glove.cooccurrence(corpus, 5, window, symmetric, chunk=3)  # chunks merge too
    np.testing.assert_allclose(cooc.dense(), expected, rtol=1e-6)
    assert np.all(cooc.values > 0)


def test_sparse_step_is_glove_c_update():
    """Two entries with distinct rows in one batch: each gets glove.c's AdaGrad step."""
    v, d = 4, 3
    params = glove.init_params(v, d, seed=1)
    table = np.asarray(params["table"], np.float64)
    gradsq = np.asarray(params["gradsq"], np.float64) + np.arange(2 * v)[:, None] * 0.5
    params["gradsq"] = jnp.asarray(gradsq, jnp.float32)
    rows, cols, x = np.array([0, 2]), np.array([1, 3]) + v, np.array([3.0, 150.0])
    new, loss = glove.sparse_epoch(params, jnp.asarray(rows), jnp.asarray(cols),
                                   jnp.asarray(x, jnp.float32), jax.random.key(0), x_max=100.0,
                                   alpha=0.75, eta=0.05, batch_size=2)
    exp_table, exp_sq, exp_loss = table.copy(), gradsq.copy(), 0.0
    for i, j, xij in zip(rows, cols, x):   # glove.c's glove_thread loop body
        diff = table[i, :d] @ table[j, :d] + table[i, d] + table[j, d] - np.log(xij)
        fdiff = diff if xij > 100 else (xij / 100) ** 0.75 * diff
        exp_loss += 0.5 * fdiff * diff
        fdiff *= 0.05
        temp1, temp2 = fdiff * table[j, :d], fdiff * table[i, :d]
        exp_table[i, :d] -= temp1 / np.sqrt(gradsq[i, :d])
        exp_table[j, :d] -= temp2 / np.sqrt(gradsq[j, :d])
        exp_sq[i, :d] += temp1 ** 2
        exp_sq[j, :d] += temp2 ** 2
        exp_table[i, d] -= fdiff / np.sqrt(gradsq[i, d])
        exp_table[j, d] -= fdiff / np.sqrt(gradsq[j, d])
        exp_sq[i, d] += fdiff ** 2
        exp_sq[j, d] += fdiff ** 2
    np.testing.assert_allclose(new["table"], exp_table, atol=1e-6)
    np.testing.assert_allclose(new["gradsq"], exp_sq, rtol=1e-5)
    assert float(loss) == pytest.approx(exp_loss, rel=1e-5)


def test_dense_step_is_mittens_update():
    rng = np.random.default_rng(2)
    v, d = 5, 3
    x = rng.integers(0, 4, (v, v)).astype(np.float64) * rng.random((v, v)) * 60
    params = glove.init_params(v, d, seed=2, solver="dense")
    table = np.asarray(params["table"], np.float64)
    new, loss = glove.dense_step(params, jnp.asarray(x, jnp.float32), x_max=100.0, alpha=0.75,
                                 eta=0.05)
    # mittens' np_mittens GloVe: prediction, weighted diffs, gradients, TensorFlow-style AdaGrad
    w, bw, c, bc = table[:v, :d], table[:v, d:], table[v:, :d], table[v:, d:]
    log_x = np.where(x > 0, np.log(np.where(x > 0, x, 1)), 0)
    weights = np.where(x > 0, (np.minimum(x, 100) / 100) ** 0.75, 0)
    diffs = w @ c.T + bw + bc.T - log_x
    wd = weights * diffs
    grads = [wd @ c, wd.sum(1, keepdims=True), wd.T @ w, wd.sum(0)[:, None]]
    expected = [p - 0.05 * g / np.sqrt(0.1 + g * g) for p, g in zip([w, bw, c, bc], grads)]
    got = np.asarray(new["table"])
    np.testing.assert_allclose(got[:v, :d], expected[0], atol=1e-5)
    np.testing.assert_allclose(got[:v, d:], expected[1], atol=1e-5)
    np.testing.assert_allclose(got[v:, :d], expected[2], atol=1e-5)
    np.testing.assert_allclose(got[v:, d:], expected[3], atol=1e-5)
    assert float(loss) == pytest.approx(0.5 * np.sum(weights * diffs ** 2), rel=1e-5)


@pytest.mark.parametrize("solver", ["sparse", "dense"])
def test_glove_fits_the_toy_topics(solver):
    sentences, groups = _toy_sentences()
    cfg = glove.GloveConfig(vector_size=8, window=3, min_count=1, solver=solver, batch_size=64,
                            epochs=15 if solver == "sparse" else 60,
                            eta=0.05 if solver == "sparse" else 0.1)
    kv, stats = glove.train_glove(sentences, cfg)
    assert stats.losses[-1] < 0.5 * stats.losses[0]
    assert stats.nonzeros == 16 * 8  # words co-occur only within their topic (and themselves)
    assert _topic_gap(kv, groups) > 0.3
