#!/usr/bin/env python3
"""LoRA / QLoRA against full fine-tuning on SmolLM2-135M-Instruct (experiments/lora.py at a
size where weights and optimizer state matter).

  memory  the compiled train step's memory_analysis() for each variant at --batch x --seq
          tokens (layer loop rolled; no step is run): arguments, outputs, temporaries, and the
          part of the outputs that aliases the donated arguments
  train   a short adaptation to Shakespeare (full fine-tuning and LoRA), as
          `jaxllm train --init-from smollm2-135m-instruct --data shakespeare [--lora ...]`
          builds it: trainable parameters, optimizer-state bytes, median step time, validation
          loss before and after (the run's fixed validation batches)

Variants (all from the pretrained weights):
  full       every parameter, AdamW
  lora       LoRA rank 8, alpha 16 on the attention projections
  lora-all   LoRA rank 8, alpha 16 on every linear layer
  qlora      NF4 (group 64) frozen linear kernels + LoRA rank 8 on every linear layer
  qlora-emb  the same with the frozen tied embedding in NF4 too (model.weights embed=true)

Usage:
  python experiments/lora_smollm2.py memory [--batch 4 --seq 256] [--remat full]
  python experiments/lora_smollm2.py train --work DIR [--steps 30 --batch 4 --seq 128]
  python experiments/lora_smollm2.py steptime [--batch 4 --seq 128 --rounds 3]   (interleaved)
"""

from __future__ import annotations

import argparse
import json
import statistics

from jaxllm.platform import configure_cpu

configure_cpu()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxllm import config as config_lib, pretrained  # noqa: E402
from jaxllm.models.decoder import Decoder  # noqa: E402
from jaxllm.objectives.causal_lm import causal_lm_loss  # noqa: E402
from jaxllm.train import RunDir, make_optimizer, train, with_pretrained_model  # noqa: E402
from jaxllm.train.params import build_params, trainable_fn  # noqa: E402
from jaxllm.optim import TrainState  # noqa: E402
from jaxllm.train.step import make_train_step  # noqa: E402
from jaxllm.transforms import lora, tree_bytes  # noqa: E402

NAME = "smollm2-135m-instruct"
LORA_ALL = "train.lora=rank=8,alpha=16,targets=all"
VARIANTS = {  # name -> (overrides, peak learning rate)
    "full": ([], 1e-4),
    "lora": (["train.lora=rank=8,alpha=16,targets=attn"], 1e-3),
    "lora-all": ([LORA_ALL], 1e-3),
    "qlora": ([LORA_ALL, "model.weights=method=nf4,group=64"], 1e-3),
    "qlora-emb": ([LORA_ALL, "model.weights=method=nf4,group=64,embed=true"], 1e-3),
}


def variant_config(name: str, batch: int, seq: int, steps: int = 1, remat: str = "none"):
    """The config `jaxllm train --init-from smollm2-135m-instruct --data shakespeare` builds,
    with this variant's overrides and a rolled layer loop (compiles in a fraction of the time
    on CPU)."""
    extra, lr = VARIANTS[name]
    cfg = with_pretrained_model(config_lib.get_preset("shakespeare-char"), NAME)
    cfg = config_lib.apply_overrides(cfg, extra + [
        "data.corpus=shakespeare", f"model.max_len={seq}", "model.scan_unroll=1",
        f"model.remat={remat}",
        f"train.batch_size={batch}", f"train.steps={steps}", f"optim.lr={lr}",
        f"optim.min_lr={lr / 10}", "optim.warmup_steps=5", f"train.eval_every={steps}",
        f"train.save_every={steps}", "train.eval_batches=8", "train.log_every=5"])
    return config_lib.validate(cfg)


def overrides_text(name: str, batch: int, seq: int, steps: int) -> str:
    extra, lr = VARIANTS[name]
    sets = [*extra, f"model.max_len={seq}", "model.scan_unroll=1", f"train.batch_size={batch}",
            f"optim.lr={lr}", f"optim.min_lr={lr / 10}", "optim.warmup_steps=5",
            f"train.eval_every={steps}", "train.eval_batches=8", "train.log_every=5"]
    return " ".join(f"--set {s}" for s in sets)


def step_memory(cfg) -> dict:
    """The compiled train step's memory for cfg (abstract state: nothing is initialised)."""
    tx = make_optimizer(cfg.optim, cfg.train.steps)
    trainable = trainable_fn(cfg)
    state = jax.eval_shape(lambda: TrainState.create(build_params(cfg, jax.random.PRNGKey(0)),
                                                     tx, trainable))
    step = make_train_step(causal_lm_loss(Decoder(cfg.model)), tx, trainable=trainable)
    shape = (cfg.train.batch_size, cfg.model.max_len)
    batch = {"inputs": jax.ShapeDtypeStruct(shape, jnp.int32),
             "targets": jax.ShapeDtypeStruct(shape, jnp.int32)}
    m = step.lower(state, batch).compile().memory_analysis()
    a, o, t, al = (m.argument_size_in_bytes, m.output_size_in_bytes, m.temp_size_in_bytes,
                   m.alias_size_in_bytes)
    trainable_params = (sum(x.size for x in jax.tree_util.tree_leaves(state.params))
                        if trainable is None else lora.count(state.params)["trainable"])
    return {"args": a, "out": o, "temp": t, "alias": al, "total": a + o + t,
            "live": a + o - al + t, "params_bytes": tree_bytes(state.params),
            "opt_state_bytes": tree_bytes(state.opt_state), "trainable": trainable_params}


def memory(args):
    rows = {}
    for name in VARIANTS:
        cfg = variant_config(name, args.batch, args.seq, remat=args.remat)
        rows[name] = step_memory(cfg)
        print(json.dumps({"variant": name, **rows[name]}), flush=True)
    full = rows["full"]
    print(f"\n| variant (batch {args.batch} x {args.seq}, remat {args.remat}) | trainable params | "
          f"parameters | optimizer state | arguments | outputs | temporaries | "
          f"args + outputs + temps | vs full | live (outputs aliased by donation counted once) | vs full |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for k, r in rows.items():
        print(f"| {k} | {r['trainable']:,} | {r['params_bytes'] / 1e6:.1f} MB | "
              f"{r['opt_state_bytes'] / 1e6:.1f} MB | {r['args'] / 1e6:.1f} MB | "
              f"{r['out'] / 1e6:.1f} MB | {r['temp'] / 1e6:.1f} MB | {r['total'] / 1e6:.1f} MB | "
              f"{r['total'] / full['total']:.2f}x | {r['live'] / 1e6:.1f} MB | "
              f"{r['live'] / full['live']:.2f}x |")


def train_variants(args):
    rows = {}
    for name in args.variants:
        cfg = variant_config(name, args.batch, args.seq, args.steps)
        out = f"{args.work}/{name}"
        print(f"# {name}: jaxllm train --init-from {NAME} --data shakespeare --steps {args.steps} "
              f"{overrides_text(name, args.batch, args.seq, args.steps)} --out {out}", flush=True)
        summary = train(cfg, out, progress=False) if not RunDir(out).exists() else {}
        metrics = RunDir(out).read_metrics()
        speeds = [r["tokens_per_s"] for r in metrics if "tokens_per_s" in r][1:]  # 1st: warm-up
        vals = [r for r in metrics if "val_loss" in r]
        mem = step_memory(cfg)
        rows[name] = {"trainable": mem["trainable"], "opt_state_bytes": mem["opt_state_bytes"],
                      "step_s": round(args.batch * args.seq / statistics.median(speeds), 2)
                      if speeds else None,
                      "val_loss_start": vals[0]["val_loss"], "val_loss_end": vals[-1]["val_loss"],
                      "steps": vals[-1]["step"], **({"summary_step": summary.get("step")}
                                                    if summary else {})}
        print(json.dumps({"variant": name, **rows[name]}), flush=True)
    print(f"\n| variant | trainable params | optimizer state | step time (batch {args.batch} x "
          f"{args.seq}) | val loss, step 0 | val loss, step {args.steps} |")
    print("|---|---|---|---|---|---|")
    for k, r in rows.items():
        print(f"| {k} | {r['trainable']:,} | {r['opt_state_bytes'] / 1e6:.2f} MB | "
              f"{r['step_s']} s | {r['val_loss_start']:.4f} | {r['val_loss_end']:.4f} |")


def step_times(args):
    """Median seconds per train step of each variant, measured interleaved (A B A B ...) in one
    process so that the machine's load changes hit every variant alike. The pretrained weights
    and a fixed batch of random token ids (the step's cost does not depend on the ids)."""
    import time

    steps = {}
    for name in args.variants:
        cfg = variant_config(name, args.batch, args.seq, steps=1000)
        tx = make_optimizer(cfg.optim, cfg.train.steps)
        trainable = trainable_fn(cfg)
        base = jax.tree_util.tree_map(lambda x: x.copy(), pretrained.load(NAME).params)
        state = TrainState.create(build_params(cfg, jax.random.PRNGKey(0), base), tx, trainable)
        step = make_train_step(causal_lm_loss(Decoder(cfg.model)), tx, trainable=trainable)
        shape = (cfg.train.batch_size, cfg.model.max_len)
        tokens = jax.random.randint(jax.random.PRNGKey(1), shape, 0, cfg.model.vocab_size)
        batch = {"inputs": tokens, "targets": jnp.roll(tokens, -1, axis=1)}
        compiled = step.lower(state, batch).compile()
        state, _ = compiled(state, batch)  # warm-up
        jax.block_until_ready(state)
        steps[name] = [compiled, state, batch, []]
    for _ in range(args.rounds):
        for name, entry in steps.items():
            compiled, state, batch, times = entry
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                state, _ = compiled(state, batch)
                jax.block_until_ready(state)
                times.append(time.perf_counter() - t0)
            entry[1] = state
    med = {k: statistics.median(v[3]) for k, v in steps.items()}
    first = args.variants[0]
    for k, v in steps.items():
        print(json.dumps({"variant": k, "step_s_median": round(med[k], 3),
                          f"vs_{first}": round(med[k] / med[first], 3),
                          "times": [round(t, 3) for t in v[3]]}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("memory")
    m.add_argument("--batch", type=int, default=4)
    m.add_argument("--seq", type=int, default=256)
    m.add_argument("--remat", default="none", help="model.remat of every variant (none, full)")
    t = sub.add_parser("train")
    t.add_argument("--work", required=True)
    t.add_argument("--steps", type=int, default=30)
    t.add_argument("--batch", type=int, default=4)
    t.add_argument("--seq", type=int, default=128)
    t.add_argument("--variants", nargs="+", default=["full", "lora-all"])
    st = sub.add_parser("steptime")
    st.add_argument("--batch", type=int, default=4)
    st.add_argument("--seq", type=int, default=128)
    st.add_argument("--rounds", type=int, default=3)
    st.add_argument("--repeat", type=int, default=2, help="steps per variant per round")
    st.add_argument("--variants", nargs="+", default=["full", "lora-all", "qlora"])
    args = ap.parse_args()
    {"memory": memory, "train": train_variants, "steptime": step_times}[args.cmd](args)


if __name__ == "__main__":
    main()
