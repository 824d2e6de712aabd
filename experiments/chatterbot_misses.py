"""How often is the chatterbot first stage's wrong top answer really a mistake?

    python experiments/chatterbot_misses.py --index /tmp/retrieval5/chat-minilm --cache /tmp/lead/chat-scores-450.json

For every test question ("qa" set) whose first-stage top candidate (the candidate lists cached by
rerank_fusion.py --cache) is not relevant: is that answer's text (lower-cased, punctuation
removed) equal to a relevant answer's, and how many words does its question share with the
query (Jaccard)? Counts only; label noise bounds what any reranker can gain.
"""

from __future__ import annotations

import argparse
import json
import re

import numpy as np


def norm(s: str) -> str:
    return re.sub(r"\W+", " ", s.lower()).strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--index", required=True)
    ap.add_argument("--cache", required=True, help="rerank_fusion.py's --cache file")
    args = ap.parse_args()
    from jaxllm.retrieval import Index

    idx = Index.load(args.index)
    qa = idx.extra["eval_sets"]["qa"]
    doc = {c.metadata["doc_id"]: c for c in idx.chunks}
    store = json.loads(open(args.cache).read())
    wrong = twins = 0
    sims = []
    for q in qa:
        keys = [k for k in store if k.startswith(q["id"] + "|")]
        if not keys:
            continue
        top = idx.chunks[store[keys[0]]["ids"][0]]
        if top.metadata["doc_id"] in q["relevant"]:
            continue
        wrong += 1
        twins += any(norm(top.text) == norm(doc[r].text) for r in q["relevant"] if r in doc)
        a, b = set(norm(q["query"]).split()), set(norm(top.metadata["title"]).split())
        sims.append(len(a & b) / max(1, len(a | b)))
    sims = np.array(sims)
    print(f"{len(qa)} test questions; top-1 wrong: {wrong}; its text equals a relevant answer's: "
          f"{twins}; its question's word Jaccard with the query >= 0.5: {int((sims >= .5).sum())}, "
          f">= 0.8: {int((sims >= .8).sum())}")


if __name__ == "__main__":
    main()
