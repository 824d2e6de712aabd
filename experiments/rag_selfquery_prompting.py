"""Self-querying and prompting patterns with SmolLM2-135M-Instruct on BBC News.

    flock /tmp/jaxllm-bench.lock python experiments/rag_selfquery_prompting.py \
        --requests 20 --headlines 24 --seeds 3 [--append]

Self-querying: for --requests BBC articles (seeded), the request "<category> stories about
<headline>" (with a metadata cue) and "stories about <headline>" (without); the filter the model
extracts under the JSON-schema constraint (rag/selfquery.py) is scored: right category, no
filter, or a wrong one. Retrieval gain: hit@10 and MRR@10 of the article's chunks for the
extracted query with the extracted filter against the plain request without a filter (BM25,
128-word windows).

Prompting: BBC category classification from the headline (5 labels) by zero-shot, few-shot (5
examples drawn at random from other articles) and chain-of-thought, each over --headlines
headlines drawn per seed; a reply counts as the first label it names. Accuracy is the mean over
--seeds seeds, with the standard deviation across seeds.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from rag_planted import append, table  # noqa: E402

LABELS = ("business", "entertainment", "politics", "sport", "tech")
TASK = ("Classify the news headline into one category: business, entertainment, politics, "
        "sport or tech. Reply with the category.")


def label_of(reply: str):
    found = [(m.start(), lab) for lab in LABELS for m in re.finditer(lab, reply.lower())]
    return min(found)[1] if found else None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=20)
    p.add_argument("--headlines", type=int, default=24)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--append", action="store_true")
    args = p.parse_args()

    from jaxllm import pretrained
    from jaxllm.metrics.ir import evaluate
    from jaxllm.rag.patterns import chain_of_thought, completer, few_shot, zero_shot
    from jaxllm.rag.selfquery import self_query
    from jaxllm.retrieval import Chunking, Index, load_corpus

    docs = load_corpus("bbc")
    lm = pretrained.load("smollm2-135m-instruct")
    index = Index.build(docs, chunking=Chunking("window", 128, 32))
    rng = random.Random(0)
    picked = rng.sample(docs, args.requests)
    out = []

    counts = {"cue": [0, 0, 0], "no cue": [0, 0, 0]}  # right, none, wrong
    run_plain, run_sq, qrels = {}, {}, {}
    for i, d in enumerate(picked):
        cat = d.metadata["category"]
        qrels[str(i)] = {c.id: 1 for c in index.chunks if c.metadata["doc_id"] == d.id}
        for setting, request in (("cue", f"{cat} stories about {d.title}"),
                                 ("no cue", f"stories about {d.title}")):
            sq = self_query(lm, index, request)
            got = sq.filter.get("category")
            counts[setting][0 if got == cat else 1 if got is None else 2] += 1
            if setting == "cue":
                run_plain[str(i)] = {r.id: r.score for r in index.search(request, k=10)}
                hits = index.search(sq.query, k=10, filter=sq.filter or None) or \
                    index.search(request, k=10)
                run_sq[str(i)] = {r.id: r.score for r in hits}
            print(i, setting, cat, sq.filter, sq.query[:50], flush=True)
    n = args.requests
    out.append(table([[s, f"{c[0] / n:.2f}", f"{c[1] / n:.2f}", f"{c[2] / n:.2f}"]
                      for s, c in counts.items()],
                     ["request", "right category", "no filter", "wrong category"]))
    plain = evaluate(run_plain, qrels, ["hit@10", "mrr@10"])
    sq = evaluate(run_sq, qrels, ["hit@10", "mrr@10"])
    out.append(table([["request as is, no filter", f"{plain['hit@10']:.3f}",
                       f"{plain['mrr@10']:.3f}"],
                      ["extracted query + filter", f"{sq['hit@10']:.3f}", f"{sq['mrr@10']:.3f}"]],
                     [f"retrieval ({n} requests with a cue)", "hit@10", "MRR@10"]))

    llm = completer(lm, max_new_tokens=12)
    cot = completer(lm, max_new_tokens=64)
    acc = {"zero-shot": [], "few-shot (5 random)": [], "chain-of-thought": []}
    for seed in range(args.seeds):
        r = random.Random(seed)
        sample = r.sample(docs, args.headlines + 5)
        shots, test = sample[:5], sample[5:]
        examples = [(d.title, d.metadata["category"]) for d in shots]
        right = {k: 0 for k in acc}
        for d in test:
            gold = d.metadata["category"]
            right["zero-shot"] += label_of(zero_shot(llm, TASK, d.title)) == gold
            right["few-shot (5 random)"] += label_of(few_shot(llm, TASK, examples, d.title)) == gold
            right["chain-of-thought"] += label_of(chain_of_thought(cot, d.title, TASK)[0]) == gold
        for k in acc:
            acc[k].append(right[k] / len(test))
        print(seed, {k: v[-1] for k, v in acc.items()}, flush=True)
    out.append(table([[k, f"{np.mean(v):.3f}", f"{np.std(v):.3f}", " ".join(f"{x:.2f}" for x in v)]
                      for k, v in acc.items()],
                     [f"pattern ({args.headlines} headlines x {args.seeds} seeds)", "accuracy",
                      "std over seeds", "per seed"]))
    text = "\n\n".join(out)
    print(text)
    if args.append:
        append("Self-querying and prompting patterns (SmolLM2-135M-Instruct, BBC)", text)


if __name__ == "__main__":
    main()
