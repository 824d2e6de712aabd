#!/usr/bin/env python3
"""The matrix products of one training step of the peer benchmark model, alone, in JAX or torch.

Every linear layer of the 4-layer, d=256, context 256, batch 16 GPT (4096 rows; per layer q, k,
v and output projections 256x256, MLP 256x1024 and 1024x256; the 256x103 head) contributes its
forward product X W, its input gradient dY W^T and its weight gradient X^T dY, the shapes (and
transposes) a training step computes. This script times exactly those 75 products, without any
elementwise work, attention or optimizer: the floor under a training step for each library's
matmul kernels (XLA:CPU's Eigen/YNNPACK vs torch's MKL) on this machine.

Run it in both environments and compare:
  .venv/bin/python experiments/gemm_floor.py                 # jax (jit of all 75 products)
  ~/.venv-peers/bin/python experiments/gemm_floor.py --torch # torch eager
Prints one JSON line: median ms for the set, GFLOP/s.
"""

import argparse
import json
import statistics
import time

import numpy as np

ROWS, D, F, V, LAYERS = 4096, 256, 1024, 103, 4


def shapes():
    """(m, k, n, transpose_a, transpose_b) of every product of one step."""
    linears = [(D, D)] * 4 + [(D, F), (F, D)]
    out = []
    for _ in range(LAYERS):
        for fan_in, fan_out in linears:
            out.append((ROWS, fan_in, fan_out, False, False))  # X W
            out.append((ROWS, fan_out, fan_in, False, True))  # dY W^T
            out.append((fan_in, ROWS, fan_out, True, False))  # X^T dY
    out += [(ROWS, D, V, False, False), (ROWS, V, D, False, True), (D, ROWS, V, True, False)]
    return out


def operands(rng):
    ops = []
    for m, k, n, ta, tb in shapes():
        a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        ops.append((a, b, ta, tb))
    return ops


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--torch", action="store_true")
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    ops = operands(np.random.default_rng(0))
    flops = sum(2 * m * k * n for m, k, n, _, _ in shapes())
    if args.torch:
        import torch
        tops = [(torch.from_numpy(a), torch.from_numpy(b), ta, tb) for a, b, ta, tb in ops]

        def run():
            for a, b, ta, tb in tops:
                (a.t() if ta else a) @ (b.t() if tb else b)
        lib = f"torch {torch.__version__}"
    else:
        import jax
        import jax.numpy as jnp
        jops = [(jnp.asarray(a), jnp.asarray(b)) for a, b, _, _ in ops]
        flags = [(ta, tb) for _, _, ta, tb in ops]

        @jax.jit
        def products(pairs):
            return [(a.T if ta else a) @ (b.T if tb else b) for (a, b), (ta, tb) in zip(pairs, flags)]

        def run():
            jax.block_until_ready(products(jops))
        lib = f"jax {jax.__version__}"
    run()
    times = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    print(json.dumps({"bench": "gemm_floor", "lib": lib, "products": len(ops),
                      "gflop": round(flops / 1e9, 2), "median_ms": round(median * 1e3, 1),
                      "min_ms": round(min(times) * 1e3, 1),
                      "gflops_per_s": round(flops / median / 1e9, 1)}))


if __name__ == "__main__":
    main()
