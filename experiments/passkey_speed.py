#!/usr/bin/env python3
"""Seconds of one passkey forward (experiments/passkey.py's `predict`: SmolLM2-135M reading a
T-token prompt, float32, batch 1) by blocked attention's query block (model.attention_block),
the variants interleaved in one process after one compile each; and whether each is exact:
its argmaxes equal, its logits within float32 rounding of, the reference attention's (the
definition, the whole T x T scores) at --check tokens.

    python experiments/passkey_speed.py --lengths 4096,8192 --blocks 64,128,256,512 --repeats 2
    python experiments/passkey_speed.py --memory --lengths 16384,32768 --blocks 512

Prints one markdown table: per length and block, the compile seconds, the median wall and CPU
seconds of a forward, and the ratio to the first block given. --memory: XLA's temporaries
instead (compiled, nothing run). XLA_FLAGS from the environment: run it with and without
--xla_cpu_enable_concurrency_optimized_scheduler=false to compare XLA:CPU's two schedulers.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxllm.models.decoder import Decoder


def logits_fn(model, params, tokens, n: int):
    """Logits (B, n, V) after each of the last n positions (what passkey.predict argmaxes)."""
    hidden = model.apply({"params": params}, tokens, head="hidden")
    return model.apply({"params": params}, hidden[:, -n:], method=Decoder.lm_head)


def compiled(cfg, params, T: int, block: int, n: int):
    """(compile seconds, the compiled logits function) with blocked attention's block `block`
    (model.attention_block); a fresh jit per variant."""
    cfg = dataclasses.replace(cfg, attention_block=block)
    fn = jax.jit(partial(logits_fn, Decoder(cfg)), static_argnums=(2,))
    t0 = time.perf_counter()
    exe = fn.lower(params, jax.ShapeDtypeStruct((1, T), jnp.int32), n).compile()
    return time.perf_counter() - t0, exe


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lengths", default="4096,8192")
    ap.add_argument("--blocks", default="64,128,256,512")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--check", type=int, default=1024, help="tokens of the exactness check")
    ap.add_argument("--n", type=int, default=6, help="positions through the vocabulary head")
    ap.add_argument("--memory", action="store_true",
                    help="only compile at --lengths and print XLA's temporary memory per block")
    args = ap.parse_args()
    from jaxllm import pretrained

    if args.memory:
        lm = pretrained.load("smollm2-135m-instruct")
        print("| tokens | block | compile (s) | temporaries (MiB) |\n|---|---|---|---|")
        for T in [int(x) for x in args.lengths.split(",")]:
            cfg = dataclasses.replace(lm.config, attention="blocked",
                                      max_len=max(lm.config.max_len, T))
            for b in [int(x) for x in args.blocks.split(",")]:
                secs, exe = compiled(cfg, lm.params, T, b, args.n)
                mib = exe.memory_analysis().temp_size_in_bytes / 2**20
                print(f"| {T:,} | {b} | {secs:.0f} | {mib:,.0f} |", flush=True)
        return

    lm = pretrained.load("smollm2-135m-instruct")
    blocks = [int(b) for b in args.blocks.split(",")]
    rng = np.random.default_rng(0)
    vocab = lm.config.vocab_size

    # exactness at --check tokens: every block against the reference attention
    T = args.check
    tokens = jnp.asarray(rng.integers(0, vocab, (1, T)), jnp.int32)
    ref_cfg = dataclasses.replace(lm.config, attention="reference")
    ref = np.asarray(compiled(ref_cfg, lm.params, T, 64, T)[1](lm.params, tokens))
    blk_cfg = dataclasses.replace(lm.config, attention="blocked")
    exact = {}
    for b in blocks:
        out = np.asarray(compiled(blk_cfg, lm.params, T, b, T)[1](lm.params, tokens))
        same = float(np.mean(out.argmax(-1) == ref.argmax(-1)))
        exact[b] = (same, float(np.max(np.abs(out - ref))), float(np.max(np.abs(ref))))
        print(f"check T={T} block {b}: argmax agree {same:.4f}, max |dlogit| "
              f"{exact[b][1]:.2e} (max |logit| {exact[b][2]:.1f})", flush=True)

    rows = []
    for T in [int(x) for x in args.lengths.split(",")]:
        cfg = dataclasses.replace(blk_cfg, max_len=max(blk_cfg.max_len, T))
        tokens = jnp.asarray(rng.integers(0, vocab, (1, T)), jnp.int32)
        exes, comp = {}, {}
        for b in blocks:
            comp[b], exes[b] = compiled(cfg, lm.params, T, b, args.n)
            print(f"T={T} block {b}: compile {comp[b]:.1f} s", flush=True)
        wall = {b: [] for b in blocks}
        cpu = {b: [] for b in blocks}
        outs = {}
        for _ in range(args.repeats):
            for b in blocks:
                t0, c0 = time.perf_counter(), time.process_time()
                outs[b] = np.asarray(exes[b](lm.params, tokens))
                wall[b].append(time.perf_counter() - t0)
                cpu[b].append(time.process_time() - c0)
                print(f"T={T} block {b}: {wall[b][-1]:.1f} s wall, {cpu[b][-1]:.1f} s CPU",
                      flush=True)
        base = statistics.median(wall[blocks[0]])
        for b in blocks:
            agree = bool(np.array_equal(outs[b].argmax(-1), outs[blocks[0]].argmax(-1)))
            w = statistics.median(wall[b])
            rows.append(f"| {T:,} | {b} | {comp[b]:.0f} | {w:.1f} | "
                        f"{statistics.median(cpu[b]):.1f} | {w / base:.2f} | "
                        f"{'yes' if agree else 'NO'} |")
    print(f"\nExactness at {args.check} tokens (random ids), against attention=reference:")
    print("| block | argmax agree | max abs logit diff | max abs logit |\n|---|---|---|---|")
    for b, (same, d, m) in exact.items():
        print(f"| {b} | {same:.4f} | {d:.1e} | {m:.1f} |")
    print(f"\n| tokens | block | compile (s) | wall (s) | CPU (s) | wall / block {blocks[0]} "
          f"| argmaxes = block {blocks[0]} |\n|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
