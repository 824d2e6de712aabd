"""How often is the chatterbot first stage's wrong top answer really a mistake, and which?

    python experiments/chatterbot_misses.py --index /tmp/retrieval5/chat-minilm \
        --cache /tmp/lead/chat-scores-450.json [more rerank_fusion.py caches ...]

For every test question ("qa" set) whose first-stage top candidate (the candidate lists cached by
rerank_fusion.py --cache) is not relevant: is that answer's text (lower-cased, punctuation
removed) equal to a relevant answer's (a twin filed under another question), or to the query
itself (an echo: chatterbot's conversations have several turns, so a question is often also
indexed as the answer to the turn before it), and how many words does its question share with
the query (Jaccard)? Then, as a diagnostic (not a system: it reads the query's text against the
candidates'), the first stage's MRR@10 with every echo moved to the end of its list, and for
each cache, where its reranker alone puts the echo among the 10 candidates (rank 0 = first).
With --weights (one per cache: the w rerank_fusion.py chose for it), the MRR@10 of each cache's
fused order against the first stage's on the questions with an echo among their candidates and
on the others: is a reranker's gain only its demotion of the echo?
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
    ap.add_argument("--cache", required=True, nargs="+", help="rerank_fusion.py's --cache files")
    ap.add_argument("--weights", type=float, nargs="+", default=None,
                    help="the fused weight w of each cache, in the same order")
    args = ap.parse_args()
    if args.weights is not None and len(args.weights) != len(args.cache):
        ap.error(f"--weights needs one w per --cache file ({len(args.cache)}), got "
                 f"{len(args.weights)}")
    from rerank_fusion import metrics

    from jaxllm.retrieval import Index

    idx = Index.load(args.index)
    qa = idx.extra["eval_sets"]["qa"]
    doc = {c.metadata["doc_id"]: c for c in idx.chunks}
    stores = [json.loads(open(path).read()) for path in args.cache]
    keys_of = {}  # query id -> its cache keys ("id|fusion|alpha|pool|candidates")
    for k in stores[0]:
        keys_of.setdefault(k.split("|")[0], []).append(k)
    entries = []
    for q in qa:
        keys = keys_of.get(q["id"], [])
        assert len(keys) == 1, f"{q['id']}: {len(keys)} candidate lists in {args.cache[0]}"
        entries.append([s[keys[0]] for s in stores])
    wrong = twins = echoes = 0
    sims = []
    for q, (e, *_) in zip(qa, entries):
        top = idx.chunks[e["ids"][0]]
        if top.metadata["doc_id"] in q["relevant"]:
            continue
        wrong += 1
        twins += any(norm(top.text) == norm(doc[r].text) for r in q["relevant"] if r in doc)
        echoes += norm(top.text) == norm(q["query"])
        a, b = set(norm(q["query"]).split()), set(norm(top.metadata["title"]).split())
        sims.append(len(a & b) / max(1, len(a | b)))
    sims = np.array(sims)
    print(f"{len(qa)} test questions; top-1 wrong: {wrong}; its text equals a relevant answer's: "
          f"{twins}; equals the query's (an echo): {echoes}; its question's word Jaccard with the "
          f"query >= 0.5: {int((sims >= .5).sum())}, >= 0.8: {int((sims >= .8).sum())}")

    echo = [[norm(idx.chunks[i].text) == norm(q["query"]) for i in e["ids"]]
            for q, (e, *_) in zip(qa, entries)]
    with_echo = [n for n, x in enumerate(echo) if any(x)]
    demoted = []
    for (e, *_), x in zip(entries, echo):
        order = [j for j in range(len(x)) if not x[j]] + [j for j in range(len(x)) if x[j]]
        demoted.append({k: [e[k][j] for j in order] for k in ("ids", "first", "rerank")})
    first = [e for e, *_ in entries]
    print(f"test questions with an echo among the 10 candidates: {len(with_echo)} (first: "
          f"{sum(echo[n][0] for n in with_echo)}); first stage MRR@10 "
          f"{metrics(idx, qa, first, [None] * len(qa))['mrr@10']:.3f}, with the echoes moved "
          f"last {metrics(idx, qa, demoted, [None] * len(qa))['mrr@10']:.3f}")
    for k, (path, store) in enumerate(zip(args.cache, stores)):
        ranks = [int(np.argsort(-np.array(entries[n][k]["rerank"]), kind="stable").tolist()
                     .index(echo[n].index(True))) for n in with_echo]
        print(f"{store.get('reranker', 'cross-encoder')} ({path}): the echo's rank alone, mean "
              f"{np.mean(ranks):.2f}; first {np.mean(np.array(ranks) == 0):.2f}, in the last "
              f"three {np.mean(np.array(ranks) >= 7):.2f}")
    if args.weights is None:
        return
    others = sorted(set(range(len(qa))) - set(with_echo))
    for k, (path, w) in enumerate(zip(args.cache, args.weights)):
        parts = []
        for name, ns in (("with an echo", with_echo), ("without", others)):
            qs, es = [qa[n] for n in ns], [entries[n][k] for n in ns]
            base = metrics(idx, qs, es, [None] * len(ns))["mrr@10"]
            fused = metrics(idx, qs, es, [w] * len(ns))["mrr@10"]
            parts.append(f"{name} ({len(ns)}) {base:.3f} -> {fused:.3f}")
        print(f"{path} fused at w = {w}: MRR@10, first stage -> fused: {'; '.join(parts)}")


if __name__ == "__main__":
    main()
