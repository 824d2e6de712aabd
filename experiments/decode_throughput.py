#!/usr/bin/env python3
"""Decoding throughput of jaxllm.infer.generate at batch 1, against ../shared/peers/03_decode_hf_gpt2.py.

Same model as the peer: char vocabulary of the corpus (103 for the pydoc text), 4 layers, 4 heads,
d=256, exact GELU, tied embeddings, learned positions with a 512-entry table (prompt 32 + 256 new
tokens = 288 > 256), float32, random initialisation. Prompt: the first 32 characters of the
validation split (the last 10% of the corpus). Greedy decoding of exactly 256 new tokens (no stop
token), KV cache on, the whole loop one jitted lax.while_loop.

Variants: generate_kv (KV cache) and generate_nocache (the whole window re-run every token);
each: one warm-up call (compilation), then --runs timed calls; tokens/s = new tokens / wall s.
Both variants must produce identical tokens (checked: "outputs_identical").

Usage: python experiments/decode_throughput.py [--runs 5] [--new 256] [--prompt 32]
Prints one JSON line at the end (key generate_kv.tokens_per_s_median, as the peer).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from jaxllm.platform import configure_cpu

configure_cpu()  # as the jaxllm command does, before JAX starts

import jax  # noqa: E402

from jaxllm.config import ModelConfig
from jaxllm.infer import generate
from jaxllm.models.decoder import Decoder, init_params
from jaxllm.text import CharTokenizer

PEERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "peers")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--new", type=int, default=256)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--corpus", default=os.path.join(PEERS, "data", "pydoc_corpus.txt"))
    args = ap.parse_args()

    if os.path.exists(args.corpus):
        with open(args.corpus, encoding="utf-8") as f:
            text = f.read()
    else:
        from pydoc_data.topics import topics
        text = "".join(topics[k] for k in sorted(topics))
    tok = CharTokenizer.train([text])
    prompt = tok.encode(text[int(0.9 * len(text)):][: args.prompt])
    cfg = ModelConfig(vocab_size=tok.vocab_size, max_len=max(512, args.prompt + args.new),
                      n_layers=args.n_layer, n_heads=args.n_head, d_model=args.d_model)
    model = Decoder(cfg)
    params, _ = init_params(cfg, jax.random.PRNGKey(0))

    results, outputs = {}, {}
    for name, use_cache in (("generate_kv", True), ("generate_nocache", False)):
        def call():
            return generate(model, params, [prompt], max_new_tokens=args.new, temperature=0,
                            use_cache=use_cache)
        outputs[name] = call()  # warm-up: compiles
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        times.sort()
        results[name] = {
            "tokens_per_s_median": round(args.new / statistics.median(times), 1),
            "tokens_per_s_min_max": [round(args.new / times[-1], 1), round(args.new / times[0], 1)],
            "ms_per_token_median": round(statistics.median(times) / args.new * 1e3, 3),
            "n": len(times),
        }
        print(name, results[name], file=sys.stderr, flush=True)
    print(json.dumps({
        "bench": "decode_jaxllm",
        "versions": {"jax": jax.__version__},
        "config": {"vocab": cfg.vocab_size, "n_layer": cfg.n_layers, "n_head": cfg.n_heads,
                   "n_embd": cfg.d_model, "n_positions": cfg.max_len, "batch": 1,
                   "prompt_tokens": len(prompt), "new_tokens": args.new},
        "outputs_identical": outputs["generate_kv"] == outputs["generate_nocache"],
        **results,
        "kv_speedup": round(results["generate_kv"]["tokens_per_s_median"]
                            / results["generate_nocache"]["tokens_per_s_median"], 2),
    }))


if __name__ == "__main__":
    main()
