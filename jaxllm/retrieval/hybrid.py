"""Hybrid retrieval: fusing a BM25 result list and a vector result list into one.

`alpha` weighs the two lists as the seed issue defines it: 0.0 is BM25 only, 1.0 vector only.

- relative score fusion ("rsf"): each list's scores min-max normalised to [0, 1] (a list whose
  scores are all equal normalises to 1), then fused = (1 - alpha) * bm25 + alpha * vector, a
  document missing from a list counting 0 there;
- distribution-based score fusion ("dbsf", Mazzeschi 2023): like "rsf", but each list's scores
  are mapped to [0, 1] by the limits mean -/+ 3 standard deviations of that list (clipped; a list
  whose scores are all equal maps to 1), so one outlying top score does not squash the rest;
- reciprocal-rank fusion ("rrf"): fused = (1 - alpha) / (c + rank_bm25) + alpha / (c + rank_vector)
  with ranks from 1 and c = 60 (Cormack et al. 2009); a missing document adds nothing.

Ties in the fused score go to the lower document number.

`fuse_rerank` fuses a reranker's scores of one candidate list with the first stage's the same
way ("rsf"): weight * minmax(reranker) + (1 - weight) * minmax(first stage); 0 keeps the first
stage's order, 1 is the reranker's.
"""

from __future__ import annotations

import numpy as np

from jaxllm.errors import ConfigError
from jaxllm.retrieval.sparse import Hits

FUSIONS = ("rsf", "dbsf", "rrf")
RRF_C = 60


def check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ConfigError(f"alpha={alpha!r} must be in [0, 1] (0 = BM25 only, 1 = vector only)")
    return float(alpha)


def minmax(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, np.float64)
    if len(scores) == 0:
        return scores
    lo, hi = scores.min(), scores.max()
    return np.ones_like(scores) if hi == lo else (scores - lo) / (hi - lo)


def _three_sigma(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, np.float64)
    if len(scores) == 0:
        return scores
    mean, sd = scores.mean(), scores.std()
    if sd == 0:
        return np.ones_like(scores)
    return np.clip((scores - (mean - 3 * sd)) / (6 * sd), 0.0, 1.0)


def fuse(sparse: Hits, dense: Hits, alpha: float, k: int, method: str = "rsf") -> Hits:
    """The top k of the fused list (scores float64)."""
    alpha = check_alpha(alpha)
    if method not in FUSIONS:
        raise ConfigError(f"fusion={method!r} is not one of {', '.join(FUSIONS)}")
    if method in ("rsf", "dbsf"):
        norm = minmax if method == "rsf" else _three_sigma
        parts = [(sparse.ids, (1 - alpha) * norm(sparse.scores)),
                 (dense.ids, alpha * norm(dense.scores))]
    else:
        parts = [(h.ids, w / (RRF_C + np.arange(1, len(h.ids) + 1)))
                 for h, w in ((sparse, 1 - alpha), (dense, alpha))]
    total: dict[int, float] = {}
    for ids, contrib in parts:
        for i, c in zip(ids.tolist(), contrib.tolist()):
            total[i] = total.get(i, 0.0) + c
    ranked = sorted(total.items(), key=lambda x: (-x[1], x[0]))[:k]
    return Hits(np.array([i for i, _ in ranked], np.int64),
                np.array([s for _, s in ranked], np.float64))


def check_weight(weight) -> float:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
        raise ConfigError(f"rerank weight={weight!r} must be in [0, 1] (0 = the first stage's "
                          f"order, 1 = the reranker's)")
    return float(weight)


def check_rerank_weight(weight, reranker) -> float | None:
    """None (no fusion), or weight checked: in [0, 1] (check_weight) and with a reranker to weigh
    (reranker: the reranker, or the CLI's --rerank choice; None when there is none)."""
    if weight is None:
        return None
    if reranker is None:
        raise ConfigError("--rerank-weight needs --rerank cross or llm (a rerank weight needs a "
                          "reranker to weigh)")
    return check_weight(weight)


def fuse_rerank(first, reranked, weight: float) -> np.ndarray:
    """The fused scores of one candidate list: weight * minmax(reranked) + (1 - weight) *
    minmax(first), min-max over this list (a list whose scores are all equal normalises to 1)."""
    weight = check_weight(weight)
    return weight * minmax(reranked) + (1 - weight) * minmax(first)
