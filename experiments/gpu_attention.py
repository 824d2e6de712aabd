#!/usr/bin/env python3
"""Fused attention on a GPU: is each model.attention implementation right, and how fast is a
decoder train step with it, from 2k to 32k tokens of context.

    PYTHONPATH=$PWD python experiments/gpu_attention.py --check
    PYTHONPATH=$PWD python experiments/gpu_attention.py [--contexts 2048,...,32768]
        [--impls fast,cudnn,pallas] [--remat none] [--tokens 32768]

--check holds every implementation to the reference attention (einsum + mask + softmax in
float32) on small bfloat16 inputs: outputs and the gradients of q, k, v, causal, with packed
segments, with grouped-query heads. It prints the largest differences and exits 1 if one is
over its tolerance.

The timing is of one whole train step (forward, backward, AdamW) of a decoder of SmolLM2-135M's
shape (30 layers, d=576, 9 query heads over 3 kv heads of 64, SwiGLU, RoPE, 49,152-token
vocabulary) computing in bfloat16, with --tokens tokens per step (batch = tokens / context).
Each step is timed to completion (block_until_ready); the table gives the median over --steps
steps after two warm-ups, tokens/s, the model FLOP utilisation and XLA's compiled temporary
memory. MFU = model FLOPs per step / (step time x peak), model FLOPs = 6 x (parameters other
than the embedding lookup, the tied head counted) x tokens + 6 x layers x context x (heads x
head size) x tokens (causal attention: half of the score and value products, forward and
backward), peak = --peak (989.4 TFLOP/s: an H200's dense bfloat16 by NVIDIA's specification).
A cell that runs out of memory or fails is reported as such.

`fast` is jax.nn.dot_product_attention's XLA implementation, `cudnn` its cuDNN one, `pallas`
JAX's Pallas (Triton) flash-attention kernel; on CPU (for a smoke run, --small) `cudnn` is
skipped and `pallas` runs in interpret mode.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxllm.config import ModelConfig
from jaxllm.models import attention as attn
from jaxllm.models.decoder import Decoder, init_params
from jaxllm.objectives.causal_lm import causal_lm_loss

SMOLLM2_SHAPE = ModelConfig(vocab_size=49152, n_layers=30, d_model=576, n_heads=9, n_kv_heads=3,
                            d_ff=1536, positions="rope", rope_theta=100000.0, norm="rmsnorm",
                            mlp="swiglu", use_bias=False, tie_embeddings=True, dtype="bfloat16",
                            scan_unroll=1)
SMALL = replace(SMOLLM2_SHAPE, vocab_size=256, n_layers=2, d_model=128, n_heads=4,
                n_kv_heads=2, d_ff=256)


# --- correctness -------------------------------------------------------------------------------

def check(impls, seed=0):
    """Print the largest |difference| to the float32 reference of each implementation's output
    and input gradients on bfloat16 inputs; True if all are within tolerance."""
    B, T, N, K, H = 2, 256, 4, 2, 64
    rng = np.random.default_rng(seed)
    q, k, v = (jnp.asarray(rng.standard_normal(s), jnp.bfloat16)
               for s in ((B, T, N, H), (B, T, K, H), (B, T, K, H)))
    weights = jnp.asarray(rng.standard_normal((B, T, N, H)), jnp.float32)  # loss = sum(w * out)
    packed = jnp.asarray([[0] * 100 + [1] * 156, [0] * 256], jnp.int32)  # two documents, one
    idx = jnp.arange(T)
    ok = True
    print("| implementation | case | max abs diff: out | dq | dk | dv |")
    print("|---|---|---|---|---|---|")
    for case, seg in (("causal", None), ("packed segments", packed)):
        mask = attn.attention_mask(idx, idx, q_segments=seg, kv_segments=seg)

        def reference(q, k, v, mask=mask):
            return attn.reference_attention(*(x.astype(jnp.float32) for x in (q, k, v)),
                                            mask=mask)

        want = _value_and_grads(reference, weights, q, k, v)
        for impl in impls:
            def attend(q, k, v, impl=impl, seg=seg, mask=mask):
                if impl == "pallas":
                    return attn.pallas_attention(q, k, v, seg)
                return attn.self_attention(q, k, v, None if seg is None else mask, impl)
            try:
                got = _value_and_grads(attend, weights, q, k, v)
            except Exception as e:  # noqa: BLE001 - reported in the table
                print(f"| {impl} | {case} | {type(e).__name__}: {str(e).splitlines()[0][:80]} "
                      "| | | |")
                ok = False
                continue
            diffs = [float(jnp.abs(a - b).max()) for a, b in zip(got, want)]
            # bfloat16 keeps 8 bits of mantissa: outputs (of magnitude ~1) within 2e-2,
            # gradients within 1e-1
            good = diffs[0] < 2e-2 and max(diffs[1:]) < 1e-1
            ok &= good
            print(f"| {impl} | {case} | " + " | ".join(f"{d:.2e}" for d in diffs)
                  + ("" if good else " FAIL") + " |")
    return ok


def _value_and_grads(attend, weights, q, k, v):
    """attend's output and the gradients of sum(weights * output) in q, k, v, all float32."""
    def loss(q, k, v):
        out = attend(q, k, v).astype(jnp.float32)
        return (out * weights).sum(), out

    (_, out), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(q, k, v)
    return [out] + [g.astype(jnp.float32) for g in grads]


# --- speed: the attention alone ----------------------------------------------------------------

def time_kernel(impl: str, T: int, tokens: int, steps: int, block: int):
    """Median seconds of one forward and backward of causal attention with SmolLM2-135M's heads
    (9 query heads over 3 kv heads of 64) on tokens / T sequences of T tokens, and its FLOPs."""
    B, N, K, H = max(1, tokens // T), 9, 3, 64
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    q = jax.random.normal(keys[0], (B, T, N, H), jnp.bfloat16)
    k, v = (jax.random.normal(r, (B, T, K, H), jnp.bfloat16) for r in keys[1:3])
    w = jax.random.normal(keys[3], (B, T, N, H), jnp.bfloat16)

    def loss(q, k, v):
        o = attn.pallas_attention(q, k, v, block=block) if impl == "pallas" else \
            attn.self_attention(q, k, v, None, impl)
        return (o.astype(jnp.float32) * w).sum()

    f = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        jax.block_until_ready(f(q, k, v))
        if i >= 2:
            times.append(time.perf_counter() - t0)
    # causal: half of QK^T and PV (2 x 2BNT^2H) forward, twice that backward
    return statistics.median(times), 3 * 2 * B * N * T * T * H


# --- speed: a train step -------------------------------------------------------------------------------------

def model_flops_per_token(cfg: ModelConfig, params, T: int) -> float:
    n = sum(x.size for x in jax.tree.leaves(params))  # the tied embedding counted once: the head
    return 6 * n + 6 * cfg.n_layers * T * cfg.n_heads * cfg.head_size


def time_step(base: ModelConfig, impl: str, T: int, tokens: int, steps: int, remat: str):
    cfg = replace(base, max_len=T, attention=impl, remat=remat)
    B = max(1, tokens // T)
    params, _ = init_params(cfg, jax.random.PRNGKey(0))
    tx = optax.adamw(1e-4)
    loss_fn = causal_lm_loss(Decoder(cfg))

    # The train step written out (jaxllm.train's make_train_step imports the data floor, which
    # needs tensorflow-datasets; the GPU machine has none): loss, gradients, AdamW, in one jit.
    def step(params, opt_state, batch):
        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch,
                                                                      jax.random.PRNGKey(2))
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state = tx.init(params)
    x = jax.random.randint(jax.random.PRNGKey(1), (B, T), 0, cfg.vocab_size)
    batch = {"inputs": x, "targets": jnp.roll(x, -1, axis=1)}
    t0 = time.perf_counter()
    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, opt_state, batch).compile()
    compile_s = time.perf_counter() - t0
    temp = compiled.memory_analysis().temp_size_in_bytes
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        params, opt_state, loss = jax.block_until_ready(compiled(params, opt_state, batch))
        if i >= 2:
            times.append(time.perf_counter() - t0)
    loss = float(loss)
    return statistics.median(times), B * T, model_flops_per_token(cfg, params, T), temp, \
        compile_s, loss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="correctness against the reference")
    ap.add_argument("--kernels", action="store_true",
                    help="time the attention alone (forward and backward), not a train step")
    ap.add_argument("--pallas-block", type=int, default=attn.PALLAS_BLOCK,
                    help="the Pallas kernel's block (--kernels only)")
    ap.add_argument("--small", action="store_true", help="a 2-layer model (CPU smoke run)")
    ap.add_argument("--contexts", default="2048,4096,8192,16384,32768")
    ap.add_argument("--impls", default="fast,cudnn,pallas")
    ap.add_argument("--tokens", type=int, default=32768, help="tokens per step")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--remat", default="none")
    ap.add_argument("--peak", type=float, default=989.4e12, help="peak FLOP/s for MFU")
    args = ap.parse_args()
    backend = jax.default_backend()
    impls = [i for i in args.impls.split(",") if not (i == "cudnn" and backend != "gpu")]
    print(f"jax {jax.__version__}, backend {backend}, device {jax.devices()[0].device_kind}")
    if args.check:
        sys.exit(0 if check(impls) else 1)
    if args.kernels:
        print(f"causal attention alone, forward + backward, bfloat16, 9 query heads over 3 kv "
              f"heads of 64, {args.tokens} tokens per call, median of {args.steps} calls, "
              f"Pallas block {args.pallas_block}")
        print("| context | batch | attention | fwd+bwd (ms) | TFLOP/s |")
        print("|---|---|---|---|---|")
        for T in map(int, args.contexts.split(",")):
            for impl in impls:
                try:
                    sec, flops = time_kernel(impl, T, args.tokens, args.steps,
                                             args.pallas_block)
                    print(f"| {T:,} | {max(1, args.tokens // T)} | {impl} | {sec * 1e3:.2f} | "
                          f"{flops / sec / 1e12:.1f} |", flush=True)
                except Exception as e:  # noqa: BLE001 - an out-of-memory cell is a result
                    print(f"| {T:,} | {max(1, args.tokens // T)} | {impl} | {type(e).__name__}: "
                          f"{str(e).splitlines()[0][:90]} | |", flush=True)
        return
    base = SMALL if args.small else SMOLLM2_SHAPE
    print(f"model: {'small' if args.small else 'SmolLM2-135M shape'}, bfloat16, remat "
          f"{args.remat}, {args.tokens} tokens per step, median of {args.steps} steps")
    print("| context | batch | attention | step (ms) | tokens/s | MFU | temp (GiB) | compile (s) "
          "| loss |")
    print("|---|---|---|---|---|---|---|---|---|")
    for T in map(int, args.contexts.split(",")):
        for impl in impls:
            try:
                sec, n_tok, fpt, temp, comp, loss = time_step(base, impl, T, args.tokens,
                                                             args.steps, args.remat)
                print(f"| {T:,} | {n_tok // T} | {impl} | {sec * 1e3:.1f} | {n_tok / sec:,.0f} "
                      f"| {fpt * n_tok / sec / args.peak:.1%} | {temp / 2 ** 30:.2f} | {comp:.0f} "
                      f"| {loss:.3f} |", flush=True)
            except Exception as e:  # noqa: BLE001 - an out-of-memory cell is a result
                msg = str(e).splitlines()[0][:90] if str(e) else ""
                print(f"| {T:,} | {max(1, args.tokens // T)} | {impl} | {type(e).__name__}: "
                      f"{msg} | | | | | |", flush=True)


if __name__ == "__main__":
    main()
