"""chrF (Popović 2015) and chrF++ (Popović 2017) as sacrebleu 2.x computes them.

    corpus_chrf(hypotheses, references)               chrF2: character 1..6-grams, beta 2
    corpus_chrf(hypotheses, references, word_order=2) chrF++: word 1..2-grams as well
    sentence_chrf(hypothesis, [ref1, ref2])

Character n-grams are taken from each segment with its whitespace removed (or kept, with
whitespace=True); word n-grams from its whitespace-split words, a punctuation mark at the end
(or else the start) of a word of two or more characters split off as its own word. Per order,
a segment's statistics are the hypothesis n-grams (counted only if the reference has n-grams of
that order), the reference n-grams and the matches (min of the two counts per n-gram); with
several references a segment takes the statistics of the reference with the best sentence
chrF (the first of equals). Corpus chrF sums the statistics, then averages precision and recall
over the orders that have n-grams on both sides (sacrebleu 2's "effective order") and returns
100 * (1 + beta^2) P R / (beta^2 P + R). With eps_smoothing=True it is instead the mean over all
orders of each order's F-score, a missing precision or recall taken as 1e-16 (chrF++.py's rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from jaxllm.errors import DataError
from jaxllm.metrics.ngrams import encode_chars, encode_tokens, ngram_counts, reference_streams

_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


@dataclass(frozen=True)
class CHRFScore:
    score: float     # 0..100
    char_order: int
    word_order: int
    beta: int

    @property
    def name(self) -> str:
        return f"chrF{self.beta}" + "+" * self.word_order

    def __str__(self) -> str:
        return f"{self.name} = {self.score:.2f}"


def _words(line: str) -> list[str]:
    """chrF++'s words: whitespace-split, with one punctuation mark split off the end (or else
    the start) of each word longer than one character."""
    out = []
    for w in line.split():
        if len(w) > 1 and w[-1] in _PUNCTUATION:
            out += [w[:-1], w[-1]]
        elif len(w) > 1 and w[0] in _PUNCTUATION:
            out += [w[0], w[1:]]
        else:
            out.append(w)
    return out


def chrf_statistics(hypotheses: Sequence[str], references, *, char_order: int = 6,
                    word_order: int = 0, beta: int = 2, lowercase: bool = False,
                    whitespace: bool = False, eps_smoothing: bool = False) -> np.ndarray:
    """(N, char_order + word_order, 3) int64: per segment and order, [hypothesis n-grams,
    reference n-grams, matches] against the segment's best reference (sacrebleu's statistics,
    reshaped). Summed over segments, they give corpus chrF."""
    streams = reference_streams(hypotheses, references, "chrF")
    if char_order < 1 or word_order < 0:
        raise DataError(f"char_order={char_order}, word_order={word_order}: char_order must be "
                        f"at least 1 and word_order at least 0")

    def prepare(lines):
        lines = [x.lower() if lowercase else x for x in lines]
        chars = lines if whitespace else ["".join(x.split()) for x in lines]
        return lines, encode_chars(chars)

    hyp_lines, hyp_chars = prepare(hypotheses)
    ref_lines, ref_chars = zip(*[prepare(["" if r is None else r for r in s]) for s in streams])
    orders = ngram_counts(hyp_chars, ref_chars, char_order)
    if word_order:
        vocab: dict[str, int] = {}
        hyp_words = encode_tokens([_words(x) for x in hyp_lines], vocab)
        ref_words = [encode_tokens([_words(x) for x in lines], vocab) for lines in ref_lines]
        orders += ngram_counts(hyp_words, ref_words, word_order)
    # (R, N, order, 3); a hypothesis n-gram counts only where the reference has that order
    stats = np.stack([np.stack([np.where(o.refs > 0, o.hyp, 0), o.refs, o.matches], axis=-1)
                      for o in orders], axis=2)
    scores = chrf_from_statistics(stats, beta=beta, eps_smoothing=eps_smoothing)
    absent = np.array([[r is None for r in s] for s in streams])
    best = np.argmax(np.where(absent, -1.0, scores), axis=0)  # the first best reference
    return stats[best, np.arange(len(hypotheses))]


def chrf_from_statistics(stats: np.ndarray, *, beta: int = 2, eps_smoothing: bool = False
                         ) -> np.ndarray:
    """chrF (0..100) of statistics (..., order, 3), the same float operations as sacrebleu."""
    stats = np.asarray(stats, dtype=np.int64)
    eps = 1e-16
    factor = beta ** 2
    n_hyp, n_ref, n_match = stats[..., 0], stats[..., 1], stats[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(n_hyp > 0, n_match / n_hyp, eps)
        rec = np.where(n_ref > 0, n_match / n_ref, eps)
        denom = factor * prec + rec
        f = np.where(denom > 0, (1 + factor) * prec * rec / denom, eps)
    order = stats.shape[-2]
    if eps_smoothing:
        total = np.zeros(stats.shape[:-2])
        for i in range(order):  # summed order by order, as sacrebleu does
            total = total + f[..., i]
        return 100 * total / order
    both = (n_hyp > 0) & (n_ref > 0)
    avg_prec, avg_rec = np.zeros(stats.shape[:-2]), np.zeros(stats.shape[:-2])
    for i in range(order):
        avg_prec = avg_prec + np.where(both[..., i], prec[..., i], 0.0)
        avg_rec = avg_rec + np.where(both[..., i], rec[..., i], 0.0)
    effective = both.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        avg_prec = np.where(effective > 0, avg_prec / effective, 0.0)
        avg_rec = np.where(effective > 0, avg_rec / effective, 0.0)
        score = (1 + factor) * avg_prec * avg_rec
        score = score / (factor * avg_prec + avg_rec)
    return np.where(avg_prec + avg_rec != 0, 100 * score, 0.0)


def corpus_chrf(hypotheses: Sequence[str], references, *, char_order: int = 6,
                word_order: int = 0, beta: int = 2, lowercase: bool = False,
                whitespace: bool = False, eps_smoothing: bool = False) -> CHRFScore:
    """Corpus chrF (chrF++ with word_order=2), equal to `sacrebleu.corpus_chrf`."""
    stats = chrf_statistics(hypotheses, references, char_order=char_order,
                            word_order=word_order, beta=beta, lowercase=lowercase,
                            whitespace=whitespace, eps_smoothing=eps_smoothing)
    score = chrf_from_statistics(stats.sum(axis=0), beta=beta, eps_smoothing=eps_smoothing)
    return CHRFScore(float(score), char_order, word_order, beta)


def sentence_chrf(hypothesis: str, references: Sequence[str], **options) -> CHRFScore:
    """chrF of one hypothesis against its references, equal to `sacrebleu.sentence_chrf`."""
    if not isinstance(hypothesis, str) or isinstance(references, str):
        raise DataError("sentence_chrf: give one hypothesis string and a list of reference "
                        "strings")
    return corpus_chrf([hypothesis], [[r] for r in references], **options)


def sentence_chrf_scores(hypotheses: Sequence[str], references, *, beta: int = 2,
                         eps_smoothing: bool = False, **options) -> np.ndarray:
    """(N,) sentence chrF of every segment, counted in one pass."""
    stats = chrf_statistics(hypotheses, references, beta=beta, eps_smoothing=eps_smoothing,
                            **options)
    return chrf_from_statistics(stats, beta=beta, eps_smoothing=eps_smoothing)
