"""ROUGE-N, ROUGE-L and ROUGE-Lsum as rouge-score 0.1.2 computes them, for many pairs at once.

    scores = rouge(hypotheses, references, ("rouge1", "rouge2", "rougeL", "rougeLsum"))
    scores["rougeL"].fmeasure        # (N,) one F1 per pair; .mean() for the usual summary

Tokens (rouge-score's default tokenizer): the text lowercased, every run of characters other
than a-z and 0-9 a separator; with use_stemmer, tokens longer than three characters are replaced
by their Porter stem (jaxllm.metrics.porter, NLTK's variant).

- rougeN: n-grams shared by hypothesis and reference, each counted min(times in one, times in
  the other); precision = shared / hypothesis n-grams, recall = shared / reference n-grams
  (each denominator at least 1).
- rougeL: the longest common subsequence of the two token lists; precision = LCS / hypothesis
  tokens, recall = LCS / reference tokens (0 if either is empty).
- rougeLsum: texts split into sentences at newlines; for each reference sentence the union of
  its LCS with every hypothesis sentence, each token counted at most as often as it occurs in
  either summary; precision and recall over the summaries' token counts.

F = 2PR / (P + R). With several references per hypothesis, each type takes the reference with
the best F (the first of equals), as `RougeScorer.score_multi` does.

The LCS is computed bit-parallel (Hyyrö 2004): one Python integer holds a bit per hypothesis
token and each reference token updates all of them with one addition, so a pair costs
O(reference length) big-integer operations instead of a table of len(ref) x len(hyp) cells.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from jaxllm.errors import DataError
from jaxllm.metrics import porter
from jaxllm.metrics.ngrams import encode_tokens, ngram_counts, reference_streams

_TOKEN = re.compile(r"[a-z0-9]+")
_VALID = re.compile(r"^[a-z0-9]+$")
_TYPE = re.compile(r"rouge([1-9])$")


@dataclass(frozen=True)
class RougeScore:
    """One ROUGE type's scores, one entry per (hypothesis, references) pair."""

    precision: np.ndarray
    recall: np.ndarray
    fmeasure: np.ndarray

    def mean(self) -> dict[str, float]:
        return {"precision": float(self.precision.mean()), "recall": float(self.recall.mean()),
                "fmeasure": float(self.fmeasure.mean())}


class Tokenizer:
    """rouge-score's DefaultTokenizer; stems are cached per word (a corpus repeats its words)."""

    def __init__(self, use_stemmer: bool = False):
        self.use_stemmer = use_stemmer
        self._stems: dict[str, str | None] = {}

    def __call__(self, text: str) -> list[str]:
        tokens = _TOKEN.findall(text.lower())
        if not self.use_stemmer:
            return tokens
        stems = self._stems
        out = []
        for t in tokens:
            s = stems.get(t, False)
            if s is False:
                s = porter.stem(t) if len(t) > 3 else t
                stems[t] = s = s if _VALID.match(s) else None
            if s is not None:
                out.append(s)
        return out


def _fmeasure(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(precision + recall > 0, 2 * precision * recall / (precision + recall),
                        0.0)


def lcs_rows(a: Sequence[str], b: Sequence[str]) -> list[int]:
    """The LCS table of a (rows) against b (columns) as len(a) + 1 integers: the table's cell
    [i][j] (LCS of a[:i] and b[:j]) is the number of zero bits among the low j bits of row i.

    Row i + 1 from row i (bit-parallel LCS): with M the bits of the positions of b equal to
    a[i], U = row & M and row' = (row + U) | (row - U), cut to len(b) bits."""
    masks: dict[str, int] = {}
    for j, token in enumerate(b):
        masks[token] = masks.get(token, 0) | (1 << j)
    full = (1 << len(b)) - 1
    row, rows = full, [full]
    for token in a:
        u = row & masks.get(token, 0)
        if u:
            row = ((row + u) | (row - u)) & full
        rows.append(row)
    return rows


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence: lcs_rows' last row, without keeping the rows
    (rougeL's hot loop)."""
    masks: dict[str, int] = {}
    for j, token in enumerate(b):
        masks[token] = masks.get(token, 0) | (1 << j)
    full = (1 << len(b)) - 1
    row = full
    get = masks.get
    for token in a:
        u = row & get(token, 0)
        if u:
            row = ((row + u) | (row - u)) & full
    return len(b) - row.bit_count()


def lcs_indices(ref: Sequence[str], can: Sequence[str]) -> list[int]:
    """Indices into ref of one LCS of ref and can: the one rouge-score's backtrack reads out
    (from the end: take a match; else move along can if that keeps the longer LCS, else along
    ref)."""
    rows = lcs_rows(ref, can)

    def cell(i, j):
        return j - (rows[i] & ((1 << j) - 1)).bit_count()

    i, j, out = len(ref), len(can), []
    while i > 0 and j > 0:
        if ref[i - 1] == can[j - 1]:
            out.append(i - 1)
            i, j = i - 1, j - 1
        elif cell(i, j - 1) > cell(i - 1, j):
            j -= 1
        else:
            i -= 1
    return out[::-1]


def _summary_lcs(ref_sents: list[list[str]], can_sents: list[list[str]]) -> tuple[float, float]:
    """(precision, recall) of rougeLsum for one pair of sentence-split, tokenized summaries."""
    m = sum(map(len, ref_sents))
    n = sum(map(len, can_sents))
    if not ref_sents or not can_sents or not m or not n:
        return 0.0, 0.0
    # Each token is a hit at most as often as the hypothesis holds it. (rouge-score also caps
    # by the reference's count, which never binds: a reference position is used once.)
    can_left = Counter(t for s in can_sents for t in s)
    hits = 0
    for r in ref_sents:
        union = sorted(set().union(*[lcs_indices(r, c) for c in can_sents]))
        for t in (r[i] for i in union):
            if can_left[t] > 0:
                hits += 1
                can_left[t] -= 1
    return hits / n, hits / m


def _check_types(rouge_types: Sequence[str]) -> None:
    if isinstance(rouge_types, str):
        raise DataError(f"rouge_types must be a list such as ['rouge1', 'rougeL'], not the "
                        f"string {rouge_types!r}")
    for t in rouge_types:
        if t not in ("rougeL", "rougeLsum") and not _TYPE.match(str(t)):
            raise DataError(f"rouge type {t!r} is unknown; use rouge1 .. rouge9, rougeL or "
                            f"rougeLsum")


def _score_one_reference(hyp_tokens, ref_tokens, hyps, refs, rouge_types, tokenizer
                         ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(precision, recall) arrays per type against one reference per hypothesis."""
    out = {}
    orders = sorted({int(t[5:]) for t in rouge_types if _TYPE.match(t)})
    if orders:
        vocab: dict[str, int] = {}
        counts = ngram_counts(encode_tokens(hyp_tokens, vocab), [encode_tokens(ref_tokens, vocab)],
                              max(orders))
        for n in orders:
            c = counts[n - 1]
            shared = c.matches[0]
            out[f"rouge{n}"] = (shared / np.maximum(c.hyp, 1), shared / np.maximum(c.refs[0], 1))
    if "rougeL" in rouge_types:
        lcs = np.array([lcs_length(r, h) if h and r else 0
                        for h, r in zip(hyp_tokens, ref_tokens)], dtype=np.int64)
        hyp_len = np.array([max(len(h), 1) for h in hyp_tokens])
        ref_len = np.array([max(len(r), 1) for r in ref_tokens])
        out["rougeL"] = (lcs / hyp_len, lcs / ref_len)
    if "rougeLsum" in rouge_types:
        def sentences(text):
            return [tokenizer(s) for s in text.split("\n") if s]

        pr = [_summary_lcs(sentences(r), sentences(h)) for h, r in zip(hyps, refs)]
        out["rougeLsum"] = (np.array([p for p, _ in pr]), np.array([r for _, r in pr]))
    return out


def rouge(hypotheses: Sequence[str], references, rouge_types: Sequence[str] = ("rouge1",
          "rouge2", "rougeL"), *, use_stemmer: bool = False) -> dict[str, RougeScore]:
    """ROUGE of each hypothesis against its reference(s): {type: RougeScore}, equal to
    `RougeScorer(rouge_types, use_stemmer).score(reference, hypothesis)` (`score_multi` with
    several reference sets)."""
    _check_types(rouge_types)
    streams = reference_streams(hypotheses, references, "ROUGE")
    tokenizer = Tokenizer(use_stemmer)
    word_types = [t for t in rouge_types if t != "rougeLsum"]
    hyp_tokens = [tokenizer(h) for h in hypotheses] if word_types else None
    per_stream = []
    for stream in streams:
        refs = ["" if r is None else r for r in stream]
        ref_tokens = [tokenizer(r) for r in refs] if word_types else None
        per_stream.append(_score_one_reference(hyp_tokens, ref_tokens, hypotheses, refs,
                                               rouge_types, tokenizer))
    out = {}
    for t in rouge_types:
        p = np.stack([s[t][0] for s in per_stream])
        r = np.stack([s[t][1] for s in per_stream])
        f = _fmeasure(p, r)
        # the first best reference; a missing one (scored as "") has P = R = F = 0, as has any
        # reference with F = 0, so choosing it never changes the scores
        best = np.argmax(f, axis=0)
        rows = np.arange(len(hypotheses))
        out[t] = RougeScore(p[best, rows], r[best, rows], f[best, rows])
    return out
