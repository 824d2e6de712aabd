"""BLEU against sacrebleu 2.6: its README example, perturbed sentence pairs, generated text."""

import re

import numpy as np
import pytest
import sacrebleu
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

from jaxllm.errors import DataError
from jaxllm.metrics import corpus_bleu, sentence_bleu, sentence_bleu_scores
from jaxllm.metrics import bleu
from jaxllm.metrics.bleu import tokenize_lines
from helpers import REFS, SYS, metric_texts, text_pairs

def test_readme_example():
    score = corpus_bleu(SYS, REFS)
    assert score.score == pytest.approx(48.530827, abs=5e-7)
    assert str(score) == ("BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 "
                          "hyp_len = 17 ref_len = 18)")
    assert (score.counts, score.totals) == ([14, 7, 5, 3], [17, 14, 11, 8])


def test_pairs_equal_sacrebleu():
    hyps, refs = text_pairs(120)
    for smooth in ("exp", "none", "floor", "add-k"):
        for lowercase in (False, True):
            ours = corpus_bleu(hyps, refs, smooth_method=smooth, lowercase=lowercase)
            theirs = sacrebleu.corpus_bleu(hyps, [refs], smooth_method=smooth,
                                           lowercase=lowercase)
            assert ours.score == pytest.approx(theirs.score, abs=1e-9)
            assert (ours.counts, ours.totals) == (theirs.counts, theirs.totals)
    for tokenize in ("13a", "intl", "char", "none"):
        theirs = sacrebleu.corpus_bleu(hyps, [refs], tokenize=tokenize)
        assert corpus_bleu(hyps, refs, tokenize=tokenize).score == pytest.approx(theirs.score,
                                                                                 abs=1e-9)
        metric = sacrebleu.BLEU(tokenize=tokenize, effective_order=True)
        expected = [metric.sentence_score(h, [r]).score for h, r in zip(hyps[:40], refs[:40])]
        np.testing.assert_allclose(sentence_bleu_scores(hyps[:40], refs[:40], tokenize=tokenize),
                                   expected, rtol=0, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), n=st.integers(1, 4), n_refs=st.integers(1, 3),
       tokenize=st.sampled_from(["13a", "intl", "char", "none"]),
       smooth=st.sampled_from(["exp", "none", "floor", "add-k"]),
       smooth_value=st.sampled_from([None, 0.01, 2]), lowercase=st.booleans(),
       effective=st.booleans(), order=st.sampled_from([2, 4]))
def test_generated_text_equals_sacrebleu(data, n, n_refs, tokenize, smooth, smooth_value,
                                         lowercase, effective, order):
    hyps = data.draw(st.lists(metric_texts, min_size=n, max_size=n))
    refs = [data.draw(st.lists(metric_texts, min_size=n, max_size=n)) for _ in range(n_refs)]
    if n_refs > 1:  # a missing reference (None) in any set but the first
        refs[-1][0] = None
    options = dict(tokenize=tokenize, smooth_method=smooth, smooth_value=smooth_value,
                   lowercase=lowercase, effective_order=effective, max_ngram_order=order)
    metric = sacrebleu.BLEU(**options)
    assert corpus_bleu(hyps, refs, **options).score == pytest.approx(
        metric.corpus_score(hyps, refs).score, abs=1e-9)
    expected = [metric.sentence_score(h, [r[i] for r in refs if r[i] is not None]).score
                for i, h in enumerate(hyps)]
    np.testing.assert_allclose(sentence_bleu_scores(hyps, refs, **options), expected,
                               rtol=0, atol=1e-9)


@settings(max_examples=100, deadline=None)
@example(["a..9", "a.,.9 a,,0", "9-9-9", ".,9", "a .,", "0.,a"])  # characters one match used
@given(st.lists(st.lists(st.sampled_from(list(".,-9 a0\n&;'/")), max_size=14).map("".join),
                min_size=1, max_size=4))
def test_13a_rules_equal_sacrebleu(lines):
    """The hand-written scans of rules 2-4 keep re.sub's left-to-right, non-overlapping
    matches: strings dense in periods, commas, dashes and digits."""
    tokenizer = Tokenizer13a()
    assert tokenize_lines(lines) == [tokenizer(x.rstrip()).split() for x in lines]


# sacrebleu's regular expressions for 13a's rules 2-4, the definition the scans must keep
RULES = [(bleu._split_after_non_digit, r"([^0-9])([\.,])", r"\1 \2 "),
         (bleu._split_before_non_digit, r"([\.,])([^0-9])", r" \1 \2"),
         (bleu._split_dash_after_digit, r"([0-9])(-)", r"\1 \2 ")]


@settings(max_examples=100, deadline=None)
@example("a.,b.,.9 1.,,x 9--9-")
@given(st.text(alphabet=".,-9a0 ", max_size=16))
def test_13a_scans_equal_re_sub(text):
    for scan, pattern, replacement in RULES:
        assert scan(text) == re.sub(pattern, replacement, text)


def test_sentence_bleu_one_segment():
    ours = sentence_bleu(SYS[2], [REFS[0][2], REFS[1][2]])
    theirs = sacrebleu.sentence_bleu(SYS[2], [REFS[0][2], REFS[1][2]])
    assert ours.score == pytest.approx(theirs.score, abs=1e-9)
    assert (ours.sys_len, ours.ref_len) == (theirs.sys_len, theirs.ref_len)


def test_closest_reference_length_prefers_the_shorter_on_a_tie():
    # hypothesis of 4 tokens, references of 3 and 5: both 1 away, BLEU takes 3 (no penalty)
    score = corpus_bleu(["a b c d"], [["a b c"], ["a b c d e"]])
    assert score.ref_len == 3 and score.bp == 1.0
    # a missing reference (None) has no length: the hypothesis of 1 token takes the 5
    assert corpus_bleu(["a"], [[None], ["a b c d e"]]).ref_len == 5


def test_bad_input_is_a_data_error():
    with pytest.raises(DataError, match="reference set 0 has 2 lines"):
        corpus_bleu(["a", "b", "c"], ["a", "b"])
    with pytest.raises(DataError, match="tokenize='moses'"):
        corpus_bleu(["a"], ["a"], tokenize="moses")
    with pytest.raises(DataError, match="smooth_method='laplace'"):
        corpus_bleu(["a"], ["a"], smooth_method="laplace")
    with pytest.raises(DataError, match="hypothesis 0 has no reference"):
        corpus_bleu(["a"], [[None], [None]])
    with pytest.raises(DataError, match="hypotheses must be a list"):
        corpus_bleu("a b", ["a b"])
