#!/usr/bin/env python3
"""Post-training quantization of SmolLM2-135M-Instruct (the shakespeare-char study at a size
where the weights dominate memory).

For each weight format: bytes of all parameters (quantized leaves count their packed codes and
steps), perplexity on the first --tokens tokens of the Shakespeare validation split in
consecutive windows of --window tokens (what `jaxllm eval --model/--run ... --max-tokens N+1`
scores; every row on the same tokens), and the peak memory of the compiled forward pass
(memory_analysis: arguments + temporaries) of one --mem-len-token sequence with the layer loop
rolled, where each layer's weights are dequantized inside the loop.

Linear kernels only by default; the rows marked "+ embedding" also quantize the tied token
embedding (49152 x 576, 28.3M of the 134.5M parameters) per row, the model.weights
"embed=true" setting.

Usage: python experiments/quantization_smollm2.py [--tokens 16384] [--window 512] [--only NAME]
       python experiments/quantization_smollm2.py --weight-error
Prints one JSON line per row as it finishes, then the markdown table.
"""

from __future__ import annotations

import argparse
import json
import time

from jaxllm.platform import configure_cpu

configure_cpu()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxllm import pretrained  # noqa: E402
from jaxllm.data.tfds_builder import load_split_texts  # noqa: E402
from jaxllm.models.decoder import init_params  # noqa: E402
from jaxllm.pretrained.models import PretrainedDecoder  # noqa: E402
from jaxllm.transforms import apply_weights_spec, tree_bytes  # noqa: E402

NAME = "smollm2-135m-instruct"

# row label -> model.weights spec ("" float32; "bf16" the weights cast to bfloat16)
ROWS = {
    "float32": "",
    "bfloat16 (weights)": "bf16",
    "int8 per-channel": "method=int8,group=channel",
    "int8 per-channel + embedding (per row)": "method=int8,group=channel,embed=true",
    "int4 group 32, asymmetric (the GGUF's own Q4_1 grid)": "method=int4,group=32,symmetric=false",
    "int4 group 32": "method=int4,group=32",
    "int4 group 64": "method=int4,group=64",
    "int4 group 64, asymmetric": "method=int4,group=64,symmetric=false",
    # 128 does not divide d_model = 576 (the contraction of q, k, v, gate, up): 192 is the
    # nearest group size that divides both 576 and 1536
    "int4 group 192": "method=int4,group=192",
    "int4 group 64 + embedding": "method=int4,group=64,embed=true",
    "NF4 group 64": "method=nf4,group=64",
    "ternary PTQ (absmean per matrix)": "method=ternary,group=tensor",
}


def validation_ids(lm, corpus: str, n_tokens: int) -> list[int]:
    """The first n_tokens + 1 ids of the corpus's validation split, exactly as `jaxllm eval
    --max-tokens n_tokens+1` takes them."""
    _, val_texts = load_split_texts(corpus)
    text = "\n".join(val_texts)[:(n_tokens + 1) * 8]
    return lm.tokenizer.encode(text)[:n_tokens + 1]


def transformed(params, spec: str, axes):
    if spec == "":
        return params
    if spec == "bf16":
        return jax.tree_util.tree_map(lambda x: x.astype(jnp.bfloat16), params)
    return jax.block_until_ready(apply_weights_spec(params, spec, axes))


def peak_forward(lm: PretrainedDecoder, params, length: int) -> int:
    x = jnp.zeros((1, length), jnp.int32)
    mem = jax.jit(lambda p, x: lm.model.apply({"params": p}, x)).lower(params, x).compile() \
        .memory_analysis()
    return mem.argument_size_in_bytes + mem.temp_size_in_bytes


def weight_errors(lm, layer: int = 3):
    """Relative RMS error |W' - W| / |W| of each 4/8-bit format on three of a layer's kernels
    (no forward pass): shows which grids line up with the checkpoint's own Q4_1 blocks."""
    from jaxllm.transforms.quantize import quantize_array

    p = lm.params["blocks"]
    kernels = {"attn/query": p["attn"]["query"]["kernel"][layer],
               "mlp/up": p["mlp"]["up"]["kernel"][layer],
               "mlp/down": p["mlp"]["down"]["kernel"][layer]}
    for label, spec in ROWS.items():
        if "method=int" not in spec and "method=nf4" not in spec or "embed" in spec:
            continue
        o = dict(kv.split("=") for kv in spec.split(","))
        kw = {"method": o["method"], "group": int(o["group"]) if o["group"].isdigit()
              else o["group"], "symmetric": o.get("symmetric") != "false"}
        errs = {}
        for name, w in kernels.items():
            d = quantize_array(w, **kw).dequantize().reshape(w.shape)
            errs[name] = round(float(jnp.sqrt(jnp.mean((d - w) ** 2) / jnp.mean(w ** 2))), 4)
        print(json.dumps({"format": label, "relative_rms_error": errs}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=16384, help="tokens scored per row")
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--mem-len", type=int, default=128, help="sequence length of the memory row")
    ap.add_argument("--data", default="shakespeare")
    ap.add_argument("--only", action="append", choices=list(ROWS),
                    help="row label(s) to run, in this order (default: all)")
    ap.add_argument("--weight-error", action="store_true",
                    help="only the relative weight error of each format on layer 3's kernels")
    args = ap.parse_args()
    lm = pretrained.load(NAME)
    if args.weight_error:
        return weight_errors(lm)
    ids = validation_ids(lm, args.data, args.tokens)
    _, axes = init_params(lm.config, jax.random.PRNGKey(0))
    rows = {}
    for label in args.only or ROWS:  # --only: in the order given
        spec = ROWS[label]
        t0 = time.perf_counter()
        p = transformed(lm.params, spec, axes)
        view = PretrainedDecoder(lm.config, p, lm.tokenizer, NAME)
        r = view.perplexity(ids, window=args.window)
        rows[label] = {"spec": spec, "bytes": tree_bytes(p), "loss": r["loss"],
                       "perplexity": r["perplexity"], "tokens": r["tokens"],
                       "peak": peak_forward(view, p, args.mem_len),
                       "seconds": round(time.perf_counter() - t0, 1)}
        print(json.dumps({"format": label, **rows[label]}), flush=True)
        del p, view
    if "float32" not in rows:
        return
    f32 = rows["float32"]
    print(f"\n| weights | bytes | vs float32 | perplexity ({f32['tokens']:,.0f} tokens) | "
          f"vs float32 | peak forward memory (1 x {args.mem_len}) |")
    print("|---|---|---|---|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {v['bytes']:,} | {v['bytes'] / f32['bytes']:.3f}x | "
              f"{v['perplexity']:.3f} | {100 * (v['perplexity'] / f32['perplexity'] - 1):+.2f}% | "
              f"{v['peak'] / 1e6:.1f} MB |")


if __name__ == "__main__":
    main()
