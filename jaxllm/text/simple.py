"""Character and byte tokenizers: the two that need no training beyond counting characters.

CharTokenizer is nanoGPT's shakespeare_char tokenizer: the vocabulary is the sorted set of
characters of the training text and a character's id is its index in that list. Encoding is
vectorised (the text's UTF-32 code points index a code point -> id table), so the whole
Shakespeare corpus (about 4.8M characters) encodes in well under 0.1 s.

ByteTokenizer maps text to its UTF-8 bytes: 256 ids, no training, never out of vocabulary, and
any str round-trips through it. Decoding arbitrary ids (a model's samples) can produce invalid
UTF-8; those bytes decode to U+FFFD rather than raising.

Both share one small interface (the one subword tokenizers will implement as well):

    tok.kind, tok.vocab_size
    tok.encode(text) -> list[int]       tok.encode_array(text) -> np.ndarray[int32]
    tok.decode(ids) -> str
    tok.token_to_id(token) -> int       tok.id_to_token(id) -> str
    tok.to_dict() -> JSON-able dict with a "kind" key;  tok.save(path) writes it atomically
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from jaxllm.errors import DataError
from jaxllm.files import write_json_atomic

# how many offending characters / ids an error message quotes before it says "..."
_MAX_QUOTED = 10


def _quote(items: Sequence[Any]) -> str:
    shown = ", ".join(repr(x) for x in items[:_MAX_QUOTED])
    return shown + (f", ... ({len(items)} in all)" if len(items) > _MAX_QUOTED else "")


def _as_id_array(ids: Iterable[int] | np.ndarray) -> np.ndarray:
    """A sequence of ints (list, tuple, numpy or jax array, 0-D or 1-D) -> 1-D int64 numpy array."""
    if not hasattr(ids, "__len__") and not hasattr(ids, "shape"):  # a generator, say
        ids = list(ids)
    arr = np.asarray(ids)
    if arr.ndim > 1:
        raise DataError(f"decode takes one sequence of ids, got an array of shape {arr.shape}; "
                        f"decode each row separately")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"decode takes integer token ids, got dtype {arr.dtype}")
    return arr.astype(np.int64).reshape(-1)


# -----------------------------------------------------------------------------------------------
# characters


class CharTokenizer:
    """One id per distinct character of the training text, ids in code-point order.

    Build it with `CharTokenizer.train(texts)` (or from a saved vocabulary). Encoding a character
    the vocabulary does not have raises DataError: a char model has no <unk> token.
    """

    kind = "char"

    def __init__(self, vocab: Sequence[str]):
        vocab = list(vocab)
        if not vocab:
            raise DataError("char tokenizer has an empty vocabulary: train it on a non-empty text")
        bad = [c for c in vocab if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise DataError(f"char tokenizer vocabulary must be single characters, got "
                            f"{_quote(bad)}")
        if vocab != sorted(set(vocab)):
            raise DataError("char tokenizer vocabulary must be sorted distinct characters "
                            "(as sorted(set(text)) gives)")
        self.vocab: list[str] = vocab
        self._stoi = {c: i for i, c in enumerate(vocab)}
        # id -> code point (sorting 1-char strs sorts by code point, so this is increasing)
        self._codes = np.array([ord(c) for c in vocab], dtype=np.uint32)
        # code point -> id, -1 where unknown: a dense table up to the largest code point (8 KiB
        # for Shakespeare, at most 4.4 MB), several times faster than a binary search
        self._table = np.full(int(self._codes[-1]) + 1, -1, dtype=np.int32)
        self._table[self._codes] = np.arange(len(vocab), dtype=np.int32)

    @classmethod
    def train(cls, texts: Iterable[str]) -> CharTokenizer:
        """Vocabulary = the sorted distinct characters of all texts (nanoGPT: sorted(set(text)))."""
        if isinstance(texts, str):  # a lone str is almost always meant as one text
            texts = [texts]
        chars: set[str] = set()
        for text in texts:
            chars.update(text)
        if not chars:
            raise DataError("cannot build a char tokenizer from empty text: the corpus has no "
                            "characters")
        return cls(sorted(chars))

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode_array(self, text: str) -> np.ndarray:
        """text -> int32 ids, vectorised: UTF-32 code points index a code point -> id table."""
        # surrogatepass: a lone surrogate (invalid Unicode, but a legal str) is still one code point
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        beyond = codes >= self._table.size  # above the largest known code point
        ids = self._table[np.minimum(codes, self._table.size - 1)]
        unknown = beyond | (ids < 0)
        if unknown.any():
            missing = sorted({chr(c) for c in codes[unknown].tolist()})
            raise DataError(f"text has characters the char tokenizer does not know: "
                            f"{_quote(missing)}; the tokenizer knows {self.vocab_size} characters "
                            f"(those of the text it was built from)")
        return ids

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        arr = _as_id_array(ids)
        bad = arr[(arr < 0) | (arr >= self.vocab_size)]
        if bad.size:
            raise DataError(f"cannot decode ids {_quote(sorted(set(bad.tolist())))}: the char "
                            f"tokenizer has ids 0..{self.vocab_size - 1}")
        return self._codes[arr].astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")

    def token_to_id(self, token: str) -> int:
        if token not in self._stoi:
            raise DataError(f"character {token!r} is not in the char tokenizer's vocabulary of "
                            f"{self.vocab_size} characters")
        return self._stoi[token]

    def id_to_token(self, token_id: int) -> str:
        if not 0 <= int(token_id) < self.vocab_size:
            raise DataError(f"token id {token_id} is out of range: the char tokenizer has ids "
                            f"0..{self.vocab_size - 1}")
        return self.vocab[int(token_id)]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "vocab": list(self.vocab)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharTokenizer:
        vocab = d.get("vocab")
        if not isinstance(vocab, list):
            raise DataError('a char tokenizer file needs a "vocab" list of characters')
        return cls(vocab)

    def save(self, path: str | os.PathLike) -> None:
        write_json_atomic(path, self.to_dict())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharTokenizer) and other.vocab == self.vocab

    def __hash__(self) -> int:
        return hash((self.kind, tuple(self.vocab)))

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


# -----------------------------------------------------------------------------------------------
# bytes


class ByteTokenizer:
    """Ids are the UTF-8 bytes of the text: 256 ids, nothing to train, never out of vocabulary."""

    kind = "byte"
    vocab_size = 256

    @classmethod
    def train(cls, texts: Iterable[str] = ()) -> ByteTokenizer:
        """Nothing to learn; accepted so that every tokenizer kind is built the same way."""
        return cls()

    def encode_array(self, text: str) -> np.ndarray:
        # surrogatepass keeps a lone surrogate (not valid Unicode) encodable instead of raising;
        # it decodes back as U+FFFD. Every valid str round-trips exactly.
        data = text.encode("utf-8", "surrogatepass")
        return np.frombuffer(data, dtype=np.uint8).astype(np.int32)

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8", "surrogatepass"))

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        arr = _as_id_array(ids)
        bad = arr[(arr < 0) | (arr > 255)]
        if bad.size:
            raise DataError(f"cannot decode ids {_quote(sorted(set(bad.tolist())))}: the byte "
                            f"tokenizer has ids 0..255")
        # a model can sample byte sequences that are not UTF-8; show them as U+FFFD
        return arr.astype(np.uint8).tobytes().decode("utf-8", errors="replace")

    def token_to_id(self, token: str) -> int:
        data = token.encode("utf-8", "surrogatepass")
        if len(data) != 1:
            raise DataError(f"token {token!r} is {len(data)} bytes in UTF-8; a byte token is "
                            f"one byte (a character in U+0000..U+007F)")
        return data[0]

    def id_to_token(self, token_id: int) -> str:
        if not 0 <= int(token_id) <= 255:
            raise DataError(f"token id {token_id} is out of range: the byte tokenizer has ids "
                            f"0..255")
        # bytes 0x80..0xFF are not characters on their own; latin-1 names them one-to-one
        return bytes([int(token_id)]).decode("latin-1")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ByteTokenizer:
        return cls()

    def save(self, path: str | os.PathLike) -> None:
        write_json_atomic(path, self.to_dict())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ByteTokenizer)

    def __hash__(self) -> int:
        return hash(self.kind)

    def __repr__(self) -> str:
        return "ByteTokenizer(vocab_size=256)"
