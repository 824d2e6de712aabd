"""The weight products of one SmolLM2-135M decode step (no attention), jitted in a fori_loop:

ms per step, CPU seconds per step and cores used, for formulations of x @ W (plain, split2:
two column halves, wT: transposed weights, pad2: batch padded to 2, reduceT: multiply-sum,
fused: q/k/v and gate/up each concatenated into one product).

    .venv/bin/python experiments/decode_matvec_chain.py 1 plain,split2
"""
import sys, time
from jaxllm.platform import configure_cpu; configure_cpu()
import jax, jax.numpy as jnp, numpy as np
from functools import partial
B = int(sys.argv[1]); modes = sys.argv[2].split(","); N = 16
d, f, L = 576, 1536, 30
rng = np.random.default_rng(0)
shapes = dict(q=(d, d), k=(d, 192), v=(d, 192), o=(d, d), gate=(d, f), up=(d, f), down=(f, d))
layers = {n: jnp.asarray(rng.standard_normal((L, *s), dtype=np.float32) * 0.03) for n, s in shapes.items()}
head = jnp.asarray(rng.standard_normal((d, 49152), dtype=np.float32) * 0.03)
emb = jnp.asarray(rng.standard_normal((49152, d), dtype=np.float32))

def mm(x, w, mode):
    if mode == "plain":
        return x @ w
    if mode == "split2":
        n = w.shape[1] // 2
        return jnp.concatenate([x @ w[:, :n], x @ w[:, n:]], axis=1)
    if mode == "wT":  # w given as (N, K)
        return jax.lax.dot_general(x, w, (((1,), (1,)), ((), ())))
    if mode == "reduceT":
        return jnp.sum(x[:, None, :] * w[None], axis=-1)
    if mode == "pad2":
        xp = jnp.concatenate([x, jnp.zeros((max(0, 2 - x.shape[0]), x.shape[1]), x.dtype)])
        return (xp @ w)[: x.shape[0]]
    raise ValueError(mode)

@partial(jax.jit, static_argnames=("mode", "n"))
def run(layers, head, emb, tok, *, mode, n):
    T = mode in ("wT", "reduceT")
    ls = [{k: (v[i].T if T else v[i]) for k, v in layers.items()} for i in range(L)]
    hd = head.T if T else head
    if mode == "fused":  # concatenated once, outside the loop
        for p in ls:
            p["qkv"] = jnp.concatenate([p.pop("q"), p.pop("k"), p.pop("v")], axis=1)
            p["gate_up"] = jnp.concatenate([p.pop("gate"), p.pop("up")], axis=1)
    def body(i, carry):
        tok, acc = carry
        x = emb[tok]
        for p in ls:
            if mode == "fused":
                qkv = x @ p["qkv"]
                a, kk, vv = qkv[:, :d], qkv[:, d:d + 192], qkv[:, d + 192:]
            else:
                a = mm(x, p["q"], mode); kk = mm(x, p["k"], mode); vv = mm(x, p["v"], mode)
            x = x + mm(a, p["o"], "plain" if mode == "fused" else mode) + kk.sum(-1, keepdims=True) * 1e-3 + vv.sum(-1, keepdims=True) * 1e-3
            x = x / jnp.sqrt(jnp.mean(x * x, -1, keepdims=True) + 1e-5)
            if mode == "fused":
                g, u = jnp.split(x @ p["gate_up"], 2, axis=1)
                x = x + jax.nn.silu(g) * u @ p["down"]
            else:
                g = mm(x, p["gate"], mode); u = mm(x, p["up"], mode)
                x = x + mm(jax.nn.silu(g) * u, p["down"], mode)
            x = x / jnp.sqrt(jnp.mean(x * x, -1, keepdims=True) + 1e-5)
        tok = jnp.argmax(mm(x, hd, "plain" if mode == "fused" else mode), -1).astype(jnp.int32)
        return tok, acc + tok
    return jax.lax.fori_loop(0, n, body, (tok, jnp.zeros_like(tok)))[1]

tok = jnp.arange(B, dtype=jnp.int32) + 100
for mode in modes:
    for n in (1, N): run(layers, head, emb, tok, mode=mode, n=n).block_until_ready()
    res = {}
    for n in (1, N):
        ts, cs = [], []
        for _ in range(3):
            c0 = time.process_time(); t0 = time.perf_counter(); r = run(layers, head, emb, tok, mode=mode, n=n).block_until_ready()
            ts.append(time.perf_counter() - t0); cs.append(time.process_time() - c0)
        i = int(np.argmin(ts)); res[n] = (ts[i], cs[i])
    per = (res[N][0] - res[1][0]) / (N - 1); cpu = (res[N][1] - res[1][1]) / (N - 1)
    print(f"B={B} {mode:8s} per step {per*1e3:6.1f} ms  cpu {cpu*1e3:6.1f} ms  ({cpu/per:.2f} cores)  {540e6/per/1e9:.1f} GB/s  check {int(r.sum())}", flush=True)
