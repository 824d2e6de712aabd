"""Prompt compression keeps the ratio: at most floor(ratio x tokens) survive, no dropped sentence
would still fit, and what is kept is what a numpy surprisal from the model's logits ranks
highest; token level keeps exactly that many tokens."""

import functools
import math

import numpy as np
import pytest

from jaxllm.errors import ConfigError
from jaxllm.rag.compress import compress, compressor, sentences, summarizer
from jaxllm.retrieval import Result

QUESTION = "What did the bank do?"
TEXTS = ["The bank raised interest rates to curb inflation. Shares fell sharply. Analysts had "
         "expected it. The pound rose.",
         "Oil prices rose as the cartel cut output! Shares fell. Rain stopped play at the "
         "cricket test.",
         "A new phone was launched. It has a faster chip? And a better camera."]
RESULTS = [Result(f"d{i}#0", 1.0 - i / 10, t, {"doc_id": f"d{i}"}) for i, t in enumerate(TEXTS)]


def reference_surprisal(lm, text):
    """Per sentence of a text: (token count, per-token surprisal) from numpy's log-softmax of
    the model's logits over prefix + the sentences' tokens (each after the first with its
    space). The rows of all TEXTS go through the model as one right-padded batch."""
    return _reference(lm)[TEXTS.index(text)]


@functools.lru_cache(maxsize=None)
def _reference(lm):
    tok = lm.tokenizer
    prefix = tok.encode(f"Question: {QUESTION}\nContext:")
    pers = [[tok.encode(s if j == 0 else " " + s) for j, s in enumerate(sentences(t))]
            for t in TEXTS]
    rows = [prefix + [t for p in per for t in p] for per in pers]
    batch = np.zeros((len(rows), max(map(len, rows))), np.int32)
    for i, ids in enumerate(rows):
        batch[i, :len(ids)] = ids
    x = np.asarray(lm.logits(batch), np.float64)
    out = []
    for i, (ids, per) in enumerate(zip(rows, pers)):
        logp = x[i, :len(ids)] - x[i, :len(ids)].max(-1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
        nll = -logp[np.arange(len(ids) - 1), ids[1:]][len(prefix) - 1:]
        spans, start = [], 0
        for p in per:
            spans.append((len(p), nll[start:start + len(p)]))
            start += len(p)
        out.append(spans)
    return out


@pytest.mark.parametrize("ratio", [0.5, 0.25])
def test_sentence_level_keeps_the_ratio_and_the_most_surprising_sentences(tiny_chat_lm, ratio):
    lm = tiny_chat_lm
    ref = {(i, j): v for i, t in enumerate(TEXTS) for j, v in enumerate(reference_surprisal(lm, t))}
    total = sum(n for n, _ in ref.values())
    budget = math.floor(ratio * total)
    want, used = set(), 0  # greedy by mean surprisal, by hand
    for key in sorted(ref, key=lambda k: (-ref[k][1].mean(), k)):
        if used + ref[key][0] <= budget:
            want.add(key)
            used += ref[key][0]
    out = compress(lm, QUESTION, RESULTS, ratio)
    got = {(int(r.id[1]), sentences(TEXTS[int(r.id[1])]).index(s))
           for r in out for s in sentences(r.text)}
    assert got == want
    kept = sum(ref[k][0] for k in got)
    assert kept <= budget
    assert all(ref[k][0] > budget - kept for k in ref if k not in got)  # nothing else fits
    for r in out:  # order inside a source is kept
        idx = [sentences(TEXTS[int(r.id[1])]).index(s) for s in sentences(r.text)]
        assert idx == sorted(idx)


def test_token_level_keeps_the_ratio_of_most_surprising_tokens(tiny_chat_lm):
    lm = tiny_chat_lm
    ref = [np.concatenate([v for _, v in reference_surprisal(lm, t)]) for t in TEXTS]
    flat = np.concatenate(ref)
    n_keep = math.floor(0.3 * len(flat))
    out = compress(lm, QUESTION, RESULTS, 0.3, level="token")
    assert sum(len(lm.tokenizer.encode(r.text)) for r in out) <= n_keep  # strip() may drop a space
    threshold = np.sort(flat)[::-1][n_keep - 1]
    for r in out:  # every kept byte is among the n_keep most surprising of its source
        i = int(r.id[1])
        stream = lm.tokenizer.encode(" ".join(sentences(TEXTS[i])))
        kept = lm.tokenizer.encode(r.text)
        pos = 0  # kept is a subsequence of the stream
        for t in kept:
            while stream[pos] != t or ref[i][pos] < threshold - 1e-4:
                pos += 1
            pos += 1


def test_ratio_one_keeps_all_and_bad_ratios_are_refused(tiny_chat_lm):
    assert compress(tiny_chat_lm, QUESTION, RESULTS, 1.0) == RESULTS
    for bad in (0.0, 1.5, -1):
        with pytest.raises(ConfigError, match=f"ratio={bad}"):
            compressor(tiny_chat_lm, bad)


def test_summarizer_replaces_each_source(tiny_chat_lm):
    out = summarizer(tiny_chat_lm, max_new_tokens=4)(QUESTION, RESULTS[:1])
    assert out[0].id == RESULTS[0].id and 0 < len(out[0].text.encode()) <= 4
