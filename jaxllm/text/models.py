"""Subword models: one word (a piece the pre-tokenizer cut) -> token ids.

    BPE        apply learned merges, lowest rank first (GPT-2, SmolLM2, SentencePiece BPE mode)
    WordPiece  greedy longest match from the left, "##" on continuations, [UNK] for the whole word
               when some part cannot be matched (BERT)
    WordLevel  the word itself, or <unk>

Each has `tokenize(word) -> list[int]`, `vocab: dict[str, int]` and `to_hf() -> dict` (the
"model" entry of tokenizer.json). The Unigram model lives in unigram.py, with its trainer.
Training for BPE and WordPiece lives in bpe.py and wordpiece.py.
"""

from __future__ import annotations

from typing import Any

from jaxllm.errors import DataError


def _check_vocab(vocab: dict[str, int], what: str) -> None:
    if not vocab:
        raise DataError(f"{what} vocabulary is empty")
    ids = sorted(vocab.values())
    if ids != list(range(len(ids))):
        raise DataError(f"{what} vocabulary ids must be 0..{len(ids) - 1} with no gaps or "
                        f"repeats")


class BPE:
    """Byte-pair encoding: start from characters, apply merges in rank order.

    The loop is GPT-2's `bpe()`: find the adjacent pair with the lowest merge rank, merge every
    occurrence of it left to right, repeat. It gives the same result as HF's priority queue
    (leftmost first among equal ranks) and as tiktoken's rank-of-concatenation rule on GPT-2.

    Characters missing from the vocabulary become `<0xXX>` byte tokens (byte_fallback), or the
    unk token (consecutive ones fused into one when fuse_unk), or an error: never silently dropped.
    """

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]],
                 unk_token: str | None = None, byte_fallback: bool = False,
                 fuse_unk: bool = False, ignore_merges: bool = False):
        _check_vocab(vocab, "BPE")
        self.vocab = vocab
        self.merges = merges
        self.unk_token = unk_token
        self.byte_fallback = byte_fallback
        self.fuse_unk = fuse_unk
        self.ignore_merges = ignore_merges
        # pair -> (rank, merged symbol)
        self.ranks: dict[tuple[str, str], tuple[int, str]] = {}
        for rank, (a, b) in enumerate(merges):
            if a + b not in vocab or a not in vocab or b not in vocab:
                raise DataError(f"BPE merge #{rank} {a!r} + {b!r} uses a token that is not in "
                                f"the vocabulary")
            self.ranks.setdefault((a, b), (rank, a + b))
        if unk_token is not None and unk_token not in vocab:
            raise DataError(f"BPE unk_token {unk_token!r} is not in the vocabulary")

    def _symbols(self, word: str) -> list[str]:
        vocab = self.vocab
        if all(c in vocab for c in word):
            return list(word)
        out: list[str] = []
        for c in word:
            if c in vocab:
                out.append(c)
            elif self.byte_fallback and all(f"<0x{b:02X}>" in vocab for b in c.encode()):
                out.extend(f"<0x{b:02X}>" for b in c.encode())
            elif self.unk_token is not None:
                if not (self.fuse_unk and out and out[-1] is _UNK):
                    out.append(_UNK)
            else:
                raise DataError(f"character {c!r} is not in the BPE vocabulary and the tokenizer "
                                f"has no unk token or byte fallback")
        return out

    def tokenize(self, word: str) -> list[int]:
        vocab = self.vocab
        if self.ignore_merges and word in vocab:
            return [vocab[word]]
        symbols = self._symbols(word)
        ranks = self.ranks
        while len(symbols) > 1:
            best = None
            for pair in zip(symbols, symbols[1:]):
                r = ranks.get(pair)
                if r is not None and (best is None or r[0] < best[0]):
                    best = r
                    first, second = pair
            if best is None:
                break
            merged = best[1]
            out: list[str] = []
            i, n = 0, len(symbols)
            while i < n:
                if i < n - 1 and symbols[i] == first and symbols[i + 1] == second:
                    out.append(merged)
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            symbols = out
        unk = vocab.get(self.unk_token) if self.unk_token is not None else None
        return [unk if s is _UNK else vocab[s] for s in symbols]

    def to_hf(self) -> dict[str, Any]:
        return {"type": "BPE", "dropout": None, "unk_token": self.unk_token,
                "continuing_subword_prefix": None, "end_of_word_suffix": None,
                "fuse_unk": self.fuse_unk, "byte_fallback": self.byte_fallback,
                "ignore_merges": self.ignore_merges, "vocab": self.vocab,
                "merges": [[a, b] for a, b in self.merges]}


class _Unk(str):
    """A marker symbol for an unknown character (distinct from any real token string)."""


_UNK = _Unk("\0unk")


class WordPiece:
    """BERT's WordPiece: greedy longest-match-first, "##" continuations, [UNK] for the word."""

    def __init__(self, vocab: dict[str, int], unk_token: str = "[UNK]",
                 continuing_subword_prefix: str = "##", max_input_chars_per_word: int = 100):
        _check_vocab(vocab, "WordPiece")
        if unk_token not in vocab:
            raise DataError(f"WordPiece unk_token {unk_token!r} is not in the vocabulary")
        self.vocab = vocab
        self.unk_token = unk_token
        self.prefix = continuing_subword_prefix
        self.max_chars = max_input_chars_per_word
        self.unk_id = vocab[unk_token]

    def tokenize(self, word: str) -> list[int]:
        vocab = self.vocab
        whole = vocab.get(word)
        if whole is not None and len(word) <= self.max_chars:
            return [whole]
        n = len(word)
        if n > self.max_chars:
            return [self.unk_id]
        out: list[int] = []
        start = 0
        while start < n:
            end = n
            found = None
            while start < end:
                piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                found = vocab.get(piece)
                if found is not None:
                    break
                end -= 1
            if found is None:
                return [self.unk_id]
            out.append(found)
            start = end
        return out

    def to_hf(self) -> dict[str, Any]:
        return {"type": "WordPiece", "unk_token": self.unk_token,
                "continuing_subword_prefix": self.prefix,
                "max_input_chars_per_word": self.max_chars, "vocab": self.vocab}


class WordLevel:
    """One id per word; out-of-vocabulary words are the unk token."""

    def __init__(self, vocab: dict[str, int], unk_token: str = "<unk>"):
        _check_vocab(vocab, "word-level")
        if unk_token not in vocab:
            raise DataError(f"word-level unk_token {unk_token!r} is not in the vocabulary")
        self.vocab = vocab
        self.unk_token = unk_token
        self.unk_id = vocab[unk_token]

    def tokenize(self, word: str) -> list[int]:
        return [self.vocab.get(word, self.unk_id)]

    def to_hf(self) -> dict[str, Any]:
        return {"type": "WordLevel", "vocab": self.vocab, "unk_token": self.unk_token}
