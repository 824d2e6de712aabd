"""Faithfulness and relevancy of answers by hand-worked examples, AUROC against scikit-learn."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from jaxllm.errors import ConfigError
from jaxllm.metrics.rag import (auroc, content_words, faithfulness, faithfulness_lexical,
                                relevancy, relevancy_similarity, split_sentences)

SOURCES = ["The striker scored twice as the club won the cup final.",
           "Rain stopped play at the cricket test."]


def test_lexical_faithfulness_by_hand():
    answer = "The striker scored twice. The club lost the league! Rain at Lords?"
    assert split_sentences(answer) == ["The striker scored twice.", "The club lost the league!",
                                       "Rain at Lords?"]
    # content words: {striker, scored, twice} all known; {club, lost, league}: 1/3 known;
    # {rain, lords}: 1/2 known (>= 0.5)
    out = faithfulness_lexical(answer, SOURCES)
    assert out["supported"] == [True, False, True] and out["score"] == pytest.approx(2 / 3)
    assert faithfulness_lexical(answer, SOURCES, threshold=0.6)["supported"] == \
        [True, False, False]
    assert faithfulness_lexical("", SOURCES)["score"] == 0.0
    assert content_words("The Cup, and 2 goals") == {"cup", "2", "goals"}


def test_judged_metrics_average_the_judge():
    seen = []

    def judge(sentence, context):
        seen.append(context)
        return {"A b.": 0.2, "C d.": 0.9}[sentence]

    out = faithfulness("A b. C d.", SOURCES, judge)
    assert out["per_sentence"] == [0.2, 0.9] and out["score"] == pytest.approx(0.55)
    assert seen[0] == SOURCES[0] + "\n\n" + SOURCES[1]
    assert relevancy("q", "a", lambda q, a: 0.25) == 0.25
    embed = lambda texts: np.array([[3.0, 4.0], [4.0, 3.0]])  # noqa: E731
    assert relevancy_similarity("q", "a", embed) == pytest.approx(24 / 25)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=2, max_size=30))
def test_auroc_equals_sklearn(pairs):
    scores, labels = zip(*pairs)
    if len(set(labels)) < 2:
        assert np.isnan(auroc(scores, labels))
    else:
        assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))


def test_a_judge_needs_single_token_yes_and_no(tiny_chat_lm):
    from jaxllm.rag.judge import Judge

    with pytest.raises(ConfigError, match="'yes'/'no' are not single tokens"):
        Judge(tiny_chat_lm)  # bytes: "yes" is three tokens


# SmolLM2's vocabulary: the single-token spellings of yes and no, read off its vocab (Ġ = space)
YES_NO_SPELLINGS = (("yes", "Yes", "Ġyes", "ĠYes"), ("no", "No", "Ġno", "ĠNo"))


def test_judge_p_yes_equals_numpy_softmax_of_the_forward(tiny_smol_tokenizer_lm):
    """The judge's p(yes) for faithfulness (per answer sentence, continuing a prefix cache of the
    shared context) and relevancy equals, from a numpy forward of each whole prompt's tokens, p(yes) / (p(yes) + p(no)) under the softmax of the
    last position's logits, each side summed over the single-token spellings."""
    from reference import decoder_logits

    from jaxllm.rag.judge import RELEVANT, SUPPORTED, Judge

    lm = tiny_smol_tokenizer_lm
    tok = lm.tokenizer
    yes, no = ([tok.token_to_id(t) for t in side] for side in YES_NO_SPELLINGS)
    judge = Judge(lm)
    assert sorted(judge.yes) == sorted(yes) and sorted(judge.no) == sorted(no)

    def reference(content):
        ids = tok.encode(tok.apply_chat_template([{"role": "user", "content": content}],
                                                 add_generation_prompt=True))
        x = decoder_logits(lm.config, lm.params, np.asarray([ids]))[0, -1]
        p = np.exp(x - x.max())
        p /= p.sum()
        return p[yes].sum() / (p[yes].sum() + p[no].sum()), p

    question = "Who scored in the final?"
    answer = "The striker scored twice. The club won."
    want = [reference(SUPPORTED.format(context="\n\n".join(SOURCES), statement=s))[0]
            for s in split_sentences(answer)]
    got = faithfulness(answer, SOURCES, judge.supported)
    assert judge.prefills == 1  # both sentences continued one prefix cache of the context
    np.testing.assert_allclose(got["per_sentence"], want, atol=2e-5)
    assert got["score"] == pytest.approx(np.mean(want), abs=2e-5)
    want_rel, p = reference(RELEVANT.format(question=question, answer=answer))
    assert relevancy(question, answer, judge.relevant) == pytest.approx(want_rel, abs=2e-5)
    # the weights make the spellings matter: one spelling a side, or yes and no swapped,
    # would be off by more than the tolerance
    assert abs(p[yes[0]] / (p[yes[0]] + p[no[0]]) - want_rel) > 1e-3
    assert abs(p[no].sum() / (p[yes].sum() + p[no].sum()) - want_rel) > 1e-3
