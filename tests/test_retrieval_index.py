"""Filters, the index lifecycle (build, add, delete, save/load, corruption) and the CLI."""

import json

import numpy as np
import pytest
from helpers import error_of
from retrieval_helpers import DOCS, HashEncoder

from jaxllm.cli.main import main
from jaxllm.errors import CheckpointError, ConfigError, DataError
from jaxllm.retrieval import Chunking, Filter, Index
from jaxllm.retrieval.hybrid import fuse_rerank


@pytest.fixture
def index():
    return Index.build(DOCS, chunking=Chunking("window", size=6, overlap=2),
                       encoder=HashEncoder())


def test_filter_conditions():
    cols = {"category": ["sport", "sport", "tech", None, "business"],
            "year": [2004, 2005, None, 2005, 2006]}
    mask = lambda spec: Filter.parse(spec).mask(cols).tolist()
    assert mask("category=sport") == [True, True, False, False, False]
    assert mask("category=sport|tech") == [True, True, True, False, False]
    assert mask({"category": ["tech", "business"]}) == [False, False, True, False, True]
    assert mask("category!=sport") == [False, False, True, False, True]  # missing never matches
    assert mask(["year>=2005", "year<2006"]) == [False, True, False, True, False]
    assert mask({"year": {">": 2004, "<=": 2005}}) == [False, True, False, True, False]
    assert mask({"year": 2005}) == [False, True, False, True, False]
    assert Filter.parse(None).mask(cols) is None
    with pytest.raises(ConfigError, match="'colour' is not in the index's metadata"):
        mask("colour=red")
    with pytest.raises(ConfigError, match="'soon' is not a number"):
        mask("year>soon")
    with pytest.raises(ConfigError, match="is not FIELD=VALUE"):
        mask("category")


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_filter_applies_before_top_k(index, mode):
    """Three sport documents match: those three come back (k=10), nothing from outside."""
    res = index.search("the match cup club final round", mode=mode, k=10,
                       filter="category=sport")
    docs = {r.metadata["doc_id"] for r in res}
    assert docs <= {"s1", "s2", "s3"}
    if mode != "bm25":  # vectors score every chunk; BM25 only those with a query term
        assert docs == {"s1", "s2", "s3"}
        assert len(res) == sum(c.metadata["category"] == "sport" for c in index.chunks)
    assert index.search("rates", filter={"year": {"<": 2005}}) == []


def test_add_delete_equal_a_fresh_build(index):
    index.delete(["b1", "s2"])
    index.add([DOCS[1]])
    kept = [d for d in DOCS if d.id not in ("b1", "s2")] + [DOCS[1]]
    fresh = Index.build(kept, chunking=Chunking("window", size=6, overlap=2),
                        encoder=HashEncoder())
    assert [c.id for c in index.chunks] == [c.id for c in fresh.chunks]
    for mode in ("bm25", "dense", "hybrid"):
        for q in ("cricket match drawn", "oil prices", "camera phone chip"):
            a, b = index.search(q, mode=mode), fresh.search(q, mode=mode)
            assert [(r.id, round(r.score, 5)) for r in a] == [(r.id, round(r.score, 5)) for r in b]
    assert index.abstract_ids == fresh.abstract_ids
    assert index.search("oil rain", mode="dense", docs_first=1) == \
        fresh.search("oil rain", mode="dense", docs_first=1)
    with pytest.raises(DataError, match="already in the index"):
        index.add([DOCS[0]])
    with pytest.raises(DataError, match="not in the index"):
        index.delete(["nope"])


def test_save_load_round_trip_and_corruption(index, tmp_path):
    path = tmp_path / "idx"
    index.extra["note"] = "kept"
    index.save(path)
    loaded = Index.load(path, encoder=HashEncoder())
    assert loaded.manifest() == index.manifest() and loaded.extra == {"note": "kept"}
    for mode in ("bm25", "dense", "hybrid"):
        a = index.search("oil output cut", mode=mode, docs_first=2)
        assert loaded.search("oil output cut", mode=mode, docs_first=2) == a
    # a second save replaces the first version; a failing save leaves the good one
    index.save(path)
    assert sorted(p.name for p in path.iterdir()) == ["CURRENT", "v2"]
    with pytest.raises(ConfigError, match="does not match"):
        Index.load(path, encoder=HashEncoder(name="other"))
    # a half-written version folder (no rename, CURRENT untouched) is ignored
    (path / ".v3.123.ab.tmp").mkdir()
    (path / ".v3.123.ab.tmp" / "chunks.jsonl").write_text("partial")
    assert len(Index.load(path, encoder=HashEncoder()).chunks) == len(index.chunks)
    # a corrupted file is refused with a one-line error
    f = path / "v2" / "sparse.tf.npy"
    data = bytearray(f.read_bytes())
    data[-1] ^= 1
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sparse.tf.npy is missing or corrupt"):
        Index.load(path)
    with pytest.raises(CheckpointError, match="not an index"):
        Index.load(tmp_path)


def test_evaluate_index_keeps_the_search_order(index):
    from jaxllm.retrieval.evaluation import evaluate_index

    results = index.search("the match final", k=10)
    docs = [r.metadata["doc_id"] for r in results]
    target = next(d for d in docs if d != docs[0])  # a document that is not ranked first
    rank = docs.index(target) + 1
    table = evaluate_index(index, [{"id": "q", "query": "the match final",
                                    "relevant": [target], "type": "t"}])
    assert table["t"]["hit@1"] == 0 and table["t"]["mrr@10"] == pytest.approx(1 / rank)
    assert table["all"]["n"] == 1


def test_reranker_reorders_the_same_candidates(index):
    """A reranker sees the top `candidates` of the plain search (same fusion pool) and only
    reorders them: here by text length, longest first."""
    class ByLength:
        def score(self, query, texts):
            return np.array([len(t) for t in texts], float)

    for mode in ("bm25", "hybrid"):
        plain = index.search("the match final cup", mode=mode, k=4)
        reranked = index.search("the match final cup", mode=mode, k=4, reranker=ByLength(),
                                candidates=4)
        assert {r.id for r in reranked} == {r.id for r in plain}
        assert [len(r.text) for r in reranked] == sorted((len(r.text) for r in plain),
                                                         reverse=True)


def test_fuse_rerank_worked_example():
    """Three candidates A, B, C in the first stage's order (scores 3, 2, 1 -> min-max 1, 0.5, 0)
    and reranker scores 1, 0, 5 (-> 0.2, 0, 1), fused by hand:
    w = 0.25: 0.25 * (0.2, 0, 1) + 0.75 * (1, 0.5, 0) = (0.8, 0.375, 0.25)  -> A B C
    w = 0.5:  (0.1 + 0.5, 0 + 0.25, 0.5 + 0) = (0.6, 0.25, 0.5)              -> A C B
    w = 0.75: (0.15 + 0.25, 0 + 0.125, 0.75 + 0) = (0.4, 0.125, 0.75)       -> C A B
    w = 0 is the first stage's order, w = 1 the reranker's; equal scores normalise to 1."""
    first, reranked = np.array([3.0, 2.0, 1.0]), np.array([1.0, 0.0, 5.0])
    for w, expected in ((0.0, [1, 0.5, 0]), (0.25, [0.8, 0.375, 0.25]), (0.5, [0.6, 0.25, 0.5]),
                        (0.75, [0.4, 0.125, 0.75]), (1.0, [0.2, 0, 1])):
        np.testing.assert_allclose(fuse_rerank(first, reranked, w), expected, atol=1e-12)
    np.testing.assert_allclose(fuse_rerank(first, np.full(3, 7.0), 0.5), [1, 0.75, 0.5])
    for bad in (-0.1, 1.5, "0.5", True, float("nan")):
        with pytest.raises(ConfigError, match="must be in \\[0, 1\\]"):
            fuse_rerank(first, reranked, bad)


class ByText:
    """A stand-in reranker: a fixed score per passage text, so the fused order can be worked
    out from the first stage's scores."""
    def __init__(self, scores):
        self.scores = scores

    def score(self, query, texts):
        return np.array([self.scores[t] for t in texts], float)


def test_rerank_weight_fuses_first_stage_and_reranker(index):
    """Index.search(rerank_weight=w): 0 returns the first stage's order, 1 the reranker's, and
    between them w * minmax(reranker) + (1 - w) * minmax(first stage) over the candidates."""
    query = "the match final cup rain"
    plain = index.search(query, mode="bm25", k=4)
    assert len(plain) == 4
    # the reranker reverses the first stage's order of these 4 (by their first words)
    reranker = ByText({r.text: float(i) for i, r in enumerate(plain)})
    only = index.search(query, mode="bm25", k=4, reranker=reranker, candidates=4)
    assert [r.id for r in only] == [r.id for r in plain][::-1]
    zero = index.search(query, mode="bm25", k=4, reranker=reranker, candidates=4,
                        rerank_weight=0.0)
    assert [r.id for r in zero] == [r.id for r in plain]
    one = index.search(query, mode="bm25", k=4, reranker=reranker, candidates=4,
                       rerank_weight=1.0)
    assert [r.id for r in one] == [r.id for r in only]
    first = np.array([r.score for r in plain])
    norm_first = (first - first.min()) / (first.max() - first.min())
    norm_rerank = np.arange(4) / 3.0
    for w in (0.3, 0.6):
        expected = w * norm_rerank + (1 - w) * norm_first
        order = sorted(range(4), key=lambda i: (-expected[i], i))
        got = index.search(query, mode="bm25", k=4, reranker=reranker, candidates=4,
                           rerank_weight=w)
        assert [r.id for r in got] == [plain[i].id for i in order]
        np.testing.assert_allclose([r.score for r in got], expected[order], atol=1e-12)
    with pytest.raises(ConfigError, match="rerank weight=1.2"):
        index.search(query, reranker=reranker, rerank_weight=1.2)
    with pytest.raises(ConfigError, match="needs a reranker"):
        index.search(query, rerank_weight=0.5)


def test_search_errors(index):
    with pytest.raises(ConfigError, match="alpha=1.5"):
        index.search("x", mode="hybrid", alpha=1.5)
    with pytest.raises(ConfigError, match="k=0"):
        index.search("x", k=0)
    with pytest.raises(ConfigError, match="embedded with 'test-hash'"):
        index.search("x", mode="dense", encoder="all-minilm-l6-v2")
    with pytest.raises(ConfigError, match="dimension 5"):
        index.search_hits(["x"], mode="dense", query_vectors=np.ones((1, 5)))
    assert index.search("zzz unknown words", mode="bm25") == []
    assert index.search("", mode="bm25") == []
    with pytest.raises(DataError, match="corpus is empty"):
        Index.build([])
    bm25_only = Index.build(DOCS)
    with pytest.raises(ConfigError, match="no vectors"):
        bm25_only.search("x", mode="dense")


def test_cli_rerank_weight(tmp_path, capsys, monkeypatch):
    """`jaxllm search --rerank cross --rerank-weight W` passes W to the search: 0 prints the
    first stage's order, 1 the reranker's (a stand-in reranker that reverses it)."""
    from jaxllm.retrieval import rerank

    Index.build(DOCS, chunking=Chunking("none")).save(tmp_path / "idx")
    query = "the match final cup rain"

    def ids(*extra):
        assert main(["search", str(tmp_path / "idx"), query, "--json", "-k", "3", *extra]) == 0
        return [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()]

    plain = ids()
    text = {d.id: d.text for d in DOCS}
    reverse = ByText({text[p.split("#")[0]]: float(i) for i, p in enumerate(plain)})
    monkeypatch.setattr(rerank, "load_reranker", lambda kind, index=None, path=None: reverse)
    assert ids("--rerank", "cross", "--candidates", "3", "--rerank-weight", "0") == plain
    assert ids("--rerank", "cross", "--candidates", "3", "--rerank-weight", "1") == plain[::-1]
    assert ids("--rerank", "cross", "--candidates", "3") == plain[::-1]


def test_cli_build_search_eval(tmp_path, capsys):
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"id": d.id, "text": d.text, "title": d.title,
                                          **d.metadata}) + "\n" for d in DOCS))
    out = tmp_path / "idx"
    assert main(["index", "build", "--corpus", str(corpus), "--out", str(out), "--chunk", "8",
                 "--overlap", "2", "--method", "bm25+", "--no-progress"]) == 0
    assert "6 documents" in capsys.readouterr().out
    assert main(["search", str(out), "interest rates inflation", "--json", "-k", "2",
                 "--filter", "category=business"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0]["id"] == "b2#0" and rows[0]["metadata"]["year"] == 2005
    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"query": "cricket rain", "relevant": ["s2"], "type": "kw"})
                       + "\n" + json.dumps({"query": "phone camera", "relevant": ["t1"]}) + "\n")
    assert main(["index", "eval", str(out), "--queries", str(queries)]) == 0
    table = capsys.readouterr().out
    assert "mrr@10" in table and "kw" in table
    line = next(l for l in table.splitlines() if l.strip().startswith("all"))
    assert line.split()[1:4] == ["2", "1.0000", "1.0000"]  # n, hit@1, hit@10
    # bad input: one line, exit 2, nothing written
    assert "alpha=2.0" in error_of(["search", str(out), "x", "--mode", "hybrid",
                                    "--alpha", "2"], capsys)
    assert "no vectors" in error_of(["search", str(out), "x", "--mode", "dense"], capsys)
    assert "'colour' is not in" in error_of(["search", str(out), "x", "--filter", "colour=red"],
                                            capsys)
    assert "k=0" in error_of(["search", str(out), "x", "-k", "0"], capsys)
    assert "rerank weight=1.5 must be in [0, 1]" in error_of(
        ["search", str(out), "x", "--rerank", "cross", "--rerank-weight", "1.5"], capsys)
    assert "--rerank-weight needs --rerank" in error_of(
        ["search", str(out), "x", "--rerank-weight", "0.5"], capsys)
    assert "rerank weight=-1.0" in error_of(["index", "eval", str(out), "--rerank", "cross",
                                             "--rerank-weight", "-1"], capsys)
    assert "not an index" in error_of(["search", str(tmp_path), "x"], capsys)
    (tmp_path / "empty").mkdir()
    assert "no documents" in error_of(["index", "build", "--corpus", str(tmp_path / "empty"),
                                       "--out", str(tmp_path / "e")], capsys)
    assert not (tmp_path / "e").exists()
    assert "overlap=9" in error_of(["index", "build", "--corpus", str(corpus), "--out",
                                    str(tmp_path / "e"), "--chunk", "8", "--overlap", "9"],
                                   capsys)
