"""Tokenizers: build one from texts, save it as JSON, load it back.

    tok = build_tokenizer("char", texts)     # or "byte"
    tok.save(run_dir / "tokenizer.json")
    tok = load_tokenizer(run_dir / "tokenizer.json")

A saved tokenizer is a JSON object whose "kind" key names its class; `load_tokenizer` dispatches
on it, so new kinds (word, BPE, an HF tokenizer.json importer) plug in through `_LOADERS`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Union

from jaxllm.errors import DataError
from jaxllm.text.simple import ByteTokenizer, CharTokenizer
from jaxllm.text.words import WordTokenizer

Tokenizer = Union[CharTokenizer, ByteTokenizer]

# kind -> (build from texts, rebuild from a saved dict)
_BUILDERS: dict[str, Callable[[Iterable[str]], Tokenizer]] = {
    "char": CharTokenizer.train,
    "byte": ByteTokenizer.train,
}
_LOADERS: dict[str, Callable[[dict[str, Any]], Tokenizer]] = {
    "char": CharTokenizer.from_dict,
    "byte": ByteTokenizer.from_dict,
    "word": WordTokenizer.from_dict,  # captions (jaxllm.data.captions); not a corpus tokenizer
}
TOKENIZER_KINDS = tuple(_BUILDERS)


def build_tokenizer(kind: str, texts: Iterable[str]) -> Tokenizer:
    """A new tokenizer of the given kind, trained on texts (the byte tokenizer ignores them)."""
    if kind not in _BUILDERS:
        raise DataError(f"unknown tokenizer kind {kind!r}; choose one of "
                        f"{', '.join(TOKENIZER_KINDS)}")
    return _BUILDERS[kind](texts)


def load_tokenizer(path_or_dict: str | os.PathLike | dict[str, Any]) -> Tokenizer:
    """A tokenizer from a dict made by `tok.to_dict()`, or from a JSON file `tok.save()` wrote."""
    if isinstance(path_or_dict, dict):
        return _from_dict(path_or_dict, source="tokenizer dict")
    path = Path(path_or_dict)
    source = f"tokenizer file {str(path)!r}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{source} does not exist; pass the tokenizer.json a run saved") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {source}: {e}") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{source} is not valid JSON ({e}); expected a tokenizer saved by "
                        f"jaxllm") from None
    return _from_dict(d, source=source)


def _from_dict(d: Any, source: str) -> Tokenizer:
    if not isinstance(d, dict) or "kind" not in d:
        raise DataError(f'{source} has no "kind" key; expected a JSON object such as '
                        f'{{"kind": "char", "vocab": [...]}}')
    kind = d["kind"]
    if kind not in _LOADERS:
        raise DataError(f"{source} has unknown tokenizer kind {kind!r}; known kinds: "
                        f"{', '.join(sorted(_LOADERS))}")
    try:
        return _LOADERS[kind](d)
    except DataError as e:
        raise DataError(f"{source}: {e}") from None


__all__ = [
    "ByteTokenizer",
    "CharTokenizer",
    "TOKENIZER_KINDS",
    "Tokenizer",
    "build_tokenizer",
    "load_tokenizer",
]
