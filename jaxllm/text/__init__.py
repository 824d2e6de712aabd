"""Tokenizers: build one from texts, save it as JSON, load it back.

    tok = build_tokenizer("char", texts)     # or "byte"
    tok.save(run_dir / "tokenizer.json")
    tok = load_tokenizer(run_dir / "tokenizer.json")
    tok = load_tokenizer("gpt2")             # or "all-minilm-l6-v2", "smollm2-135m-instruct",
                                             # a HF tokenizer.json, a BERT vocab.txt, a .gguf

Char and byte tokenizers save a JSON object whose "kind" key names their class. Subword
tokenizers (BPE, byte-level BPE, WordPiece, Unigram, word-level: `PipelineTokenizer`) save a
Hugging Face tokenizer.json; `load_tokenizer` tells the two apart by the "model" key.

Modules: simple.py (char, byte), pretokenize.py (normalizers, pre-tokenizers), models.py (BPE,
WordPiece, WordLevel encoders), tokenizer.py (the tokenizer: specials, cache, decode),
hf_json.py (tokenizer.json), registry.py (named tokenizers from data packages), chat.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Union

from jaxllm.errors import DataError
from jaxllm.text import registry
from jaxllm.text.tokenizer import PipelineTokenizer
from jaxllm.text.simple import ByteTokenizer, CharTokenizer
from jaxllm.text.train import TRAINABLE_KINDS, train

Tokenizer = Union[CharTokenizer, ByteTokenizer, PipelineTokenizer]

# kind -> (build from texts, rebuild from a saved dict)
_BUILDERS: dict[str, Callable[[Iterable[str]], Tokenizer]] = {
    "char": CharTokenizer.train,
    "byte": ByteTokenizer.train,
}
_LOADERS: dict[str, Callable[[dict[str, Any]], Tokenizer]] = {
    "char": CharTokenizer.from_dict,
    "byte": ByteTokenizer.from_dict,
}
TOKENIZER_KINDS = tuple(_BUILDERS)


def build_tokenizer(kind: str, texts: Iterable[str]) -> Tokenizer:
    """A new tokenizer of the given kind, trained on texts (the byte tokenizer ignores them)."""
    if kind not in _BUILDERS:
        raise DataError(f"unknown tokenizer kind {kind!r}; choose one of "
                        f"{', '.join(TOKENIZER_KINDS)}")
    return _BUILDERS[kind](texts)


def load_tokenizer(path_or_dict: str | os.PathLike | dict[str, Any]) -> Tokenizer:
    """A tokenizer from a registered name (`registry.NAMES`), a file (`tok.save()`'s JSON, a HF
    tokenizer.json, a BERT vocab.txt, a GGUF file), a directory holding a tokenizer.json (a run,
    an export) or a dict made by `to_dict()`/`to_hf_dict()`."""
    if isinstance(path_or_dict, dict):
        return _from_dict(path_or_dict, source="tokenizer dict")
    path = Path(path_or_dict)
    if isinstance(path_or_dict, str) and path_or_dict in registry.PACKAGES and not path.exists():
        return registry.load_named(path_or_dict)
    if path.is_dir():  # a run directory or an exported model: the tokenizer.json it holds
        if not (path / "tokenizer.json").is_file():
            raise DataError(f"{path} is a directory without a tokenizer.json; pass a tokenizer "
                            f"file or a run directory")
        path = path / "tokenizer.json"
    source = f"tokenizer file {str(path)!r}"
    if path.suffix == ".txt" and path.exists():
        return registry.load_vocab_txt(path)
    if path.suffix == ".gguf" and path.exists():
        return registry.load_gguf(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{source} does not exist; pass a tokenizer.json, a vocab.txt, a .gguf "
                        f"or a name: {', '.join(registry.NAMES)}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {source}: {e}") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{source} is not valid JSON ({e}); expected a tokenizer saved by "
                        f"jaxllm") from None
    return _from_dict(d, source=source)


def _from_dict(d: Any, source: str) -> Tokenizer:
    if isinstance(d, dict) and "kind" not in d and "model" in d:
        from jaxllm.text import hf_json
        try:
            return hf_json.from_hf(d)
        except DataError as e:
            raise DataError(f"{source}: {e}") from None
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
    "PipelineTokenizer",
    "TOKENIZER_KINDS",
    "Tokenizer",
    "TRAINABLE_KINDS",
    "build_tokenizer",
    "train",
    "load_tokenizer",
]
