"""Question/reply training data for a cross-encoder from ShareGPT's first turns: a corpus to
index and training queries for `jaxllm index train-reranker`, so that a reranker can learn what
a reply to a question looks like from thousands of pairs instead of chatterbot's 417.

    python experiments/sharegpt_reranker_pairs.py --corpus runs/sg-corpus.jsonl --queries runs/sg-queries.jsonl
    jaxllm index build --corpus runs/sg-corpus.jsonl --out runs/sg-minilm --dense all-minilm-l6-v2 --chunk-kind none
    jaxllm index train-reranker runs/sg-minilm --queries runs/sg-queries.jsonl --alpha 1.0 --steps 1500 --out runs/sg-reranker
    jaxllm index train-reranker runs/chat-minilm --queries runs/chat-fit.jsonl --alpha 1.0 --init runs/sg-reranker --steps 150 --out runs/chat-reranker-sg

(RESULTS.md, "chatterbot: a cross-encoder trained first on ShareGPT's first turns": all 5,830
conversations kept, the recipe above; --limit 3000 with 600 steps was the smaller run.)

Each kept conversation gives two documents: its first reply ("r<n>", cut to --reply-words
words: the cross-encoder reads 128 tokens with the query) and its first question ("q<n>"), and
one query (the question, relevant: "r<n>"). The questions are indexed too because chatterbot's
index holds its questions as the answers of the turns before them, and its dense first stage
puts a question's own text first (RESULTS.md, "a third of the first stage's misses are the
query's own text"): with the questions in this corpus, the negatives mined for training include
the query's own text, as the candidates at search time do. Kept: a first question of 3 to
--max-words words, mostly ASCII letters (English), not seen before, with a reply of at least 5
words. No chatterbot text is read.
"""

from __future__ import annotations

import argparse
import json


def ascii_share(text: str) -> float:
    return sum(c.isascii() for c in text) / max(len(text), 1)


def first_turns(limit: int, max_words: int, reply_words: int) -> list[tuple[str, str]]:
    """(question, reply) of ShareGPT conversations' first turns, filtered as the module says."""
    from jaxllm.data.chat import sharegpt_conversation, sharegpt_file, sharegpt_records

    text = sharegpt_file().read_text(encoding="utf-8", errors="replace")
    seen, out = set(), []
    for record in sharegpt_records(text):
        messages = sharegpt_conversation(record)
        if messages is None:
            continue
        question = " ".join(messages[0]["content"].split())
        reply = messages[1]["content"].split()
        key = question.lower()
        if not 3 <= len(question.split()) <= max_words or len(reply) < 5 or key in seen \
                or ascii_share(question) < 0.95 or ascii_share(" ".join(reply)) < 0.95:
            continue
        seen.add(key)
        out.append((question, " ".join(reply[:reply_words])))
        if len(out) == limit:
            break
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True, help="the JSONL corpus to write (replies, questions)")
    ap.add_argument("--queries", required=True, help="the JSONL training queries to write")
    ap.add_argument("--limit", type=int, default=0, help="conversations to keep (0: all)")
    ap.add_argument("--max-words", type=int, default=40, help="longest first question kept")
    ap.add_argument("--reply-words", type=int, default=64, help="words of each reply kept")
    args = ap.parse_args()
    if args.limit < 0 or args.max_words < 3 or args.reply_words < 5:
        ap.error("--limit must be >= 0 (0: all), --max-words >= 3 and --reply-words >= 5")

    from jaxllm.files import atomic_write

    pairs = first_turns(args.limit, args.max_words, args.reply_words)
    docs = [{"id": f"r{n}", "text": r} for n, (_, r) in enumerate(pairs)]
    docs += [{"id": f"q{n}", "text": q} for n, (q, _) in enumerate(pairs)]
    queries = [{"id": f"sg{n}", "query": q, "relevant": [f"r{n}"], "type": "train"}
               for n, (q, _) in enumerate(pairs)]
    atomic_write(args.corpus, "".join(json.dumps(d) + "\n" for d in docs))
    atomic_write(args.queries, "".join(json.dumps(q) + "\n" for q in queries))
    print(f"{len(pairs)} conversations: {len(docs)} documents -> {args.corpus}, "
          f"{len(queries)} queries -> {args.queries}")


if __name__ == "__main__":
    main()
