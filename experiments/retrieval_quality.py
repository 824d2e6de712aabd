"""Retrieval quality: BM25, dense, hybrid (alpha 0.5 and the best alpha) on the shipped corpora.

    jaxllm index build --corpus bbc --out runs/bbc-minilm --dense all-minilm-l6-v2
    jaxllm index build --corpus chatterbot --out runs/chat-minilm --dense all-minilm-l6-v2 \
        --chunk-kind none
    python experiments/retrieval_quality.py --bbc runs/bbc-minilm --chat runs/chat-minilm \
        [--rerank llm --rerank-queries 20] [--append]

For each evaluation set of jaxllm.retrieval.evalsets (BBC known-item, the six BBC query types,
chatterbot qa) and each configuration, hit@1, hit@10, MRR@10 and nDCG@10 (chunk-level qrels:
every chunk of a relevant document). The best alpha is chosen on the corpus's training queries
(MRR@10 over the alpha grid, relative score fusion), never on the test queries; the sweep over
the test sets is printed too. Queries are embedded once per set. Also: recall@10 of the int8
vector index against the float one (the float top 10 as the truth). Prints markdown tables;
--append adds them to experiments/RESULTS.md with this command, the date and the machine.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ALPHAS = tuple(round(a, 1) for a in np.linspace(0, 1, 11))
METRICS = ("hit@1", "hit@10", "mrr@10", "ndcg@10")


def table(rows, header) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


class QueryVectors:
    """Each set's queries embedded once."""

    def __init__(self, index):
        self.index, self.done = index, {}

    def __call__(self, name, queries):
        if name not in self.done:
            self.done[name] = self.index.embed_queries([q["query"] for q in queries])
        return self.done[name]


def groups(queries):
    """The query groups reported: each type, and all of them together when several."""
    by_type = {}
    for q in queries:
        by_type.setdefault(q["type"], []).append(q)
    if len(by_type) > 1:
        by_type["all types"] = list(queries)
    return by_type


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bbc", default=None, help="index folder built from --corpus bbc")
    ap.add_argument("--chat", default=None, help="index folder built from --corpus chatterbot")
    ap.add_argument("--rerank", default="", help="comma-separated: cross, llm")
    ap.add_argument("--rerank-queries", type=int, default=20,
                    help="queries per group that the rerankers score (the LLM is slow on CPU)")
    ap.add_argument("--candidates", type=int, default=20, help="reranked candidates per query")
    ap.add_argument("--rerank-groups", default="", help="comma-separated query groups to rerank "
                    "(default: all)")
    ap.add_argument("--alpha", type=float, default=None,
                    help="the hybrid alpha (default: chosen on the training queries)")
    ap.add_argument("--cross", default=None,
                    help="the cross-encoder folder (default: INDEX/reranker)")
    ap.add_argument("--maxp", action="store_true", help="score with the cross-encoder's MaxP "
                    "windows whatever it was trained with (--overlap tokens shared)")
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--per-type", action="store_true",
                    help="the reranker rows per query type too (a group of several types)")
    ap.add_argument("--no-base", action="store_true",
                    help="only the reranker rows (the other tables were printed before)")
    ap.add_argument("--append", action="store_true")
    args = ap.parse_args()

    from jaxllm.platform import configure_cpu

    configure_cpu()
    from jaxllm.retrieval import Index, load_corpus
    from jaxllm.retrieval.evalsets import eval_sets
    from jaxllm.retrieval.evaluation import evaluate_index

    lines = []
    int8_rows = []
    alpha_rows = []
    for corpus, path, test_sets in (("bbc", args.bbc, ("known-item", "types")),
                                    ("chatterbot", args.chat, ("qa",))):
        if path is None:
            continue
        index = Index.load(path)
        sets = eval_sets(corpus, load_corpus(corpus))  # the same sets `index build` saves
        vectors = QueryVectors(index)

        if index.encoder_info is None:  # a BM25-only index: its rows alone
            rows = []
            for set_name in test_sets:
                for group, qs in groups(sets[set_name]).items():
                    t = evaluate_index(index, qs, mode="bm25")["all"]
                    rows.append([corpus, group, len(qs), "BM25"] + [f"{t[m]:.3f}" for m in METRICS])
            lines.append(table(rows, ["corpus", "queries", "n", "configuration", *METRICS]))
            continue
        # alpha chosen on the training queries
        train = sets["train"]
        if args.alpha is not None:  # chosen by an earlier run
            best = args.alpha
        else:
            sweep = {a: evaluate_index(index, train, mode="hybrid", alpha=a,
                                       query_vectors=vectors("train", train))["all"]["mrr@10"]
                     for a in ALPHAS}
            best = max(ALPHAS, key=lambda a: (sweep[a], -abs(a - 0.5)))
            alpha_rows.append([corpus, "train (chooses alpha)"]
                              + [f"{sweep[a]:.3f}" for a in ALPHAS])
        configs = [("BM25", {"mode": "bm25"}), ("dense", {"mode": "dense"}),
                   ("hybrid alpha 0.5", {"mode": "hybrid", "alpha": 0.5}),
                   (f"hybrid alpha {best} (best on train)", {"mode": "hybrid", "alpha": best}),
                   (f"hybrid RRF alpha {best}", {"mode": "hybrid", "alpha": best,
                                                 "fusion": "rrf"})]
        rerankers = {}
        for name in filter(None, args.rerank.split(",")):
            from jaxllm.retrieval.rerank import load_reranker

            rerankers[name] = load_reranker(name, index=index,
                                            path=args.cross if name == "cross" else None)
            if name == "cross" and args.maxp:
                rerankers[name].maxp, rerankers[name].overlap = True, args.overlap
        rows = []
        for set_name in test_sets:
            qs_all = sets[set_name]
            vecs_all = vectors(set_name, qs_all)
            pos = {q["id"]: i for i, q in enumerate(qs_all)}
            for group, qs in groups(qs_all).items():
                qv = vecs_all[[pos[q["id"]] for q in qs]]
                for label, kw in configs if not args.no_base else ():
                    t = evaluate_index(index, qs, query_vectors=qv, **kw)["all"]
                    rows.append([corpus, group, len(qs), label]
                                + [f"{t[m]:.3f}" for m in METRICS])
                if not args.no_base and (group == "all types" or len(groups(qs_all)) == 1
                                         or set_name == "known-item"):
                    sw = [evaluate_index(index, qs, query_vectors=qv, mode="hybrid",
                                         alpha=a)["all"]["mrr@10"] for a in ALPHAS]
                    alpha_rows.append([corpus, group] + [f"{v:.3f}" for v in sw])
                if args.rerank_groups and group not in args.rerank_groups.split(","):
                    continue
                for rname, reranker in rerankers.items():
                    sub = qs[:args.rerank_queries]
                    qv_sub = qv[:len(sub)]
                    kw = {"mode": "hybrid", "alpha": best}
                    base_all = evaluate_index(index, sub, query_vectors=qv_sub, **kw)
                    start = time.perf_counter()
                    t_all = evaluate_index(index, sub, query_vectors=qv_sub, reranker=reranker,
                                           candidates=args.candidates, **kw)
                    per100 = (time.perf_counter() - start) / (len(sub) * args.candidates) * 100
                    how = rname
                    if rname == "cross":
                        r = reranker
                        how += (f" max_len {r.max_len}"
                                + (f" MaxP overlap {r.overlap}" if r.maxp else ""))
                    # "all", then (--per-type, several types) each type of the same queries
                    parts = [p for p in t_all if args.per_type or p == "all"]
                    for part in parts if len(parts) > 2 else ["all"]:
                        base, t = base_all[part], t_all[part]
                        name = group if part == "all" else f"{group}: {part}"
                        rows.append([corpus, name, base["n"], f"hybrid {best} (same {base['n']})"]
                                    + [f"{base[m]:.3f}" for m in METRICS])
                        rows.append([corpus, name, t["n"],
                                     f"+ {how} reranker ({per100:.1f} s / 100 candidates)"]
                                    + [f"{t[m]:.3f}" for m in METRICS])
            # int8 vectors against float: recall@10 of the float top 10
            q8 = index.dense.quantized()
            float_hits = index.dense.search(vecs_all, 10)
            int8_hits = q8.search(vecs_all, 10)
            overlap = np.mean([len(set(a.ids) & set(b.ids)) / max(len(a.ids), 1)
                               for a, b in zip(float_hits, int8_hits)])
            int8_rows.append([corpus, set_name, len(qs_all), f"{overlap:.4f}",
                              f"{index.dense.rows.nbytes / 2**20:.1f}",
                              f"{q8.rows.nbytes / 2**20 + q8.step.nbytes / 2**20:.1f}"])
        lines.append(table(rows, ["corpus", "queries", "n", "configuration", *METRICS]))
    out = "\n\n".join(lines)
    out += "\n\nMRR@10 by alpha (relative score fusion; 0 = BM25 only, 1 = vectors only):\n\n"
    out += table(alpha_rows, ["corpus", "queries"] + [str(a) for a in ALPHAS])
    out += "\n\nint8 vector index against float32 (recall@10 of the float top 10):\n\n"
    out += table(int8_rows, ["corpus", "set", "queries", "recall@10", "float MiB", "int8 MiB"])
    print(out)
    if args.append:
        cpu = next((ln.split(":", 1)[1].strip() for ln in subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines()
            if ln.startswith("Model name")), platform.processor())
        import jax

        head = (f"\n## Retrieval quality: BM25, dense, hybrid on BBC and chatterbot "
                f"({datetime.date.today()})\n\n`python {' '.join(sys.argv)}` on {cpu}, "
                f"jax {jax.__version__}, numpy {np.__version__}.\n\n")
        with open(Path(__file__).with_name("RESULTS.md"), "a", encoding="utf-8") as f:
            f.write(head + out + "\n")


if __name__ == "__main__":
    main()
