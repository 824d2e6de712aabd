#!/usr/bin/env python3
"""Post-training quantization, QAT and BitNet on a trained shakespeare-char model.

For each weight format: bytes of all parameters (quantized linear kernels + float embeddings
and norms), validation perplexity over the whole Shakespeare validation split, and the peak
memory of the compiled forward pass (memory_analysis: arguments + temporaries) with the layer
loop rolled (model.scan_unroll=1), where each layer's weights are dequantized inside the loop.

Runs (trained with the CLI beforehand, see experiments/RESULTS.md):
  --run    the float model (jaxllm train --preset shakespeare-char)
  --ft     the same model fine-tuned 300 more steps in float (the baseline QAT is compared with)
  --qat    the same model fine-tuned 300 steps with model.quant=int4 (fake-quant, STE)
  --bitnet a model trained from scratch with model.quant=ternary (BitNet b1.58)

Usage: python experiments/quantization.py --run R --ft R --qat R --bitnet R [--calib 8]
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from jaxllm.platform import configure_cpu

configure_cpu()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxllm.data import BatchIterator, build_data, sequential_batches  # noqa: E402
from jaxllm.models.decoder import Decoder, init_params  # noqa: E402
from jaxllm.objectives.causal_lm import causal_lm_loss  # noqa: E402
from jaxllm.train import evaluate, load_run, make_eval_step  # noqa: E402
from jaxllm.transforms import (apply_calibration, calibrate, linear_rules, quantize,  # noqa
                               tree_bytes)


def measure(run, params, batches, model_cfg=None):
    cfg = model_cfg or run.config.model
    model = Decoder(cfg)
    m = evaluate(make_eval_step(causal_lm_loss(model)), params, batches)
    rolled = Decoder(dataclasses.replace(cfg, scan_unroll=1))
    x = batches[0]["inputs"]
    mem = jax.jit(lambda p, x: rolled.apply({"params": p}, x)).lower(params, x).compile() \
        .memory_analysis()
    return {"bytes": tree_bytes(params), "perplexity": m["perplexity"], "loss": m["loss"],
            "peak": mem.argument_size_in_bytes + mem.temp_size_in_bytes}


def main():
    ap = argparse.ArgumentParser()
    for k in ("run", "ft", "qat", "bitnet"):
        ap.add_argument(f"--{k}", required=True)
    ap.add_argument("--calib", type=int, default=8)
    args = ap.parse_args()
    run = load_run(args.run)
    cfg, dc = run.config, run.config.data
    data = build_data(dc.corpus, dc.tokenizer, dc.split, dc.val_fraction, dc.text_key,
                      run.tokenizer)
    batches = sequential_batches(data.validation, 32, cfg.model.max_len, data.separator)
    _, axes = init_params(cfg.model, jax.random.PRNGKey(0))
    p = run.params
    calib_it = BatchIterator(data.train, 32, cfg.model.max_len, 1234, dc.sampling,
                             data.separator, "calibration")
    calib = [next(calib_it) for _ in range(args.calib)]

    def q(params, **kw):
        return quantize(params, linear_rules(), axes=axes, **kw)

    rows = {}
    rows["float32"] = measure(run, p, batches)
    rows["bfloat16 (weights)"] = measure(run, jax.tree_util.tree_map(
        lambda x: x.astype(jnp.bfloat16), p), batches)
    rows["int8 per-channel"] = measure(run, q(p, method="int8"), batches)
    rows["int8 per-channel, asymmetric"] = measure(run, q(p, method="int8", symmetric=False),
                                                   batches)
    rows["int4 group 64"] = measure(run, q(p, method="int4", group=64), batches)
    rows["int4 group 128"] = measure(run, q(p, method="int4", group=128), batches)
    rows["int4 group 64, asymmetric"] = measure(run, q(p, method="int4", group=64,
                                                       symmetric=False), batches)
    rows["int4 per-channel"] = measure(run, q(p, method="int4"), batches)
    rows["NF4 group 64"] = measure(run, q(p, method="nf4", group=64), batches)
    rows["ternary PTQ (absmean per matrix)"] = measure(run, q(p, method="ternary",
                                                              group="tensor"), batches)
    dyn = q(p, method="int8", act="dynamic")
    rows["W8A8 dynamic (int8 x int8 -> int32)"] = measure(run, dyn, batches)
    for how in ("minmax", "percentile"):
        ranges = calibrate(run.model, dyn, calib, method=how)
        rows[f"W8A8 static, {how} calibration ({args.calib} batches)"] = measure(
            run, apply_calibration(dyn, ranges), batches)
    # QAT against PTQ at the same bit width (int4 per output channel), both from the same base
    # fine-tuned for the same 300 steps
    ft, qat = load_run(args.ft), load_run(args.qat)
    rows["float, +300 steps fine-tuning (baseline)"] = measure(run, ft.params, batches)
    rows["int4 per-channel PTQ of that"] = measure(run, q(ft.params, method="int4"), batches)
    rows["int4 per-channel, QAT 300 steps"] = measure(run, q(qat.params, method="int4"), batches)
    bit = load_run(args.bitnet)
    rows["BitNet b1.58 from scratch, fake-quant (training form)"] = measure(
        run, bit.params, batches, bit.config.model)
    rows["BitNet b1.58: packed 2-bit, int8 x ternary -> int32"] = measure(
        run, q(bit.params, method="ternary", group="tensor", act="dynamic"), batches,
        dataclasses.replace(bit.config.model, quant="none"))
    rows["BitNet run's float weights, no quantization"] = measure(
        run, bit.params, batches, dataclasses.replace(bit.config.model, quant="none"))
    for k, v in rows.items():
        print(json.dumps({"format": k, **v}), flush=True)
    f32 = rows["float32"]
    print("\n| weights | bytes | vs float32 | val perplexity | vs float32 | peak forward memory |")
    print("|---|---|---|---|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {v['bytes']:,} | {v['bytes'] / f32['bytes']:.3f}x | "
              f"{v['perplexity']:.4f} | {100 * (v['perplexity'] / f32['perplexity'] - 1):+.2f}% | "
              f"{v['peak'] / 1e6:.2f} MB |")


if __name__ == "__main__":
    main()
