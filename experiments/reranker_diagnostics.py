"""Why the first cross-encoders reordered worse than the first stage: their training pairs.

    python experiments/reranker_diagnostics.py --bbc runs/bbc-minilm --chat runs/chat-minilm

The first training pairs took the negatives from BM25's top 30 (other documents) and the
positive from BM25's best chunk of a relevant document, else that document's first chunk. For
each corpus's training queries this prints: how often BM25 finds a relevant chunk in its top 30
(else the positive shares no ranked words with the query while every negative does); how often
a negative has the very text of a relevant chunk (the same pair labelled 1 and 0); and how
many chunk texts occur in more than one document. For BBC's test query types it prints how
often the matching text lies within the passage tokens the cross-encoder reads (max_len 128,
after "[CLS] query [SEP]"): substring queries (all 10 words) and keyword queries (the first).
No model is run for these; MiniLM's tokenizer only.

With --chat-reranker (a trained cross-encoder folder), why chatterbot's reranked order is worse
than its first stage, on the first --n test ("qa") and training questions, the first stage
hybrid alpha 1.0 (the vectors), its top --candidates reranked: how many candidates are relevant
(label balance); how many lists hold a relevant answer's text under another, non-relevant id
(duplicate answers); how many non-relevant candidates answer a near-duplicate question (the
same words after lowercasing and dropping punctuation, or word-set Jaccard >= 0.5: a correct
answer counted wrong), also among the training pairs' negatives; MRR@10 of the first stage, of
the reranker, of the reranker with query and passage swapped, and of a seeded random order.
"""

from __future__ import annotations

import argparse
import re

import numpy as np
from retrieval_quality import table


def training_pair_rows(index, corpus, queries, depth=30, negatives=3):
    texts_of: dict[str, set] = {}
    for c in index.chunks:
        texts_of.setdefault(c.metadata["doc_id"], set()).add(c.text)
    docs_of_text: dict[str, set] = {}
    for c in index.chunks:
        docs_of_text.setdefault(c.text, set()).add(c.metadata["doc_id"])
    hits = index.search_hits([q["query"] for q in queries], mode="bm25", k=depth)
    found = same = 0
    for q, h in zip(queries, hits):
        relevant = set(q["relevant"])
        docs = [index.chunks[i].metadata["doc_id"] for i in h.ids]
        found += any(d in relevant for d in docs)
        rel_texts = set().union(*(texts_of.get(d, set()) for d in relevant))
        negs = [index.chunks[i].text for i, d in zip(h.ids, docs) if d not in relevant][:negatives]
        same += any(t in rel_texts for t in negs)
    shared = sum(len(d) > 1 for d in docs_of_text.values())
    n = len(queries)
    return [corpus, n, f"{found} ({found / n:.0%})", f"{same} ({same / n:.0%})", shared]


def window_rows(index, sets, max_len=128):
    from jaxllm import pretrained

    tok = pretrained.load("all-minilm-l6-v2").tokenizer
    rows = []
    for kind in ("substring", "keyword"):
        inside = total = 0
        for q in (q for q in sets["types"] if q["type"] == kind):
            needle = q["query"] if kind == "substring" else q["query"].split()[0]
            chunk = next((c for c in index.chunks if c.metadata["doc_id"] == q["relevant"][0]
                          and needle.lower() in c.text.lower()), None)
            if chunk is None:
                continue
            at = chunk.text.lower().index(needle.lower())
            budget = max_len - min(len(tok.encode(q["query"])), max_len // 2) - 3
            total += 1
            inside += len(tok.encode(chunk.text[:at])) + len(tok.encode(needle)) <= budget
        rows.append(["bbc", kind, total, f"{inside} ({inside / max(total, 1):.1%})"])
    return rows


def _words(text):
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def _near(a, b):
    wa, wb = _words(a), _words(b)
    return wa == wb or len(wa & wb) / max(len(wa | wb), 1) >= 0.5


def _mrr(ranked_docs, relevant, k=10):
    return next((1 / (i + 1) for i, d in enumerate(ranked_docs[:k]) if d in relevant), 0.0)


def chat_rows(index, sets, reranker, n=100, candidates=10, alpha=1.0):
    from jaxllm.retrieval.rerank import training_pairs

    rows = []
    rng = np.random.default_rng(0)
    title = {c.metadata["doc_id"]: c.metadata["title"] for c in index.chunks}
    for name in ("qa", "train"):
        qs = sets[name][:n]
        hits = index.search_hits([q["query"] for q in qs], mode="hybrid", alpha=alpha,
                                 k=candidates)
        n_rel = with_rel = dup = near = near_lists = 0
        mrr = {"first stage": 0.0, "reranked": 0.0, "swapped": 0.0, "random": 0.0}
        for q, h in zip(qs, hits):
            relevant = set(q["relevant"])
            ids = [int(i) for i in h.ids]
            docs = [index.chunks[i].metadata["doc_id"] for i in ids]
            texts = [index.chunks[i].text for i in ids]
            rel = [d in relevant for d in docs]
            n_rel += sum(rel)
            with_rel += any(rel)
            rel_texts = {t for t, r in zip(texts, rel) if r}
            dup += any(t in rel_texts and not r for t, r in zip(texts, rel))
            close = [not r and _near(q["query"], title[d]) for d, r in zip(docs, rel)]
            near += sum(close)
            near_lists += any(close)
            score = reranker.score(q["query"], texts)
            swapped = np.array([reranker.score(t, [q["query"]])[0] for t in texts])
            for key, order in (("first stage", np.arange(len(ids))),
                               ("reranked", np.lexsort((np.arange(len(ids)), -score))),
                               ("swapped", np.lexsort((np.arange(len(ids)), -swapped))),
                               ("random", rng.permutation(len(ids)))):
                mrr[key] += _mrr([docs[i] for i in order], relevant) / len(qs)
        rows.append(["chatterbot", name, len(qs), f"{n_rel / len(qs):.2f}", with_rel, dup,
                     f"{near} ({near_lists} lists)"] + [f"{v:.3f}" for v in mrr.values()])
    pairs = training_pairs(index, sets["train"], 3, mode="hybrid", alpha=alpha)
    by_text = {c.text: c.metadata["title"] for c in index.chunks}
    noisy = sum(_near(q, by_text[t]) for q, _, negs in pairs for t in negs)
    noisy_pairs = sum(any(_near(q, by_text[t]) for t in negs) for q, _, negs in pairs)
    pair_row = ["chatterbot", len(pairs), 3 * len(pairs), f"{noisy} ({noisy_pairs} pairs)"]
    return rows, pair_row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bbc", default=None)
    ap.add_argument("--chat", default=None)
    ap.add_argument("--chat-reranker", default=None, help="a cross-encoder folder: the chatterbot "
                    "reranking checks")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--candidates", type=int, default=10)
    ap.add_argument("--only-chat", action="store_true", help="only the chatterbot reranking checks")
    args = ap.parse_args()

    from jaxllm.platform import configure_cpu

    configure_cpu()
    from jaxllm.retrieval import Index, load_corpus
    from jaxllm.retrieval.evalsets import eval_sets

    if args.chat_reranker:
        from jaxllm.retrieval.rerank import CrossEncoder

        index = Index.load(args.chat)
        rows, pair_row = chat_rows(index, eval_sets("chatterbot", load_corpus("chatterbot")),
                                   CrossEncoder.load(args.chat_reranker), args.n,
                                   args.candidates)
        print(f"chatterbot reranking, hybrid alpha 1.0 top {args.candidates}:\n")
        print(table(rows, ["corpus", "questions", "n", "relevant per list",
                           "lists with a relevant answer", "relevant text under another id", "non-relevant answers to a near-duplicate question",
                           "MRR@10 first stage", "reranked", "query/passage swapped",
                           "random order"]))
        print("\nTraining pairs (hybrid alpha 1.0, 3 negatives): negatives answering a "
              "near-duplicate question:\n")
        print(table([pair_row], ["corpus", "pairs", "negatives", "near-duplicate question"]))
        if args.only_chat:
            return
    pair_rows, windows = [], []
    for corpus, path in (("bbc", args.bbc), ("chatterbot", args.chat)):
        if path is None:
            continue
        index = Index.load(path)
        sets = eval_sets(corpus, load_corpus(corpus))
        pair_rows.append(training_pair_rows(index, corpus, sets["train"]))
        if corpus == "bbc":
            windows = window_rows(index, sets)
    header = ["corpus", "training queries", "BM25 finds a relevant chunk",
              "a negative has a relevant chunk's text", "chunk texts in >1 document"]
    out = "Training pairs mined with BM25 (top 30, 3 negatives):\n\n" + table(pair_rows, header)
    if windows:
        out += "\n\nMatching text within the passage tokens the cross-encoder reads (max_len 128):"
        out += "\n\n" + table(windows, ["corpus", "query type", "queries", "inside"])
    print(out)


if __name__ == "__main__":
    main()
