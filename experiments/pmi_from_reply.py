"""The LLM reply reranker's cached scores turned into the PMI reranker's, for rerank_fusion.py.

    python experiments/rerank_fusion.py --chat IDX --reranker llm-reply ... --cache reply.json
    python experiments/pmi_from_reply.py --index IDX --reply reply.json --out pmi.json
    python experiments/rerank_fusion.py --chat IDX --reranker llm-pmi ... --cache pmi.json

rerank.LLMReranker(kind="pmi") scores a candidate as its reply score (kind "reply": the mean
log p of the passage as SmolLM2's reply to the query) minus the passage's prior (the same
reply after an empty user turn). The reply scores of every candidate list are in the reply
run's cache already; this computes each distinct candidate's prior once, with
LLMReranker.prior_scores, and writes the difference as a cache of the PMI reranker, so the
fusion run scores nothing again (it still checks a few queries against Index.search with the
PMI reranker itself).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--index", required=True, help="the index the reply cache was made on")
    ap.add_argument("--reply", required=True, help="rerank_fusion.py --reranker llm-reply's cache")
    ap.add_argument("--out", required=True, help="the PMI reranker's cache to write")
    args = ap.parse_args()
    store = json.loads(Path(args.reply).read_text())
    if store.get("reranker") != "LLM reply reranker":
        ap.error(f"{args.reply} holds the scores of the {store.get('reranker', 'cross-encoder')}"
                 ", not the LLM reply reranker")

    from jaxllm.platform import configure_cpu

    configure_cpu()
    from jaxllm.retrieval import Index
    from jaxllm.retrieval.rerank import LLMReranker

    index = Index.load(args.index)
    lists = {k: e for k, e in store.items() if k != "reranker"}
    texts = sorted({index.chunks[i].text for e in lists.values() for i in e["ids"]})
    start = time.perf_counter()
    llm = LLMReranker(kind="pmi")
    llm.prior_scores(texts)
    print(f"{len(texts)} distinct candidates' priors in {time.perf_counter() - start:.0f} s")
    out = {"reranker": "LLM PMI reranker"}
    for k, e in lists.items():
        prior = [llm.priors[index.chunks[i].text] for i in e["ids"]]
        out[k] = dict(e, rerank=[r - p for r, p in zip(e["rerank"], prior)])
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(out))
    tmp.replace(args.out)
    print(f"{len(lists)} candidate lists -> {args.out}")


if __name__ == "__main__":
    main()
