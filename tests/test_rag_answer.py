"""rag.answer end to end on a tiny index and a tiny random chat model: the stages in order, the
streamed text, the numbered-source prompt, uncertainty scores against a forward pass, citations,
abstaining, context fitting, and the bad inputs of the issue."""

import numpy as np
import pytest

from jaxllm.errors import ConfigError, DataError
from jaxllm.rag import ABSTAIN, answer, render_chat, sources_messages
from jaxllm.rag.answer import fit_context
from jaxllm.rag.prompt import Reply, cited
from jaxllm.retrieval import Index
from retrieval_helpers import DOCS

QUESTION = "Who scored twice in the cup final?"


@pytest.fixture(scope="module")
def index():
    return Index.build(DOCS)


def log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def test_answer_end_to_end_streams_and_scores(index, tiny_chat_lm):
    lm = tiny_chat_lm
    pieces = []
    a = answer(index, QUESTION, lm=lm, k=3, max_new_tokens=12, on_text=pieces.append)
    assert [r.id for r in a.sources] == [r.id for r in index.search(QUESTION, k=3)]
    assert a.sources[0].id == "s1#0"
    assert "[1] Cup final: The striker scored twice as the club won the cup final." in a.prompt
    assert a.prompt.startswith("System: Answer the question using only the numbered sources")
    assert a.prompt.endswith(f"Question: {QUESTION}\n\nAssistant:")
    assert "".join(pieces).strip() == a.text and len(pieces) > 1  # streamed piece by piece
    assert set(a.timings) == {"retrieve", "rerank", "compress", "prefill", "decode"}
    # the answer's mean NLL from an independent forward pass over prompt + answer
    prompt_ids = lm.tokenizer.encode(a.prompt)
    new = lm.tokenizer.encode("".join(pieces))
    logp = log_softmax(lm.logits([prompt_ids + new])[0])
    steps = logp[len(prompt_ids) - 1: len(prompt_ids) - 1 + len(new)]
    assert len(new) == 12
    assert a.scores["mean_nll"] == pytest.approx(-steps[np.arange(12), new].mean(), abs=1e-4)
    assert a.scores["max_entropy"] == pytest.approx(
        (-(np.exp(steps) * steps).sum(-1)).max(), abs=1e-4)


def canned(text, log_probs=(-0.1, -0.2)):
    def generate(messages, on_text):
        if on_text:
            on_text(text)
        return Reply(text, [], np.asarray(log_probs), np.asarray([0.5, 1.5]), 0.01, 0.02)
    return generate


def test_every_stage_is_swappable_and_runs_in_order(index, tiny_chat_lm):
    calls = []

    def retrieve(idx, q, k):
        calls.append("retrieve")
        return idx.search("oil prices, bank rates and the cup final", k=k)

    def rerank(q, results):
        calls.append("rerank")
        return results[::-1]

    def compress(q, results):
        calls.append("compress")
        return results[:2]

    def build_prompt(q, results):
        calls.append("prompt")
        return sources_messages(q.upper(), results)

    a = answer(index, QUESTION, lm=tiny_chat_lm, k=3, retrieve=retrieve, rerank=rerank,
               compress=compress, build_prompt=build_prompt,
               generate=canned("The bank [2] raised rates [1] [2] [9]."))
    assert calls[:4] == ["retrieve", "rerank", "compress", "prompt"]
    full = index.search("oil prices, bank rates and the cup final", k=3)
    assert len(full) == 3
    assert [r.id for r in a.sources] == [r.id for r in full[::-1][:2]]
    assert QUESTION.upper() in a.prompt
    assert a.cited == [2, 1] and not a.abstained  # [9] names no source
    assert a.scores["mean_nll"] == pytest.approx(0.15) and a.scores["max_entropy"] == 1.5


def test_abstains_below_thresholds(index, tiny_chat_lm):
    top = index.search(QUESTION, k=1)[0].score
    a = answer(index, QUESTION, lm=tiny_chat_lm, min_score=top + 1e-3, generate=canned("x"))
    assert a.abstained and a.text == ABSTAIN and a.cited == []
    a = answer(index, QUESTION, lm=tiny_chat_lm, min_score=top - 1e-3, generate=canned("y [1]"))
    assert not a.abstained and a.text == "y [1]"
    a = answer(index, QUESTION, lm=tiny_chat_lm, max_nll=0.149, generate=canned("y [1]"))
    assert a.abstained and a.text == ABSTAIN
    assert not answer(index, QUESTION, lm=tiny_chat_lm, max_nll=0.151,
                      generate=canned("y [1]")).abstained
    # nothing retrieved (an out-of-vocabulary question): abstain without generating
    assert answer(index, "zzzqqq", lm=tiny_chat_lm, generate=None).abstained


def test_sources_dropped_to_fit_the_context_and_too_long_questions_refused(index, tiny_chat_lm):
    from helpers import tiny_decoder

    lm = tiny_decoder(400)
    results = index.search("the", k=6) or index.search("match cup bank oil phone", k=6)
    kept = fit_context(lm, QUESTION, results, sources_messages, 32)

    def length(rs):
        return len(lm.tokenizer.encode(render_chat(lm.tokenizer, sources_messages(QUESTION, rs))))

    assert 0 < len(kept) < len(results) and kept == results[:len(kept)]
    assert length(kept) <= 400 - 32 < length(results[:len(kept) + 1])
    with pytest.raises(DataError, match="shorten the question") as e:
        answer(index, "why " * 200, lm=lm, max_new_tokens=32)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="no vectors"):
        answer(index, QUESTION, lm=lm, mode="hybrid")


def test_citations_by_hand():
    assert cited("A [2], B [1][2] and [0] [12].", 3) == [2, 1]
