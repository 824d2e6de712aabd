"""BM25 speed: jaxllm's SparseIndex against the peers of ../shared/peers/05_bm25.py.

    python ../shared/peers/00_make_corpus.py --out /tmp/peerdata   # once: the 100k corpus
    flock /tmp/jaxllm-bench.lock python ../shared/peers/compare_interleaved.py --pairs 3 \
      --key queries.batch.qps_median \
      --a "$HOME/.venv-peers/bin/python -P ../shared/peers/05_bm25.py --child --lib bm25s_numba \
           --docs /tmp/peerdata/paragraphs_100k.txt --top-out /tmp/numba.npz --build-runs 3" \
      --b ".venv/bin/python experiments/bm25_speed.py --docs /tmp/peerdata/paragraphs_100k.txt"

Or both sides alternately, with the medians and per-pair ratios (jaxllm / bm25s numba):

    flock /tmp/jaxllm-bench.lock python experiments/bm25_speed.py --compare-pairs 3 \
      --docs /tmp/peerdata/paragraphs_100k.txt --peer-script ../shared/peers/05_bm25.py

The same measurement as the peer's child process, on the same files: documents one per line,
the peer's tokenizer (lowercase + regex \\w+, no stop words, no stemming), k1=1.5, b=0.75, the
"lucene" variant (bm25s's default); build = token lists -> ready index (`--build-runs` timed
builds, median), queries = all 1000 queries of bm25_queries.txt at once, top-10, after a warm-up
on 50 (`--query-runs` timed runs, median), peak RSS. `--check` also compares the top-10 with
bm25s (numpy backend) and prints the number of queries that differ. Prints one JSON line last
(keys as the peer's: build_s.median, queries.batch.qps_median).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import time
from pathlib import Path

import numpy as np

WORD_RE = re.compile(r"\w+")


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return [line for line in f.read().split("\n") if line]


def compare(args):
    """jaxllm (this file) and the peer's bm25s numba child, alternately, --pairs times."""
    import subprocess
    import sys

    peer = [str(Path.home() / ".venv-peers/bin/python"), "-P", args.peer_script, "--child",
            "--lib", "bm25s_numba", "--docs", args.docs, "--top-out", "/tmp/bm25_peer_top.npz",
            "--build-runs", str(args.build_runs), "--query-runs-big", str(args.query_runs)]
    ours = [sys.executable, __file__, "--docs", args.docs, "--build-runs", str(args.build_runs),
            "--query-runs", str(args.query_runs)]
    rows = []
    for i in range(args.pairs):
        a = json.loads(subprocess.run(peer, capture_output=True, text=True,
                                      check=True).stdout.strip().splitlines()[-1])
        b = json.loads(subprocess.run(ours, capture_output=True, text=True,
                                      check=True).stdout.strip().splitlines()[-1])
        rows.append({"peer_qps": a["queries"]["batch"]["qps_median"],
                     "jaxllm_qps": b["queries"]["batch"]["qps_median"],
                     "peer_build_s": a["build_s"]["median"], "jaxllm_build_s": b["build_s"]["median"],
                     "peer_peak_MiB": a["peak_rss_MiB"], "jaxllm_peak_MiB": b["peak_rss_MiB"]})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    med["qps_ratio_per_pair"] = [round(r["jaxllm_qps"] / r["peer_qps"], 2) for r in rows]
    med["build_ratio_per_pair"] = [round(r["jaxllm_build_s"] / r["peer_build_s"], 2)
                                   for r in rows]
    print(json.dumps({"bench": "bm25_compare", "pairs": rows, "median": med}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", default="/tmp/peerdata/paragraphs_100k.txt")
    ap.add_argument("--queries", default=None, help="default: bm25_queries.txt beside --docs")
    ap.add_argument("--build-runs", type=int, default=3)
    ap.add_argument("--query-runs", type=int, default=3)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--compare-pairs", dest="pairs", type=int, default=0,
                    help="run the bm25s numba peer and this alternately, that many pairs")
    ap.add_argument("--peer-script", default=str(Path(__file__).resolve().parents[2] / "shared"
                                                 / "peers" / "05_bm25.py"))
    args = ap.parse_args()
    if args.pairs:
        return compare(args)
    from jaxllm.retrieval.sparse import SparseIndex, SparseParams

    docs = read_lines(args.docs)
    queries = read_lines(args.queries or os.path.join(os.path.dirname(args.docs),
                                                      "bm25_queries.txt"))
    t = time.perf_counter()
    tokens = [WORD_RE.findall(d.lower()) for d in docs]
    out = {"lib": "jaxllm", "docs": os.path.basename(args.docs), "n_docs": len(docs),
           "n_tokens": sum(map(len, tokens)), "tokenize_s": round(time.perf_counter() - t, 3)}
    q_tokens = [WORD_RE.findall(q.lower()) for q in queries]
    params = SparseParams("lucene", k1=1.5, b=0.75)
    build = []
    for i in range(args.build_runs):
        t = time.perf_counter()
        index = SparseIndex.build(tokens, params)
        build.append(time.perf_counter() - t)
        if i == 0:
            out["peak_rss_after_first_build_MiB"] = round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    index.search(q_tokens[:50], k=10)  # warm-up
    runs = []
    for _ in range(args.query_runs):
        t = time.perf_counter()
        hits = index.search(q_tokens, k=10)
        runs.append(time.perf_counter() - t)
    qps = [len(q_tokens) / r for r in runs]
    out["build_s"] = {"median": round(statistics.median(build), 3), "min": round(min(build), 3),
                      "max": round(max(build), 3), "n": len(build)}
    out["queries"] = {"batch": {"qps_median": round(statistics.median(qps), 1),
                                "qps_min_max": [round(min(qps), 1), round(max(qps), 1)],
                                "n_queries": len(q_tokens), "n": len(runs)}}
    out["peak_rss_MiB"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if args.check:
        import bm25s

        ref = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
        ref.index(tokens, show_progress=False)
        differ = 0
        for q, h in zip(q_tokens, hits):
            s = ref.get_scores(q)
            top = np.lexsort((np.arange(len(s)), -s))[:10]
            top = top[s[top] > 0]
            differ += not (np.array_equal(h.ids[:len(top)], top)
                           and np.allclose(h.scores[:len(top)], s[top], atol=1e-5))
        out["top10_differ_from_bm25s"] = differ
    print(json.dumps(out))


if __name__ == "__main__":
    main()
