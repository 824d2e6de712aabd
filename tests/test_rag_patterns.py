"""Prompting patterns over a scripted completer: the messages each pattern sends, example
selection (seeded random, nearest by cosine), chaining order and refinement's budget."""

import random

import numpy as np
import pytest

from jaxllm.errors import ConfigError
from jaxllm.rag.patterns import (chain, chain_of_thought, few_shot, hybrid, one_shot, refine,
                                 select_examples, zero_shot)


class Scripted:
    """Replies from a list in turn; records every message list it was sent."""

    def __init__(self, *replies):
        self.replies, self.sent = list(replies), []

    def __call__(self, messages):
        self.sent.append(messages)
        return self.replies.pop(0)


EXAMPLES = [("cup final", "sport"), ("new phone", "tech"), ("oil price", "business"),
            ("rain stops play", "sport")]


def test_zero_one_few_shot_messages():
    llm = Scripted("a", "b", "c")
    assert zero_shot(llm, "Classify.", "x") == "a"
    assert llm.sent[0] == [{"role": "system", "content": "Classify."},
                           {"role": "user", "content": "x"}]
    one_shot(llm, "Classify.", EXAMPLES[0], "x")
    assert [m["content"] for m in llm.sent[1]] == ["Classify.", "cup final", "sport", "x"]
    few_shot(llm, "", EXAMPLES[:2], "x")
    assert [m["role"] for m in llm.sent[2]] == ["user", "assistant"] * 2 + ["user"]


def test_example_selection():
    assert select_examples(EXAMPLES, "x", 2, seed=4) == random.Random(4).sample(EXAMPLES, 2)
    # 2-d "embeddings" by hand: the query is nearest "oil price", then "cup final"
    vectors = {"q": [1, 0], "cup final": [1, 1], "new phone": [0, 1], "oil price": [1, 0.1],
               "rain stops play": [-1, 0]}
    embed = lambda texts: np.array([vectors[t] for t in texts], float)  # noqa: E731
    assert select_examples(EXAMPLES, "q", 2, "similar", embed=embed) == \
        [("cup final", "sport"), ("oil price", "business")]
    for bad, match in [(dict(k=0), "k=0"), (dict(k=2, select="best"), "select='best'"),
                       (dict(k=2, select="similar"), "needs embed")]:
        with pytest.raises(ConfigError, match=match):
            select_examples(EXAMPLES, "q", **bad)


def test_chain_of_thought_and_hybrid_read_the_last_answer_line():
    llm = Scripted("17 + 25: 7 + 5 = 12, carry 1.\nAnswer: 42", "So...\nanswer: sport")
    assert chain_of_thought(llm, "What is 17 + 25?")[0] == "42"
    assert "step by step" in llm.sent[0][-1]["content"]
    assert hybrid(llm, "", [("cup final", "A match.\nAnswer: sport")], "derby")[0] == "sport"


def test_chain_feeds_named_outputs_forward():
    llm = Scripted("F1 F2", "S")
    out = chain(llm, [("facts", "Facts of: {text}"), ("summary", "Sum {facts} for {text}")],
                text="T")
    assert out == {"facts": "F1 F2", "summary": "S"}
    assert llm.sent[1][0]["content"] == "Sum F1 F2 for T"
    with pytest.raises(ConfigError, match="uses {nope}"):
        chain(Scripted("x"), [("a", "{nope}")])


def test_refine_until_the_check_passes_or_the_budget_ends():
    llm = Scripted("long answer", "shorter answer", "ok")
    last, history = refine(llm, "Say ok.", lambda r: None if r == "ok" else "say only ok")
    assert (last, len(history)) == ("ok", 3)
    assert llm.sent[2][-1]["content"] == "Revise your answer: say only ok"
    last, history = refine(Scripted("a", "b"), "p", lambda r: "no", budget=1)
    assert (last, history) == ("b", ["a", "b"])

