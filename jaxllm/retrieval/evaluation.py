"""Measuring an index: queries with known relevant documents -> IR metrics, per query type.

An evaluation query is {"id": ..., "query": "text", "relevant": [document ids], "type": ...};
the relevant unit is every chunk of a relevant document (a chunk-level qrels). The run keeps the
index's own order (scores are written as depth - rank, so trec_eval's tie rule cannot reorder it).

    table = evaluate_index(index, queries, mode="hybrid", alpha=0.5)
    table["all"]["mrr@10"], table["fact"]["ndcg@10"]
"""

from __future__ import annotations

import json
from pathlib import Path

from jaxllm.errors import DataError
from jaxllm.metrics.ir import evaluate

METRICS = ("hit@1", "hit@10", "mrr@10", "ndcg@10", "recall@10")


def qrels_of(index, queries) -> dict[str, dict[str, int]]:
    """Chunk-level qrels: every chunk of each relevant document counts 1."""
    chunks_of: dict[str, list[str]] = {}
    for c in index.chunks:
        chunks_of.setdefault(c.metadata["doc_id"], []).append(c.id)
    return {q["id"]: {cid: 1 for d in q["relevant"] for cid in chunks_of.get(d, [])}
            for q in queries}


def run_of(queries, results) -> dict[str, dict[str, float]]:
    return {q["id"]: {r.id: float(len(rs) - i) for i, r in enumerate(rs)}
            for q, rs in zip(queries, results)}


def evaluate_index(index, queries, *, metrics=METRICS, k: int = 10, **search) -> dict:
    """{query type or "all": {metric: mean}} (and "n": the number of queries) for one search
    configuration (`search` are Index.search's keywords: mode, alpha, fusion, reranker...)."""
    if not queries:
        raise DataError("no evaluation queries")
    results = index.search([q["query"] for q in queries], k=k, **search)
    qrels, run = qrels_of(index, queries), run_of(queries, results)
    table = {}
    groups = {"all": queries}
    for q in queries:
        if q.get("type"):
            groups.setdefault(q["type"], []).append(q)
    for name, qs in groups.items():
        ids = {q["id"] for q in qs}
        table[name] = evaluate({i: run[i] for i in ids}, {i: qrels[i] for i in ids}, metrics,
                               missing="zero") | {"n": len(qs)}
    return table


def load_queries(path) -> list[dict]:
    """Evaluation queries from a JSONL file (one {"query", "relevant", ...} per line)."""
    out = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise DataError(f"cannot read queries {path}: {e.strerror}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(f"{path}:{n}: not JSON") from None
        if not isinstance(row, dict) or not isinstance(row.get("query"), str) \
                or not isinstance(row.get("relevant"), list):
            raise DataError(f"{path}:{n}: each line needs \"query\" (text) and \"relevant\" "
                            f"(a list of document ids)")
        row.setdefault("id", f"q{n}")
        out.append(row)
    if not out:
        raise DataError(f"{path} holds no queries")
    return out
