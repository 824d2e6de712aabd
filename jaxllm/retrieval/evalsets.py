"""Evaluation sets built from the shipped corpora: deterministic, saved with an index.

A query is {"id", "query", "relevant": [document ids], "type"}; every chunk of a relevant
document is relevant.

BBC News ("bbc"), articles numbered in corpus order (category folders, then file names):
- "known-item": the headline of every 5th article (0, 5, 10, ...; 445 queries), its article the
  one relevant document. The headline is not indexed (it is the title), so it must match the body.
- six query types a RAG system meets, 89 articles each (article i with i % 25 == the type's
  offset below, so no two types and no known-item query share an article), made by rules from
  the article itself (no model writes them):
    web       web-search style: the headline lowercased, stop words out, first 4 words
    concept   concept seeking: the lead sentence without names (capitalised words after its
              first) and numbers, i.e. what happened, not who
    fact      fact seeking: the first sentence holding a number, the number replaced by "what",
              at most 12 words around it, ending in "?"
    keyword   the 2 rarest words (4+ letters) of the body: lowest document frequency in the
              corpus, ties by the word
    misspell  the web query with a typo in every word of 5+ letters (two middle letters swapped)
    substring an exact passage: the 10 words in the middle of the body
- "train": the headlines of the remaining articles (for fine-tuning a reranker, choosing alpha).
  `bbc_typed_training` makes queries of the six types from those same articles (not saved with
  an index), to choose a setting per type.

chatterbot ("chatterbot"): "qa" (the even-numbered distinct questions; relevant: every answer
given to that question) and "train" (the odd-numbered ones).
"""

from __future__ import annotations

import re
from collections import Counter

from jaxllm.retrieval.analysis import ENGLISH_STOP_WORDS
from jaxllm.retrieval.chunking import Document

KNOWN_ITEM_EVERY = 5
TYPE_EVERY = 25
TYPE_OFFSETS = {"web": 1, "concept": 2, "fact": 3, "keyword": 4, "misspell": 6, "substring": 7}
TYPES = tuple(TYPE_OFFSETS)
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'-]*")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_NUMBER = re.compile(r"^\d[\d,.]*%?$")
_STOP = set(ENGLISH_STOP_WORDS)


def _web(title: str) -> str:
    words = [w.lower().strip("'") for w in _WORD.findall(title)]
    return " ".join([w for w in words if w not in _STOP][:4])


def _concept(text: str) -> str:
    lead = _SENTENCE.split(text.strip(), maxsplit=1)[0]
    words = lead.split()
    kept = [w for i, w in enumerate(words)
            if not any(ch.isdigit() for ch in w) and (i == 0 or not w[:1].isupper())]
    return " ".join(kept).rstrip(".")


def _fact(text: str) -> str | None:
    for sentence in _SENTENCE.split(text):
        words = sentence.split()
        at = next((i for i, w in enumerate(words) if _NUMBER.match(w.strip(".,;:()\"'"))), None)
        if at is not None and len(words) >= 6:
            words[at] = "what"
            lo = max(0, at - 6)
            return " ".join(words[lo: lo + 12]).rstrip(".,;:") + "?"
    return None


def _typo(word: str) -> str:
    if len(word) < 5:
        return word
    i = len(word) // 2
    return word[:i - 1] + word[i] + word[i - 1] + word[i + 1:]


def _keywords(text: str, df: Counter) -> str:
    words = dict.fromkeys(w.lower() for w in _WORD.findall(text) if len(w) > 3)
    rare = sorted(words, key=lambda w: (df[w], w))[:2]
    return " ".join(rare)


def _substring(text: str) -> str:
    words = text.split()
    mid = max(0, len(words) // 2 - 5)
    return " ".join(words[mid: mid + 10])


def _role(i: int) -> str:
    """What article i of the corpus serves: "known-item", a query type, or "train"."""
    if i % KNOWN_ITEM_EVERY == 0:
        return "known-item"
    return {o: t for t, o in TYPE_OFFSETS.items()}.get(i % TYPE_EVERY, "train")


def _document_frequencies(docs: list[Document]) -> Counter:
    return Counter(w for d in docs for w in {x.lower() for x in _WORD.findall(d.text)})


def bbc_sets(docs: list[Document]) -> dict[str, list[dict]]:
    df = _document_frequencies(docs)
    sets: dict[str, list[dict]] = {"known-item": [], "types": [], "train": []}
    for i, d in enumerate(docs):
        role = _role(i)
        if role == "known-item":
            sets["known-item"].append({"id": f"ki{i}", "query": d.title, "relevant": [d.id],
                                       "type": "known-item"})
        elif role == "train":
            sets["train"].append({"id": f"tr{i}", "query": d.title, "relevant": [d.id],
                                  "type": "train"})
        else:
            sets["types"].append({"id": f"{role}{i}", "query": _typed_query(role, d, df),
                                  "relevant": [d.id], "type": role})
    return sets


def _typed_query(kind: str, d: Document, df: Counter) -> str:
    if kind == "web":
        return _web(d.title)
    if kind == "concept":
        return _concept(d.text)
    if kind == "fact":
        return _fact(d.text) or _concept(d.text)
    if kind == "keyword":
        return _keywords(d.text, df)
    if kind == "misspell":
        return " ".join(_typo(w) for w in _web(d.title).split())
    return _substring(d.text)


def bbc_typed_training(docs: list[Document]) -> list[dict]:
    """Training queries of the six types (for choosing a setting per type, never on the test
    queries): the same rules applied to the articles of the "train" set, the j-th of them
    (in corpus order) getting type TYPES[j % 6]; ids "train-<type><article number>"."""
    df = _document_frequencies(docs)
    train = [i for i in range(len(docs)) if _role(i) == "train"]
    out = []
    for j, i in enumerate(train):
        kind = TYPES[j % len(TYPES)]
        out.append({"id": f"train-{kind}{i}", "query": _typed_query(kind, docs[i], df),
                    "relevant": [docs[i].id], "type": kind})
    return out


def chatterbot_sets(docs: list[Document]) -> dict[str, list[dict]]:
    answers: dict[str, list[str]] = {}
    for d in docs:
        if d.title:
            answers.setdefault(d.title, []).append(d.id)
    sets: dict[str, list[dict]] = {"qa": [], "train": []}
    for i, (q, ids) in enumerate(answers.items()):
        name = "qa" if i % 2 == 0 else "train"
        sets[name].append({"id": f"{name}{i}", "query": q, "relevant": ids, "type": name})
    return sets


def eval_sets(corpus: str, docs: list[Document]) -> dict[str, list[dict]]:
    """The evaluation sets of a shipped corpus by name; none for other corpora."""
    if corpus == "bbc":
        return bbc_sets(docs)
    if corpus == "chatterbot":
        return chatterbot_sets(docs)
    return {}


def attach_eval_sets(index, corpus: str, docs: list[Document] | None = None) -> None:
    """Store the corpus's evaluation sets in the index (saved with it)."""
    if corpus not in ("bbc", "chatterbot"):
        return
    if docs is None:
        from jaxllm.retrieval.corpora import load_corpus

        docs = load_corpus(corpus)
    index.extra["eval_sets"] = eval_sets(corpus, docs)
