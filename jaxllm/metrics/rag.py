"""Faithfulness and relevancy of an answer, and AUROC for uncertainty scores.

Exactly how each is computed:

- `split_sentences(text)`: runs of text ended by . ! ? (or the end), whitespace collapsed.
- `content_words(text)`: lowercase runs of letters and digits, minus the STOP_WORDS below.
- `faithfulness_lexical(answer, sources, threshold=0.5)`: a sentence of the answer is supported
  when at least `threshold` of its distinct content words occur among the sources' content
  words (a sentence without content words is supported); the score is the supported share of
  the answer's sentences (0.0 for an answer without sentences).
- `faithfulness(answer, sources, judge)`: the mean over the answer's sentences of
  judge(sentence, context) in [0, 1], the context being the sources joined by blank lines
  (rag/judge.py has a model judge: p(yes) to "is the statement supported by the context?").
- `relevancy(question, answer, judge)`: judge(question, answer) in [0, 1].
- `relevancy_similarity(question, answer, embed)`: the cosine of embed([question, answer])'s
  two vectors (for example all-MiniLM-L6-v2's `embed`).
- `auroc(scores, positives)`: the probability that a random positive scores above a random
  negative, ties counted one half (the Mann-Whitney statistic).
"""

from __future__ import annotations

import re

import numpy as np

STOP_WORDS = frozenset(
    "a an and are as at be by for from has have he her his i in is it its of on or she that "
    "the their they this to was were will with".split())


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in re.findall(r"[^.!?]+[.!?]*", " ".join(text.split())) if s.strip()]


def content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOP_WORDS}


def faithfulness_lexical(answer: str, sources: list[str], threshold: float = 0.5) -> dict:
    """{"score", "supported": one bool per answer sentence}."""
    known = set().union(*(content_words(s) for s in sources)) if sources else set()
    supported = []
    for sentence in split_sentences(answer):
        words = content_words(sentence)
        supported.append(not words or len(words & known) / len(words) >= threshold)
    return {"score": float(np.mean(supported)) if supported else 0.0, "supported": supported}


def faithfulness(answer: str, sources: list[str], judge) -> dict:
    """{"score", "per_sentence": judge's value per answer sentence}."""
    context = "\n\n".join(sources)
    values = [float(judge(s, context)) for s in split_sentences(answer)]
    return {"score": float(np.mean(values)) if values else 0.0, "per_sentence": values}


def relevancy(question: str, answer: str, judge) -> float:
    return float(judge(question, answer))


def relevancy_similarity(question: str, answer: str, embed) -> float:
    q, a = np.asarray(embed([question, answer]), np.float64)
    return float(q @ a / max(np.linalg.norm(q) * np.linalg.norm(a), 1e-12))


def auroc(scores, positives) -> float:
    """Area under the ROC curve of scores for predicting positives (NaN without both kinds)."""
    s = np.asarray(scores, np.float64)
    y = np.asarray(positives, bool)
    pos, neg = s[y], s[~y]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))
