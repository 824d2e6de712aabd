"""The batch-B float32 decode ceiling of SmolLM2-135M on this machine, in numpy (no model code).

One decode step multiplies a (B, 576) activation by every weight matrix once: per layer q, k, v,
o, gate, up, down (30 layers) and the (576, 49152) head, 538 MB in all. This times exactly those
products with random weights of the real shapes, numpy's BLAS on all cores, median of 20 steps,
and also a plain 540 MB dot (read bandwidth). At batch 1 no float32 implementation can decode
faster than the printed tok/s: the step is bound by reading the weights.

    ~/.venv-peers/bin/python experiments/smollm2_decode_ceiling.py 1
"""
import numpy as np, time, sys
rng = np.random.default_rng(0)
B = int(sys.argv[1]) if len(sys.argv) > 1 else 1
d, f, L = 576, 1536, 30
layers = [[rng.standard_normal(s, dtype=np.float32) for s in [(d,d),(d,192),(d,192),(d,d),(d,f),(d,f),(f,d)]] for _ in range(L)]
head = rng.standard_normal((d, 49152), dtype=np.float32)
x = rng.standard_normal((B, d), dtype=np.float32); xf = rng.standard_normal((B, f), dtype=np.float32)
def step():
    for ws in layers:
        for w in ws:
            (xf if w.shape[0]==f else x) @ w
    x @ head
for _ in range(3): step()
ts=[]
for _ in range(20):
    t=time.perf_counter(); step(); ts.append(time.perf_counter()-t)
ts.sort(); t=ts[len(ts)//2]
nbytes = sum(w.nbytes for ws in layers for w in ws) + head.nbytes
print(f"B={B} numpy matmul-only step median {t*1e3:.1f} ms (min {ts[0]*1e3:.1f}) -> {nbytes/t/1e9:.1f} GB/s, {B/t:.1f} tok/s ceiling")
a = np.ones(135_000_000, np.float32)
ts = []
for _ in range(5):
    t0 = time.perf_counter(); a.dot(a); ts.append(time.perf_counter() - t0)
print(f"540 MB dot: {min(ts)*1e3:.1f} ms, {a.nbytes/min(ts)/1e9:.1f} GB/s")
