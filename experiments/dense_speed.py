"""Dense top-10 speed over 100k vectors: DenseIndex (float32 and int8) queries/s and peak RSS.

    flock /tmp/jaxllm-bench.lock python experiments/dense_speed.py [--rows 100000] [--dim 384]

The rows are random unit vectors of MiniLM's dimension (embedding 100k real chunks with
MiniLM takes far longer on a CPU than the search does; the search cost does not depend on the
values). Queries: 1000 random unit vectors, searched in batches of 128 (DenseIndex's largest
compiled batch), top 10, cosine; a warm-up batch first (compilation), then `--runs` timed runs,
median. Also numpy's exact top-10 (one matrix product + argpartition per batch) for reference.
Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    from jaxllm.platform import configure_cpu

    configure_cpu()
    from jaxllm.retrieval.dense import DenseIndex

    rng = np.random.default_rng(0)
    rows = rng.normal(size=(args.rows, args.dim)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    queries = rng.normal(size=(args.queries, args.dim)).astype(np.float32)
    out = {"bench": "dense_top10", "rows": args.rows, "dim": args.dim,
           "queries": args.queries}

    def timed(fn):
        fn(queries[:128])  # compile
        ts = []
        for _ in range(args.runs):
            t = time.perf_counter()
            fn(queries)
            ts.append(time.perf_counter() - t)
        return round(args.queries / statistics.median(ts), 1)

    index = DenseIndex(rows, "cosine")
    out["float32_qps"] = timed(lambda q: index.search(q, 10))
    q8 = index.quantized()
    out["int8_qps"] = timed(lambda q: q8.search(q, 10))
    ref = index.search(queries, 10)
    got = q8.search(queries, 10)
    out["int8_recall@10"] = round(float(np.mean([len(set(a.ids) & set(b.ids)) / 10
                                                  for a, b in zip(ref, got)])), 4)

    def numpy_top10(q):
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        for s in range(0, len(q), 128):
            scores = q[s: s + 128] @ rows.T
            idx = np.argpartition(-scores, 10, axis=1)[:, :10]
            np.take_along_axis(scores, idx, 1)

    out["numpy_qps"] = timed(numpy_top10)
    out["peak_rss_MiB"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["float32_MiB"] = round(rows.nbytes / 2**20, 1)
    out["int8_MiB"] = round((q8.rows.nbytes + q8.step.nbytes) / 2**20, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
