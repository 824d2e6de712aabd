"""XLA:CPU float32 matrix products at the shapes of a SmolLM2-135M decode step, by row count M:
what one decode step's weight products cost at batch M (GFLOP/s, median of 10 calls each).

    .venv/bin/python experiments/decode_gemm.py
    ~/.venv-peers/bin/python experiments/decode_gemm.py --numpy      # OpenBLAS, same shapes
"""
import argparse
import json
import statistics
import time

ap = argparse.ArgumentParser()
ap.add_argument("--numpy", action="store_true", help="time numpy (its BLAS) instead of XLA")
ap.add_argument("--rows", default="1,8,64,256")
args = ap.parse_args()
if args.numpy:
    import numpy as np

    def timer(a, b):
        return lambda: a @ b
else:
    from jaxllm.platform import configure_cpu

    configure_cpu()
    import jax
    import jax.numpy as jnp
    import numpy as np

    product = jax.jit(lambda a, b: a @ b)

    def timer(a, b):
        a, b = jnp.asarray(a), jnp.asarray(b)
        return lambda: product(a, b).block_until_ready()

rng = np.random.default_rng(0)
shapes = {"gate/up 576x1536": (576, 1536), "down 1536x576": (1536, 576), "q/o 576x576": (576, 576),
          "head 576x49152": (576, 49152)}
result = {}
for name, (K, N) in shapes.items():
    w = rng.standard_normal((K, N), dtype=np.float32)
    for M in map(int, args.rows.split(",")):
        run = timer(rng.standard_normal((M, K), dtype=np.float32), w)
        run()
        ts = []
        for _ in range(10):
            t0 = time.perf_counter()
            run()
            ts.append(time.perf_counter() - t0)
        t = statistics.median(ts)
        result[f"{name} M={M}"] = {"ms": round(t * 1e3, 3), "gflops": round(2 * M * K * N / t / 1e9, 1)}
        print(f"{name:18s} M={M:4d}: {t * 1e3:8.3f} ms  {2 * M * K * N / t / 1e9:6.1f} GFLOP/s", flush=True)
print(json.dumps({"bench": "decode_gemm", "impl": "numpy" if args.numpy else "xla", "results": result}))
