"""Rerankers: the cross-encoder's input layout, batching, training and files; the LLM
reranker's left-padded batch against the plain forward of each prompt."""

import jax
import numpy as np
import pytest
from retrieval_helpers import DOCS, HashEncoder

from jaxllm.errors import CheckpointError, ConfigError
from jaxllm.retrieval import Chunking, Document, Index
from jaxllm.retrieval.rerank import (
    CrossEncoder,
    LLMReranker,
    _cross_logits,
    shared_prefix,
    train_cross_encoder,
    training_pairs,
    window_starts,
)


def test_training_pairs_mine_the_stage_that_is_reranked():
    """Negatives are the best-ranked other documents of the first stage the reranker reorders
    (here dense, BM25 or the default hybrid give three different lists), never a text of a
    relevant document (s1-copy duplicates s1, as BBC duplicates articles) and never twice the
    same text. Negatives mined with BM25 for a reranker of dense lists taught it that sharing
    words with the query means irrelevant: chatterbot's reranked MRR@10 fell below random."""
    copy = Document("s1-copy", DOCS[0].text, "Cup final again", {"category": "sport"})
    index = Index.build(DOCS + [copy], chunking=Chunking("none"), encoder=HashEncoder())
    text = {c.metadata["doc_id"]: c.text for c in index.chunks}
    query = {"query": "final output chip", "relevant": ["s3"]}  # no word of s3's text

    def expected(mode, relevant):
        hits = index.search_hits([query["query"]], mode=mode, k=30)[0]
        ranked = [index.chunks[i].metadata["doc_id"] for i in hits.ids]
        texts = [text[d] for d in ranked if text[d] not in {text[r] for r in relevant}]
        return list(dict.fromkeys(texts))[:3]

    lists = {}
    for mode in ("dense", "bm25", "hybrid"):
        (q, pos, negs), = training_pairs(index, [query], negatives=3, mode=mode)
        assert q == query["query"] and pos == text["s3"]
        assert negs == expected(mode, ["s3"]), mode
        lists[mode] = negs
    assert len({tuple(v) for v in lists.values()}) == 3  # the three stages differ here
    assert training_pairs(index, [query], negatives=3)[0][2] == lists["hybrid"]  # has vectors
    for relevant in (["s1"], ["b2"]):  # s1's copy is no negative for s1, and only once for b2
        (_, _, negs), = training_pairs(index, [{"query": "the club won", "relevant": relevant}],
                                       negatives=5, mode="bm25")
        assert len(set(negs)) == 5 and not {text[r] for r in relevant} & set(negs)


@pytest.fixture(scope="module")
def cross():
    return CrossEncoder.from_pretrained(max_len=24)


@pytest.mark.slow
def test_cross_encoder_pairs_and_batching(cross):
    tok = cross.base.tokenizer
    q, p = tok.encode("oil prices"), tok.encode("Oil prices rose as the cartel cut output.")
    passage = "Oil prices rose as the cartel cut output."
    tokens, types, mask = cross.encode_pairs("oil prices", [passage, "x " * 40])
    row = [cross.cls] + q + [cross.sep] + p + [cross.sep]
    assert tokens.shape == (2, 64) and tokens[0, :len(row)].tolist() == row
    assert types[0, :len(row)].tolist() == [0] * (len(q) + 2) + [1] * (len(p) + 1)
    assert mask[0].sum() == len(row) and mask[1].sum() == 24  # the long passage is cut to fit
    assert tokens[1, 23] == cross.sep
    texts = [d.text for d in DOCS]
    together = cross.score("interest rates", texts)
    alone = np.concatenate([cross.score("interest rates", [t]) for t in texts[:2]])
    np.testing.assert_allclose(together[:2], alone, rtol=1e-4, atol=1e-5)
    probs = cross.probabilities("interest rates", texts)
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-together)), rtol=1e-6)
    with pytest.raises(CheckpointError, match="no trained cross-encoder"):
        CrossEncoder.load("/nonexistent/reranker")


def test_window_starts_worked_examples():
    """Windows of 4 tokens sharing 1 (a step of 3), the last one ending at the passage's end."""
    assert window_starts(10, 4, 1) == [0, 3, 6]  # [0:4] [3:7] [6:10]
    assert window_starts(11, 4, 1) == [0, 3, 6, 7]  # the last window moved back to end at 11
    assert window_starts(7, 4, 1) == [0, 3]
    assert window_starts(4, 4, 1) == [0] and window_starts(2, 4, 1) == [0]
    assert window_starts(9, 4, 0) == [0, 4, 5]


@pytest.mark.slow
def test_cross_encoder_maxp_is_its_best_window(cross):
    """With maxp a long passage is read as overlapping windows and scores as its best one:
    each window scored alone (a hand-built [CLS] query [SEP] window [SEP] row), the maximum
    is the passage's score, and best_rows returns that window's row. A short passage is one
    window, scored as without maxp."""
    maxp = CrossEncoder(cross.base, cross.params, max_len=24, maxp=True, overlap=5)
    tok = cross.base.tokenizer
    query, text = "interest rates", " ".join(d.text for d in DOCS)
    q, p = tok.encode(query), tok.encode(text)
    size = 24 - len(q) - 3
    starts, at = [], 0  # by hand: a step of size - 5, then one window ending at the end
    while at + size < len(p):
        starts.append(at)
        at += size - 5
    starts.append(len(p) - size)
    head = [cross.cls] + q + [cross.sep]
    rows = [head + p[s: s + size] + [cross.sep] for s in starts]
    assert maxp.pair_rows(query, [text])[0][0] == rows and len(rows) > 3
    alone = []
    for row in rows:
        types = np.r_[np.zeros(len(head)), np.ones(len(row) - len(head))][None].astype(np.int32)
        alone.append(float(_cross_logits(cross.model, cross.params, np.array([row], np.int32),
                                         types, np.ones((1, len(row)), bool))[0]))
    best = int(np.argmax(alone))
    assert 0 < best and alone[best] - np.mean(alone) > 1e-3  # neither the first nor the mean
    short = DOCS[1].text
    scores = maxp.score(query, [text, short])
    np.testing.assert_allclose(scores, [alone[best], cross.score(query, [short])[0]],
                               rtol=1e-4, atol=1e-5)
    assert maxp.best_rows(query, [text, short])[0] == [rows[best],
                                                       cross.pair_rows(query, [short])[0][0][0]]


@pytest.mark.slow
def test_cross_encoder_training_and_files(tmp_path):
    index = Index.build(DOCS, chunking=Chunking("none"))
    train = [{"query": d.title + " " + d.text.split()[1], "relevant": [d.id]} for d in DOCS]
    losses = []
    model = train_cross_encoder(index, train, steps=12, batch_queries=2, negatives=2,
                                max_len=32, lr=1e-4, progress=False,
                                log=lambda s, loss: losses.append(loss))
    assert losses[-1] < losses[0]
    # it learned to rank: a falling loss alone also passes with the labels flipped (the base
    # rate of 2 negatives in 3 lowers it), and BBC's first reranker had learned little more
    # than the base rate
    pairs = training_pairs(index, train, negatives=2)
    first = [np.argmax(model.score(q, [p, *negs])) == 0 for q, p, negs in pairs]
    assert np.mean(first) == 1.0, first
    model.save(tmp_path / "reranker")
    back = CrossEncoder.load(tmp_path / "reranker")
    texts = [d.text for d in DOCS]
    np.testing.assert_allclose(back.score("oil", texts), model.score("oil", texts), rtol=1e-6)
    # continued from the saved model (init), MaxP windows of 16 tokens, at rate 0: the same
    # weights (a fresh start from MiniLM has a new random head)
    again = train_cross_encoder(index, train, steps=1, batch_queries=2, negatives=2,
                                max_len=16, maxp=True, overlap=2, lr=0.0, head_lr=0.0,
                                init=tmp_path / "reranker", progress=False)
    assert again.maxp and again.max_len == 16
    again.max_len, again.maxp = model.max_len, False
    np.testing.assert_allclose(again.score("oil", texts), model.score("oil", texts), rtol=1e-6)


@pytest.mark.slow
def test_llm_reranker_equals_unpadded_forward():
    llm = LLMReranker(max_passage_tokens=24)
    texts = ["The bank raised interest rates to curb inflation.", "Rain stopped play.",
             "A new phone with a faster chip and a better camera was launched today."]
    scores = llm.score("Why did the bank raise rates?", texts)
    # the prompts share the template and the query: score reads those once (a prefix cache)
    assert shared_prefix([llm.prompt_ids("Why did the bank raise rates?", t) for t in texts]) > 20
    for text, s in zip(texts, scores):
        ids = llm.prompt_ids("Why did the bank raise rates?", text)
        logp = np.asarray(jax.nn.log_softmax(llm.lm.logits([ids])[0, -1]), np.float64)
        ref = np.logaddexp.reduce(logp[llm.yes]) - np.logaddexp.reduce(logp[llm.no])
        assert abs(s - ref) < 1e-3
    # one text: all but its prompt's last token is the prefix
    assert abs(llm.score("Why did the bank raise rates?", texts[1:2])[0] - scores[1]) < 1e-3


@pytest.mark.slow
def test_llm_reply_reranker_equals_full_forward():
    """kind="reply": the mean log p of the reply's tokens (and <|im_end|>) after the query's
    turn, against one forward over the whole turn pair."""
    llm = LLMReranker(max_passage_tokens=24, kind="reply")
    texts = ["Because inflation was too high.", "It rained.",
             "A new phone with a faster chip and a better camera was launched today."]
    scores = llm.score("Why did the bank raise rates?", texts)
    for text, s in zip(texts, scores):
        head, reply = llm.reply_ids("Why did the bank raise rates?", text)
        logp = np.asarray(jax.nn.log_softmax(llm.lm.logits([head + reply])[0]), np.float64)
        ref = np.mean([logp[len(head) - 1 + j, t] for j, t in enumerate(reply)])
        assert abs(s - ref) < 1e-3
    assert len(set(np.round(scores, 3))) == 3


@pytest.mark.slow
def test_llm_pmi_reranker_is_reply_minus_its_prior():
    """kind="pmi": the reply's mean log p after the query minus after an empty user turn, each
    against one forward over the whole turn pair; a text's prior is read once."""
    llm = LLMReranker(max_passage_tokens=24, kind="pmi")
    texts = ["Because inflation was too high.", "I don't know.", "Because inflation was too high."]

    def mean_logp(query, text):
        head, reply = llm.reply_ids(query, text)
        logp = np.asarray(jax.nn.log_softmax(llm.lm.logits([head + reply])[0]), np.float64)
        return np.mean([logp[len(head) - 1 + j, t] for j, t in enumerate(reply)])

    scores = llm.score("Why did the bank raise rates?", texts)
    for text, s in zip(texts, scores):
        ref = mean_logp("Why did the bank raise rates?", text) - mean_logp("", text)
        assert abs(s - ref) < 1e-3
    assert sorted(llm.priors) == sorted(set(texts))
    llm.priors["I don't know."] += 5.0  # remembered, not recomputed: the score moves by 5
    again = llm.score("Why did the bank raise rates?", texts[1:2])
    assert abs(again[0] - (scores[1] - 5.0)) < 1e-3
    with pytest.raises(ConfigError, match="not one of yes-no, reply, pmi"):
        LLMReranker(kind="pmi2")
