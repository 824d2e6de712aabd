"""chrF and chrF++ against sacrebleu 2.6: its README example, sentence pairs, generated text."""

import numpy as np
import pytest
import sacrebleu
from hypothesis import given, settings
from hypothesis import strategies as st
from sacrebleu.metrics import CHRF

from jaxllm.errors import DataError
from jaxllm.metrics import corpus_bleu, corpus_chrf, sentence_chrf, sentence_chrf_scores
from helpers import REFS, SYS, metric_texts, text_pairs


def test_readme_examples():
    assert str(corpus_chrf(SYS, REFS)) == "chrF2 = 59.73"
    assert corpus_chrf(SYS, REFS).score == pytest.approx(CHRF().corpus_score(SYS, REFS).score,
                                                         abs=1e-9)
    # sacrebleu's README, variable number of references: None or "" for a missing one
    for missing in (None, ""):
        refs = [[missing] + REFS[0][1:], REFS[1]]
        assert str(corpus_bleu(SYS, refs)) == ("BLEU = 29.44 82.4/42.9/27.3/12.5 (BP = 0.889 "
                                               "ratio = 0.895 hyp_len = 17 ref_len = 19)")


def test_pairs_equal_sacrebleu():
    hyps, refs = text_pairs(120)
    other = refs[1:] + refs[:1]  # a second, mostly unrelated reference set
    for word_order in (0, 2):
        for eps in (False, True):
            options = dict(word_order=word_order, eps_smoothing=eps)
            theirs = CHRF(**options).corpus_score(hyps, [refs, other]).score
            assert corpus_chrf(hyps, [refs, other], **options).score == pytest.approx(theirs,
                                                                                      abs=1e-9)
    metric = CHRF(word_order=2)
    expected = [metric.sentence_score(h, [r, o]).score
                for h, r, o in zip(hyps[:40], refs[:40], other[:40])]
    np.testing.assert_allclose(sentence_chrf_scores(hyps[:40], [refs[:40], other[:40]],
                                                    word_order=2), expected, rtol=0, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), n=st.integers(1, 4), n_refs=st.integers(1, 3),
       char_order=st.sampled_from([1, 3, 6]), word_order=st.sampled_from([0, 1, 2]),
       beta=st.sampled_from([1, 2, 3]), lowercase=st.booleans(), whitespace=st.booleans(),
       eps=st.booleans())
def test_generated_text_equals_sacrebleu(data, n, n_refs, char_order, word_order, beta,
                                         lowercase, whitespace, eps):
    hyps = data.draw(st.lists(metric_texts, min_size=n, max_size=n))
    refs = [data.draw(st.lists(metric_texts, min_size=n, max_size=n)) for _ in range(n_refs)]
    if n_refs > 1:  # a missing reference (None) in the first set: never the best one
        refs[0][0] = None
    options = dict(char_order=char_order, word_order=word_order, beta=beta,
                   lowercase=lowercase, whitespace=whitespace, eps_smoothing=eps)
    metric = CHRF(**options)
    assert corpus_chrf(hyps, refs, **options).score == pytest.approx(
        metric.corpus_score(hyps, refs).score, abs=1e-9)
    expected = [metric.sentence_score(h, [r[i] for r in refs if r[i] is not None]).score
                for i, h in enumerate(hyps)]
    np.testing.assert_allclose(sentence_chrf_scores(hyps, refs, **options), expected,
                               rtol=0, atol=1e-9)


def test_sentence_chrf_picks_the_best_reference():
    ours = sentence_chrf("the cat sat", ["a dog ran", "the cat sat"])
    assert ours.score == pytest.approx(100.0)
    assert ours.score == pytest.approx(sacrebleu.sentence_chrf("the cat sat",
                                                               ["a dog ran", "the cat sat"]).score)


def test_bad_input_is_a_data_error():
    with pytest.raises(DataError, match="reference set 1 has 1 lines"):
        corpus_chrf(["a", "b"], [["a", "b"], ["a"]])
    with pytest.raises(DataError, match="char_order=0"):
        corpus_chrf(["a"], ["a"], char_order=0)


def test_lone_surrogate_is_a_character():
    hyps, refs = ["ab\ud800cd"], ["ab\ud800ce"]  # text decoded with errors="surrogateescape"
    assert corpus_chrf(hyps, refs).score == pytest.approx(
        sacrebleu.corpus_chrf(hyps, [refs]).score, abs=1e-9)
