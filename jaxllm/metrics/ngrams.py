"""Clipped n-gram counts of many (hypothesis, references) segments at once, with numpy.

BLEU, chrF and ROUGE-N all start from the same numbers: for each segment and each order n, how
many n-grams the hypothesis has, how many a reference has, and how many they share, a shared
n-gram counting min(count in hypothesis, count in reference) times. The reference libraries
build a Counter of tuples per sentence; here every token of every segment is one integer in a
flat array, an n-gram is named by a dense id made from the id of its first n-1 tokens and its
last token (the segment is part of the id, so equal n-grams of different segments differ), and
the per-segment counts come from one `np.unique` and a few `np.bincount`s per order.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from jaxllm.errors import DataError


@dataclass(frozen=True)
class Segments:
    """Token ids of N segments laid end to end."""

    ids: np.ndarray      # (T,) int64, segment 0's tokens, then segment 1's, ...
    lengths: np.ndarray  # (N,) int64 tokens per segment


def encode_tokens(token_lists: Sequence[Sequence[str]], vocab: dict[str, int]) -> Segments:
    """Segments from lists of string tokens; vocab (shared by hypotheses and references, so that
    equal tokens get equal ids) grows with every new token."""
    flat = list(itertools.chain.from_iterable(token_lists))
    for token in dict.fromkeys(flat):  # new tokens, in order of first appearance
        vocab.setdefault(token, len(vocab))
    ids = np.fromiter(map(vocab.__getitem__, flat), dtype=np.int64, count=len(flat))
    lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
    return Segments(ids, lengths)


def encode_chars(strings: Sequence[str]) -> Segments:
    """Segments whose tokens are the characters of each string (ids are code points)."""
    joined = "".join(strings)
    # surrogatepass: a lone surrogate (text decoded with surrogateescape) is a character too
    codes = joined.encode("utf-32-le", "surrogatepass")
    ids = np.frombuffer(codes, dtype=np.uint32).astype(np.int64)
    lengths = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))
    return Segments(ids, lengths)


@dataclass(frozen=True)
class OrderCounts:
    """The counts of one n-gram order, per segment."""

    hyp: np.ndarray          # (N,) n-grams in the hypothesis
    refs: np.ndarray         # (R, N) n-grams in each reference
    matches: np.ndarray      # (R, N) clipped matches against each reference alone
    matches_max: np.ndarray  # (N,) clipped matches against the references' largest count of
                             # each n-gram (BLEU's rule for several references)


def ngram_counts(hyp: Segments, refs: Sequence[Segments], max_order: int) -> list[OrderCounts]:
    """The OrderCounts of orders 1..max_order; every Segments holds the same N segments."""
    sides = [hyp, *refs]
    n_seg = len(hyp.lengths)
    sizes = [len(s.ids) for s in sides]
    ids = np.concatenate([s.ids for s in sides])
    seg = np.concatenate([np.repeat(np.arange(n_seg), s.lengths) for s in sides])
    left = np.concatenate([_tokens_left(s.lengths) for s in sides])  # tokens from here to the end
    bounds = np.cumsum([0] + sizes)  # side k's positions are bounds[k]:bounds[k + 1]
    vocab = int(ids.max()) + 1 if len(ids) else 1
    prefix = seg  # for order 1 the "prefix" of a token is its segment
    out = []
    for n in range(1, max_order + 1):
        pos = np.flatnonzero(left >= n)  # positions where an n-gram starts
        # (segment, first n-1 tokens) id * vocab + last token: below len(ids) * vocab, no overflow
        key = prefix[pos] * vocab + ids[pos + n - 1]
        uniq, inverse = np.unique(key, return_inverse=True)
        n_uniq = len(uniq)
        cut = np.searchsorted(pos, bounds)  # pos is sorted, so each side is one slice of it
        counts = [np.bincount(inverse[cut[k]:cut[k + 1]], minlength=n_uniq)
                  for k in range(len(sides))]
        seg_of = np.empty(n_uniq, dtype=np.int64)  # the segment of each distinct n-gram
        seg_of[inverse] = seg[pos]
        hyp_counts, ref_counts = counts[0], counts[1:]
        out.append(OrderCounts(
            hyp=np.maximum(hyp.lengths - (n - 1), 0),
            refs=np.stack([np.maximum(r.lengths - (n - 1), 0) for r in refs]),
            matches=np.stack([_per_segment(seg_of, np.minimum(hyp_counts, c), n_seg)
                              for c in ref_counts]),
            matches_max=_per_segment(seg_of, np.minimum(hyp_counts, np.max(ref_counts, axis=0)),
                                     n_seg)))
        prefix = np.zeros(len(ids), dtype=np.int64)
        prefix[pos] = inverse
    return out


def _per_segment(seg_of: np.ndarray, values: np.ndarray, n_seg: int) -> np.ndarray:
    """Sum of values (one per distinct n-gram) over the n-grams of each segment."""
    return np.bincount(seg_of, weights=values, minlength=n_seg).astype(np.int64)


def _tokens_left(lengths: np.ndarray) -> np.ndarray:
    """For each token of segments laid end to end: how many tokens remain in its segment,
    itself included (a segment of length 3 gives 3, 2, 1)."""
    total = int(lengths.sum())
    ends = np.repeat(np.cumsum(lengths), lengths)
    return ends - np.arange(total)


def reference_streams(hypotheses: Sequence[str], references, what: str) -> list[list]:
    """Check a metric's inputs and return the references as a list of streams.

    references is either one reference per hypothesis (a list of strings) or several streams
    (a list of lists of strings, each as long as hypotheses: sacrebleu's layout). A None entry
    in a stream means "no reference from this stream for this segment"."""
    if isinstance(hypotheses, str) or not isinstance(hypotheses, Sequence):
        raise DataError(f"{what}: hypotheses must be a list of strings, got "
                        f"{type(hypotheses).__name__}")
    if isinstance(references, str) or not isinstance(references, Sequence) or not references:
        raise DataError(f"{what}: references must be a list of strings (one per hypothesis) or "
                        f"a list of such lists (one per reference set)")
    streams = [references] if isinstance(references[0], str) else list(references)
    for k, stream in enumerate(streams):
        if isinstance(stream, str) or not isinstance(stream, Sequence):
            raise DataError(f"{what}: reference set {k} is a {type(stream).__name__}, not a list "
                            f"of strings")
        if len(stream) != len(hypotheses):
            raise DataError(f"{what}: reference set {k} has {len(stream)} lines but there are "
                            f"{len(hypotheses)} hypotheses; give one reference per hypothesis")
    for i, h in enumerate(hypotheses):
        if not isinstance(h, str):
            raise DataError(f"{what}: hypothesis {i} is a {type(h).__name__}, not a string")
    for k, stream in enumerate(streams):
        for i, r in enumerate(stream):
            if r is not None and not isinstance(r, str):
                raise DataError(f"{what}: reference {i} of set {k} is a {type(r).__name__}, "
                                f"not a string")
    for i, refs in enumerate(zip(*streams)):
        if all(r is None for r in refs):
            raise DataError(f"{what}: hypothesis {i} has no reference (every set has None there)")
    return [list(s) for s in streams]
