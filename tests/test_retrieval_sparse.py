"""Sparse retrieval: BM25 variants and TF-IDF against bm25s, rank_bm25 and scikit-learn, the
pruned top-k against brute force, and add/delete against a fresh build."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxllm.errors import ConfigError
from jaxllm.retrieval.analysis import Analyzer
from jaxllm.retrieval.corpora import bbc_documents
from jaxllm.retrieval.sparse import METHODS, SparseIndex, SparseParams

BM25_METHODS = METHODS[:-1]


@pytest.fixture(scope="module")
def bbc_tokens():
    """Analysed BBC bodies, and queries: 150 headlines (known items) + edge cases."""
    docs = bbc_documents()
    analyzer = Analyzer()
    tokens = analyzer.analyze([d.text for d in docs])
    queries = analyzer.analyze([d.title for d in docs[::15]])
    queries += [["year", "year", "film"], ["zzzunknown"], []]
    return tokens, queries


def reference_top(scores, k=10):
    """Top-k of a full score vector: score descending, then lower document number."""
    order = np.lexsort((np.arange(len(scores)), -scores))[:k]
    return order


@pytest.mark.parametrize("method", BM25_METHODS)
def test_bm25_equals_bm25s_on_bbc(bbc_tokens, method):
    import bm25s

    tokens, queries = bbc_tokens
    params = SparseParams(method, k1=1.2, b=0.7, delta=0.6)
    ref = bm25s.BM25(k1=1.2, b=0.7, delta=0.6, method=method)
    ref.index(tokens, show_progress=False)
    index = SparseIndex.build(tokens, params)
    hits = index.search(queries, k=10)
    known = set(ref.vocab_dict)
    for q, h in zip(queries, hits):
        q_known = [t for t in q if t in known]
        if not q_known:  # empty and out-of-vocabulary queries: no results, no error
            assert len(h.ids) == 0
            continue
        s = ref.get_scores(q_known)
        top = reference_top(s)
        np.testing.assert_array_equal(h.ids, top)
        np.testing.assert_allclose(h.scores, s[top], rtol=0, atol=1e-5)
        np.testing.assert_allclose(index.scores(q), s, rtol=0, atol=1e-5)


def test_rank_bm25_second_check(bbc_tokens):
    """rank_bm25's Okapi and BM25+ (its BM25L multiplies by tf once more than Lv and Zhai's
    formula, so it is no reference for ours)."""
    from rank_bm25 import BM25Okapi, BM25Plus

    tokens, queries = bbc_tokens
    tokens, queries = tokens[:400], queries[:20]
    n = len(tokens)
    df = {}
    for doc in tokens:
        for t in set(doc):
            df[t] = df.get(t, 0) + 1
    # BM25Okapi floors negative idfs (terms in more than half the documents): leave those out
    rare = [[t for t in q if 0 < df.get(t, 0) < n / 2] for q in queries]
    cases = [(BM25Okapi(tokens, k1=1.5, b=0.75), SparseParams("atire", idf_method="robertson"),
              rare),
             (BM25Plus(tokens, k1=1.5, b=0.75, delta=1.0), SparseParams("bm25+", delta=1.0),
              queries)]
    for ref, params, qs in cases:
        index = SparseIndex.build(tokens, params)
        for q in qs:
            np.testing.assert_allclose(index.scores(q), ref.get_scores(q), rtol=2e-6, atol=2e-6)


def test_tfidf_equals_scikit_learn(bbc_tokens):
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

    tokens, queries = bbc_tokens
    tokens = tokens[:300]
    vec = TfidfVectorizer(analyzer=lambda x: x)  # l2 norm, smooth idf, raw counts
    X = vec.fit_transform(tokens)
    counts = CountVectorizer(analyzer=lambda x: x, vocabulary=vec.vocabulary_)
    index = SparseIndex.build(tokens, SparseParams("tfidf"))
    ref = np.asarray((X @ counts.transform(queries).T).todense()).T  # (queries, docs)
    for q, h, r in zip(queries, index.search(queries, k=5), ref):
        np.testing.assert_allclose(index.scores(q), r, rtol=1e-5, atol=1e-6)
        top = reference_top(r.astype(np.float32), 5)
        top = top[r[top] > 0]
        np.testing.assert_array_equal(h.ids, top)


words = st.sampled_from(["a", "b", "c", "d", "e", "f"])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(words, max_size=8), min_size=1, max_size=30),
       st.lists(st.lists(words, max_size=4), min_size=1, max_size=20),
       st.sampled_from(METHODS), st.integers(1, 12), st.booleans(), st.data())
def test_search_equals_brute_force(docs, queries, method, k, use_filter, data):
    """Tiny vocabularies make many ties: the pruned top-k must still be the brute-force one
    (score descending, then lower document number), over documents holding a query term."""
    index = SparseIndex.build(docs, SparseParams(method))
    allowed = np.array(data.draw(st.lists(st.booleans(), min_size=len(docs),
                                          max_size=len(docs)))) if use_filter else None
    for q, h in zip(queries, index.search(queries, k=k, allowed=allowed)):
        s = index.scores(q)
        match = np.array([any(t in d for t in q) for d in docs], bool)
        if allowed is not None:
            match &= allowed
        top = reference_top(np.where(match, s, -np.inf), k)
        top = top[match[top]]
        np.testing.assert_array_equal(h.ids, top)
        np.testing.assert_array_equal(h.scores, s[top])


@settings(max_examples=15, deadline=None)
@given(st.lists(st.lists(words, max_size=8), min_size=2, max_size=25), st.data(),
       st.sampled_from(METHODS))
def test_add_and_delete_equal_a_fresh_build(docs, data, method):
    split = data.draw(st.integers(1, len(docs)))
    gone = sorted(set(data.draw(st.lists(st.integers(0, len(docs) - 1), max_size=5))))
    grown = SparseIndex.build(docs[:split], SparseParams(method))
    grown.add(docs[split:])
    grown.delete(gone)
    kept = [d for i, d in enumerate(docs) if i not in gone]
    fresh = SparseIndex.build(kept, SparseParams(method))
    assert grown.n_docs == len(kept)
    for q in (["a"], ["b", "c", "a"], ["f", "f"]):
        np.testing.assert_allclose(grown.scores(q), fresh.scores(q), rtol=1e-6, atol=1e-7)
        g, f = grown.search([q], k=5)[0], fresh.search([q], k=5)[0]
        np.testing.assert_array_equal(g.ids, f.ids)


def test_k_and_parameter_errors():
    index = SparseIndex.build([["a", "b"], ["b"]])
    assert len(index.search([["b"]], k=50)[0].ids) == 2  # k past the corpus: what exists
    with pytest.raises(ConfigError, match="k=0"):
        index.search([["a"]], k=0)
    with pytest.raises(ConfigError, match="b=1.5"):
        SparseParams(b=1.5)
    with pytest.raises(ConfigError, match="method='bm26'"):
        SparseParams("bm26")
