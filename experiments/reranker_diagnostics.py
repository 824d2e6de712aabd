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
No model is run; MiniLM's tokenizer only.
"""

from __future__ import annotations

import argparse

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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bbc", default=None)
    ap.add_argument("--chat", default=None)
    args = ap.parse_args()

    from jaxllm.platform import configure_cpu

    configure_cpu()
    from jaxllm.retrieval import Index, load_corpus
    from jaxllm.retrieval.evalsets import eval_sets

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
