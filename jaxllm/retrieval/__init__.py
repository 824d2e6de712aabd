"""Retrieval: analysis, chunking, sparse (BM25/TF-IDF) and dense search, hybrid fusion, filters,
reranking and index files.

- analysis.py: `Analyzer` (normalise, lowercase, tokens, stop words, Snowball stems), saved with
  an index so that queries are analysed as the documents were;
- chunking.py: `Document`, `Chunk`, `Chunking` (word windows with overlap, sentence/paragraph
  packing), `chunk_documents` (chunks carry their document's metadata);
- corpora.py: the BBC News and chatterbot corpora, JSONL files and folders as `Document`s;
- sparse.py: `SparseIndex` (BM25 robertson/lucene/atire/bm25l/bm25+ and TF-IDF; batched
  vectorised search with an exact pruned top-k; add and delete without re-analysis).
"""

from jaxllm.retrieval.analysis import Analyzer
from jaxllm.retrieval.chunking import Chunk, Chunking, Document, chunk_documents
from jaxllm.retrieval.corpora import load_corpus
from jaxllm.retrieval.sparse import Hits, SparseIndex, SparseParams

__all__ = ["Analyzer", "Chunk", "Chunking", "Document", "Hits", "SparseIndex", "SparseParams",
           "chunk_documents", "load_corpus"]
