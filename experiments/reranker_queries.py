"""Training queries for the cross-encoders, as JSONL for `jaxllm index train-reranker
--queries`: BBC: the headlines of the training articles (the index's own "train" set) and, with
--types, queries of the six test types made by the same rules from those same articles
(jaxllm.retrieval.evalsets.bbc_typed_training; no test article is used); chatterbot
(--corpus chatterbot): its training questions.

    python experiments/reranker_queries.py --out runs/bbc-train-queries.jsonl --types
    python experiments/reranker_queries.py --out runs/bbc-fit.jsonl --types --dev-out runs/bbc-dev.jsonl

--dev-out splits the training queries: those of every 5th training article (every 5th training
question for chatterbot) go to that file and not to --out, so that a setting chosen after the
reranker is trained (rerank_fusion.py's weight) is chosen on training queries the reranker has
not been fitted to. Still no test query in either file.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

DEV_EVERY = 5


def split(queries, key):
    """(fit, dev): dev holds the queries whose key (an article or a question) is every
    DEV_EVERY-th of the keys in order of first appearance."""
    order = {}
    for q in queries:
        order.setdefault(key(q), len(order))
    dev = [q for q in queries if order[key(q)] % DEV_EVERY == DEV_EVERY - 1]
    fit = [q for q in queries if order[key(q)] % DEV_EVERY != DEV_EVERY - 1]
    return fit, dev


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--corpus", default="bbc", choices=["bbc", "chatterbot"])
    ap.add_argument("--types", action="store_true", help="BBC: add the six typed queries")
    ap.add_argument("--dev-out", default=None,
                    help="hold out every 5th training article's (question's) queries here")
    args = ap.parse_args()

    from jaxllm.files import atomic_write
    from jaxllm.retrieval import load_corpus
    from jaxllm.retrieval.evalsets import bbc_sets, bbc_typed_training, chatterbot_sets

    docs = load_corpus(args.corpus)
    if args.corpus == "bbc":
        queries = bbc_sets(docs)["train"] + (bbc_typed_training(docs) if args.types else [])
    else:
        queries = chatterbot_sets(docs)["train"]
    if args.dev_out:
        queries, dev = split(queries, lambda q: q["relevant"][0] if args.corpus == "bbc"
                             else q["query"])
        atomic_write(args.dev_out, "".join(json.dumps(q) + "\n" for q in dev))
        print(f"{len(dev)} held-out queries -> {args.dev_out}:",
              dict(Counter(q["type"] for q in dev)))
    atomic_write(args.out, "".join(json.dumps(q) + "\n" for q in queries))
    print(f"{len(queries)} queries -> {args.out}:",
          dict(Counter(q["type"] for q in queries)))


if __name__ == "__main__":
    main()
