"""Normalizers and pre-tokenizers: how a text is cut into the words a subword model sees.

Each piece here mirrors one Hugging Face `tokenizers` component, so a tokenizer.json names it
and the ids come out the same (tests hold them equal to HF and tiktoken):

    ByteLevel   GPT-2's regex split, optionally with every digit its own word first (SmolLM2's
                "Digits(individual_digits) + ByteLevel"); words are later mapped byte -> char
    Whitespace  `\\w+|[^\\w\\s]+` (word-level and classic BPE)
    Metaspace   SentencePiece style: " " becomes "▁" and starts a new word, so decoding is exact
    Bert        BERT's basic tokenizer: the BertNormalizer (clean control characters, space around
                CJK ideographs, strip accents, lower-case) + BertPreTokenizer (split on
                whitespace, each punctuation character its own word)

Every object has `split(text) -> list[str]` and `to_hf() -> dict` (its tokenizer.json entry).
"""

from __future__ import annotations

import functools
import unicodedata
from typing import Any

import regex

from jaxllm.errors import DataError

# GPT-2's pattern (openai/gpt-2 encoder.py; tiktoken "gpt2"; HF ByteLevel use_regex=True)
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table: printable Latin-1 bytes map to themselves, the
    other 68 bytes to U+0100 and up, so every token is a printable string (space is "Ġ")."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in keep}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return table


@functools.cache
def unicode_to_bytes() -> dict[str, int]:
    return {c: b for b, c in bytes_to_unicode().items()}


def utf8(text: str) -> bytes:
    """text -> UTF-8, with a clear error for lone surrogates (a str that is not valid Unicode)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise DataError(f"text has a lone surrogate {text[e.start:e.end]!r} at index {e.start}: "
                        f"it is not valid Unicode; decode bytes with errors='replace' "
                        f"first") from None


class ByteLevel:
    """GPT-2 regex split (HF `ByteLevel(use_regex=True)`), optionally digits first.

    individual_digits: HF `Digits(individual_digits=True)` runs first (SmolLM2, llama.cpp "smollm"
    pre-tokenizer): every digit is a word of its own and the regex then runs on the text between
    digits, so "a  12" -> "a", "  ", "1", "2" (not "a", " ", " 1" ...).
    """

    def __init__(self, add_prefix_space: bool = False, individual_digits: bool = False,
                 pattern: str = GPT2_PATTERN):
        self.add_prefix_space = add_prefix_space
        self.individual_digits = individual_digits
        self.pattern = pattern
        self._findall = regex.compile(pattern).findall
        self._digits = regex.compile(r"(\p{N})|([^\p{N}]+)").findall

    def split(self, text: str) -> list[str]:
        if self.add_prefix_space and not text.startswith(" "):
            text = " " + text
        if not self.individual_digits:
            return self._findall(text)
        out: list[str] = []
        findall = self._findall
        for digit, other in self._digits(text):
            if digit:
                out.append(digit)
            else:
                out.extend(findall(other))
        return out

    def to_hf(self) -> dict[str, Any]:
        byte_level = {"type": "ByteLevel", "add_prefix_space": self.add_prefix_space,
                      "trim_offsets": True, "use_regex": True}
        if not self.individual_digits:
            return byte_level
        return {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True}, byte_level]}


class Whitespace:
    """HF `Whitespace`: runs of word characters, or runs of other non-space characters."""

    def __init__(self):
        self._findall = regex.compile(r"\w+|[^\w\s]+").findall

    def split(self, text: str) -> list[str]:
        return self._findall(text)

    def to_hf(self) -> dict[str, Any]:
        return {"type": "Whitespace"}


class Metaspace:
    """HF `Metaspace`: spaces become "▁", each "▁" starts a word ("a  b" -> "a", "▁", "▁b").

    prepend_scheme "never" keeps decoding exact (decode(encode(s)) == s for every s); "always"
    and "first" (SentencePiece's dummy prefix) are read from files that use them.
    """

    def __init__(self, replacement: str = "▁", prepend_scheme: str = "never", split: bool = True):
        if prepend_scheme not in ("never", "always", "first"):
            raise DataError(f"Metaspace prepend_scheme {prepend_scheme!r} is not one of "
                            f"never, always, first")
        self.replacement = replacement
        self.prepend_scheme = prepend_scheme
        self.do_split = split

    def split(self, text: str, first: bool = True) -> list[str]:
        r = self.replacement
        text = text.replace(" ", r)
        if self.prepend_scheme == "always" or (self.prepend_scheme == "first" and first):
            if not text.startswith(r):
                text = r + text
        if not self.do_split:
            return [text] if text else []
        words = text.split(r)
        out = [words[0]] if words[0] else []
        out.extend(r + w for w in words[1:])
        return out

    def to_hf(self) -> dict[str, Any]:
        return {"type": "Metaspace", "replacement": self.replacement,
                "prepend_scheme": self.prepend_scheme, "split": self.do_split}


# --- BERT -------------------------------------------------------------------------------------

# Rust `char::is_whitespace` (Unicode White_Space) minus the control characters BERT drops first
_BERT_SPACE = frozenset("\t\n\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
                        "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def _is_cjk(c: str) -> bool:
    cp = ord(c)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


@functools.lru_cache(maxsize=1 << 16)
def _bert_char_class(c: str) -> int:
    """0 keep, 1 drop (NUL, U+FFFD, control/format/unassigned), 2 space, 3 CJK, 4 punctuation."""
    if c in _BERT_SPACE:
        return 2
    cat = unicodedata.category(c)
    if c == "\0" or c == "\ufffd" or cat[0] == "C":
        return 1
    if _is_cjk(c):
        return 3
    cp = ord(c)
    if (33 <= cp <= 47) or (58 <= cp <= 64) or (91 <= cp <= 96) or (123 <= cp <= 126) \
            or cat[0] == "P":
        return 4
    return 0


def _lower(text: str) -> str:
    # str.lower() applies the context-dependent final-sigma rule; Rust's per-char to_lowercase
    # (what BERT in HF does) does not, so lower capital sigma on its own.
    if "Σ" in text:
        return "".join(c.lower() for c in text)
    return text.lower()


class Bert:
    """BERT's basic tokenizer (HF BertNormalizer + BertPreTokenizer), for uncased models."""

    def __init__(self, lowercase: bool = True, strip_accents: bool | None = None,
                 clean_text: bool = True, handle_chinese_chars: bool = True):
        self.lowercase = lowercase
        self.strip_accents = lowercase if strip_accents is None else strip_accents
        self._strip_accents_hf = strip_accents
        self.clean_text = clean_text
        self.handle_chinese_chars = handle_chinese_chars

    def normalize(self, text: str) -> str:
        if not text.isascii() or not text.isprintable():
            out = []
            for c in text:
                k = _bert_char_class(c)
                if k == 1 and self.clean_text:
                    continue
                if k == 2 and self.clean_text:
                    out.append(" ")
                elif k == 3 and self.handle_chinese_chars:
                    out.append(f" {c} ")
                else:
                    out.append(c)
            text = "".join(out)
        if self.strip_accents and not text.isascii():
            text = "".join(c for c in unicodedata.normalize("NFD", text)
                           if unicodedata.category(c) != "Mn")
        if self.lowercase:
            text = _lower(text)
        return text

    def split(self, text: str) -> list[str]:
        """Whitespace-split, then every punctuation character is a word of its own."""
        out: list[str] = []
        for word in text.split():
            if word.isalnum():  # the common case: no punctuation inside
                out.append(word)
                continue
            start = 0
            for i, c in enumerate(word):
                if _bert_char_class(c) == 4:
                    if i > start:
                        out.append(word[start:i])
                    out.append(c)
                    start = i + 1
            if start < len(word):
                out.append(word[start:])
        return out

    def to_hf_normalizer(self) -> dict[str, Any]:
        return {"type": "BertNormalizer", "clean_text": self.clean_text,
                "handle_chinese_chars": self.handle_chinese_chars,
                "strip_accents": self._strip_accents_hf, "lowercase": self.lowercase}

    def to_hf(self) -> dict[str, Any]:
        return {"type": "BertPreTokenizer"}
