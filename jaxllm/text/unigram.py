"""Unigram language-model tokenizer (SentencePiece style): Viterbi encoding, EM training.

    tok = train_unigram(texts, 4096)
    tok.encode(text)                                   # most likely segmentation (Viterbi)
    tok.encode_sampled(text, alpha=0.1, seed=0)        # subword regularisation

A Unigram model gives every piece a log-probability; a word's segmentation is the sequence of
pieces with the highest total. Spaces are kept as the "▁" meta symbol (Metaspace, never a dummy
prefix) and characters outside the vocabulary fall back to <0xXX> byte pieces, so
decode(encode(s)) == s for every string.

Training (Kudo 2018, as SentencePiece does it):
  1. seed vocabulary: every character, plus the most frequent substrings of the words
     (up to 16 characters, frequency x length, about 10x the target size);
  2. EM: the E-step runs forward-backward over each distinct word's lattice to get each piece's
     expected count; the M-step sets log p = log(count / total);
  3. prune: each piece's loss is how much the corpus likelihood drops if it is removed (its
     count x (its log p - the log p of its best split into other pieces)); keep the best 75%
     (characters always stay) and go back to 2 until the target size is reached.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from jaxllm.errors import DataError
from jaxllm.text.bpe import BYTE_TOKENS, count_words
from jaxllm.text.tokenizer import PipelineTokenizer
from jaxllm.text.pretokenize import Metaspace, Sequence, SplitNewlines

UNK_PENALTY = 10.0  # HF/SentencePiece: an unknown character scores min(log p) - 10
_NEG = -1e30


def _logsumexp(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    if b <= _NEG:
        return a
    return a + math.log1p(math.exp(b - a))


class Unigram:
    """pieces: [(piece, log p)] in id order; unk_id: the id of <unk>."""

    def __init__(self, pieces: list[tuple[str, float]], unk_id: int | None = None,
                 byte_fallback: bool = False):
        if not pieces:
            raise DataError("Unigram vocabulary is empty")
        self.pieces = [(p, float(s)) for p, s in pieces]
        self.vocab = {}
        for i, (p, _) in enumerate(self.pieces):
            self.vocab.setdefault(p, i)
        if unk_id is not None and not 0 <= unk_id < len(pieces):
            raise DataError(f"Unigram unk_id {unk_id} is out of range")
        self.unk_id = unk_id
        self.byte_fallback = byte_fallback
        self.scores = [s for _, s in self.pieces]
        self.max_len = max(len(p) for p, _ in self.pieces)
        self.unk_score = min(self.scores) - UNK_PENALTY

    def _fallback(self, char: str) -> list[int]:
        if self.byte_fallback:
            ids = [self.vocab.get(f"<0x{b:02X}>") for b in char.encode()]
            if all(i is not None for i in ids):
                return ids
        if self.unk_id is None:
            raise DataError(f"character {char!r} is not in the Unigram vocabulary and the "
                            f"tokenizer has no unk token or byte fallback")
        return [self.unk_id]

    def tokenize(self, word: str) -> list[int]:
        """Viterbi: the segmentation with the highest total log-probability."""
        n = len(word)
        vocab, scores, max_len = self.vocab, self.scores, self.max_len
        best = [_NEG] * (n + 1)
        best[0] = 0.0
        back: list[tuple[int, int]] = [(0, -1)] * (n + 1)  # (start, id); id -1: unknown char
        for i in range(n):
            base = best[i]
            single = False
            for j in range(i + 1, min(n, i + max_len) + 1):
                k = vocab.get(word[i:j])
                if k is not None:
                    s = base + scores[k]
                    if s > best[j]:
                        best[j] = s
                        back[j] = (i, k)
                    single |= j == i + 1
            if not single:
                s = base + self.unk_score
                if s > best[i + 1]:
                    best[i + 1] = s
                    back[i + 1] = (i, -1)
        out: list[int] = []
        j = n
        while j > 0:
            i, k = back[j]
            if k < 0:
                out.extend(reversed(self._fallback(word[i:j])))
            else:
                out.append(k)
            j = i
        out.reverse()
        return out

    def sample(self, word: str, alpha: float, rng: random.Random) -> list[int]:
        """A segmentation drawn with probability proportional to P(segmentation)^alpha
        (forward filtering, backward sampling): subword regularisation."""
        n = len(word)
        vocab, scores = self.vocab, self.scores
        fwd = [_NEG] * (n + 1)
        fwd[0] = 0.0
        ends: list[list[tuple[int, int, float]]] = [[] for _ in range(n + 1)]
        for i in range(n):
            single = False
            for j in range(i + 1, min(n, i + self.max_len) + 1):
                k = vocab.get(word[i:j])
                if k is not None:
                    ends[j].append((i, k, alpha * scores[k]))
                    single |= j == i + 1
            if not single:
                ends[i + 1].append((i, -1, alpha * self.unk_score))
        for j in range(1, n + 1):
            acc = _NEG
            for i, _, s in ends[j]:
                acc = _logsumexp(acc, fwd[i] + s)
            fwd[j] = acc
        out: list[int] = []
        j = n
        while j > 0:
            weights = [math.exp(fwd[i] + s - fwd[j]) for i, _, s in ends[j]]
            i, k, _ = rng.choices(ends[j], weights)[0]
            out.extend(reversed(self._fallback(word[i:j])) if k < 0 else [k])
            j = i
        out.reverse()
        return out

    def to_hf(self) -> dict[str, Any]:
        return {"type": "Unigram", "unk_id": self.unk_id,
                "vocab": [[p, s] for p, s in self.pieces], "byte_fallback": self.byte_fallback}


# --- training -----------------------------------------------------------------------------


def _seed_pieces(words: dict[str, int], size: int, max_len: int) -> dict[str, float]:
    chars: Counter = Counter()
    subs: Counter = Counter()
    for w, f in words.items():
        for c in w:
            chars[c] += f
        n = len(w)
        for i in range(n):
            for j in range(i + 2, min(n, i + max_len) + 1):
                subs[w[i:j]] += f
    ranked = sorted((s for s, c in subs.items() if c >= 2),
                    key=lambda s: (-subs[s] * len(s), s))[:size]
    seed = {c: float(f) for c, f in chars.items()}
    seed.update((s, float(subs[s])) for s in ranked)
    return seed


def _expected_counts(words: dict[str, int], logp: dict[str, float], max_len: int
                     ) -> tuple[dict[str, float], float]:
    """E-step: expected piece counts over all words (forward-backward), and log-likelihood."""
    counts: dict[str, float] = defaultdict(float)
    loglik = 0.0
    for w, f in words.items():
        n = len(w)
        edges: list[list[tuple[int, str, float]]] = [[] for _ in range(n + 1)]  # by end
        for i in range(n):
            for j in range(i + 1, min(n, i + max_len) + 1):
                s = logp.get(w[i:j])
                if s is not None:
                    edges[j].append((i, w[i:j], s))
        fwd = [_NEG] * (n + 1)
        fwd[0] = 0.0
        for j in range(1, n + 1):
            acc = _NEG
            for i, _, s in edges[j]:
                acc = _logsumexp(acc, fwd[i] + s)
            fwd[j] = acc
        bwd = [_NEG] * (n + 1)
        bwd[n] = 0.0
        for j in range(n, 0, -1):
            for i, _, s in edges[j]:
                bwd[i] = _logsumexp(bwd[i], bwd[j] + s)
        z = fwd[n]
        loglik += f * z
        for j in range(1, n + 1):
            for i, piece, s in edges[j]:
                counts[piece] += f * math.exp(fwd[i] + s + bwd[j] - z)
    return counts, loglik


def _best_split_score(piece: str, logp: dict[str, float], max_len: int) -> float:
    """Viterbi score of the piece split into other pieces (not itself)."""
    n = len(piece)
    best = [_NEG] * (n + 1)
    best[0] = 0.0
    for i in range(n):
        if best[i] <= _NEG:
            continue
        for j in range(i + 1, min(n, i + max_len) + 1):
            if i == 0 and j == n:
                continue
            s = logp.get(piece[i:j])
            if s is not None and best[i] + s > best[j]:
                best[j] = best[i] + s
    return best[n]


def train_unigram(texts: Iterable[str], vocab_size: int, special_tokens: list[str] | None = None,
                  max_piece_len: int = 16, seed_factor: int = 10, shrink: float = 0.75,
                  em_steps: int = 2) -> PipelineTokenizer:
    special_tokens = list(["<unk>"] if special_tokens is None else special_tokens)
    if "<unk>" not in special_tokens:
        raise DataError("Unigram needs <unk> among its special tokens")
    pre = Sequence([SplitNewlines(), Metaspace()])
    words = count_words(texts, pre)
    chars = sorted({c for w in words for c in w})
    fixed = len(special_tokens) + len(BYTE_TOKENS)
    target = vocab_size - fixed
    if target < len(chars):
        raise DataError(f"vocab_size={vocab_size} is smaller than the base alphabet: "
                        f"{fixed + len(chars)} tokens ({len(special_tokens)} special + 256 "
                        f"byte-fallback + {len(chars)} characters); use at least "
                        f"{fixed + len(chars)}")
    seed = _seed_pieces(words, seed_factor * target, max_piece_len)
    total = sum(seed.values())
    logp = {p: math.log(c / total) for p, c in seed.items()}
    char_set = set(chars)
    while True:
        for _ in range(em_steps):
            counts, _ = _expected_counts(words, logp, max_piece_len)
            kept = {p: c for p, c in counts.items() if c >= 0.5 or p in char_set}
            total = sum(kept.values())
            logp = {p: math.log(max(c, 1e-10) / total) for p, c in kept.items()}
        if len(logp) <= target:
            break
        keep_n = max(target, int(len(logp) * shrink))
        loss = {}
        for p, s in logp.items():
            if p in char_set:
                continue
            alt = _best_split_score(p, logp, max_piece_len)
            loss[p] = counts.get(p, 0.0) * (s - alt)
        removable = sorted(loss, key=lambda p: (loss[p], p))
        for p in removable[:len(logp) - keep_n]:
            del logp[p]
    ordered = sorted(logp.items(), key=lambda kv: (-kv[1], kv[0]))
    pieces = [(t, 0.0) for t in special_tokens] + [(b, 0.0) for b in BYTE_TOKENS] + ordered
    seen = set()
    for p, _ in pieces:
        if p in seen:
            raise DataError(f"special token {p!r} collides with a learned piece or byte token")
        seen.add(p)
    model = Unigram(pieces, unk_id=special_tokens.index("<unk>"), byte_fallback=True)
    special = {t: i for i, t in enumerate(special_tokens)}
    return PipelineTokenizer(model, pre, "metaspace", special_tokens=special)
