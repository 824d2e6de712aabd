"""Evaluation sets built from the shipped corpora, deterministic, saved with an index.

- "known-item" (BBC): a headline is the query, its article the one relevant document (so every
  chunk of it is relevant); the headlines of every 5th article (445 queries). The headline is
  not part of the indexed text, so the query has to match the body.
- "qa" (chatterbot): a question is the query, the answers given to it (one document each) the
  relevant documents; every distinct question, in order of first appearance.

Queries: {"id", "query", "relevant": [document ids], "type"}.
"""

from __future__ import annotations

from jaxllm.retrieval.chunking import Document

EVERY = 5  # known-item: the articles 0, 5, 10, ... of the corpus order


def known_item(docs: list[Document]) -> list[dict]:
    return [{"id": f"ki{i}", "query": d.title, "relevant": [d.id], "type": "known-item"}
            for i, d in enumerate(docs) if i % EVERY == 0 and d.title]


def question_answer(docs: list[Document]) -> list[dict]:
    answers: dict[str, list[str]] = {}
    for d in docs:
        answers.setdefault(d.title, []).append(d.id)
    return [{"id": f"qa{i}", "query": q, "relevant": ids, "type": "qa"}
            for i, (q, ids) in enumerate(answers.items()) if q]


def eval_sets(corpus: str, docs: list[Document]) -> dict[str, list[dict]]:
    """The evaluation sets of a shipped corpus by name; none for other corpora."""
    if corpus == "bbc":
        return {"known-item": known_item(docs)}
    if corpus == "chatterbot":
        return {"qa": question_answer(docs)}
    return {}


def attach_eval_sets(index, corpus: str, docs: list[Document] | None = None) -> None:
    """Store the corpus's evaluation sets in the index (saved with it)."""
    if corpus not in ("bbc", "chatterbot"):
        return
    if docs is None:
        from jaxllm.retrieval.corpora import load_corpus

        docs = load_corpus(corpus)
    index.extra["eval_sets"] = eval_sets(corpus, docs)
