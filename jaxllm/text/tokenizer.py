"""The subword tokenizer: normalizer -> special-token split -> pre-tokenizer -> model, and back.

This is the Hugging Face `tokenizers` pipeline, so that a tokenizer.json maps onto it one
component to one object (hf_json.py) and gives the same ids:

    text --split on special tokens--> segments --normalize--> --pre-tokenize--> words
         --(byte-level: UTF-8 bytes as GPT-2's printable chars)--> model.tokenize(word) -> ids
    ids  --> tokens --decoder--> text

Encoding caches each word's ids (words repeat: Shakespeare's 1.2M words have ~30k distinct
ones), which is what makes pure-Python encoding fast: the regex split and a dict lookup per word.

`encode(text)` adds no special tokens; `encode(text, add_special_tokens=True)` applies the
post-processor template ([CLS] A [SEP] for BERT; nothing for GPT-2 and SmolLM2). Special tokens
written in the text ("<|endoftext|>", "<|im_start|>") are always recognised, as HF does.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from jaxllm.errors import DataError
from jaxllm.text.pretokenize import ByteLevel, bytes_to_unicode, unicode_to_bytes, utf8
from jaxllm.text.simple import _as_id_array, _quote

_CACHE_LIMIT = 1 << 20  # words; cleared when full (a pathological stream of distinct words)


class PipelineTokenizer:
    """A subword (or word-level) tokenizer built from HF-style components.

    normalizer: an object with normalize(str) -> str, or None
    pre_tokenizer: an object with split(str) -> list[str] (pretokenize.py)
    model: BPE, WordPiece, WordLevel (models.py) or Unigram (unigram.py)
    decoder: one of "byte_level", "wordpiece", "metaspace", "words" (see `decode`)
    special_tokens: token -> id, recognised in text and in `decode(skip_special_tokens=True)`
    template: post-processor for add_special_tokens: (single, pair) lists of "$A"/"$B"/token
    """

    def __init__(self, model, pre_tokenizer, decoder: str, normalizer=None,
                 special_tokens: dict[str, int] | None = None,
                 template: tuple[list[str], list[str]] | None = None,
                 kind: str | None = None, chat_template: str | None = None,
                 hf_extra: dict[str, Any] | None = None):
        self.model = model
        self.pre_tokenizer = pre_tokenizer
        self.normalizer = normalizer
        self.decoder = decoder
        self.byte_level = isinstance(pre_tokenizer, ByteLevel)
        self.special_tokens = dict(special_tokens or {})
        self.template = template
        self.chat_template = chat_template
        self.hf_extra = dict(hf_extra or {})  # tokenizer.json fields kept as read (metaspace...)
        self.kind = kind or _kind_of(model, self.byte_level)
        # id -> token, over the model vocabulary and the added special tokens
        self._itos: dict[int, str] = {i: t for t, i in model.vocab.items()}
        for t, i in self.special_tokens.items():
            if t in model.vocab and model.vocab[t] != i:
                raise DataError(f"special token {t!r} has id {i} but the vocabulary gives it "
                                f"{model.vocab[t]}")
            self._itos[i] = t
        self._vocab_size = max(self._itos) + 1
        if len(self._itos) != self._vocab_size:
            raise DataError(f"token ids must be 0..{self._vocab_size - 1} without gaps; "
                            f"{self._vocab_size - len(self._itos)} ids have no token")
        if template is not None:
            for item in [*template[0], *template[1]]:
                if item not in ("$A", "$B") and item not in self.special_tokens:
                    raise DataError(f"post-processor uses {item!r}, which is not a special token")
        self._special_re = (re.compile("|".join(re.escape(t) for t in sorted(
            self.special_tokens, key=len, reverse=True))) if self.special_tokens else None)
        self._cache: dict[str, list[int]] = {}
        self._b2u = bytes_to_unicode()

    # --- sizes and lookups ----------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def get_vocab(self) -> dict[str, int]:
        return {t: i for i, t in self._itos.items()}

    def token_to_id(self, token: str) -> int:
        i = self.special_tokens.get(token, self.model.vocab.get(token))
        if i is None:
            raise DataError(f"token {token!r} is not in the vocabulary of {self.vocab_size} "
                            f"tokens")
        return i

    def id_to_token(self, token_id: int) -> str:
        t = self._itos.get(int(token_id))
        if t is None:
            raise DataError(f"token id {token_id} is out of range: ids are "
                            f"0..{self.vocab_size - 1}")
        return t

    def special_token_id(self, token: str) -> int:
        """The id of a special token such as "<|endoftext|>" or "[CLS]"; an error for others."""
        if token not in self.special_tokens:
            raise DataError(f"{token!r} is not a special token of this tokenizer; it has "
                            f"{_quote(sorted(self.special_tokens))}")
        return self.special_tokens[token]

    # --- encoding -------------------------------------------------------------------------------

    def _encode_segment(self, text: str, out: list[int], sampler=None) -> None:
        if self.normalizer is not None:
            text = self.normalizer.normalize(text)
        if sampler is not None:  # subword regularisation: a fresh draw per word, no cache
            for word in self.pre_tokenizer.split(text):
                out += sampler(word)
            return
        cache = self._cache
        tokenize = self.model.tokenize
        for word in self.pre_tokenizer.split(text):
            ids = cache.get(word)
            if ids is None:
                if self.byte_level:
                    b2u = self._b2u
                    ids = tokenize("".join([b2u[b] for b in utf8(word)]))
                else:
                    ids = tokenize(word)
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                cache[word] = ids
            out += ids

    def _encode_plain(self, text: str, sampler=None) -> list[int]:
        if not isinstance(text, str):
            raise DataError(f"encode takes a str, got {type(text).__name__}; decode bytes first "
                            f"(bytes.decode('utf-8') names any invalid byte)")
        out: list[int] = []
        if self._special_re is None:
            self._encode_segment(text, out, sampler)
            return out
        start = 0
        for m in self._special_re.finditer(text):
            if m.start() > start:
                self._encode_segment(text[start:m.start()], out, sampler)
            out.append(self.special_tokens[m.group()])
            start = m.end()
        if start < len(text):
            self._encode_segment(text[start:], out, sampler)
        return out

    def encode_sampled(self, text: str, alpha: float = 0.1, seed: int | None = None
                       ) -> list[int]:
        """A random segmentation, P(segmentation)^alpha (Unigram only): subword regularisation.
        alpha -> large approaches Viterbi; alpha = 0 is uniform over segmentations."""
        if not hasattr(self.model, "sample"):
            raise DataError(f"sampled encoding needs a Unigram tokenizer; this one is "
                            f"{self.kind!r}")
        rng = random.Random(seed)
        return self._encode_plain(text, lambda w: self.model.sample(w, alpha, rng))

    def encode(self, text: str, add_special_tokens: bool = False,
               pair: str | None = None) -> list[int]:
        """text -> ids. add_special_tokens applies the model's template (BERT: [CLS] a [SEP]
        or, with `pair`, [CLS] a [SEP] b [SEP])."""
        ids = self._encode_plain(text)
        pair_ids = self._encode_plain(pair) if pair is not None else None
        if not add_special_tokens or self.template is None:
            return ids if pair_ids is None else ids + pair_ids
        single, pair_template = self.template
        out: list[int] = []
        for item in (single if pair_ids is None else pair_template):
            if item == "$A":
                out += ids
            elif item == "$B":
                out += pair_ids
            else:
                out.append(self.special_tokens[item])
        return out

    def encode_batch(self, texts: Iterable[str], add_special_tokens: bool = False) -> list[list[int]]:
        return [self.encode(t, add_special_tokens) for t in texts]

    def encode_array(self, text: str) -> np.ndarray:
        return np.asarray(self.encode(text), dtype=np.int32)

    # --- decoding -------------------------------------------------------------------------------

    def decode(self, ids: Sequence[int] | np.ndarray, skip_special_tokens: bool = False) -> str:
        arr = _as_id_array(ids)
        bad = arr[(arr < 0) | (arr >= self.vocab_size)]
        if bad.size:
            raise DataError(f"cannot decode ids {_quote(sorted(set(bad.tolist())))}: this "
                            f"tokenizer has ids 0..{self.vocab_size - 1}")
        itos = self._itos
        special_ids = set(self.special_tokens.values())
        if skip_special_tokens:
            tokens = [itos[i] for i in arr.tolist() if i not in special_ids]
        else:
            tokens = [itos[i] for i in arr.tolist()]
        if self.decoder == "byte_level":
            u2b = unicode_to_bytes()
            out = bytearray()
            for t in tokens:
                if t in self.special_tokens:
                    out += t.encode()
                else:
                    out += bytes(u2b[c] for c in t)
            return out.decode("utf-8", errors="replace")
        if self.decoder == "wordpiece":
            return _wordpiece_decode(tokens, self.model.prefix)
        if self.decoder == "metaspace":
            return _metaspace_decode(tokens, self.pre_tokenizer)
        return " ".join(tokens)

    def apply_chat_template(self, messages, add_generation_prompt: bool = True) -> str:
        """messages [{"role": ..., "content": ...}] -> the prompt text (ChatML; see chat.py)."""
        from jaxllm.text.chat import apply_chat_template
        return apply_chat_template(self.chat_template, messages, add_generation_prompt)

    # --- files ----------------------------------------------------------------------------------

    def to_hf_dict(self) -> dict[str, Any]:
        from jaxllm.text import hf_json
        return hf_json.to_hf(self)

    def save(self, path: str | os.PathLike) -> None:
        """Write a Hugging Face tokenizer.json (atomically)."""
        from jaxllm.files import write_json_atomic
        write_json_atomic(path, self.to_hf_dict())

    def __repr__(self) -> str:
        return f"PipelineTokenizer(kind={self.kind!r}, vocab_size={self.vocab_size})"


def _kind_of(model, byte_level: bool) -> str:
    name = type(model).__name__
    if name == "BPE":
        return "bytebpe" if byte_level else "bpe"
    return {"WordPiece": "wordpiece", "WordLevel": "word", "Unigram": "unigram"}.get(name, name)


_CLEANUP = [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
            (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")]


def _wordpiece_decode(tokens: list[str], prefix: str) -> str:
    """HF's WordPiece decoder: "##" pieces glue on, others get a space; then BERT's cleanup,
    which HF applies to each token on its own (so " do not" across tokens stays)."""
    parts = []
    for i, t in enumerate(tokens):
        if i > 0:
            t = t.replace(prefix, "", 1) if t.startswith(prefix) else " " + t
        for a, b in _CLEANUP:
            t = t.replace(a, b)
        parts.append(t)
    return "".join(parts)


def _metaspace_decode(tokens: list[str], pre) -> str:
    """"▁" -> " ", and <0xXX> byte tokens (byte fallback) back to their UTF-8 bytes."""
    out = bytearray()
    for t in tokens:
        if len(t) == 6 and t.startswith("<0x") and t.endswith(">"):
            try:
                out.append(int(t[3:5], 16))
                continue
            except ValueError:
                pass
        out += t.encode()
    text = out.decode("utf-8", errors="replace").replace(pre.replacement, " ")
    if pre.prepend_scheme != "never" and text.startswith(" "):
        text = text[1:]
    return text

