"""Sparse retrieval: BM25 (the five variants of bm25s) and TF-IDF over an inverted index.

    index = SparseIndex.build(token_lists, SparseParams("lucene", k1=1.5, b=0.75))
    hits = index.search([["cat", "sat"], ["dog"]], k=10)   # one Hits(ids, scores) per query
    index.add(more_token_lists); index.delete([3, 17])       # no re-analysis of the others

Scoring (Kamphuis et al. 2020, as bm25s implements it): a document's score is the sum over the
query's terms (repeated terms count again) of idf(t) * tfc(tf, |d|):

    method     idf(t)                              tfc(tf, L), L = 1 - b + b |d| / avgdl
    robertson  log((N - df + .5) / (df + .5)), >=0  tf / (k1 L + tf)
    lucene     log(1 + (N - df + .5) / (df + .5))   tf / (k1 L + tf)
    atire      log(N / df)                          (k1 + 1) tf / (k1 L + tf)
    bm25l      log((N + 1) / (df + .5))             (k1 + 1)(c + delta) / (k1 + c + delta), c = tf / L
    bm25+      log((N + 1) / df)                    (k1 + 1) tf / (k1 L + tf) + delta
    tfidf      log((N + 1) / (df + 1)) + 1          tf * idf, each document's vector L2-normalised
                                                    (scikit-learn's TfidfVectorizer defaults)

`idf_method` takes the idf of another variant (rank_bm25's BM25Okapi is atire with robertson's
idf, for terms in fewer than half of the documents). BM25L and BM25+ give a term a score in documents without it (tfc(0) > 0): the index stores each
posting's score less that constant, and adds the query's constant to every result.

Layout: the postings of each term are contiguous (CSC: `indptr`, `docs` ascending, `tf`), and
each posting's score contribution is computed once (`values`). A batch of queries is scored by
gathering its postings with one index computation, adding them into a (queries x documents)
scratch array (np.add.at), reading the sums back at the postings (so only documents that
contain a query term are ever looked at) and selecting the top k of each query among those.
Selection needs no sort of all candidates: each term's postings are also kept sorted by value
(`impact`), so the k-th largest value of any one query term is a score that at least k
documents reach; candidates below the largest such bound are dropped before the (small)
sort. Ties are broken by the lower document number, so results are deterministic.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from itertools import chain
from typing import NamedTuple

import numpy as np

from jaxllm.errors import ConfigError

METHODS = ("robertson", "lucene", "atire", "bm25l", "bm25+", "tfidf")
_NONOCCURRENCE = ("bm25l", "bm25+")
SCRATCH_CELLS = 1 << 22  # the (queries x documents) scratch array holds at most this many floats
MAX_BATCH = 16  # queries scored together (fastest measured on the 100k-document corpus)


@dataclass(frozen=True)
class SparseParams:
    method: str = "lucene"
    k1: float = 1.5
    b: float = 0.75
    delta: float = 0.5  # BM25L and BM25+ only
    idf_method: str | None = None  # another BM25 variant's idf (as bm25s allows); None: method's

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"sparse method={self.method!r} is not one of {', '.join(METHODS)}")
        if self.idf_method is not None and (self.idf_method not in METHODS[:-1]
                                            or self.method == "tfidf"):
            raise ConfigError(f"sparse idf_method={self.idf_method!r} must be one of "
                              f"{', '.join(METHODS[:-1])}, with a BM25 method")
        if not self.k1 >= 0:
            raise ConfigError(f"BM25 k1={self.k1} must be >= 0")
        if not 0 <= self.b <= 1:
            raise ConfigError(f"BM25 b={self.b} must be in [0, 1]")
        if not self.delta >= 0:
            raise ConfigError(f"BM25 delta={self.delta} must be >= 0")

    def to_dict(self) -> dict:
        return asdict(self)


class Hits(NamedTuple):
    ids: np.ndarray  # (n,) int64 document numbers, best first; n <= k
    scores: np.ndarray  # (n,) float32


def _idf(method: str, df: np.ndarray, n: int) -> np.ndarray:
    """float32 idf per term (0 for terms in no document), computed in float64."""
    d = df.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "robertson":
            idf = np.log(np.maximum((n - d + 0.5) / (d + 0.5), 1.0))
        elif method == "lucene":
            idf = np.log(1 + (n - d + 0.5) / (d + 0.5))
        elif method == "atire":
            idf = np.log(n / d)
        elif method == "bm25l":
            idf = np.log((n + 1) / (d + 0.5))
        elif method == "bm25+":
            idf = np.log((n + 1) / d)
        else:  # tfidf
            idf = np.log((n + 1) / (d + 1)) + 1
    return np.where(df > 0, idf, 0).astype(np.float32)


def _tfc(p: SparseParams, tf, doc_len, avgdl):
    """The term-frequency component of BM25, vectorised (float64)."""
    k1, b, delta = p.k1, p.b, p.delta
    norm = 1 - b + b * doc_len / avgdl
    if p.method in ("robertson", "lucene"):
        return tf / (k1 * norm + tf)
    if p.method == "atire":
        return tf * (k1 + 1) / (tf + k1 * norm)
    if p.method == "bm25l":
        c = tf / norm
        return (k1 + 1) * (c + delta) / (k1 + c + delta)
    return (k1 + 1) * tf / (k1 * norm + tf) + delta  # bm25+


def _ordered(x: np.ndarray) -> np.ndarray:
    """float32 -> int64 in [0, 2^32) with the same order (IEEE bits, negatives flipped)."""
    bits = x.view(np.int32).astype(np.int64)
    return np.where(bits < 0, ~bits & 0xFFFFFFFF, bits | 0x80000000)


def _unordered(o: np.ndarray) -> np.ndarray:
    return np.where(o & 0x80000000, o & 0x7FFFFFFF, ~o & 0xFFFFFFFF).astype(np.uint32).view(
        np.float32)


class SparseIndex:
    """An inverted index over numbered documents 0..n_docs-1 with BM25 or TF-IDF scores."""

    def __init__(self, params: SparseParams, terms: list[str], doc_len: np.ndarray,
                 indptr: np.ndarray, docs: np.ndarray, tf: np.ndarray):
        self.params = params
        self.terms = list(terms)
        self.vocab = {t: i for i, t in enumerate(self.terms)}
        self.doc_len = np.asarray(doc_len, np.int64)
        self.indptr = np.asarray(indptr, np.int64)
        self.docs = np.asarray(docs, np.int32)
        self.tf = np.asarray(tf, np.float32)
        self._lock = threading.Lock()
        self._scratch = np.zeros(0, np.float32)
        self._refresh()

    # ---- building and changing -------------------------------------------------------------

    @classmethod
    def build(cls, token_lists, params: SparseParams | None = None) -> SparseIndex:
        """An index of documents given as lists of terms (an Analyzer's output)."""
        empty = cls(params or SparseParams(), [], np.zeros(0, np.int64), np.zeros(1, np.int64),
                    np.zeros(0, np.int32), np.zeros(0, np.float32))
        empty.add(token_lists)
        return empty

    @property
    def n_docs(self) -> int:
        return len(self.doc_len)

    def add(self, token_lists) -> None:
        """Append documents (numbered after the existing ones); only their postings are built."""
        token_lists = list(token_lists)
        n_old, n_new = self.n_docs, len(token_lists)
        lens = np.fromiter(map(len, token_lists), np.int64, count=n_new)
        flat = list(chain.from_iterable(token_lists))
        for term in dict.fromkeys(flat):  # new terms get the next ids, in order of appearance
            if term not in self.vocab:
                self.vocab[term] = len(self.terms)
                self.terms.append(term)
        n_terms = len(self.terms)
        ids = np.fromiter(map(self.vocab.__getitem__, flat), np.int64, count=len(flat))
        doc = np.repeat(np.arange(n_old, n_old + n_new, dtype=np.int64), lens)
        # (term, doc) pairs, term-major; runs of equal pairs are the term frequencies
        total = max(n_old + n_new, 1)
        key = np.sort(ids * total + doc)
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else \
            np.zeros(0, np.int64)
        new_tf = np.diff(np.r_[starts, len(key)]).astype(np.float32)
        new_term, new_doc = np.divmod(key[starts], total)
        # merge with the existing postings: per term, old documents come before new ones
        old_term = np.repeat(np.arange(len(self.indptr) - 1, dtype=np.int64),
                             np.diff(self.indptr))
        term = np.concatenate([old_term, new_term])
        order = np.argsort(term, kind="stable")
        self.docs = np.concatenate([self.docs, new_doc.astype(np.int32)])[order]
        self.tf = np.concatenate([self.tf, new_tf])[order]
        self.indptr = np.r_[0, np.cumsum(np.bincount(term, minlength=n_terms))].astype(np.int64)
        self.doc_len = np.concatenate([self.doc_len, lens])
        self._refresh()

    def delete(self, doc_ids) -> None:
        """Remove documents; the others are renumbered in order (0..n_docs-1 again)."""
        doc_ids = np.unique(np.asarray(doc_ids, np.int64))
        if len(doc_ids) and (doc_ids[0] < 0 or doc_ids[-1] >= self.n_docs):
            raise ConfigError(f"document numbers must be in [0, {self.n_docs})")
        alive = np.ones(self.n_docs, bool)
        alive[doc_ids] = False
        renumber = np.cumsum(alive) - 1
        keep = alive[self.docs]
        term = np.repeat(np.arange(len(self.terms)), np.diff(self.indptr))[keep]
        self.docs = renumber[self.docs[keep]].astype(np.int32)
        self.tf = self.tf[keep]
        self.indptr = np.r_[0, np.cumsum(np.bincount(term, minlength=len(self.terms)))]
        self.doc_len = self.doc_len[alive]
        self._refresh()

    def _refresh(self) -> None:
        """Recompute the derived arrays (statistics change with every add or delete)."""
        p, n = self.params, self.n_docs
        df = np.diff(self.indptr)
        idf = _idf(p.idf_method or p.method, df, n)
        term = np.repeat(np.arange(len(self.terms)), df)
        length = self.doc_len[self.docs].astype(np.float64)
        avgdl = float(self.doc_len.mean()) if n else 1.0
        self.nonoccurrence = np.zeros(len(self.terms), np.float32)
        if p.method == "tfidf":
            w = self.tf.astype(np.float64) * idf[term]
            norm = np.sqrt(np.bincount(self.docs, w * w, minlength=n))
            values = w / norm[self.docs]
        else:
            values = idf[term] * _tfc(p, self.tf.astype(np.float64), length, avgdl or 1.0)
            if p.method in _NONOCCURRENCE:
                self.nonoccurrence = (idf.astype(np.float64)
                                      * _tfc(p, 0.0, avgdl, avgdl or 1.0)).astype(np.float32)
                values = values - self.nonoccurrence[term]
        self.values = values.astype(np.float32)
        # each term's values, largest first: impact[indptr[t] + j] is its (j+1)-th largest
        key = (term << 32) | (0xFFFFFFFF - _ordered(self.values))
        self.impact = _unordered(0xFFFFFFFF - (np.sort(key) & 0xFFFFFFFF))

    # ---- searching -------------------------------------------------------------------------

    def term_ids(self, tokens) -> np.ndarray:
        """Vocabulary ids of a query's terms; unknown terms are left out, repeats kept."""
        get = self.vocab.get
        return np.array([i for i in map(get, tokens) if i is not None], np.int64)

    def scores(self, tokens) -> np.ndarray:
        """(n_docs,) float32 scores of one query against every document (the plain definition,
        term by term; search returns the same numbers)."""
        out = np.zeros(self.n_docs, np.float32)
        for t in self.term_ids(tokens):
            s = slice(self.indptr[t], self.indptr[t + 1])
            out[self.docs[s]] += self.values[s]
        return out + self.nonoccurrence[self.term_ids(tokens)].sum(dtype=np.float32)

    def search(self, queries, k: int = 10, *, allowed: np.ndarray | None = None) -> list[Hits]:
        """Top-k documents of each query (a list of terms), among those containing at least one
        query term (and, with `allowed`, a boolean mask over documents, only those where it is
        True). Fewer than k come back when fewer match; a query of no known terms gets none."""
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k={k!r} must be a positive integer")
        if allowed is not None:
            allowed = np.asarray(allowed, bool)
            if allowed.shape != (self.n_docs,):
                raise ConfigError(f"allowed mask has shape {allowed.shape}, expected "
                                  f"({self.n_docs},)")
        term_lists = [self.term_ids(q) for q in queries]
        n = max(self.n_docs, 1)
        doc_bits = max(int(n - 1).bit_length(), 1)
        batch = max(1, min(MAX_BATCH, SCRATCH_CELLS // n, 1 << (31 - doc_bits)))
        out = []
        with self._lock:
            if len(self._scratch) < batch * n:
                self._scratch = np.zeros(batch * n, np.float32)
            for s in range(0, len(term_lists), batch):
                out += self._search_batch(term_lists[s: s + batch], int(k), allowed, doc_bits)
        return out

    def _search_batch(self, term_lists, k, allowed, doc_bits) -> list[Hits]:
        n, nq = self.n_docs, len(term_lists)
        n_terms = np.fromiter(map(len, term_lists), np.int64, count=nq)
        terms = np.concatenate(term_lists) if nq else np.zeros(0, np.int64)
        query_of_term = np.repeat(np.arange(nq), n_terms)
        # gather every posting of every query term: positions start_t, start_t + 1, ...
        start, length = self.indptr[terms], np.diff(self.indptr)[terms]
        ends = np.cumsum(length)
        pos = np.arange(ends[-1] if len(ends) else 0) + np.repeat(start - (ends - length), length)
        if len(pos) == 0:  # no query term occurs anywhere
            return [Hits(np.zeros(0, np.int64), np.zeros(0, np.float32)) for _ in range(nq)]
        query = np.repeat(query_of_term, length)
        key = query * n + self.docs[pos]  # (query, document) cell of the scratch array
        scratch = self._scratch
        np.add.at(scratch, key, self.values[pos])
        score = scratch[key]
        scratch[key] = 0
        if allowed is not None:
            keep = allowed[key - query * n]
        else:
            # a query's k-th best score is at least the k-th largest value of any one of its
            # terms (that many documents have at least that score): drop what is below
            enough = np.diff(self.indptr)[terms] >= k
            kth = np.where(enough, self.impact[np.minimum(start + k - 1, len(self.impact) - 1)], 0)
            bound = np.zeros(nq, np.float32)
            np.maximum.at(bound, query_of_term, kth.astype(np.float32))
            keep = score >= bound[query]
        # sort the survivors by (query, score descending, document) packed in one int64
        q, d = query[keep], key[keep] - query[keep] * n
        packed = np.unique((q << (32 + doc_bits))
                           | ((0xFFFFFFFF - _ordered(score[keep])) << doc_bits) | d)
        first = np.searchsorted(packed >> (32 + doc_bits), np.arange(nq + 1))
        count = np.minimum(np.diff(first), k)
        top = packed[np.minimum(first[:-1, None] + np.arange(k), max(len(packed) - 1, 0))] \
            if len(packed) else np.zeros((nq, k), np.int64)
        ids = top & ((1 << doc_bits) - 1)
        offset = np.zeros(nq, np.float32)
        np.add.at(offset, query_of_term, self.nonoccurrence[terms])
        scores = _unordered(0xFFFFFFFF - ((top >> doc_bits) & 0xFFFFFFFF)) + offset[:, None]
        return [Hits(ids[i, :c], scores[i, :c]) for i, c in enumerate(count.tolist())]

    # ---- files -----------------------------------------------------------------------------

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays that define the index (the rest is derived); see `from_arrays`."""
        return {"doc_len": self.doc_len, "indptr": self.indptr, "docs": self.docs, "tf": self.tf}

    @classmethod
    def from_arrays(cls, params: SparseParams, terms: list[str], arrays: dict) -> SparseIndex:
        return cls(params, terms, arrays["doc_len"], arrays["indptr"], arrays["docs"],
                   arrays["tf"])
