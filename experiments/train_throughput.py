#!/usr/bin/env python3
"""Training throughput and MFU of jaxllm's decoder on the peer benchmark config.

The model, optimizer and data follow ../shared/peers/02_train_torch_gpt.py so the two can be run
side by side (compare_interleaved.py): GPT-2 blocks (learned positions, LayerNorm, exact GELU,
tied embeddings, no dropout), 4 layers, 4 heads, d=256, context 256, batch 16, float32, char
vocabulary of the corpus; AdamW lr 1e-3 constant, betas (0.9, 0.99), eps 1e-8, weight decay 0.1 on
every >=2-D parameter (embeddings included, as the peer), global-norm clip 1.0; first 90% of the
characters train, last 10% validation (20 fixed batches).

Each timed step is what a user's loop does: take the next batch, run jaxllm's jitted train step
(make_train_step: forward + backward + clip + AdamW, state donated) and read the loss back (a
host sync every step, as the peer does). The first --warmup steps (compilation) are excluded.

FLOPs per token = 6 * N + 12 * n_layer * T * d (N: parameters without the position table;
nanoGPT's estimate_mfu / PaLM appendix B), the same formula as the peer. MFU divides the achieved
FLOP/s by the float32 matmul ceiling measured in this process (jax.jit(a @ b), 2048^3 and 4096^3,
best median), unless --ceiling-gflops is given.

Usage: python experiments/train_throughput.py [--steps 300] [--corpus FILE] [--eval-at 0,300]
Prints one JSON line at the end (keys as the peer scripts: tokens_per_s_median, step_ms, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import NamedTuple

from jaxllm.platform import configure_cpu

configure_cpu()  # as the jaxllm command does, before JAX starts

import jax  # noqa: E402
import jax.numpy as jnp
import numpy as np

from jaxllm.config import Config, DataConfig, ModelConfig, OptimConfig, TrainConfig
from jaxllm.data import BatchIterator, eval_batches
from jaxllm.models.decoder import Decoder, init_params
from jaxllm.objectives.causal_lm import causal_lm_loss
from jaxllm.text import CharTokenizer
from jaxllm.train import TrainState, evaluate, make_eval_step, make_optimizer, make_train_step

PEERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "peers")


def load_corpus(path: str) -> str:
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return f.read()
    from pydoc_data.topics import topics
    return "".join(topics[k] for k in sorted(topics))


def matmul_ceiling(sizes=(2048, 4096), rounds=5) -> float:
    """Median float32 GFLOP/s of jax.jit(a @ b), the best over sizes."""
    best = 0.0
    for n in sizes:
        a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
        f = jax.jit(lambda x, y: x @ y)
        f(a, a).block_until_ready()
        reps = max(1, int(2e10 // (2 * n ** 3)))
        rates = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(reps):
                f(a, a).block_until_ready()
            rates.append(2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9)
        best = max(best, statistics.median(rates))
    return best


class Bench(NamedTuple):
    cfg: Config
    state: TrainState
    train_step: object  # jitted (state, batch) -> (state, metrics)
    eval_step: object
    batches: BatchIterator
    val: list
    n_params: int
    n_nonemb: int
    flops_per_token: int


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--corpus", default=os.path.join(PEERS, "data", "pydoc_corpus.txt"))
    ap.add_argument("--eval-at", default="0,100,200,300")
    ap.add_argument("--ceiling-gflops", type=float, default=0.0,
                    help="matmul ceiling for MFU; 0 measures it in this process")
    return ap


def build(args) -> Bench:
    """The peer's model, optimizer and data as jaxllm objects, and jaxllm's jitted steps."""
    text = load_corpus(args.corpus)
    tokenizer = CharTokenizer.train([text])
    data = tokenizer.encode_array(text)
    n_train = int(0.9 * len(data))
    cfg = Config(
        model=ModelConfig(vocab_size=tokenizer.vocab_size, max_len=args.context,
                          n_layers=args.n_layer, n_heads=args.n_head, d_model=args.d_model),
        data=DataConfig(),
        optim=OptimConfig(lr=args.lr, schedule="constant", warmup_steps=0, b1=0.9, b2=0.99,
                          eps=1e-8, weight_decay=0.1, decay_embeddings=True, clip_norm=1.0),
        train=TrainConfig(steps=args.steps, batch_size=args.batch))
    m, T, B = cfg.model, args.context, args.batch
    params, _ = init_params(m, jax.random.PRNGKey(0))
    n_params = sum(int(x.size) for x in jax.tree_util.tree_leaves(params))
    n_nonemb = n_params - T * m.d_model  # without the position table, as the peer
    tx = make_optimizer(cfg.optim, args.steps)
    loss_fn = causal_lm_loss(Decoder(m))
    return Bench(cfg=cfg, state=TrainState.create(params, tx),
                 train_step=make_train_step(loss_fn, tx), eval_step=make_eval_step(loss_fn),
                 batches=BatchIterator([data[:n_train]], B, T, seed=1337),
                 val=eval_batches([data[n_train:]], 20, B, T, seed=2024),
                 n_params=n_params, n_nonemb=n_nonemb,
                 flops_per_token=6 * n_nonemb + 12 * m.n_layers * T * m.d_model)


def main() -> None:
    args = parser().parse_args()
    b = build(args)
    m, T, B = b.cfg.model, args.context, args.batch
    state, train_step, eval_step, batches, val = b.state, b.train_step, b.eval_step, b.batches, b.val
    n_params, n_nonemb, flops_per_token = b.n_params, b.n_nonemb, b.flops_per_token

    eval_at = {int(s) for s in args.eval_at.split(",") if s.strip()}
    val_losses, step_times, losses = {}, [], []
    t_start = time.perf_counter()
    for step in range(args.steps + 1):
        if step in eval_at:
            val_losses[step] = round(evaluate(eval_step, state.params, val)["loss"], 4)
            print(f"step {step} val {val_losses[step]:.4f}", file=sys.stderr, flush=True)
        if step == args.steps:
            break
        t0 = time.perf_counter()
        state, metrics = train_step(state, next(batches))
        losses.append(float(metrics["loss"]))
        step_times.append(time.perf_counter() - t0)
        if step % 50 == 0:
            print(f"step {step} loss {losses[-1]:.4f} dt {step_times[-1] * 1e3:.0f}ms",
                  file=sys.stderr, flush=True)
    total = time.perf_counter() - t_start

    timed = sorted(step_times[args.warmup:])
    q = statistics.quantiles(timed, n=10)
    median = statistics.median(timed)
    tokens = B * T
    ceiling = args.ceiling_gflops or matmul_ceiling()
    gflops = flops_per_token * tokens / median / 1e9
    print(json.dumps({
        "bench": "train_gpt_jaxllm",
        "versions": {"jax": jax.__version__, "python": sys.version.split()[0]},
        "devices": [str(d) for d in jax.devices()],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "config": {"vocab": m.vocab_size, "n_layer": m.n_layers, "n_head": m.n_heads,
                   "d_model": m.d_model, "context": T, "batch": B, "dtype": "float32",
                   "steps": args.steps},
        "n_params": n_params, "n_params_nonemb": n_nonemb, "flops_per_token": flops_per_token,
        "first_step_s": round(step_times[0], 2),
        "step_ms": {"median": round(median * 1e3, 1), "p10": round(q[0] * 1e3, 1),
                    "p90": round(q[-1] * 1e3, 1), "n": len(timed)},
        "tokens_per_s_median": round(tokens / median, 1),
        "tokens_per_s_p10_p90": [round(tokens / q[-1], 1), round(tokens / q[0], 1)],
        "model_gflops_per_s": round(gflops, 1),
        "ceiling_gflops": round(ceiling, 1),
        "mfu_vs_ceiling": round(gflops / ceiling, 3),
        "val_loss": val_losses,
        "train_loss_last10_mean": round(float(np.mean(losses[-10:])), 4),
        "total_wall_s": round(total, 1),
    }))


if __name__ == "__main__":
    main()
