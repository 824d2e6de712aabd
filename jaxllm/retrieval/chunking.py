"""Documents and the chunks an index stores, each chunk carrying its document's metadata.

    docs = [Document("a1", "First paragraph.\\n\\nSecond one.", title="A", metadata={"category": "x"})]
    chunks = chunk_documents(docs, Chunking("window", size=256, overlap=64))
    chunks[0].metadata  # {'doc_id': 'a1', 'title': 'A', 'position': 0, 'start': 0, 'end': ..., 'category': 'x'}

Sizes are counted in words (runs of non-space characters), so a chunk is always a span of the
original text (`text[start:end]`). Kinds:

- "window": fixed windows of `size` words, each sharing `overlap` words with the previous one;
- "sentences" / "paragraphs": whole sentences (or paragraphs) packed greedily up to `size` words,
  the last ones of a chunk (up to `overlap` words) repeated at the start of the next; a single
  sentence or paragraph longer than `size` is cut in windows;
- "none": one chunk per document.

`chunk_documents(..., per_type={"faq": Chunking("none")})` picks a chunking per document type
(the document's metadata field `type_field`, "type" by default).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from jaxllm.errors import ConfigError, DataError

KINDS = ("window", "sentences", "paragraphs", "none")
_WORD = re.compile(r"\S+")
# A sentence ends at . ! or ? (closing quotes/brackets may follow) before white space.
_SENTENCE_END = re.compile(r"[.!?][\"')\]\u201d\u2019]*(?=\s)")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
# Metadata keys every chunk gets; a document's own metadata may not use them.
RESERVED = ("doc_id", "title", "position", "start", "end")


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunk:
    id: str  # "<doc_id>#<position>"
    text: str
    metadata: dict[str, Any]  # doc_id, title, position, start, end + the document's fields


@dataclass(frozen=True)
class Chunking:
    kind: str = "window"
    size: int = 256  # words per chunk, at most
    overlap: int = 64  # words shared with the previous chunk

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"chunking kind={self.kind!r} is not one of {', '.join(KINDS)}")
        if self.kind != "none":
            if not isinstance(self.size, int) or self.size < 1:
                raise ConfigError(f"chunking size={self.size!r} must be a positive number of "
                                  f"words")
            if not isinstance(self.overlap, int) or not 0 <= self.overlap < self.size:
                raise ConfigError(f"chunking overlap={self.overlap!r} must be in [0, size) = "
                                  f"[0, {self.size})")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Chunking:
        return cls(**d)


def _word_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    return [m.span() for m in _WORD.finditer(text, start, len(text) if end is None else end)]


def _windows(words: list[tuple[int, int]], size: int, overlap: int) -> list[tuple[int, int]]:
    """Character spans of windows of `size` words, consecutive ones sharing `overlap` words."""
    spans = []
    step = size - overlap
    for i in range(0, max(len(words), 1), step):
        part = words[i: i + size]
        if part:
            spans.append((part[0][0], part[-1][1]))
        if i + size >= len(words):
            break
    return spans


def _units(text: str, kind: str) -> list[tuple[int, int]]:
    """Character spans of the sentences or paragraphs of a text (stripped, none empty)."""
    if kind == "paragraphs":
        cuts = [(m.start(), m.end()) for m in _PARAGRAPH_BREAK.finditer(text)]
    else:
        cuts = [(m.end(), m.end()) for m in _SENTENCE_END.finditer(text)]
    spans, pos = [], 0
    for a, b in cuts + [(len(text), len(text))]:
        words = _word_spans(text, pos, a)
        if words:
            spans.append((words[0][0], words[-1][1]))
        pos = b
    return spans


def _packed(text: str, kind: str, size: int, overlap: int) -> list[tuple[int, int]]:
    """Whole units packed up to `size` words; the tail of a chunk (<= overlap words) repeats."""
    units = []  # (start, end, words) with every unit at most `size` words
    for a, b in _units(text, kind):
        words = _word_spans(text, a, b)
        if len(words) > size:
            units += [(s, e, len(_word_spans(text, s, e))) for s, e in _windows(words, size, overlap)]
        else:
            units.append((a, b, len(words)))
    spans, i = [], 0
    while i < len(units):
        j, n = i, 0
        while j < len(units) and n + units[j][2] <= size:
            n += units[j][2]
            j += 1
        j = max(j, i + 1)
        spans.append((units[i][0], units[j - 1][1]))
        if j >= len(units):
            break
        # the next chunk starts with the last units of this one that fit in `overlap` words
        # and leave room for the next new unit
        back, m = j, 0
        while back - 1 > i and m + units[back - 1][2] <= min(overlap, size - units[j][2]):
            back -= 1
            m += units[back][2]
        i = back
    return spans


def chunk_spans(text: str, chunking: Chunking) -> list[tuple[int, int]]:
    """Character spans (start, end) of a text's chunks; none for a text without words."""
    words = _word_spans(text)
    if not words:
        return []
    if chunking.kind == "none":
        return [(words[0][0], words[-1][1])]
    if chunking.kind == "window":
        return _windows(words, chunking.size, chunking.overlap)
    return _packed(text, chunking.kind, chunking.size, chunking.overlap)


def chunk_documents(docs, chunking: Chunking, *, per_type: dict[str, Chunking] | None = None,
                    type_field: str = "type") -> list[Chunk]:
    """The chunks of documents, in document order; chunk metadata = doc_id, title, position
    (the chunk's index in its document), start and end (characters) + the document's fields."""
    per_type = per_type or {}
    chunks, seen = [], set()
    for doc in docs:
        if doc.id in seen:
            raise DataError(f"document id {doc.id!r} appears twice; ids must be unique")
        seen.add(doc.id)
        clash = [k for k in RESERVED if k in doc.metadata]
        if clash:
            raise DataError(f"document {doc.id!r}: metadata field(s) {clash} are reserved for "
                            f"chunks ({', '.join(RESERVED)}); rename them")
        how = per_type.get(doc.metadata.get(type_field), chunking)
        for pos, (a, b) in enumerate(chunk_spans(doc.text, how)):
            meta = {"doc_id": doc.id, "title": doc.title, "position": pos, "start": a, "end": b}
            meta.update(doc.metadata)
            chunks.append(Chunk(f"{doc.id}#{pos}", doc.text[a:b], meta))
    return chunks
