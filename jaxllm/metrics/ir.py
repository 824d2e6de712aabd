"""Information-retrieval metrics from TREC-style run and qrels dictionaries.

    run   = {"q1": {"doc3": 12.5, "doc7": 11.0}, ...}   # query -> document -> score
    qrels = {"q1": {"doc3": 1, "doc9": 2}, ...}         # query -> document -> relevance grade
    evaluate(run, qrels, ["hit@10", "mrr@10", "ndcg@10", "recall@10", "precision@10", "map"])

The definitions are trec_eval's (and so pytrec_eval's): a run is ranked by score, descending,
ties by document id in descending string order; a document is relevant when its grade is >= 1;
queries are those of qrels found in the run (`missing="zero"` also counts the qrels queries a
run has no entry for, with every metric 0, the honest mean for a retriever that returned nothing).

    hit@k        1 if a relevant document is in the top k (trec_eval success_k)
    mrr@k        1 / rank of the first relevant document in the top k, else 0 (recip_rank of
                 the run cut at k)
    ndcg@k       sum of grade / log2(rank + 1) over the top k, over the same sum for the ideal
                 ordering of the qrels grades (ndcg_cut_k: linear gains)
    recall@k     relevant documents in the top k / relevant documents in qrels (recall_k)
    precision@k  relevant documents in the top k / k (P_k, always over k)
    map          mean over the relevant documents of the precision at each one's rank, the
                 relevant ones never retrieved counting 0 (map; "map@k" cuts the run at k)
"""

from __future__ import annotations

import math
import re

from jaxllm.errors import ConfigError

METRICS = ("hit", "mrr", "ndcg", "recall", "precision", "map")
_NAME = re.compile(r"(hit|mrr|ndcg|recall|precision|map)(?:@(\d+))?$")


def ranking(scores: dict[str, float]) -> list[str]:
    """Document ids best first: score descending, ties by id in descending string order."""
    return [d for d, _ in sorted(scores.items(), key=lambda x: (-x[1], _Desc(x[0])))]


class _Desc(str):
    """A string that sorts in descending order."""

    def __lt__(self, other):
        return str.__gt__(self, other)


def _query_metric(name: str, k: int | None, ranked: list[str], grades: dict[str, int]) -> float:
    relevant = {d for d, g in grades.items() if g >= 1}
    top = ranked if k is None else ranked[:k]
    if name == "hit":
        return float(any(d in relevant for d in top))
    if name == "mrr":
        return next((1.0 / r for r, d in enumerate(top, 1) if d in relevant), 0.0)
    if name == "precision":
        return sum(d in relevant for d in top) / k
    if not relevant:
        return 0.0
    if name == "recall":
        return sum(d in relevant for d in top) / len(relevant)
    if name == "map":
        hits, total = 0, 0.0
        for r, d in enumerate(top, 1):
            if d in relevant:
                hits += 1
                total += hits / r
        return total / len(relevant)
    # ndcg
    dcg = sum(max(grades.get(d, 0), 0) / math.log2(r + 1) for r, d in enumerate(top, 1))
    ideal = sorted((g for g in grades.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(r + 1) for r, g in enumerate(ideal, 1))
    return dcg / idcg


def parse_metric(name: str) -> tuple[str, int | None]:
    m = _NAME.match(name)
    if not m:
        raise ConfigError(f"unknown metric {name!r}: give one of {', '.join(METRICS)} with a "
                          f"cut-off, e.g. ndcg@10 (map may go without)")
    kind, k = m.group(1), m.group(2)
    if k is None and kind != "map":
        raise ConfigError(f"metric {name!r} needs a cut-off, e.g. {kind}@10")
    if k is not None and int(k) < 1:
        raise ConfigError(f"metric {name!r}: the cut-off must be >= 1")
    return kind, None if k is None else int(k)


def evaluate_per_query(run: dict, qrels: dict, metrics=("hit@10", "mrr@10", "ndcg@10"), *,
                       missing: str = "skip") -> dict[str, dict[str, float]]:
    """{query: {metric: value}} for the qrels queries (those in the run, or all of them with
    missing="zero")."""
    if missing not in ("skip", "zero"):
        raise ConfigError(f"missing={missing!r} must be 'skip' or 'zero'")
    parsed = [(m, *parse_metric(m)) for m in metrics]
    out = {}
    for q, grades in qrels.items():
        if q not in run and missing == "skip":
            continue
        ranked = ranking(run.get(q, {}))
        out[q] = {m: _query_metric(kind, k, ranked, grades) for m, kind, k in parsed}
    return out


def evaluate(run: dict, qrels: dict, metrics=("hit@10", "mrr@10", "ndcg@10"), *,
             missing: str = "skip") -> dict[str, float]:
    """The mean of each metric over the queries of `evaluate_per_query`."""
    per_query = evaluate_per_query(run, qrels, metrics, missing=missing)
    n = len(per_query)
    return {m: (sum(v[m] for v in per_query.values()) / n if n else 0.0) for m in metrics}
