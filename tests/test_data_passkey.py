"""The passkey prompt builder (data/passkey.py): exact length, the needle at the asked depth on a
sentence boundary, the key the only number in the prompt, and the answer read back."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxllm.data.passkey import (
    FILLER,
    INTRO,
    NEEDLE,
    QUESTION,
    greedy_continuation,
    parse_answer,
    passkey_prompt,
    random_key,
)
from jaxllm.errors import DataError
from jaxllm.text import ByteTokenizer

TOK = ByteTokenizer()
LONGEST_SENTENCE = max(len(s) + 2 for s in FILLER.split(". "))  # bytes, with ". "


def _find(seq, sub):
    """Every start index of the sublist sub in seq."""
    return [i for i in range(len(seq) - len(sub) + 1) if seq[i:i + len(sub)] == sub]


@settings(max_examples=25, deadline=None)
@given(length=st.integers(300, 900), depth=st.floats(0.0, 1.0), seed=st.integers(0, 10**6))
def test_prompt_length_depth_and_a_single_number(length, depth, seed):
    key = random_key(np.random.default_rng(seed))
    p = passkey_prompt(TOK.encode, length, depth, key)
    assert len(p.tokens) == length
    text = TOK.decode(p.tokens)
    assert re.findall(r"\d+", text) == [key]  # the key, once; no other number
    assert text.startswith(INTRO) and text.endswith(QUESTION)
    needle = TOK.encode(NEEDLE.format(key=key))
    (at,) = _find(p.tokens, needle)
    assert at == p.needle_start
    before = at - len(INTRO)  # filler bytes before the needle
    n_fill = length - len(INTRO) - len(needle) - len(QUESTION)
    assert abs(before - depth * n_fill) <= LONGEST_SENTENCE  # half one inside, one at the end
    assert text[:at].endswith((". ", "\n"))  # on a sentence boundary
    assert p.answer == TOK.encode(" " + key)


def test_depth_ends_and_too_short():
    key = "31415"
    first = passkey_prompt(TOK.encode, 400, 0.0, key)
    last = passkey_prompt(TOK.encode, 400, 1.0, key)
    text = TOK.decode(first.tokens)
    assert text[len(INTRO):].startswith(NEEDLE.format(key=key))  # right after the intro
    tail = TOK.decode(last.tokens).split(NEEDLE.format(key=key))[1]
    assert tail.endswith(QUESTION) and len(tail) - len(QUESTION) < LONGEST_SENTENCE
    assert first.depth == 0.0 and last.depth > 0.9
    with pytest.raises(DataError, match="length=100"):
        passkey_prompt(TOK.encode, 100, 0.5, key)
    with pytest.raises(DataError, match="depth=1.5"):
        passkey_prompt(TOK.encode, 400, 1.5, key)


def test_answer_parsing_and_greedy_continuation():
    assert parse_answer(" 52817.") == "52817"
    assert parse_answer(": the pass key is 52817") == "52817"
    assert parse_answer(" 528 17") == "528"
    assert parse_answer("\nThe grass") is None
    # teacher forcing: greedy follows the answer until the first wrong prediction
    assert greedy_continuation([5, 2, 8, 9, 9], [5, 2, 8, 1, 7]) == [5, 2, 8, 9]
    assert greedy_continuation([4, 2, 8, 1, 7], [5, 2, 8, 1, 7]) == [4]
    assert greedy_continuation([5, 2, 8, 1, 7], [5, 2, 8, 1, 7]) == [5, 2, 8, 1, 7]
    assert len(random_key(np.random.default_rng(0))) == 5
