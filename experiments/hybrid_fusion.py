"""Hybrid settings chosen on training queries, per query type: does the best hybrid beat both
single modes on MRR@10?

    python experiments/hybrid_fusion.py --bbc runs/bbc-minilm --chat runs/chat-minilm [--append]

The hybrid's levers: the score normalisation (fusion "rsf" min-max, "dbsf" mean -/+ 3 standard
deviations, "rrf" ranks), alpha, and the fusion depth (`pool`: how many of each list are fused).
Each setting of the grid is scored (MRR@10) on training queries, never on the test queries:
- BBC: per query type, on queries of THAT type made by evalsets' rules from the training
  articles (evalsets.bbc_typed_training; no test article), and one type-blind setting chosen on
  all those queries together; known-item on the training headlines;
- chatterbot: on the training questions.
The test rows: BM25, dense, the type-blind hybrid and the per-type hybrid; "all types" is the
mean over the six groups' queries (each query with its own type's setting). The sweeps of the
chosen fusion and depth over alpha, on training and test queries, are printed as well.
"""

from __future__ import annotations

import argparse
import itertools

from rag_planted import append  # RESULTS.md's header: command, CPU, versions, load
from retrieval_quality import ALPHAS, METRICS, QueryVectors, groups, table

FUSIONS = ("rsf", "dbsf", "rrf")
POOLS = (30, 100)


def grid():
    return [{"fusion": f, "pool": p, "alpha": a} for f, p, a in
            itertools.product(FUSIONS, POOLS, ALPHAS)]


def label(s) -> str:
    return f"{s['fusion']} alpha {s['alpha']} pool {s['pool']}"


class Fused:
    """One query set's BM25 and vector lists (top `pool` of each, fetched once per pool), fused
    for any setting: what Index.search(mode="hybrid") computes, without searching again."""

    def __init__(self, index, queries, qv):
        from jaxllm.retrieval.evaluation import qrels_of

        self.index, self.queries, self.qv = index, queries, qv
        self.qrels, self.lists = qrels_of(index, queries), {}

    def mrr(self, s) -> float:
        from jaxllm.metrics.ir import evaluate
        from jaxllm.retrieval.hybrid import fuse

        if s["pool"] not in self.lists:
            texts = [q["query"] for q in self.queries]
            self.lists[s["pool"]] = (
                self.index.search_hits(texts, mode="bm25", k=s["pool"]),
                self.index.search_hits(texts, mode="dense", k=s["pool"], query_vectors=self.qv))
        run = {}
        for q, sp, de in zip(self.queries, *self.lists[s["pool"]]):
            ids = fuse(sp, de, s["alpha"], 10, s["fusion"]).ids
            run[q["id"]] = {self.index.chunks[i].id: float(10 - r) for r, i in enumerate(ids)}
        return evaluate(run, self.qrels, ("mrr@10",), missing="zero")["mrr@10"]


def choose(fused):
    """The grid's best setting by MRR@10 (ties: alpha nearer 0.5, then the grid's order) and
    its MRR@10."""
    scores = [fused.mrr(s) for s in grid()]
    best = max(range(len(scores)), key=lambda i: (scores[i], -abs(grid()[i]["alpha"] - 0.5), -i))
    return grid()[best], scores[best]


def sweep_row(fused, setting, corpus, name):
    return [corpus, name, setting["fusion"], setting["pool"]] + [
        f"{fused.mrr(setting | {'alpha': a}):.3f}" for a in ALPHAS]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bbc", default=None, help="index folder built from --corpus bbc")
    ap.add_argument("--chat", default=None, help="index folder built from --corpus chatterbot")
    ap.add_argument("--append", action="store_true")
    args = ap.parse_args()

    from jaxllm.platform import configure_cpu

    configure_cpu()
    from jaxllm.retrieval import Index, load_corpus
    from jaxllm.retrieval.evalsets import bbc_typed_training, eval_sets
    from jaxllm.retrieval.evaluation import evaluate_index

    rows, chosen_rows, sweeps = [], [], []
    for corpus, path in (("bbc", args.bbc), ("chatterbot", args.chat)):
        if path is None:
            continue
        index = Index.load(path)
        docs = load_corpus(corpus)
        sets = eval_sets(corpus, docs)
        vectors = QueryVectors(index)
        # training queries per test group -> chosen setting
        if corpus == "bbc":
            typed = bbc_typed_training(docs)
            train_of = {"known-item": ("train", sets["train"])}
            train_of |= {t: (f"train-{t}", qs) for t, qs in groups(typed).items()
                         if t != "all types"}
            train_of["type-blind"] = ("train-types", typed)
            tests = [("known-item", sets["known-item"]), ("types", sets["types"])]
        else:
            train_of = {"qa": ("train", sets["train"])}
            tests = [("qa", sets["qa"])]
        chosen = {}
        for group, (name, qs) in train_of.items():
            fused = Fused(index, qs, vectors(name, qs))
            chosen[group], best = choose(fused)
            chosen_rows.append([corpus, group, name, len(qs), label(chosen[group]), f"{best:.3f}"])
            sweeps.append(sweep_row(fused, chosen[group], corpus, name))
        for set_name, qs_all in tests:
            vecs_all = vectors(set_name, qs_all)
            pos = {q["id"]: i for i, q in enumerate(qs_all)}
            per_type_sum = {m: 0.0 for m in METRICS}
            for group, qs in groups(qs_all).items():
                qv = vecs_all[[pos[q["id"]] for q in qs]]
                configs = [("BM25", {"mode": "bm25"}), ("dense", {"mode": "dense"})]
                if "type-blind" in chosen:
                    configs.append((f"hybrid type-blind ({label(chosen['type-blind'])})",
                                    {"mode": "hybrid"} | chosen["type-blind"]))
                if group != "all types":
                    configs.append((f"hybrid chosen for {group} ({label(chosen[group])})",
                                    {"mode": "hybrid"} | chosen[group]))
                results = [(lbl, evaluate_index(index, qs, query_vectors=qv, **kw)["all"])
                           for lbl, kw in configs]
                if group == "all types":  # each query with its own type's setting
                    results.append(("hybrid per type (each type's setting)",
                                    {m: per_type_sum[m] / len(qs) for m in METRICS}))
                else:
                    for m in METRICS:
                        per_type_sum[m] += results[-1][1][m] * len(qs)
                    sweeps.append(sweep_row(Fused(index, qs, qv), chosen[group], corpus, group))
                for lbl, t in results:
                    rows.append([corpus, group, len(qs), lbl] + [f"{t[m]:.3f}" for m in METRICS])
    out = "Settings chosen on training queries (MRR@10 over fusion x pool x alpha):\n\n"
    out += table(chosen_rows, ["corpus", "for", "training queries", "n", "chosen", "mrr@10"])
    out += "\n\nTest queries:\n\n"
    out += table(rows, ["corpus", "queries", "n", "configuration", *METRICS])
    out += "\n\nMRR@10 by alpha at each chosen fusion and pool (0 = BM25 only, 1 = vectors only):\n\n"
    out += table(sweeps, ["corpus", "queries", "fusion", "pool"] + [str(a) for a in ALPHAS])
    print(out)
    if args.append:
        append("Hybrid settings chosen per query type on training queries", out)


if __name__ == "__main__":
    main()
