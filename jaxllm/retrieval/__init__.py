"""Retrieval: analysis, chunking, sparse (BM25/TF-IDF) and dense search, hybrid fusion, filters,
reranking and index files.

- analysis.py: `Analyzer` (normalise, lowercase, tokens, stop words, Snowball stems), saved with
  an index so that queries are analysed as the documents were;
- chunking.py: `Document`, `Chunk`, `Chunking` (word windows with overlap, sentence/paragraph
  packing), `chunk_documents` (chunks carry their document's metadata);
- corpora.py: the BBC News and chatterbot corpora, JSONL files and folders as `Document`s;
- sparse.py: `SparseIndex` (BM25 robertson/lucene/atire/bm25l/bm25+ and TF-IDF; batched
  vectorised search with an exact pruned top-k; add and delete without re-analysis);
- dense.py: `DenseIndex` (cosine/dot/l2, exact top-k as one jitted product + lax.top_k, sharded
  over a mesh's `data` axis; int8 rows);
- hybrid.py: `fuse` (relative score fusion, reciprocal-rank fusion; alpha 0 = BM25, 1 = vectors);
- filters.py: `Filter` (equality, sets, ranges over chunk metadata, applied before the top k);
- index.py: `Index` (build, add, delete, search, save/load as a checked, atomically replaced
  folder that records analyzer, chunking and encoder);
- evaluation.py, evalsets.py: IR metrics of an index per query type; the shipped corpora's
  evaluation sets.
"""

from jaxllm.retrieval.analysis import Analyzer
from jaxllm.retrieval.chunking import Chunk, Chunking, Document, chunk_documents
from jaxllm.retrieval.corpora import load_corpus
from jaxllm.retrieval.dense import DenseIndex
from jaxllm.retrieval.filters import Filter
from jaxllm.retrieval.hybrid import fuse
from jaxllm.retrieval.index import Index, Result
from jaxllm.retrieval.sparse import Hits, SparseIndex, SparseParams

__all__ = ["Analyzer", "Chunk", "Chunking", "DenseIndex", "Document", "Filter", "Hits", "Index",
           "Result", "SparseIndex", "SparseParams", "chunk_documents", "fuse", "load_corpus"]
