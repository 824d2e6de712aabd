"""ROUGE against rouge-score 0.1.2, the LCS rows against a DP table, Porter against nltk."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nltk.stem.porter import PorterStemmer
from rouge_score import rouge_scorer

from jaxllm.errors import DataError
from jaxllm.metrics import rouge
from jaxllm.metrics.porter import stem
from jaxllm.metrics.rouge import lcs_rows
from helpers import text_pairs

TYPES = ["rouge1", "rouge2", "rouge3", "rougeL", "rougeLsum"]


def _reference(hyps, refs, types, use_stemmer):
    """rouge-score's scores as {type: (precision, recall, fmeasure) arrays}."""
    scorer = rouge_scorer.RougeScorer(types, use_stemmer=use_stemmer)
    rows = [scorer.score_multi([x for x in r if x is not None], h)
            for h, r in zip(hyps, zip(*refs))]
    return {t: [np.array([getattr(row[t], f) for row in rows])
                for f in ("precision", "recall", "fmeasure")] for t in types}


def _assert_equal(ours, theirs):
    for t, (p, r, f) in theirs.items():
        np.testing.assert_allclose(ours[t].precision, p, rtol=0, atol=1e-12, err_msg=t)
        np.testing.assert_allclose(ours[t].recall, r, rtol=0, atol=1e-12, err_msg=t)
        np.testing.assert_allclose(ours[t].fmeasure, f, rtol=0, atol=1e-12, err_msg=t)


def test_documented_example():
    """rouge-score's README example, worked by hand: 6 of the prediction's 8 unigrams and an
    LCS of 5 (the quick brown ... jumps ... the) against the target's 9 tokens."""
    s = rouge(["The quick brown dog jumps on the log."],
              ["The quick brown fox jumps over the lazy dog"], ["rouge1", "rougeL"])
    assert (s["rouge1"].precision[0], s["rouge1"].recall[0]) == (6 / 8, 6 / 9)
    assert (s["rougeL"].precision[0], s["rougeL"].recall[0]) == (5 / 8, 5 / 9)
    assert s["rougeL"].fmeasure[0] == pytest.approx(2 * (5 / 8) * (5 / 9) / (5 / 8 + 5 / 9))


@pytest.mark.parametrize("use_stemmer", [False, True])
def test_pairs_equal_rouge_score(use_stemmer):
    hyps, refs = text_pairs(80)
    # sentences on lines, so that rougeLsum has several per summary
    hyps = [h.replace(". ", ".\n") for h in hyps]
    refs = [r.replace(". ", ".\n") for r in refs]
    other = refs[1:] + refs[:1]
    _assert_equal(rouge(hyps, [refs, other], TYPES, use_stemmer=use_stemmer),
                  _reference(hyps, [refs, other], TYPES, use_stemmer))


# few distinct words, so LCS ties and repeated tokens are common; newlines split sentences
# ("was" stems to "wa", but only words longer than three letters are stemmed)
words = st.sampled_from(["a", "b", "c", "cats", "running", "ran", "the", "The", "x1", "\n",
                         ",", "é", "--", "generalization", "  ", "was", "wa"])
summaries = st.lists(words, max_size=14).map(" ".join)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), n=st.integers(1, 3), n_refs=st.integers(1, 3),
       use_stemmer=st.booleans())
def test_generated_text_equals_rouge_score(data, n, n_refs, use_stemmer):
    hyps = data.draw(st.lists(summaries, min_size=n, max_size=n))
    refs = [data.draw(st.lists(summaries, min_size=n, max_size=n)) for _ in range(n_refs)]
    if n_refs > 1:  # a missing reference (None) in any set but the first
        refs[-1][0] = None
    _assert_equal(rouge(hyps, refs, TYPES, use_stemmer=use_stemmer),
                  _reference(hyps, refs, TYPES, use_stemmer))


EDGE_CASES = [
    ("a c\nb a", "a c a\na"),  # rougeLsum: three 'a' in the LCS unions, two in the hypothesis
    ("was", "wa"),           # a three-letter word is not stemmed ("was" would become "wa")
    ("", "a b"), ("a b", ""), ("...", "!!"), ("\n\n", "a\n\nb"), ("Straße É", "strasse e"),
]


@pytest.mark.parametrize("use_stemmer", [False, True])
def test_edge_cases_equal_rouge_score(use_stemmer):
    hyps, refs = [h for h, _ in EDGE_CASES], [r for _, r in EDGE_CASES]
    _assert_equal(rouge(hyps, refs, TYPES, use_stemmer=use_stemmer),
                  _reference(hyps, [refs], TYPES, use_stemmer))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from("abc"), max_size=12), st.lists(st.sampled_from("abcd"),
                                                                max_size=12))
def test_lcs_rows_are_the_dp_table(a, b):
    table = np.zeros((len(a) + 1, len(b) + 1), dtype=int)
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            table[i, j] = (table[i - 1, j - 1] + 1 if a[i - 1] == b[j - 1]
                           else max(table[i - 1, j], table[i, j - 1]))
    rows = lcs_rows(a, b)
    cells = [[j - (rows[i] & ((1 << j) - 1)).bit_count() for j in range(len(b) + 1)]
             for i in range(len(a) + 1)]
    np.testing.assert_array_equal(cells, table)


def test_porter_equals_nltk_on_real_words():
    from pydoc_data.topics import topics

    vocab = sorted(set(re.findall(r"[a-z]+", " ".join(topics.values()).lower())))
    vocab += ["sky", "skies", "dying", "lying", "tying", "news", "innings", "inning", "outings",
              "cannings", "howe", "proceed", "exceed", "succeed"]  # NLTK's irregular forms
    nltk = PorterStemmer()
    assert [stem(w) for w in vocab] == [nltk.stem(w) for w in vocab]


SUFFIXES = ["", "s", "ies", "ied", "sses", "eed", "ed", "ing", "at", "bl", "iz", "y", "ational",
            "tional", "alli", "bli", "logi", "fulli", "ization", "iveness", "icate", "ness",
            "ement", "ion", "ance", "e", "ll"]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="aeiouybcdlstzwx", max_size=8), st.sampled_from(SUFFIXES))
def test_porter_equals_nltk_on_generated_words(start, suffix):
    assert stem(start + suffix) == PorterStemmer().stem(start + suffix)


def test_bad_input_is_a_data_error():
    with pytest.raises(DataError, match="rouge type 'rougeW'"):
        rouge(["a"], ["a"], ["rougeW"])
    with pytest.raises(DataError, match="not the string 'rouge1'"):
        rouge(["a"], ["a"], "rouge1")
