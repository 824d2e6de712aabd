"""One decode step's cached attention (T = 1) for every layer, under two KV-cache layouts and
two ways of forming the products:

    old     keys (B*K, S, H), values (B*K, H, S): both products contract over the cache's minor axis
    new     keys (B*K, H, S), values (B*K, S, H): both contract over its major axis (jaxllm's layout)
    reduce  the new layout, each product as a broadcast multiply and a sum over the contracted axis
            (faster here when G > 1, ~80x slower when G = 1: jaxllm uses it for one-token steps
            with G > 1 only)

ms per step for all layers, median of 3 interleaved repeats; the layers are a chain, each adding
its output to the next query.

    .venv/bin/python experiments/decode_attention.py --batch 8                     # SmolLM2-135M
    .venv/bin/python experiments/decode_attention.py --batch 1 --slots 288 --kv-heads 4 --groups 1 --layers 4
"""
import argparse
import json
import statistics
import time
from functools import partial

from jaxllm.platform import configure_cpu

configure_cpu()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxllm.models.attention import NEG  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--slots", type=int, default=160)  # prompt 32 + 128 new tokens
ap.add_argument("--kv-heads", type=int, default=3)
ap.add_argument("--groups", type=int, default=3)  # query heads per kv head
ap.add_argument("--head-size", type=int, default=64)
ap.add_argument("--layers", type=int, default=30)
args = ap.parse_args()
B, S, K, G, H, L = args.batch, args.slots, args.kv_heads, args.groups, args.head_size, args.layers
X = B * K
rng = np.random.default_rng(0)
keys = [rng.standard_normal((X, S, H), dtype=np.float32) for _ in range(L)]  # old layout
values = [rng.standard_normal((X, H, S), dtype=np.float32) for _ in range(L)]
mask = jnp.asarray(rng.random((B, 1, 1, S)) < 0.9)


# The two products, (scores, out), as einsums over each layout; "reduce" multiplies and sums
# over the new layout instead.
PRODUCTS = {"old": ("xgh,xsh->xgs", "xgs,xhs->xgh"), "new": ("xgh,xhs->xgs", "xgs,xsh->xgh")}


def attend(q, k, v, layout):
    q = q.reshape(X, G, H)
    if layout == "reduce":
        s = (q[:, :, :, None] * k[:, None]).sum(2)
    else:
        s = jnp.einsum(PRODUCTS[layout][0], q, k)
    s = jnp.where(mask, (s / jnp.sqrt(H)).reshape(B, K, G, S), NEG)
    p = jax.nn.softmax(s, axis=-1).reshape(X, G, S)
    if layout == "reduce":
        out = (p[:, :, :, None] * v[:, None]).sum(2)
    else:
        out = jnp.einsum(PRODUCTS[layout][1], p, v)
    return out.reshape(B, K * G, H)


def compiled(layout):
    ks = [jnp.asarray(k if layout == "old" else np.swapaxes(k, 1, 2)) for k in keys]
    vs = [jnp.asarray(v if layout == "old" else np.swapaxes(v, 1, 2)) for v in values]
    q = jnp.asarray(rng.standard_normal((B, K * G, H), dtype=np.float32))

    @partial(jax.jit, static_argnums=3)
    def steps(q, ks, vs, n):
        def body(_, q):
            for k, v in zip(ks, vs):
                q = q + 1e-3 * attend(q, k, v, layout)
            return q
        return jax.lax.fori_loop(0, n, body, q)

    fns = {n: steps.lower(q, ks, vs, n).compile() for n in (1, 11)}
    return lambda n: fns[n](q, ks, vs).block_until_ready()


variants = {layout: compiled(layout) for layout in ("old", "new", "reduce")}
times = {name: [] for name in variants}
for _ in range(3):
    for name, run in variants.items():
        run(1), run(11)
        t = []
        for n in (1, 11):
            t0 = time.perf_counter()
            run(n)
            t.append(time.perf_counter() - t0)
        times[name].append((t[1] - t[0]) / 10 * 1e3)
result = {name: round(statistics.median(ts), 2) for name, ts in times.items()}
print(f"B={B} S={S} K={K} G={G} H={H} layers={L}: ms per step", result)
print(json.dumps({"bench": "decode_attention", "batch": B, "slots": S, "ms_per_step": result}))
