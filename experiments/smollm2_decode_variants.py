"""SmolLM2-135M greedy decode, variants of the one decode program compiled side by side in one
process and run alternately (tokens/s, median over rounds; every variant must give the same tokens).

A variant is ATTENTION-FUSIONS[-CACHE]:
    ATTENTION  jaxllm     jaxllm's cached_attention (a one-token step with G > 1 query heads per
                          kv head multiplies and sums over the cache; otherwise matrix products)
               products   always the two batched matrix products (jaxllm before 2026-12-01)
               none       no attention at all: wrong tokens, timing only (what attention costs)
               plain      generate's "accelerator" decode path instead of its "cpu" one: no
                          copy of the weights, a rolled layer loop, a (B, S, K, H) cache and the
                          training attention call (what the CPU path's choices gain on XLA:CPU)
    FUSIONS    ynn        the process's XLA flags (jaxllm.platform.configure_cpu)
               noynn      the program compiled without YNNPACK fusions
    CACHE      grown      (default) the KV cache grows through generate.cache_sizes (64, 128, 160
                          slots for prompt 32 + 128 new), attention reads only those slots
               full       one cache of the whole window from the start (jaxllm before 2026-12-02)

    .venv/bin/python experiments/smollm2_decode_variants.py --batch 8 \
        --variants products-ynn,jaxllm-ynn,jaxllm-noynn,products-noynn
    .venv/bin/python experiments/smollm2_decode_variants.py --batch 8 \
        --variants jaxllm-ynn-full,jaxllm-ynn-grown
"""
import argparse
import functools
import importlib
import json
import statistics
import time

from jaxllm.platform import configure_cpu

configure_cpu()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxllm import pretrained  # noqa: E402
from jaxllm.models import attention  # noqa: E402

generate = importlib.import_module("jaxllm.infer.generate")  # the module, not its function


def products_attention(q, k, v, mask):
    """cached_attention's numbers, always as two batched matrix products."""
    B, T, N, H = q.shape
    K = k.shape[0] // B
    G, S = N // K, k.shape[2]
    q = jnp.swapaxes(q.reshape(B, T, K, G, H), 1, 2).reshape(B * K, T * G, H)
    scores = jnp.einsum("xqh,xhs->xqs", q, k).astype(jnp.float32)
    scores = scores.reshape(B, K, T, G, S) / jnp.sqrt(H)
    scores = jnp.where(mask[:, :, :, None], scores, attention.NEG)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype).reshape(B * K, T * G, S)
    out = jnp.einsum("xqs,xsh->xqh", probs, v)
    return jnp.swapaxes(out.reshape(B, K, T, G, H), 1, 2).reshape(B, T, N, H)


def no_attention(q, k, v, mask):
    """Timing only: keeps the cache reads and writes alive, attends to nothing."""
    return q + k[:, :1, :1].sum() + v[:, :1, :1].sum()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--variants", default="products-ynn,jaxllm-ynn,jaxllm-noynn,products-noynn")
    args = ap.parse_args()
    names = args.variants.split(",")
    lm = pretrained.load("smollm2-135m-instruct")
    ids = np.random.default_rng(0).integers(100, 49152, (args.batch, 32))
    weights = generate._cached_cpu_decode_weights(lm.model, lm.params)
    inputs = (jnp.asarray(ids, jnp.int32), jnp.ones(ids.shape, bool), jax.random.PRNGKey(0))
    static = dict(model=lm.model, max_new_tokens=args.new, temperature=0.0, top_k=0, top_p=1.0,
                  stop_tokens=(), use_cache=True, n_tokens=lm.model.cfg.vocab_size,
                  keep_logits=False)
    calls = {}  # name: the arguments of its program
    library, sizes = attention.cached_attention, generate.cache_sizes
    programs = {}
    for name in names:
        attn, fusions, cache = (name + "-grown").split("-")[:3]
        attention.cached_attention = {"jaxllm": library, "products": products_attention,
                                      "none": no_attention, "plain": library}[attn]
        path = "accelerator" if attn == "plain" else "cpu"
        calls[name] = (lm.params, weights if path == "cpu" else None, *inputs)
        generate.cache_sizes = {"grown": sizes, "full": lambda prompt, window: [window]}[cache]
        # A new function object per variant: jit caches traces by function, so jitting the same
        # function again would reuse the first variant's trace.
        raw = generate._generate.__wrapped__
        fresh = functools.wraps(raw)(lambda *a, **k: raw(*a, **k))
        try:
            lowered = jax.jit(fresh, static_argnames=(*static, "path")).lower(
                *calls[name], path=path, **static)
        finally:
            attention.cached_attention = library
            generate.cache_sizes = sizes
        options = {"ynn": {}, "noynn": {"xla_cpu_experimental_ynn_fusion_type": ""}}[fusions]
        programs[name] = lowered.compile(compiler_options=options)
    reference = None  # (name, tokens) of the first variant that attends
    for name, program in programs.items():
        tokens = np.asarray(program(*calls[name])[0])  # also the warm-up call
        if name.startswith("none"):
            continue
        if reference is None:
            reference = (name, tokens)
        elif not (tokens == reference[1]).all():
            raise SystemExit(f"{name} decoded other tokens than {reference[0]}")
    speeds = {name: [] for name in names}
    for _ in range(args.rounds):
        for name, program in programs.items():
            t0 = time.perf_counter()
            jax.block_until_ready(program(*calls[name]))
            speeds[name].append(args.batch * args.new / (time.perf_counter() - t0))
    result = {name: round(statistics.median(s), 1) for name, s in speeds.items()}
    ratios = {name: round(statistics.median(a / b for a, b in zip(speeds[name], speeds[names[0]])), 3)
              for name in names[1:]}
    print(f"batch {args.batch}: tokens/s {result}; median per-round ratio to {names[0]}: {ratios}")
    print(json.dumps({"bench": "smollm2_decode_variants", "batch": args.batch,
                      "tokens_per_s_median": result, "ratio_to_first": ratios}))


if __name__ == "__main__":
    main()
