"""An index: chunks with metadata, searched by BM25, vectors, or both; saved as one folder.

    index = Index.build(load_corpus("bbc"), chunking=Chunking("window", 256, 64),
                        encoder="all-minilm-l6-v2")          # encoder=None: BM25 only
    index.search("rugby world cup", mode="hybrid", alpha=0.5, k=10, filter="category=sport")
    index.add(more_docs); index.delete(["sport/001"])         # nothing else is re-analysed
    index.save("bbc.idx"); index = Index.load("bbc.idx")

An index records what it was built with (analyzer, chunking, BM25 parameters, encoder name,
dimension and metric): a loaded index analyses and embeds queries with those, and refuses a
query embedded by another encoder. With an encoder it also embeds each document's abstract (its
lead paragraph, or `abstracts={doc_id: text}` such as summaries a model wrote) as a second,
document-level index: `search(..., docs_first=20)` first picks the 20 best documents by
abstract, then searches only their chunks.

Files (no pickle): IDX/CURRENT names the version folder IDX/vN that holds manifest.json
(settings, and each file's size and SHA-256), chunks.jsonl, terms.json and .npy arrays. A save
writes a new version folder under a temporary name, renames it, then replaces CURRENT
atomically and removes the older versions: a crash at any point leaves CURRENT naming a complete
index. Load checks every file against the manifest; the vector arrays are memory-mapped.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jaxllm.errors import CheckpointError, ConfigError, DataError
from jaxllm.files import atomic_write
from jaxllm.retrieval.analysis import Analyzer
from jaxllm.retrieval.chunking import Chunk, Chunking, Document, chunk_documents
from jaxllm.retrieval.dense import DenseIndex
from jaxllm.retrieval.filters import Filter
from jaxllm.retrieval.hybrid import check_alpha, check_rerank_weight, fuse, fuse_rerank
from jaxllm.retrieval.sparse import Hits, SparseIndex, SparseParams

FORMAT = "jaxllm-index"
FORMAT_VERSION = 1
MODES = ("bm25", "dense", "hybrid")
EMBED_BATCH = 256  # texts per progress-bar step while embedding


@dataclass(frozen=True)
class Result:
    id: str  # chunk id "<doc_id>#<position>"
    score: float
    text: str
    metadata: dict[str, Any]


def lead_paragraph(text: str, max_words: int = 120) -> str:
    """A document's abstract by default: its first paragraph, at most max_words words."""
    para = next((p for p in re.split(r"\n\s*\n", text) if p.strip()), "")
    return " ".join(para.split()[:max_words])


def _encoder(encoder):
    """An object with .embed(texts) and .name: a registered model name is loaded."""
    if encoder is None or hasattr(encoder, "embed"):
        return encoder
    from jaxllm import pretrained

    model = pretrained.load(encoder)
    if model.config.kind != "encoder":
        raise ConfigError(f"encoder {encoder!r} is a decoder; give an encoder such as "
                          f"all-minilm-l6-v2")
    return model


def _embed(encoder, texts, progress: bool, desc: str) -> np.ndarray:
    from tqdm import tqdm

    parts = []
    for s in tqdm(range(0, len(texts), EMBED_BATCH), desc=desc, unit="batch",
                  disable=not progress or len(texts) <= EMBED_BATCH):
        parts.append(np.asarray(encoder.embed(texts[s: s + EMBED_BATCH]), np.float32))
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


class Index:
    def __init__(self, chunks: list[Chunk], *, analyzer: Analyzer, chunking: Chunking,
                 per_type: dict[str, Chunking], sparse: SparseIndex, encoder_info: dict | None,
                 dense: DenseIndex | None, abstract_ids: list[str], abstracts: DenseIndex | None,
                 extra: dict | None = None):
        self.chunks = chunks
        self.analyzer, self.chunking, self.per_type = analyzer, chunking, per_type
        self.sparse, self.dense, self.abstracts = sparse, dense, abstracts
        self.encoder_info = encoder_info  # {"name", "dim", "metric", "int8"} or None
        self.abstract_ids = abstract_ids  # document id of each abstracts row
        self.extra = extra or {}  # saved with the index (evaluation sets)
        self._encoder = None
        self._columns = None
        self.path = None  # the folder it was loaded from or last saved to

    # ---- building --------------------------------------------------------------------------

    @classmethod
    def build(cls, docs: list[Document], *, analyzer: Analyzer | None = None,
              chunking: Chunking | None = None, per_type: dict[str, Chunking] | None = None,
              sparse: SparseParams | None = None, encoder=None, metric: str = "cosine",
              int8: bool = False, abstracts: dict[str, str] | None = None,
              progress: bool = False) -> Index:
        if not docs:
            raise DataError("the corpus is empty: an index needs at least one document")
        enc = _encoder(encoder)
        info = None if enc is None else {"name": enc.name, "metric": metric, "int8": bool(int8),
                                         "dim": None}
        index = cls([], analyzer=analyzer or Analyzer(), chunking=chunking or Chunking(),
                    per_type=dict(per_type or {}),
                    sparse=SparseIndex.build([], sparse or SparseParams()), encoder_info=info,
                    dense=None, abstract_ids=[], abstracts=None)
        index._encoder = enc
        index.add(docs, abstracts=abstracts, progress=progress)
        return index

    def doc_ids(self) -> list[str]:
        return list(dict.fromkeys(c.metadata["doc_id"] for c in self.chunks))

    def add(self, docs: list[Document], *, abstracts: dict[str, str] | None = None,
            progress: bool = False) -> None:
        """Chunk, analyse (and embed) new documents and append them; ids must be new."""
        from tqdm import tqdm

        known = set(self.abstract_ids) | {c.metadata["doc_id"] for c in self.chunks}
        dup = next((d.id for d in docs if d.id in known), None)
        if dup is not None:
            raise DataError(f"document {dup!r} is already in the index; delete it first")
        chunks = chunk_documents(docs, self.chunking, per_type=self.per_type)
        texts = [c.text for c in chunks]
        tokens = []
        for s in tqdm(range(0, len(texts), 2000), desc="analysing", unit="batch",
                      disable=not progress or len(texts) <= 2000):
            tokens += self.analyzer.analyze(texts[s: s + 2000])
        if self.encoder_info is not None:
            enc = self.encoder()
            vectors = _embed(enc, texts, progress, "embedding chunks")
            lead = [(abstracts or {}).get(d.id) or lead_paragraph(d.text) or d.title
                    for d in docs]
            doc_vectors = _embed(enc, lead, progress, "embedding abstracts")
            self._add_vectors(vectors, doc_vectors)
            self.abstract_ids += [d.id for d in docs]
        self.sparse.add(tokens)
        self.chunks += chunks
        self._columns = None

    def _add_vectors(self, vectors, doc_vectors) -> None:
        info = self.encoder_info
        if self.dense is None:
            info["dim"] = int(vectors.shape[1] if len(vectors) else doc_vectors.shape[1])
            self.dense = DenseIndex(vectors.reshape(-1, info["dim"]), info["metric"])
            self.abstracts = DenseIndex(doc_vectors.reshape(-1, info["dim"]), info["metric"])
            if info["int8"]:
                self.dense, self.abstracts = self.dense.quantized(), self.abstracts.quantized()
        else:
            if len(vectors):
                self.dense.add(vectors)
            self.abstracts.add(doc_vectors)

    def delete(self, doc_ids) -> None:
        """Remove documents (all their chunks) by id; the rest is not re-analysed."""
        doc_ids = [doc_ids] if isinstance(doc_ids, str) else list(doc_ids)
        gone = set(doc_ids)
        unknown = gone - set(self.abstract_ids) - {c.metadata["doc_id"] for c in self.chunks}
        if unknown:
            raise DataError(f"document(s) {sorted(unknown)[:5]} are not in the index")
        rows = [i for i, c in enumerate(self.chunks) if c.metadata["doc_id"] in gone]
        self.sparse.delete(rows)
        if self.dense is not None:
            self.dense.delete(rows)
            self.abstracts.delete([i for i, d in enumerate(self.abstract_ids) if d in gone])
        self.abstract_ids = [d for d in self.abstract_ids if d not in gone]
        keep = np.ones(len(self.chunks), bool)
        keep[rows] = False
        self.chunks = [c for c, k in zip(self.chunks, keep) if k]
        self._columns = None

    def encoder(self):
        """The index's encoder, loaded on first use (by the name it was built with)."""
        if self.encoder_info is None:
            raise ConfigError("this index has no vectors; build it with an encoder "
                              "(--dense all-minilm-l6-v2) for dense or hybrid search")
        if self._encoder is None:
            self._encoder = _encoder(self.encoder_info["name"])
        return self._encoder

    # ---- searching -------------------------------------------------------------------------

    def columns(self) -> dict[str, list]:
        """Metadata as columns: field -> one value per chunk (None where a chunk lacks it)."""
        if self._columns is None:
            fields = dict.fromkeys(f for c in self.chunks for f in c.metadata)
            self._columns = {f: [c.metadata.get(f) for c in self.chunks] for f in fields}
        return self._columns

    def embed_queries(self, queries: list[str], encoder: str | None = None) -> np.ndarray:
        if encoder is not None and self.encoder_info is not None \
                and encoder != self.encoder_info["name"]:
            raise ConfigError(f"the index was embedded with {self.encoder_info['name']!r}; "
                              f"queries embedded with {encoder!r} cannot be compared with it")
        return np.asarray(self.encoder().embed(list(queries)), np.float32)

    def search_hits(self, queries: list[str], *, mode: str = "bm25", k: int = 10,
                    alpha: float = 0.5, fusion: str = "rsf", filter=None,
                    docs_first: int | None = None, pool: int = 100, encoder=None,
                    query_vectors: np.ndarray | None = None, mesh=None) -> list[Hits]:
        """Chunk numbers and scores per query (see `search`)."""
        if mode not in MODES:
            raise ConfigError(f"mode={mode!r} is not one of {', '.join(MODES)}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k={k!r} must be a positive integer")
        alpha = check_alpha(alpha)
        allowed = Filter.parse(filter).mask(self.columns())
        need_vectors = mode != "bm25" or docs_first
        if need_vectors and query_vectors is None:
            query_vectors = self.embed_queries(queries, encoder)
        elif query_vectors is not None and self.dense is not None \
                and np.shape(query_vectors)[-1] != self.dense.dim:
            raise ConfigError(f"query vectors of dimension {np.shape(query_vectors)[-1]} do not "
                              f"match the index's {self.dense.dim} ({self.encoder_info['name']})")
        n_cand = max(pool, k) if mode == "hybrid" else k
        analyzed = self.analyzer.analyze(queries) if mode != "dense" else None
        if docs_first:
            if isinstance(docs_first, bool) or not isinstance(docs_first, int) or docs_first < 1:
                raise ConfigError(f"docs_first={docs_first!r} must be a positive integer")
            # per query: only the chunks of the documents whose abstracts rank best
            doc_of_chunk = self._abstract_rows()
            sparse, dense = [], []
            for i, picked in enumerate(self.abstracts.search(query_vectors, docs_first)):
                mask = np.isin(doc_of_chunk, picked.ids)
                mask = mask if allowed is None else mask & allowed
                if mode != "dense":
                    sparse += self.sparse.search(analyzed[i: i + 1], n_cand, allowed=mask)
                if mode != "bm25":
                    dense += self.dense.search(query_vectors[i: i + 1], n_cand, allowed=mask,
                                               mesh=mesh)
        else:
            sparse = self.sparse.search(analyzed, n_cand, allowed=allowed) \
                if mode != "dense" else None
            dense = self.dense.search(query_vectors, n_cand, allowed=allowed, mesh=mesh) \
                if mode != "bm25" else None
        if mode == "bm25":
            return sparse
        if mode == "dense":
            return dense
        return [fuse(s, d, alpha, k, fusion) for s, d in zip(sparse, dense)]

    def _abstract_rows(self) -> np.ndarray:
        row = {d: i for i, d in enumerate(self.abstract_ids)}
        return np.array([row[d] for d in self.columns()["doc_id"]], np.int64)

    def search(self, query: str | list[str], *, mode: str = "bm25", k: int = 10,
               alpha: float = 0.5, fusion: str = "rsf", filter=None,
               docs_first: int | None = None, reranker=None, candidates: int = 20,
               rerank_weight: float | None = None, pool: int = 100,
               encoder: str | None = None, query_vectors: np.ndarray | None = None, mesh=None):
        """Results for one query (a list of Result) or for several (a list of lists).

        mode: "bm25", "dense" or "hybrid" (alpha: 0 = BM25 only, 1 = vector only; fusion "rsf"
        or "rrf" over the top `pool` of each list); filter: metadata conditions applied before
        the top k (see filters.py); docs_first: pick that many documents by abstract first;
        reranker: an object with .score(query, texts) that reorders the top `candidates`;
        rerank_weight: None orders them by the reranker's scores alone; a weight w in [0, 1] by
        w * minmax(reranker) + (1 - w) * minmax(first stage) over the candidates (`fuse_rerank`:
        0 keeps the first stage's order, 1 is the reranker's), the fused value as the score;
        query_vectors: the queries already embedded (by the index's encoder)."""
        rerank_weight = check_rerank_weight(rerank_weight, reranker)
        single = isinstance(query, str)
        queries = [query] if single else list(query)
        depth = max(candidates, k) if reranker is not None else k
        hits = self.search_hits(queries, mode=mode, k=depth, alpha=alpha, fusion=fusion,
                                filter=filter, docs_first=docs_first, pool=pool,
                                encoder=encoder, query_vectors=query_vectors, mesh=mesh)
        results = []
        for q, h in zip(queries, hits):
            ids, scores = h.ids, np.asarray(h.scores, np.float64)
            if reranker is not None and len(ids):
                first = scores
                scores = np.asarray(reranker.score(q, [self.chunks[i].text for i in ids]),
                                    np.float64)
                if rerank_weight is not None:
                    scores = fuse_rerank(first, scores, rerank_weight)
                order = np.lexsort((np.arange(len(ids)), -scores))
                ids, scores = ids[order], scores[order]
            results.append([Result(self.chunks[i].id, float(s), self.chunks[i].text,
                                   self.chunks[i].metadata)
                            for i, s in zip(ids[:k].tolist(), scores[:k])])
        return results[0] if single else results

    # ---- files -----------------------------------------------------------------------------

    def manifest(self) -> dict:
        return {"format": FORMAT, "version": FORMAT_VERSION, "n_chunks": len(self.chunks),
                "n_docs": len(self.doc_ids()), "analyzer": self.analyzer.to_dict(),
                "chunking": self.chunking.to_dict(),
                "per_type": {t: c.to_dict() for t, c in self.per_type.items()},
                "sparse": self.sparse.params.to_dict(), "encoder": self.encoder_info}

    def save(self, path) -> None:
        """Write the index to folder `path` (see the module docstring for the protocol)."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{path} exists and is not a folder; choose another --out")
        path.mkdir(parents=True, exist_ok=True)
        versions = _versions(path)
        name = f"v{max(versions, default=0) + 1}"
        tmp = path / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        tmp.mkdir()  # the user's umask applies (mkdtemp's folder would be private)
        try:
            files = {}
            lines = "".join(json.dumps({"id": c.id, "text": c.text, "metadata": c.metadata},
                                       ensure_ascii=False) + "\n" for c in self.chunks)
            files["chunks.jsonl"] = _write(tmp / "chunks.jsonl", lines.encode("utf-8"))
            files["terms.json"] = _write(tmp / "terms.json", json.dumps(
                self.sparse.terms, ensure_ascii=False).encode("utf-8"))
            arrays = {f"sparse.{k}": v for k, v in self.sparse.arrays().items()}
            if self.dense is not None:
                arrays.update({"dense.rows": self.dense.rows, "dense.step": self.dense.step,
                               "abstracts.rows": self.abstracts.rows,
                               "abstracts.step": self.abstracts.step})
                files["abstract_ids.json"] = _write(tmp / "abstract_ids.json", json.dumps(
                    self.abstract_ids, ensure_ascii=False).encode("utf-8"))
            for key, a in arrays.items():
                buf = io.BytesIO()
                np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
                files[f"{key}.npy"] = _write(tmp / f"{key}.npy", buf.getvalue())
            files["extra.json"] = _write(tmp / "extra.json", json.dumps(
                self.extra, ensure_ascii=False).encode("utf-8"))
            manifest = self.manifest() | {"files": files}
            _write(tmp / "manifest.json", json.dumps(manifest, indent=1).encode("utf-8"))
            os.replace(tmp, path / name)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        atomic_write(path / "CURRENT", name + "\n")
        self.path = path
        for old in versions:
            shutil.rmtree(path / f"v{old}", ignore_errors=True)

    @classmethod
    def load(cls, path, *, encoder=None) -> Index:
        """The index saved in folder `path`. `encoder`: an object with .embed and .name to use
        for queries instead of loading the recorded encoder by name (the names must match)."""
        path = Path(path)
        rebuild = "rebuild it with `jaxllm index build`"
        current = path / "CURRENT"
        if not current.is_file():
            raise CheckpointError(f"{path} is not an index (no CURRENT file); {rebuild}")
        folder = path / current.read_text().strip()
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise CheckpointError(f"{path}: the manifest of {folder.name} is missing or "
                                  f"unreadable; {rebuild}") from None
        if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
            raise CheckpointError(f"{path}: not a {FORMAT} version {FORMAT_VERSION} folder")
        for name, want in manifest["files"].items():
            f = folder / name
            if not f.is_file() or f.stat().st_size != want["bytes"] or _sha256(f) != want["sha256"]:
                raise CheckpointError(f"{path}: {name} is missing or corrupt (size or checksum "
                                      f"differs from the manifest); {rebuild}")

        def array(key, mmap=None):
            return np.load(folder / f"{key}.npy", allow_pickle=False, mmap_mode=mmap)

        chunks = []
        with open(folder / "chunks.jsonl", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                chunks.append(Chunk(row["id"], row["text"], row["metadata"]))
        terms = json.loads((folder / "terms.json").read_text(encoding="utf-8"))
        params = SparseParams(**manifest["sparse"])
        sparse = SparseIndex.from_arrays(params, terms, {k: array(f"sparse.{k}") for k in
                                                         ("doc_len", "indptr", "docs", "tf")})
        info = manifest["encoder"]
        dense = abstracts = None
        abstract_ids = []
        if info is not None:
            dense = _dense_from(info["metric"], array("dense.rows", "r"), array("dense.step"))
            abstracts = _dense_from(info["metric"], array("abstracts.rows", "r"),
                                    array("abstracts.step"))
            abstract_ids = json.loads((folder / "abstract_ids.json").read_text(encoding="utf-8"))
        if encoder is not None and (info is None or getattr(encoder, "name", None) != info["name"]):
            raise ConfigError(f"encoder {getattr(encoder, 'name', encoder)!r} does not match the "
                              f"index's {None if info is None else info['name']!r}")
        index = cls(chunks, analyzer=Analyzer.from_dict(manifest["analyzer"]),
                   chunking=Chunking.from_dict(manifest["chunking"]),
                   per_type={t: Chunking.from_dict(c) for t, c in manifest["per_type"].items()},
                   sparse=sparse, encoder_info=info, dense=dense, abstract_ids=abstract_ids,
                   abstracts=abstracts,
                   extra=json.loads((folder / "extra.json").read_text(encoding="utf-8")))
        index._encoder = encoder
        index.path = path
        return index


def _dense_from(metric, rows, step) -> DenseIndex:
    if rows.dtype == np.int8:
        return DenseIndex(None, metric, codes=rows, step=step)
    d = DenseIndex(np.zeros((0, rows.shape[1]), np.float32), metric)
    d.rows, d.step = rows, np.asarray(step, np.float32)  # stored rows are already normalised
    return d


def _versions(path: Path) -> list[int]:
    return sorted(int(p.name[1:]) for p in path.iterdir()
                  if p.is_dir() and re.fullmatch(r"v\d+", p.name))


def _write(path: Path, data: bytes) -> dict:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
