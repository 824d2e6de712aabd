"""BLEU (Papineni et al., 2002) as sacrebleu 2.x computes it: corpus and sentence level.

    corpus_bleu(hypotheses, references)            references: one string per hypothesis, or
    sentence_bleu(hypothesis, [ref1, ref2])        a list of such lists (several reference sets)
    sentence_bleu_scores(hypotheses, references)   every segment's sentence BLEU, as an array

Each segment is lowercased (optionally), stripped of trailing whitespace and tokenized
(`13a`: mteval-v13a's rules, WMT's default; `intl`: mteval-v14's Unicode punctuation and
symbols; `char`: every non-space character; `none`: split on whitespace). A segment's statistics
are its hypothesis length, the reference length closest to it (the shorter one on a tie), and
per order n the hypothesis n-grams and those matched, each n-gram counted at most as often as
in the reference that has it most often. Corpus BLEU sums the statistics over segments, then

    BLEU = BP * exp(mean over n of log p_n),  p_n = 100 * matched_n / total_n,
    BP = 1 if hyp_len >= ref_len else exp(1 - ref_len / hyp_len)

with smoothing for a zero p_n (Chen and Cherry 2014): `none`, `floor` (matched_n := value,
default 0.1), `add-k` (value added to matched_n and total_n for n > 1, default 1), `exp` (the
k-th zero p_n becomes 100 / (2^k total_n); sacrebleu's default). With `effective_order`, orders
that have no n-grams at all are left out of the mean (sentence BLEU's default). No match at all
gives 0.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import regex

from jaxllm.errors import DataError
from jaxllm.metrics.ngrams import encode_tokens, ngram_counts, reference_streams

SMOOTH_DEFAULTS = {"none": None, "floor": 0.1, "add-k": 1, "exp": None}
TOKENIZERS = ("13a", "intl", "char", "none")


@dataclass(frozen=True)
class BLEUScore:
    score: float               # 0..100
    counts: list               # matched n-grams per order (add-k smoothing included)
    totals: list               # hypothesis n-grams per order (add-k smoothing included)
    precisions: list[float]    # p_n, 0..100
    bp: float                  # brevity penalty
    sys_len: int               # hypothesis tokens
    ref_len: int               # closest reference tokens

    @property
    def ratio(self) -> float:
        return self.sys_len / self.ref_len if self.ref_len else 0.0

    def __str__(self) -> str:
        precisions = "/".join(f"{p:.1f}" for p in self.precisions)
        return (f"BLEU = {self.score:.2f} {precisions} (BP = {self.bp:.3f} ratio = "
                f"{self.ratio:.3f} hyp_len = {self.sys_len:d} ref_len = {self.ref_len:d})")


# ----------------------------------------------------------------------------- tokenizers

# mteval-v13a's rules, in sacrebleu's form:
#   1. ([\{-\~\[-\` -\&\(-\+\:-\@\/])  ->  " \1 "   symbols and most ASCII punctuation
#   2. ([^0-9])([\.,])   ->  "\1 \2 "   a period or comma after a non-digit
#   3. ([\.,])([^0-9])   ->  " \1 \2"   a period or comma before a non-digit
#   4. ([0-9])(-)        ->  "\1 \2 "   a dash after a digit
# Rule 1 has no context: one str.replace per character (the space first, so that the spaces the
# others add are not tripled again; the same string as re.sub, faster). Rules 2-4 are loops over the
# few periods, commas and dashes, because a regular expression that starts with a class matching
# almost every character is slow to scan for; each loop keeps re.sub's semantics: matches are
# found left to right and do not overlap (a character used by one match is not seen by the next).
_13A_SPACED = " " "{|}~" "[\\]^_`" "!\"#$%&" "()*+" ":;<=>?@" "/"
_DIGITS = frozenset("0123456789")
_PERIOD_COMMA = re.compile(r"[.,]")


def _split_after_non_digit(text: str) -> str:
    """Rule 2: a period or comma preceded by a non-digit gets a space on both sides."""
    out, last, scan = [], 0, 0
    for m in _PERIOD_COMMA.finditer(text, 1):
        j = m.start()
        if j - 1 >= scan and text[j - 1] not in _DIGITS:
            out += [text[last:j], " ", text[j], " "]
            last = scan = j + 1
    return "".join(out) + text[last:] if out else text


def _split_before_non_digit(text: str) -> str:
    """Rule 3: a period or comma followed by a non-digit gets a space on both sides."""
    out, last, scan, end = [], 0, 0, len(text) - 1
    for m in _PERIOD_COMMA.finditer(text):
        i = m.start()
        if i >= scan and i < end and text[i + 1] not in _DIGITS:
            out += [text[last:i], " ", text[i], " ", text[i + 1]]
            last = scan = i + 2
    return "".join(out) + text[last:] if out else text


def _split_dash_after_digit(text: str) -> str:
    """Rule 4: a dash preceded by a digit gets a space on both sides. (A dash is not a digit, so
    no match can use up the digit of the next one: no scan position to keep.)"""
    out, last, j = [], 0, text.find("-", 1)
    while j != -1:
        if text[j - 1] in _DIGITS:
            out += [text[last:j], " - "]
            last = j + 1
        j = text.find("-", j + 1)
    return "".join(out) + text[last:] if out else text


# mteval-v14's international rules: punctuation not between digits, and every symbol.
_INTL_RULES = [
    (regex.compile(r"(\P{N})(\p{P})"), r"\1 \2 "),
    (regex.compile(r"(\p{P})(\P{N})"), r" \1 \2"),
    (regex.compile(r"(\p{S})"), r" \1 "),
]


def _tokenize_13a(lines: list[str]) -> list[list[str]]:
    """All lines at once: the rules run over one string with the lines joined by newlines. Each
    line is padded with a space on both sides (as mteval does), and no rule can match a newline
    next to a space, so no match spans two lines and each line tokenizes as it would alone."""
    lines = [_13a_line(x) if ("\n" in x or "<skipped>" in x) else x for x in lines]
    text = " " + " \n ".join(lines) + " "
    if "&" in text:
        for entity, char in (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">")):
            text = text.replace(entity, char)
    for c in _13A_SPACED:
        if c in text:
            text = text.replace(c, f" {c} ")
    text = _split_dash_after_digit(_split_before_non_digit(_split_after_non_digit(text)))
    return [line.split() for line in text.split("\n")]


def _13a_line(line: str) -> str:
    """mteval's removals that involve newlines, done per line before the lines are joined."""
    return line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")


def _tokenize_intl(lines: list[str]) -> list[list[str]]:
    # Per line: \P{N} matches a newline, so joined lines would interact.
    out = []
    for line in lines:
        for pattern, replacement in _INTL_RULES:
            line = pattern.sub(replacement, line)
        out.append(line.split())
    return out


def tokenize_lines(lines: Sequence[str], tokenizer: str = "13a", lowercase: bool = False
                   ) -> list[list[str]]:
    """BLEU's tokens of each line (after lowercasing and stripping trailing whitespace)."""
    if tokenizer not in TOKENIZERS:
        raise DataError(f"tokenize={tokenizer!r} is not a BLEU tokenizer; use one of "
                        f"{', '.join(TOKENIZERS)}")
    lines = [(x.lower() if lowercase else x).rstrip() for x in lines]
    if tokenizer == "13a":
        return _tokenize_13a(lines)
    if tokenizer == "intl":
        return _tokenize_intl(lines)
    if tokenizer == "char":
        return [list("".join(x.split())) for x in lines]
    return [x.split() for x in lines]


# ----------------------------------------------------------------------------- statistics

def bleu_statistics(hypotheses: Sequence[str], references, *, tokenize: str = "13a",
                    lowercase: bool = False, max_ngram_order: int = 4) -> np.ndarray:
    """Per segment: [hyp_len, ref_len, matched_1..N, total_1..N], an (N, 2 + 2 * order) int64
    array (sacrebleu's layout). Summed over rows, it gives corpus BLEU's statistics."""
    streams = reference_streams(hypotheses, references, "BLEU")
    if max_ngram_order < 1:
        raise DataError(f"max_ngram_order={max_ngram_order} must be at least 1")
    vocab: dict[str, int] = {}
    hyp = encode_tokens(tokenize_lines(hypotheses, tokenize, lowercase), vocab)
    refs, present = [], []
    for stream in streams:
        toks = tokenize_lines(["" if r is None else r for r in stream], tokenize,
                                     lowercase)
        toks = [[] if r is None else t for r, t in zip(stream, toks)]
        refs.append(encode_tokens(toks, vocab))
        present.append([r is not None for r in stream])
    counts = ngram_counts(hyp, refs, max_ngram_order)
    ref_len = _closest_lengths(hyp.lengths, np.stack([r.lengths for r in refs]),
                               np.array(present))
    return np.column_stack([hyp.lengths, ref_len] + [c.matches_max for c in counts]
                           + [c.hyp for c in counts]).astype(np.int64)


def _closest_lengths(hyp_len: np.ndarray, ref_lens: np.ndarray, present: np.ndarray
                     ) -> np.ndarray:
    """The reference length closest to each hypothesis length; the shorter on a tie."""
    diff = np.where(present, np.abs(ref_lens - hyp_len), np.iinfo(np.int64).max)
    best = diff.min(axis=0)
    return np.where(present & (diff == best), ref_lens, np.iinfo(np.int64).max).min(axis=0)


def compute_bleu(stats: Sequence[int], *, smooth_method: str = "exp",
                 smooth_value: float | None = None, effective_order: bool = False,
                 max_ngram_order: int = 4) -> BLEUScore:
    """BLEU from (summed) statistics [hyp_len, ref_len, matched_1..N, total_1..N]."""
    _check_options(smooth_method)
    if smooth_value is None:
        smooth_value = SMOOTH_DEFAULTS[smooth_method]
    order = max_ngram_order
    sys_len, ref_len = int(stats[0]), int(stats[1])
    correct = [int(x) for x in stats[2:2 + order]]
    total = [int(x) for x in stats[2 + order:2 + 2 * order]]
    bp = 1.0
    if sys_len < ref_len:
        bp = math.exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0
    precisions = [0.0] * order
    if not any(correct):
        return BLEUScore(0.0, correct, total, precisions, bp, sys_len, ref_len)
    halvings = 1.0  # exp smoothing: the k-th zero precision is 100 / (2^k * total)
    used = order
    for n in range(order):
        if smooth_method == "add-k" and n > 0:
            correct[n] += smooth_value
            total[n] += smooth_value
        if total[n] == 0:
            break
        if effective_order:
            used = n + 1
        if correct[n] == 0:
            if smooth_method == "exp":
                halvings *= 2
                precisions[n] = 100. / (halvings * total[n])
            elif smooth_method == "floor":
                precisions[n] = 100. * smooth_value / total[n]
        else:
            precisions[n] = 100. * correct[n] / total[n]
    # log(0) is taken as -9999999999 (sacrebleu's floor), which makes the score 0
    logs = [math.log(p) if p != 0.0 else -9999999999 for p in precisions[:used]]
    score = bp * math.exp(sum(logs) / used)
    return BLEUScore(score, correct, total, precisions, bp, sys_len, ref_len)


# ----------------------------------------------------------------------------- entry points

def corpus_bleu(hypotheses: Sequence[str], references, *, tokenize: str = "13a",
                lowercase: bool = False, smooth_method: str = "exp",
                smooth_value: float | None = None, effective_order: bool = False,
                max_ngram_order: int = 4) -> BLEUScore:
    """Corpus BLEU of hypotheses against references (one string per hypothesis, or a list of
    reference sets), equal to `sacrebleu.corpus_bleu` with the same options."""
    _check_options(smooth_method)
    stats = bleu_statistics(hypotheses, references, tokenize=tokenize, lowercase=lowercase,
                            max_ngram_order=max_ngram_order)
    return compute_bleu(stats.sum(axis=0), smooth_method=smooth_method,
                        smooth_value=smooth_value, effective_order=effective_order,
                        max_ngram_order=max_ngram_order)


def sentence_bleu(hypothesis: str, references: Sequence[str], *, tokenize: str = "13a",
                  lowercase: bool = False, smooth_method: str = "exp",
                  smooth_value: float | None = None, effective_order: bool = True,
                  max_ngram_order: int = 4) -> BLEUScore:
    """BLEU of one hypothesis against its references, equal to `sacrebleu.sentence_bleu`."""
    if not isinstance(hypothesis, str):
        raise DataError(f"sentence_bleu: the hypothesis is a {type(hypothesis).__name__}, "
                        f"not a string")
    if isinstance(references, str):
        raise DataError("sentence_bleu: references must be a list of strings, not a string")
    return corpus_bleu([hypothesis], [[r] for r in references], tokenize=tokenize,
                       lowercase=lowercase, smooth_method=smooth_method,
                       smooth_value=smooth_value, effective_order=effective_order,
                       max_ngram_order=max_ngram_order)


def sentence_bleu_scores(hypotheses: Sequence[str], references, *, tokenize: str = "13a",
                         lowercase: bool = False, smooth_method: str = "exp",
                         smooth_value: float | None = None, effective_order: bool = True,
                         max_ngram_order: int = 4) -> np.ndarray:
    """(N,) sentence BLEU of every segment, tokenized and counted in one pass."""
    _check_options(smooth_method)
    stats = bleu_statistics(hypotheses, references, tokenize=tokenize, lowercase=lowercase,
                            max_ngram_order=max_ngram_order)
    return np.array([compute_bleu(row, smooth_method=smooth_method, smooth_value=smooth_value,
                                  effective_order=effective_order,
                                  max_ngram_order=max_ngram_order).score
                     for row in stats.tolist()])


def _check_options(smooth_method: str) -> None:
    if smooth_method not in SMOOTH_DEFAULTS:
        raise DataError(f"smooth_method={smooth_method!r} is unknown; use one of "
                        f"{', '.join(SMOOTH_DEFAULTS)}")
