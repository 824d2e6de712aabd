"""BPE training: repeatedly merge the most frequent adjacent pair, with incremental pair counts.

    tok = train_bpe(texts, 4096, byte_level=True)    # GPT-2 style: regex words, 256 byte symbols
    tok = train_bpe(texts, 4096)                     # SentencePiece-style: "▁" words, characters
                                                     # of the corpus + <0xXX> byte fallback

The corpus is reduced to distinct words and their frequencies (a pre-tokenizer cut them), so
the work scales with the vocabulary of the text, not its length. Counts are kept incrementally:

    pair_count[(a, b)]   sum of word frequencies over occurrences of the pair
    where[(a, b)]        indices of words that contained the pair when it was counted
    heap                 (-count, a, b) entries, lazily invalidated

A merge touches only the words in where[pair]: each loses its old pairs' counts and adds its new
ones. Heap entries are pushed only for pairs whose count grew; an entry whose count has since
fallen is re-pushed with the true count when it surfaces. So each merge costs time in proportion
to the words it changes, never a recount of the corpus. Ties go to the smaller (a, b).
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable

from jaxllm.errors import DataError
from jaxllm.text import models
from jaxllm.text.tokenizer import PipelineTokenizer
from jaxllm.text.pretokenize import (ByteLevel, Metaspace, Sequence, SplitNewlines,
                                     bytes_to_unicode, utf8)

BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]


def count_words(texts: Iterable[str], pre_tokenizer, byte_level: bool = False) -> Counter:
    """Distinct pre-tokenized words and their frequencies (byte-level: as GPT-2 byte chars)."""
    if isinstance(texts, str):
        texts = [texts]
    counts: Counter = Counter()
    for text in texts:
        if not isinstance(text, str):
            raise DataError(f"training texts must be str, got {type(text).__name__}; decode "
                            f"bytes first")
        counts.update(pre_tokenizer.split(text))
    if not counts:
        raise DataError("cannot train a tokenizer on an empty corpus: the texts have no words")
    if byte_level:
        b2u = bytes_to_unicode()
        mapped: Counter = Counter()
        for w, c in counts.items():
            mapped["".join([b2u[b] for b in utf8(w)])] += c
        counts = mapped
    return counts


def learn_merges(word_counts: dict[str, int], alphabet: list[str], n_merges: int,
                 min_frequency: int = 2) -> list[tuple[str, str]]:
    """The first `n_merges` merges over words (each a string of alphabet symbols).

    Stops early when no pair occurs min_frequency times.
    """
    known = set(alphabet)
    words: list[list[str]] = []
    freqs: list[int] = []
    for w, c in word_counts.items():
        syms = list(w)
        if any(s not in known for s in syms):
            continue  # a word with symbols outside the alphabet is not learned from
        words.append(syms)
        freqs.append(c)
    pair_count: dict[tuple[str, str], int] = defaultdict(int)
    where: dict[tuple[str, str], set[int]] = defaultdict(set)
    for i, (syms, f) in enumerate(zip(words, freqs)):
        for pair in zip(syms, syms[1:]):
            pair_count[pair] += f
            where[pair].add(i)
    heap = [(-c, a, b) for (a, b), c in pair_count.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    while len(merges) < n_merges and heap:
        neg, a, b = heapq.heappop(heap)
        pair = (a, b)
        count = pair_count.get(pair, 0)
        if count != -neg:  # stale: the pair's count fell since this entry was pushed
            if count > 0:
                heapq.heappush(heap, (-count, a, b))
            continue
        if count < min_frequency:
            break
        merges.append(pair)
        merged = a + b
        del pair_count[pair]
        grown: set[tuple[str, str]] = set()
        for i in where.pop(pair, ()):
            syms, f = words[i], freqs[i]
            new: list[str] = []
            j, n = 0, len(syms)
            n_merged = 0
            while j < n:
                if j < n - 1 and syms[j] == a and syms[j + 1] == b:
                    new.append(merged)
                    j += 2
                    n_merged += 1
                else:
                    new.append(syms[j])
                    j += 1
            if not n_merged:
                continue
            old_pairs = list(zip(syms, syms[1:]))
            for p in old_pairs:
                if p != pair:
                    pair_count[p] -= f
            old_set = set(old_pairs)
            for p in zip(new, new[1:]):
                pair_count[p] += f
                if p not in old_set:
                    where[p].add(i)
                    grown.add(p)
            words[i] = new
        for p in grown:
            c = pair_count.get(p, 0)
            if c > 0:
                heapq.heappush(heap, (-c, p[0], p[1]))
    return merges


def train_bpe(texts: Iterable[str], vocab_size: int, byte_level: bool = False,
              special_tokens: list[str] | None = None, min_frequency: int = 2,
              individual_digits: bool = False) -> PipelineTokenizer:
    """A BPE tokenizer of (at most) vocab_size tokens learned from texts.

    byte_level: GPT-2's regex words over the 256 byte symbols (never unknown, exact decoding);
    otherwise SentencePiece-style: "▁" marks spaces, the base symbols are the corpus characters
    plus 256 <0xXX> byte-fallback tokens, so any text still encodes and decodes exactly.
    Stops early when no pair occurs min_frequency times.
    """
    if special_tokens is None:
        special_tokens = ["<|endoftext|>"] if byte_level else ["<unk>"]
    pre = (ByteLevel(individual_digits=individual_digits) if byte_level
           else Sequence([SplitNewlines(), Metaspace()]))
    word_counts = count_words(texts, pre, byte_level)
    if byte_level:
        alphabet = [bytes_to_unicode()[b] for b in range(256)]
        base = list(special_tokens) + alphabet
    else:
        chars = sorted({c for w in word_counts for c in w})
        alphabet = chars
        base = list(special_tokens) + BYTE_TOKENS + chars
    if len(set(base)) != len(base):
        raise DataError("special tokens must be distinct and differ from the base symbols")
    if vocab_size < len(base):
        raise DataError(f"vocab_size={vocab_size} is smaller than the base alphabet: "
                        f"{len(base)} tokens ({len(special_tokens)} special + "
                        f"{len(base) - len(special_tokens)} symbols); use at least {len(base)}")
    merges = learn_merges(word_counts, alphabet, vocab_size - len(base), min_frequency)
    vocab = {t: i for i, t in enumerate(base)}
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    special = {t: vocab[t] for t in special_tokens}
    if byte_level:
        model = models.BPE(vocab, merges)
        return PipelineTokenizer(model, pre, "byte_level", special_tokens=special)
    unk = "<unk>" if "<unk>" in vocab else None
    model = models.BPE(vocab, merges, unk_token=unk, byte_fallback=True, fuse_unk=True)
    return PipelineTokenizer(model, pre, "metaspace", special_tokens=special)
