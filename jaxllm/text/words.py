"""A word-level tokenizer for short texts such as image captions.

    tok = WordTokenizer.train(["a photo of the digit seven", "a handwritten 7"])
    ids = tok.encode("a handwritten 7")          # [id(a), id(handwritten), id(7), EOT]
    tok.encode("a sketch of 7")                  # "sketch" was never seen: [UNK]

Words are lower-cased runs of letters or digits; punctuation is dropped. Id 0 is padding, 1 the
unknown word [UNK] and 2 the end-of-text token [EOT] that `encode` appends (CLIP's text tower
reads its embedding there); the trained words follow in sorted order. Unknown words map to
[UNK] rather than failing, so a zero-shot prompt may use words training never saw.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from jaxllm.errors import DataError
from jaxllm.io.files import atomic_write

SPECIALS = ("[PAD]", "[UNK]", "[EOT]")
PAD_ID, UNK_ID, EOT_ID = 0, 1, 2
_WORD = re.compile(r"[a-z]+|[0-9]+")


def split_words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class WordTokenizer:
    kind = "word"

    def __init__(self, words: Sequence[str]):
        words = list(words)
        if words != sorted(set(words)) or any(not _WORD.fullmatch(w or "") for w in words):
            raise DataError("word tokenizer vocabulary must be sorted distinct lower-case words")
        self.vocab = list(SPECIALS) + words
        self._stoi = {w: i for i, w in enumerate(self.vocab)}

    @classmethod
    def train(cls, texts: Iterable[str]) -> WordTokenizer:
        words = {w for t in ([texts] if isinstance(texts, str) else texts) for w in split_words(t)}
        if not words:
            raise DataError("cannot build a word tokenizer from texts without words")
        return cls(sorted(words))

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        """The ids of text's words (unknown ones [UNK]) followed by [EOT]."""
        return [self._stoi.get(w, UNK_ID) for w in split_words(text)] + [EOT_ID]

    def encode_batch(self, texts: Sequence[str], length: int) -> tuple[np.ndarray, np.ndarray]:
        """(tokens (N, length) int32 padded with [PAD], eot (N,) int32 index of each [EOT]).

        A text longer than length - 1 words is cut to fit, keeping its [EOT]."""
        tokens = np.full((len(texts), length), PAD_ID, np.int32)
        eot = np.zeros(len(texts), np.int32)
        for i, text in enumerate(texts):
            ids = self.encode(text)
            ids = ids[:length - 1] + [EOT_ID] if len(ids) > length else ids
            tokens[i, :len(ids)] = ids
            eot[i] = len(ids) - 1
        return tokens, eot

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.vocab[i] for i in ids if i not in (PAD_ID, EOT_ID))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "words": self.vocab[len(SPECIALS):]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WordTokenizer:
        if not isinstance(d.get("words"), list):
            raise DataError('a word tokenizer needs a "words" list')
        return cls(d["words"])

    def save(self, path: str | os.PathLike) -> None:
        atomic_write(path, json.dumps(self.to_dict(), indent=0) + "\n")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WordTokenizer) and other.vocab == self.vocab

    def __hash__(self) -> int:
        return hash(tuple(self.vocab))
