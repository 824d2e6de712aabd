"""Training queries for the BBC cross-encoder, as JSONL for `jaxllm index train-reranker
--queries`: the headlines of the training articles (the index's own "train" set) and, with
--types, queries of the six test types made by the same rules from those same articles
(jaxllm.retrieval.evalsets.bbc_typed_training; no test article is used).

    python experiments/reranker_queries.py --out runs/bbc-train-queries.jsonl --types
"""

from __future__ import annotations

import argparse
import json
from collections import Counter


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--types", action="store_true", help="add the six typed queries")
    args = ap.parse_args()

    from jaxllm.files import atomic_write
    from jaxllm.retrieval import load_corpus
    from jaxllm.retrieval.evalsets import bbc_sets, bbc_typed_training

    docs = load_corpus("bbc")
    queries = bbc_sets(docs)["train"] + (bbc_typed_training(docs) if args.types else [])
    atomic_write(args.out, "".join(json.dumps(q) + "\n" for q in queries))
    print(f"{len(queries)} queries -> {args.out}:",
          dict(Counter(q["type"] for q in queries)))


if __name__ == "__main__":
    main()
