"""Search a retrieval index (built with `jaxllm index build`).

  jaxllm search bbc.idx "rugby world cup" [-k 10]
  jaxllm search bbc.idx "oil prices" --mode hybrid --alpha 0.5 --filter category=business
  jaxllm search bbc.idx "new phones" --mode dense --filter "category=tech|business" --json

--mode: bm25, dense or hybrid (alpha: 0 = BM25 only, 1 = vectors only; --fusion rsf, dbsf or rrf).
--filter FIELD=VALUE, FIELD=A|B, FIELD!=VALUE, FIELD>=NUMBER (repeatable; all must hold) is
applied before the top k. --docs-first N searches the chunks of the N best documents by
abstract only. --rerank cross|llm reorders the top --candidates with a reranker; with
--rerank-weight W (in [0, 1]) by W * the reranker's score + (1 - W) * the first stage's, each
min-max normalised over the candidates (0 = the first stage's order, 1 = the reranker's).
"""

from __future__ import annotations

import argparse


def add_parser(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("index")
    p.add_argument("query")
    p.add_argument("--mode", default="bm25", choices=["bm25", "dense", "hybrid"])
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--fusion", default="rsf", choices=["rsf", "dbsf", "rrf"])
    p.add_argument("--filter", action="append", default=None, metavar="COND")
    p.add_argument("--docs-first", type=int, default=None, metavar="N")
    p.add_argument("--rerank", default=None, choices=["cross", "llm"])
    p.add_argument("--candidates", type=int, default=50)
    p.add_argument("--rerank-weight", type=float, default=None, metavar="W",
                   help="fuse the reranker's scores with the first stage's (0-1; default: the "
                        "reranker's order alone)")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--json", action="store_true", help="one JSON object per result")


def run(args) -> int:
    import json

    from jaxllm.retrieval import Index

    from jaxllm.retrieval.hybrid import check_rerank_weight

    check_rerank_weight(args.rerank_weight, args.rerank)  # before the index and model load
    index = Index.load(args.index)
    reranker = None
    if args.rerank:
        from jaxllm.retrieval.rerank import load_reranker

        reranker = load_reranker(args.rerank, index=index)
    results = index.search(args.query, mode=args.mode, k=args.k, alpha=args.alpha,
                           fusion=args.fusion, filter=args.filter, docs_first=args.docs_first,
                           reranker=reranker, candidates=args.candidates,
                           rerank_weight=args.rerank_weight)
    for rank, r in enumerate(results, 1):
        if args.json:
            print(json.dumps({"rank": rank, "id": r.id, "score": r.score, "text": r.text,
                              "metadata": r.metadata}, ensure_ascii=False))
        else:
            title = r.metadata.get("title") or r.metadata.get("doc_id")
            snippet = " ".join(r.text.split())[:160]
            print(f"{rank:>3}. {r.score:9.4f}  {r.id}  {title}\n       {snippet}")
    if not results:
        print("no results")
    return 0
