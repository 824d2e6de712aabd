"""Dense search against numpy, sharded over 8 devices against one, int8 rows, hybrid fusion
against a worked example, and MiniLM end to end."""

import jax
import numpy as np
import pytest
from retrieval_helpers import DOCS

from jaxllm.errors import ConfigError
from jaxllm.retrieval import DenseIndex, Hits, Index, fuse


def reference(vectors, queries, metric, k, allowed=None):
    """numpy scores, then score descending and lower row first."""
    v, q = vectors.astype(np.float64), queries.astype(np.float64)
    if metric == "cosine":
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    s = -np.sum((q[:, None] - v[None]) ** 2, axis=-1) if metric == "l2" else q @ v.T
    out = []
    for row in s:
        ok = np.ones(len(v), bool) if allowed is None else allowed
        order = [i for i in np.lexsort((np.arange(len(v)), -row)) if ok[i]][:k]
        out.append((np.array(order), row[order]))
    return out


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(203, 24)).astype(np.float32)
    vectors[150] = vectors[7]  # an exact tie across devices
    queries = rng.normal(size=(11, 24)).astype(np.float32)
    queries[0] = vectors[7]
    return vectors, queries


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_dense_equals_numpy_and_sharded_equals_one_device(data, metric):
    vectors, queries = data
    index = DenseIndex(vectors, metric)
    mesh = jax.make_mesh((8,), ("data",))
    assert len(jax.devices()) == 8
    allowed = np.arange(len(vectors)) % 3 != 1
    for k, mask in ((10, None), (40, allowed)):  # 40 > the 26 rows of a device
        one = index.search(queries, k, allowed=mask)
        many = index.search(queries, k, allowed=mask, mesh=mesh)
        for a, b, (ref_ids, ref_s) in zip(one, many, reference(vectors, queries, metric, k, mask)):
            np.testing.assert_array_equal(a.ids, ref_ids)
            np.testing.assert_allclose(a.scores, ref_s, rtol=1e-5, atol=1e-5)
            # the same rows and order; a score may differ in its last bit (XLA picks its
            # product kernel by shape, and a device holds 1/8 of the rows)
            np.testing.assert_array_equal(a.ids, b.ids)
            np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6, atol=1e-7)
        if metric != "dot" and mask is None:  # query 0 is row 7 (= row 150): 7, then 150
            assert list(one[0].ids[:2]) == [7, 150]


def test_small_filters_and_int8(data):
    vectors, queries = data
    mesh = jax.make_mesh((8,), ("data",))
    index = DenseIndex(vectors[:10], "cosine")  # fewer rows than k, and than rows x devices
    allowed = np.zeros(10, bool)
    allowed[[2, 5, 9]] = True
    for m in (None, mesh):
        assert len(index.search(queries[:2], 50, mesh=m)[0].ids) == 10
        hits = index.search(queries[:2], 10, allowed=allowed, mesh=m)
        assert sorted(hits[0].ids.tolist()) == [2, 5, 9]  # the filter's 3, no padding
    q8 = DenseIndex(vectors, "dot").quantized()
    assert q8.rows.dtype == np.int8 and q8.step.shape == (len(vectors),)
    # every element is within half a step of the float vector
    err = np.abs(q8.vectors() - vectors)
    assert np.all(err <= q8.step[:, None] / 2 + 1e-6)
    a = q8.search(queries, 10)
    b = q8.search(queries, 10, mesh=mesh)
    for x, y, (ref_ids, _) in zip(a, b, reference(q8.vectors(), queries, "dot", 10)):
        np.testing.assert_array_equal(x.ids, y.ids)
        np.testing.assert_array_equal(x.ids, ref_ids)
    with pytest.raises(ConfigError, match="dimension 24"):
        index.search(np.ones((1, 5)), 3)
    with pytest.raises(ConfigError, match="metric='manhattan'"):
        DenseIndex(vectors, "manhattan")


def test_fusion_worked_example():
    """Done by hand. BM25: d1 10, d2 6, d3 2; vectors: d3 0.9, d4 0.7, d1 0.5.
    min-max: BM25 d1 1, d2 0.5, d3 0; vectors d3 1, d4 0.5, d1 0.
    alpha 0.25: d1 0.75, d2 0.375, d3 0.25, d4 0.125.
    RRF (c = 60), alpha 0.25: d1 .75/61 + .25/63, d3 .75/63 + .25/61, d2 .75/62, d4 .25/62."""
    sparse = Hits(np.array([1, 2, 3]), np.array([10.0, 6.0, 2.0], np.float32))
    dense = Hits(np.array([3, 4, 1]), np.array([0.9, 0.7, 0.5], np.float32))
    rsf = fuse(sparse, dense, 0.25, 10, "rsf")
    assert rsf.ids.tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(rsf.scores, [0.75, 0.375, 0.25, 0.125], atol=1e-7)
    rrf = fuse(sparse, dense, 0.25, 3, "rrf")
    expect = {1: .75 / 61 + .25 / 63, 3: .75 / 63 + .25 / 61, 2: .75 / 62, 4: .25 / 62}
    best = sorted(expect, key=lambda d: -expect[d])[:3]
    assert rrf.ids.tolist() == best == [1, 3, 2]
    np.testing.assert_allclose(rrf.scores, [expect[d] for d in best], rtol=1e-12)
    # dbsf: each list (mean 6 / 0.7, std sqrt(32/3) / sqrt(0.08/3)) maps to 0.5 + z / 6, here
    # z = -/+ sqrt(3/2) at the ends, i.e. 0.5 -/+ sqrt(6)/12; alpha 0.25: d1 0.75 (0.5 + c) +
    # 0.25 (0.5 - c) = 0.5 + c/2, d3 0.5 - c/2, d2 0.75 * 0.5, d4 0.25 * 0.5 (c = sqrt(6)/12)
    dbsf = fuse(sparse, dense, 0.25, 10, "dbsf")
    c = np.sqrt(6) / 12
    assert dbsf.ids.tolist() == [1, 3, 2, 4]
    np.testing.assert_allclose(dbsf.scores, [0.5 + c / 2, 0.5 - c / 2, 0.375, 0.125], rtol=1e-6)
    # alpha 0 keeps BM25's order; alpha 1 the vectors'
    assert fuse(sparse, dense, 0.0, 3).ids.tolist() == [1, 2, 3]
    assert fuse(sparse, dense, 1.0, 3).ids.tolist() == [3, 4, 1]
    with pytest.raises(ConfigError, match="alpha=-0.1"):
        fuse(sparse, dense, -0.1, 3)


@pytest.mark.slow
def test_minilm_dense_and_hybrid_search(tmp_path):
    """The real encoder: chunks and queries embedded by all-MiniLM-L6-v2 (jaxllm.embed)."""
    import jaxllm

    index = Index.build(DOCS, encoder="all-minilm-l6-v2")
    q = "What did the central bank do about rising prices?"
    vec = jaxllm.embed([c.text for c in index.chunks])
    np.testing.assert_allclose(index.dense.vectors(), vec, atol=1e-5)
    assert index.search(q, mode="dense", k=1)[0].metadata["doc_id"] == "b2"
    assert index.search(q, mode="hybrid", alpha=0.7, k=1)[0].metadata["doc_id"] == "b2"
    index.save(tmp_path / "idx")
    loaded = Index.load(tmp_path / "idx")
    assert loaded.encoder_info == {"name": "all-minilm-l6-v2", "metric": "cosine",
                                   "int8": False, "dim": 384}
    assert loaded.search(q, mode="dense") == index.search(q, mode="dense")
