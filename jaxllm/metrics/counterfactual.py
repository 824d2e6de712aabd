"""Counterfactual fairness of a language model: swap a sensitive attribute, watch the output.

Templates hold a "{}" slot ("{} worked as a nurse."); groups map a group name to the terms that
fill it ({"female": ["She", "Mary"], "male": ["He", "John"]}); terms at the same position in
two groups are counterfactual pairs (She <-> He, Mary <-> John), so every group lists the same
number of terms. A template may also be a tuple of strings (a prompt and a continuation, say);
every "{}" in it is filled.

The model enters as a callable, so this module needs no model code:
- `counterfactual_scores(templates, groups, score)`: score(list of filled templates) -> one
  number each (a log-probability of a fixed continuation, a classifier's probability, ...);
  reports how the number moves when only the group changes.
- `counterfactual_shift(templates, groups, embed)`: embed(list of texts) -> (n, d) vectors;
  reports the cosine distance between the embeddings of counterfactual pairs, next to the
  distance between two terms of the same group (what swapping a name moves anyway).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from jaxllm.errors import DataError


def _fill(template, term: str):
    if isinstance(template, str):
        return template.replace("{}", term)
    return tuple(part.replace("{}", term) for part in template)


def _check(templates, groups: Mapping[str, Sequence[str]]) -> int:
    if not templates:
        raise DataError("counterfactual: no templates given")
    for t in templates:
        parts = [t] if isinstance(t, str) else list(t)
        if not all(isinstance(p, str) for p in parts) or not any("{}" in p for p in parts):
            raise DataError(f"counterfactual: template {t!r} has no '{{}}' slot for the term")
    if len(groups) < 2:
        raise DataError(f"counterfactual: need at least two groups, got {list(groups)}")
    sizes = {g: len(terms) for g, terms in groups.items()}
    if len(set(sizes.values())) != 1 or 0 in sizes.values():
        raise DataError(f"counterfactual: every group needs the same number of terms (the k-th "
                        f"terms are swapped for each other), got {sizes}")
    return next(iter(sizes.values()))


@dataclass(frozen=True)
class CounterfactualScores:
    groups: list[str]
    scores: np.ndarray  # (T, G, K): template t filled with the k-th term of group g

    @property
    def group_means(self) -> np.ndarray:
        """(T, G) each group's mean score per template."""
        return self.scores.mean(axis=2)

    @property
    def gaps(self) -> np.ndarray:
        """(T,) per template: largest minus smallest group mean."""
        m = self.group_means
        return m.max(axis=1) - m.min(axis=1)

    def pair_differences(self, a: str, b: str) -> np.ndarray:
        """(T, K) score with group a's k-th term minus score with group b's k-th term."""
        i, j = self.groups.index(a), self.groups.index(b)
        return self.scores[:, i] - self.scores[:, j]

    def summary(self) -> dict:
        """Mean and largest gap over templates, and each group's mean over everything."""
        return {"mean_gap": float(self.gaps.mean()), "max_gap": float(self.gaps.max()),
                "group_mean": {g: float(v) for g, v in zip(self.groups,
                                                          self.group_means.mean(axis=0))}}


def counterfactual_scores(templates: Sequence, groups: Mapping[str, Sequence[str]],
                          score: Callable[[list], Sequence[float]]) -> CounterfactualScores:
    """Score every template filled with every term of every group (one call of score)."""
    k = _check(templates, groups)
    names = list(groups)
    items = [_fill(t, term) for t in templates for g in names for term in groups[g]]
    values = np.asarray(score(items), dtype=np.float64)
    if values.shape != (len(items),):
        raise DataError(f"counterfactual: score returned shape {values.shape} for "
                        f"{len(items)} texts; it must return one number per text")
    return CounterfactualScores(names, values.reshape(len(templates), len(names), k))


@dataclass(frozen=True)
class CounterfactualShift:
    groups: list[str]
    across: np.ndarray  # (T, P, K) cosine distance between the k-th terms of each group pair p
    within: np.ndarray  # (T, G, K-1) distance between consecutive terms of one group
    pairs: list[tuple[str, str]]

    def summary(self) -> dict:
        out = {"across_mean": float(self.across.mean())}
        if self.within.size:
            out["within_mean"] = float(self.within.mean())
        return out


def counterfactual_shift(templates: Sequence[str], groups: Mapping[str, Sequence[str]],
                         embed: Callable[[list[str]], np.ndarray]) -> CounterfactualShift:
    """Cosine distances between embeddings of templates filled with counterfactual terms."""
    k = _check(templates, groups)
    if not all(isinstance(t, str) for t in templates):
        raise DataError("counterfactual_shift: templates must be strings")
    names = list(groups)
    texts = [_fill(t, term) for t in templates for g in names for term in groups[g]]
    vectors = np.asarray(embed(texts), dtype=np.float64)
    if vectors.ndim != 2 or len(vectors) != len(texts):
        raise DataError(f"counterfactual_shift: embed returned shape {vectors.shape} for "
                        f"{len(texts)} texts; it must return one vector per text")
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    v = vectors.reshape(len(templates), len(names), k, -1)  # (T, G, K, D)
    pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))]
    across = np.stack([1 - np.sum(v[:, i] * v[:, j], axis=-1) for i, j in pairs], axis=1)
    within = 1 - np.sum(v[:, :, 1:] * v[:, :, :-1], axis=-1)
    return CounterfactualShift(names, across, within,
                               [(names[i], names[j]) for i, j in pairs])
