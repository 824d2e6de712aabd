#!/usr/bin/env python3
"""LoRA / QLoRA against full fine-tuning: adapt a Shakespeare model to Python documentation.

The base is a `shakespeare-char` model trained with the byte tokenizer (so the pydoc text, which
has characters Shakespeare lacks, encodes): `jaxllm train --preset shakespeare-char --set
data.tokenizer=byte --steps 1500 --out BASE`. Each variant fine-tunes it for --steps steps on the
`pydoc` corpus (CPython's pydoc_data topics) with the same batch and schedule shape:

  full    every parameter, AdamW lr 3e-4
  lora    LoRA rank 8, alpha 16 on the attention projections, lr 2e-3
  lora-all  LoRA rank 8, alpha 16 on every linear layer, lr 2e-3
  qlora   NF4 (group 64) frozen base + LoRA rank 8 on every linear layer, lr 2e-3

and reports trainable parameters, optimizer-state bytes, median step time (from the run's
tokens/s), validation loss over the whole pydoc validation split, and the compiled train step's
memory (memory_analysis: arguments + outputs + temporaries) at this size and at a larger,
weight-dominated size (8 layers, d=512, batch 2 x 64).

Usage: python experiments/lora.py --base BASE --work DIR [--steps 300]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics

from jaxllm.platform import configure_cpu

configure_cpu()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxllm import config as config_lib  # noqa: E402
from jaxllm.data import build_data, sequential_batches  # noqa: E402
from jaxllm.models.decoder import Decoder  # noqa: E402
from jaxllm.objectives.causal_lm import causal_lm_loss  # noqa: E402
from jaxllm.train import RunDir, evaluate, load_run, make_eval_step, make_optimizer, train  # noqa
from jaxllm.train.params import build_params, trainable_fn  # noqa: E402
from jaxllm.optim import TrainState  # noqa: E402
from jaxllm.train.step import make_train_step  # noqa: E402
from jaxllm.transforms import lora, tree_bytes  # noqa: E402

VARIANTS = {
    "full": ([], 3e-4),
    "lora": (["train.lora=rank=8,alpha=16,targets=attn"], 2e-3),
    "lora-all": (["train.lora=rank=8,alpha=16,targets=all"], 2e-3),
    "qlora": (["train.lora=rank=8,alpha=16,targets=all", "model.weights=method=nf4,group=64"],
              2e-3),
}


def variant_config(base_cfg, extra, lr, steps, base_dir):
    cfg = config_lib.apply_overrides(base_cfg, extra + [
        "data.corpus=pydoc", f"train.init_from={base_dir}", f"train.steps={steps}",
        f"optim.lr={lr}", f"optim.min_lr={lr / 10}", "optim.warmup_steps=20",
        "train.eval_every=100", f"train.save_every={steps}"])
    return config_lib.validate(cfg)


def step_memory(cfg, batch_shape):
    """Compiled train-step memory (bytes) of a config: arguments + outputs + temporaries."""
    tx = make_optimizer(cfg.optim, cfg.train.steps)
    trainable = trainable_fn(cfg)
    params = build_params(cfg, jax.random.PRNGKey(0))
    state = TrainState.create(params, tx, trainable)
    step = make_train_step(causal_lm_loss(Decoder(cfg.model)), tx, trainable=trainable,
                           donate=False)
    batch = {"inputs": jnp.zeros(batch_shape, jnp.int32),
             "targets": jnp.zeros(batch_shape, jnp.int32)}
    m = step.lower(state, batch).compile().memory_analysis()
    return {"args": m.argument_size_in_bytes, "out": m.output_size_in_bytes,
            "temp": m.temp_size_in_bytes,
            "total": m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes,
            "params": tree_bytes(params), "opt_state": tree_bytes(state.opt_state)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    base = load_run(args.base)
    rows = []
    for name, (extra, lr) in VARIANTS.items():
        cfg = variant_config(base.config, extra, lr, args.steps, args.base)
        out = f"{args.work}/{name}"
        if not RunDir(out).exists():
            train(cfg, out, progress=False)
        run = load_run(out)
        metrics = RunDir(out).read_metrics()
        speeds = [r["tokens_per_s"] for r in metrics if "tokens_per_s" in r][1:]
        tokens_per_step = cfg.train.batch_size * cfg.model.max_len
        dc = run.config.data
        data = build_data(dc.corpus, dc.tokenizer, dc.split, dc.val_fraction, dc.text_key,
                          run.tokenizer)
        val = evaluate(make_eval_step(causal_lm_loss(run.model)), run.params,
                       sequential_batches(data.validation, 32, cfg.model.max_len, data.separator))
        tx = make_optimizer(cfg.optim, cfg.train.steps)
        trainable = trainable_fn(cfg)
        state = TrainState.create(run.params, tx, trainable)
        n_train = (lora.count(run.params)["trainable"] if trainable else
                   sum(x.size for x in jax.tree_util.tree_leaves(run.params)))
        mem = step_memory(cfg, (cfg.train.batch_size, cfg.model.max_len))
        big = dataclasses.replace(cfg, model=dataclasses.replace(
            cfg.model, n_layers=8, d_model=512, n_heads=8, scan_unroll=1))
        mem_big = step_memory(big, (2, cfg.model.max_len))
        rows.append({"variant": name, "trainable": n_train,
                     "opt_state_bytes": tree_bytes(state.opt_state),
                     "step_ms": round(1000 * tokens_per_step / statistics.median(speeds), 1),
                     "val_loss": round(val["loss"], 4), "mem": mem, "mem_big": mem_big})
        print(json.dumps(rows[-1]), flush=True)
    base_val = None
    print("\n| variant | trainable params | optimizer state | step time | val loss (pydoc) | "
          "train-step memory, this size | train-step memory, 8 x d512 |")
    print("|---|---|---|---|---|---|---|")
    full = rows[0]
    for r in rows:
        print(f"| {r['variant']} | {r['trainable']:,} | {r['opt_state_bytes'] / 1e6:.2f} MB | "
              f"{r['step_ms']} ms | {r['val_loss']} | {r['mem']['total'] / 1e6:.1f} MB "
              f"({r['mem']['total'] / full['mem']['total']:.2f}x) | "
              f"{r['mem_big']['total'] / 1e6:.1f} MB "
              f"({r['mem_big']['total'] / full['mem_big']['total']:.2f}x) |")
    del base_val


if __name__ == "__main__":
    main()
