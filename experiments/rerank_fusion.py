"""The cross-encoder's scores fused with the first stage's: does reranking beat the best hybrid?

    python experiments/reranker_queries.py --out runs/bbc-fit.jsonl --types --dev-out runs/bbc-dev.jsonl
    jaxllm index train-reranker runs/bbc-minilm --queries runs/bbc-fit.jsonl --alpha 0.4 --out runs/bbc-reranker
    python experiments/rerank_fusion.py --bbc runs/bbc-minilm --reranker runs/bbc-reranker \
        --dev runs/bbc-dev.jsonl --maxp [--n-test 100 --n-dev 30 --cache runs/bbc-scores.json]
    (chatterbot: --corpus chatterbot for reranker_queries.py, then --chat IDX ... --alpha 1.0)
    python experiments/rerank_fusion.py --chat runs/chat-minilm --reranker llm \
        --dev runs/chat-fit.jsonl runs/chat-dev.jsonl --n-dev 521 --n-test 522 --cache runs/llm.json

--reranker is a trained cross-encoder's folder, or `llm`: SmolLM2-135M-Instruct's yes/no
log-odds (rerank.LLMReranker), or `llm-reply`: its mean log p of the passage as its reply to
the query (kind "reply"), or `llm-pmi`: that minus the passage's prior (kind "pmi"; a reply
run's cache becomes a PMI cache with pmi_from_reply.py); SmolLM2 was trained on none of the
index's queries, so that all its training queries may choose w (--dev takes several files;
their queries are joined).

The first stage is the best hybrid as hybrid_fusion.py chose it on training queries (BBC: per
query type; FIRST_STAGE below). Its top `--candidates` per query are scored once by the
reranker, then ordered for every weight w of the grid by hybrid.fuse_rerank, the function
`Index.search(..., rerank_weight=w)` uses: w * minmax(reranker) + (1 - w) * minmax(first
stage) over the candidate list (w = 0: the first stage's order, 1: the reranker's alone).
Per test group, the fused order against the first stage query by query: wins, losses and
ties in reciprocal rank, a two-sided sign test over the non-ties and a paired bootstrap 95%
interval of the MRR@10 difference (queries resampled, seeded).

w is chosen per group on held-out TRAINING queries (--dev, from reranker_queries.py
--dev-out: queries of training articles/questions the reranker was not fitted to), never on
the test queries: BBC known-item on the held-out headlines, each query type on held-out
queries of that type, one type-blind w on all held-out typed queries; chatterbot on its
held-out training questions. Ties go to the smaller w. The test rows: the first stage, the
reranker alone (w = 1) and fused (the chosen w); "all types" with the per-type w is each query
with its own type's w (the type is given, as in the evaluation set). The MRR@10 sweeps over w
on the held-out and (for information, not for choosing) the test queries are printed too.
One ordering is checked against Index.search(rerank_weight=w) itself on a few test queries.
--cache keeps the candidate lists and reranker scores (JSON) so a rerun does not score again.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
from retrieval_quality import METRICS, table

WEIGHTS = tuple(round(w, 1) for w in np.linspace(0, 1, 11))
# hybrid_fusion.py's settings, chosen on training queries (section "Hybrid settings chosen per
# query type on training queries" of RESULTS.md)
FIRST_STAGE = {
    "bbc": {"known-item": ("rsf", 0.4, 100), "web": ("dbsf", 0.3, 30),
            "concept": ("rsf", 0.0, 30), "fact": ("rsf", 0.1, 100),
            "keyword": ("rsf", 0.0, 30), "misspell": ("rsf", 0.4, 100),
            "substring": ("rsf", 0.0, 30)},
    "chatterbot": {"qa": ("rsf", 1.0, 100)},
}


class Scored:
    """Per query: the first stage's top candidates (chunk numbers, fused scores) and the
    reranker's scores of them, computed once (and kept in the cache file)."""

    def __init__(self, index, reranker, cache, candidates, name):
        self.index, self.reranker, self.candidates = index, reranker, candidates
        self.path = Path(cache) if cache else None
        self.store = json.loads(self.path.read_text()) if self.path and self.path.exists() \
            else {}
        self.store.setdefault("reranker", name)  # whose scores these are (see cached_by)
        self.seconds, self.cpu_seconds, self.n_scored = 0.0, 0.0, 0

    def lists(self, queries, setting):
        fusion, alpha, pool = setting
        key = lambda q: f"{q['id']}|{fusion}|{alpha}|{pool}|{self.candidates}"  # noqa: E731
        todo = [q for q in queries if key(q) not in self.store]
        for at in range(0, len(todo), 20):  # kept every 20 queries: a stopped run resumes
            part = todo[at: at + 20]
            hits = self.index.search_hits([q["query"] for q in part], mode="hybrid",
                                          alpha=alpha, fusion=fusion, pool=pool,
                                          k=self.candidates)
            for q, h in zip(part, hits):
                start, cpu = time.perf_counter(), time.process_time()
                r = self.reranker.score(q["query"], [self.index.chunks[i].text for i in h.ids])
                self.seconds += time.perf_counter() - start
                self.cpu_seconds += time.process_time() - cpu
                self.n_scored += len(h.ids)
                self.store[key(q)] = {"ids": [int(i) for i in h.ids],
                                      "first": [float(s) for s in h.scores],
                                      "rerank": [float(s) for s in np.asarray(r)]}
            if self.path:
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(self.store))
                tmp.replace(self.path)
        return [self.store[key(q)] for q in queries]


def cached_by(path) -> str | None:
    """The reranker whose scores a --cache file holds (a file without the entry: the
    cross-encoder's, written before the LLM reranker could be given); None: no file yet."""
    if not path or not Path(path).exists():
        return None
    return json.loads(Path(path).read_text()).get("reranker", "cross-encoder")


def ordered(entry, w):
    """The candidates' chunk numbers in the order of w (None: the first stage's own order)."""
    from jaxllm.retrieval.hybrid import fuse_rerank

    ids = np.array(entry["ids"], np.int64)
    if w is None or not len(ids):
        return ids
    fused = fuse_rerank(np.array(entry["first"]), np.array(entry["rerank"]), w)
    return ids[np.lexsort((np.arange(len(ids)), -fused))]


def per_query(index, queries, entries, weights):
    """{query id: {metric: value}}, query i ordered by weights[i] (None: the first stage)."""
    from jaxllm.metrics.ir import evaluate_per_query
    from jaxllm.retrieval.evaluation import qrels_of

    run = {}
    for q, e, w in zip(queries, entries, weights):
        ids = ordered(e, w)[:10]
        run[q["id"]] = {index.chunks[i].id: float(len(ids) - r) for r, i in enumerate(ids)}
    return evaluate_per_query(run, qrels_of(index, queries), METRICS, missing="zero")


def metrics(index, queries, entries, weights):
    """{metric: mean} over queries, query i ordered by weights[i] (None: the first stage)."""
    values = per_query(index, queries, entries, weights)
    return {m: sum(v[m] for v in values.values()) / len(values) for m in METRICS}


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test: P(a split at least this uneven | wins, losses equally
    likely), ties left out."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired(base: list[float], new: list[float], draws: int = 10_000, seed: int = 0):
    """Per-query values of two orders of the same queries: wins, losses, ties of new against
    base, the sign test's p and the paired bootstrap's 2.5% and 97.5% points of mean(new -
    base)."""
    d = np.asarray(new, np.float64) - np.asarray(base, np.float64)
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), (draws, len(d)))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return wins, losses, len(d) - wins - losses, sign_test(wins, losses), float(lo), float(hi)


def choose(index, queries, entries):
    """The grid's w with the best MRR@10 on these queries (ties: the smaller w), and the sweep."""
    sweep = [metrics(index, queries, entries, [w] * len(queries))["mrr@10"] for w in WEIGHTS]
    best = max(range(len(WEIGHTS)), key=lambda i: (sweep[i], -i))
    return WEIGHTS[best], sweep


def by_type(queries):
    out = {}
    for q in queries:
        out.setdefault(q["type"], []).append(q)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bbc", default=None, help="index folder built from --corpus bbc")
    ap.add_argument("--chat", default=None, help="index folder built from --corpus chatterbot")
    ap.add_argument("--reranker", required=True,
                    help="a trained cross-encoder's folder, or llm (SmolLM2-135M-Instruct's "
                         "yes/no), llm-reply (its log p of the passage as the reply) or "
                         "llm-pmi (that minus the passage's prior)")
    ap.add_argument("--dev", required=True, nargs="+",
                    help="held-out training queries (JSONL; several files are joined)")
    ap.add_argument("--maxp", action="store_true", help="score with MaxP windows")
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--candidates", type=int, default=10)
    ap.add_argument("--n-test", type=int, default=100,
                    help="test queries per group (known-item; the first of the six-type set)")
    ap.add_argument("--n-dev", type=int, default=100,
                    help="held-out queries per group (BBC: per type and known-item)")
    ap.add_argument("--cache", default=None, help="JSON file of candidate lists and scores")
    args = ap.parse_args()
    kinds = {"llm": "yes-no", "llm-reply": "reply", "llm-pmi": "pmi"}
    llm = args.reranker in kinds
    name = {"llm": "LLM reranker", "llm-reply": "LLM reply reranker",
            "llm-pmi": "LLM PMI reranker"}.get(args.reranker, "cross-encoder")
    if llm and args.maxp:
        ap.error("--maxp reads a cross-encoder's windows; the llm reranker has none (drop it)")
    if cached_by(args.cache) not in (None, name):
        ap.error(f"{args.cache} holds the scores of the {cached_by(args.cache)}, not the "
                 f"{name}; pass another --cache")

    from jaxllm.platform import configure_cpu

    configure_cpu()
    from jaxllm.retrieval import Index
    from jaxllm.retrieval.evaluation import load_queries
    from jaxllm.retrieval.rerank import CrossEncoder, LLMReranker

    corpus, path = ("bbc", args.bbc) if args.bbc else ("chatterbot", args.chat)
    dev_all = [q for f in args.dev for q in load_queries(f)]
    if len({q["id"] for q in dev_all}) < len(dev_all):
        ap.error(f"a query id appears twice in --dev {' '.join(args.dev)}; pass each file once")
    index = Index.load(path)
    reranker = LLMReranker(kind=kinds[args.reranker]) if llm \
        else CrossEncoder.load(args.reranker)
    if args.maxp:
        reranker.maxp, reranker.overlap = True, args.overlap
    scored = Scored(index, reranker, args.cache, args.candidates, name)
    stage = FIRST_STAGE[corpus]
    sets = index.extra["eval_sets"]
    test_ids = {q["id"] for s in sets.values() for q in s if s is not sets.get("train")}
    assert not test_ids & {q["id"] for q in dev_all}, "a test query among the held-out ones"
    if corpus == "bbc":
        dev = {"known-item": [q for q in dev_all if q["type"] == "train"][:args.n_dev]}
        dev |= {t: qs[:args.n_dev] for t, qs in by_type(dev_all).items() if t != "train"}
        test = {"known-item": sets["known-item"][:args.n_test],
                "all types": sets["types"][:args.n_test]}
    else:
        dev = {"qa": dev_all[:args.n_dev]}
        test = {"qa": sets["qa"][:args.n_test]}

    def setting(group_type):
        return stage["known-item" if group_type == "train" else group_type]

    chosen, dev_rows, sweep_rows, paired_rows = {}, [], [], []
    for group, qs in dev.items():
        entries = scored.lists(qs, stage[group])
        chosen[group], sweep = choose(index, qs, entries)
        sweep_rows.append([corpus, f"held-out {group}", len(qs)] + [f"{v:.3f}" for v in sweep])
        dev_rows.append([corpus, group, len(qs), chosen[group], f"{sweep[0]:.3f}",
                         f"{sweep[-1]:.3f}", f"{max(sweep):.3f}"])
    if corpus == "bbc":  # one type-blind w on all held-out typed queries
        typed = [q for g, qs in dev.items() if g != "known-item" for q in qs]
        entries = [e for g, qs in dev.items() if g != "known-item"
                   for e in scored.lists(qs, stage[g])]
        chosen["type-blind"], sweep = choose(index, typed, entries)
        sweep_rows.append([corpus, "held-out typed (type-blind)", len(typed)]
                          + [f"{v:.3f}" for v in sweep])
        dev_rows.append([corpus, "type-blind", len(typed), chosen["type-blind"],
                         f"{sweep[0]:.3f}", f"{sweep[-1]:.3f}", f"{max(sweep):.3f}"])

    rows = []
    check = None
    for group, qs in test.items():
        entries = [scored.lists([q], setting(q["type"]))[0] for q in qs]
        # per type inside a mixed group, then the group
        parts = [(group, qs, entries)]
        if len(by_type(qs)) > 1:
            parts += [(f"{group}: {t}", [q for q in qs if q["type"] == t],
                       [e for q, e in zip(qs, entries) if q["type"] == t])
                      for t in by_type(qs)]
        for part, pq, pe in parts:
            own = [chosen.get(q["type"], chosen.get(group)) for q in pq]
            configs = [("best hybrid (first stage)", [None] * len(pq)),
                       (f"+ {name} (w = 1)", [1.0] * len(pq))]
            if group == "all types":
                configs += [(f"+ {name} fused, type-blind w = {chosen['type-blind']}",
                             [chosen["type-blind"]] * len(pq))]
                configs += [(f"+ {name} fused, w per type"
                             + (f" = {own[0]}" if len(set(own)) == 1 else ""), own)]
            else:
                configs += [(f"+ {name} fused, w = {chosen[group]}", own)]
            values = {}
            for label, ws in configs:
                values[label] = per_query(index, pq, pe, ws)
                m = {k: np.mean([v[k] for v in values[label].values()]) for k in METRICS}
                rows.append([corpus, part, len(pq), label] + [f"{m[k]:.3f}" for k in METRICS])
            base = [v["mrr@10"] for v in values[configs[0][0]].values()]
            for label, _ in configs[1:]:
                won, lost, tied, p, lo, hi = paired(
                    base, [v["mrr@10"] for v in values[label].values()])
                paired_rows.append([corpus, part, len(pq), label, won, lost, tied, f"{p:.3g}",
                                    f"[{lo:+.3f}, {hi:+.3f}]"])
        w_test = [chosen.get(q["type"], chosen.get(group)) for q in qs]
        sweep = [metrics(index, qs, entries, [w] * len(qs))["mrr@10"] for w in WEIGHTS]
        sweep_rows.append([corpus, f"test {group} (not used)", len(qs)]
                          + [f"{v:.3f}" for v in sweep])
        if check is None:
            check = (qs[:3], w_test[:3], entries[:3])
    # the library path: Index.search(rerank_weight=w) gives the same order
    for q, w, e in zip(*check):
        fusion, alpha, pool = setting(q["type"])
        got = index.search(q["query"], mode="hybrid", alpha=alpha, fusion=fusion, pool=pool,
                           k=args.candidates, reranker=reranker, candidates=args.candidates,
                           rerank_weight=w)
        assert [r.id for r in got] == [index.chunks[i].id for i in ordered(e, w)], q["id"]
    out = "w chosen on held-out training queries (MRR@10 at w = 0, w = 1 and the best):\n\n"
    out += table(dev_rows, ["corpus", "for", "n", "chosen w", "w=0", "w=1", "best"])
    out += "\n\nTest queries:\n\n"
    out += table(rows, ["corpus", "queries", "n", "configuration", *METRICS])
    out += ("\n\nReciprocal rank (MRR@10's per-query value) against the first stage, query by "
            "query:\n\n")
    out += table(paired_rows, ["corpus", "queries", "n", "configuration", "wins", "losses",
                               "ties", "sign test p", "bootstrap 95% of the MRR@10 gain"])
    out += "\n\nMRR@10 by w (0 = the first stage's order, 1 = the reranker's):\n\n"
    out += table(sweep_rows, ["corpus", "queries", "n"] + [str(w) for w in WEIGHTS])
    if scored.n_scored:
        out += (f"\n\n{name}: {scored.seconds / scored.n_scored * 100:.1f} s per 100 "
                f"candidates, {scored.cpu_seconds / scored.n_scored * 100:.1f} CPU s "
                f"({scored.n_scored} scored in this run)")
    print(out)


if __name__ == "__main__":
    main()
