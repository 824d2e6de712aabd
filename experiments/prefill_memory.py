#!/usr/bin/env python3
"""Compiled memory of a long prompt's prefill on the CPU decode path, SmolLM2-135M's shape.

The CPU decode path (jaxllm.infer.generate) writes the prompt into the KV cache with
attention.cached_attention. Attending every query at once holds a (T x S) score matrix per
head (float32); in blocks of attention.PREFILL_BLOCK queries it holds (block x S). This script
compiles the prefill (batch 1, a cache of T slots, the parameters abstract: nothing is run or
loaded but the config) both ways and prints XLA's temporary-buffer size per prompt length.
With --time it also times jaxllm.infer.generate of one new token (the prefill, and one step)
with the real weights both ways, interleaved, after a warm-up call (median of --repeats).

Usage:
  python experiments/prefill_memory.py [--lengths 2048 4096 8192 16384] [--time --repeats 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

from jaxllm.platform import configure_cpu

configure_cpu()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxllm import models, pretrained  # noqa: E402
from jaxllm.infer.generate import _prefill, generate  # noqa: E402
from jaxllm.models import attention  # noqa: E402
from jaxllm.models.decoder import Decoder, KVCache  # noqa: E402

NAME = "smollm2-135m-instruct"


def temp_bytes(cfg, T: int) -> int:
    """XLA's temporary buffers of the compiled prefill of a T-token prompt (batch 1)."""
    params = models.abstract_params(cfg)[0]
    model = Decoder(cfg)

    def run(params, prompt, mask):
        return _prefill(model, params, prompt, mask, KVCache.empty(cfg, 1, T, "cpu"))

    prompt = jax.ShapeDtypeStruct((1, T), jnp.int32)
    mask = jax.ShapeDtypeStruct((1, T), bool)
    compiled = jax.jit(run).lower(params, prompt, mask).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def seconds(lm, T: int, repeats: int, blocked: int) -> dict:
    """{block: median seconds of generate(one T-token prompt, 1 new token)} for block = T (all
    queries at once) and `blocked`, the calls interleaved."""
    prompt = [list(range(1, T + 1))]
    model = Decoder(dataclasses.replace(lm.config, max_len=max(lm.config.max_len, T + 1)))
    times = {T: [], blocked: []}
    for r in range(repeats + 1):
        for block in times:
            attention.PREFILL_BLOCK = block
            jax.clear_caches()  # the block is read while tracing: trace again
            generate(model, lm.params, prompt, max_new_tokens=1, temperature=0.0)  # compile
            start = time.perf_counter()
            generate(model, lm.params, prompt, max_new_tokens=1, temperature=0.0)
            if r:  # the first round warms up
                times[block].append(time.perf_counter() - start)
    attention.PREFILL_BLOCK = blocked
    return {b: statistics.median(t) for b, t in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[2048, 4096, 8192, 16384])
    ap.add_argument("--time", action="store_true", help="also time generate, real weights")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    lm = pretrained.load(NAME)
    base = lm.config
    blocked = attention.PREFILL_BLOCK
    if args.time:
        print(f"| prompt tokens | all queries at once, s | {blocked} per block, s | ratio |")
        print("|---|---|---|---|")
        for T in args.lengths:
            got = seconds(lm, T, args.repeats, blocked)
            print(f"| {T:,} | {got[T]:.2f} | {got[blocked]:.2f} | {got[T] / got[blocked]:.2f}x |")
    print(f"| prompt tokens | all queries at once, MiB | {blocked} queries per block, MiB | ratio |")
    print("|---|---|---|---|")
    for T in args.lengths:
        cfg = dataclasses.replace(base, max_len=max(base.max_len, T))
        got = {}
        for block in (T, blocked):  # block = T: every query in one block, as before
            attention.PREFILL_BLOCK = block
            got[block] = temp_bytes(cfg, T)
        attention.PREFILL_BLOCK = blocked
        print(f"| {T:,} | {got[T] / 2**20:,.0f} | {got[blocked] / 2**20:,.0f} | "
              f"{got[T] / got[blocked]:.1f}x |")


if __name__ == "__main__":
    main()
