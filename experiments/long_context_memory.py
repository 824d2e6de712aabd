#!/usr/bin/env python3
"""Peak memory per device of one decoder train step at long context: the reference attention
on one device, the blocked attention on one device, and ring attention over sequence=8 (or its
all-gather alternative, --variants "allgather (sequence=8)").

    PYTHONPATH=$PWD python experiments/long_context_memory.py [--contexts 2048,8192,32768,131072]

Nothing is run: each train step (SGD, batch 1) is lowered and compiled for its shapes and XLA's
`compiled.memory_analysis()` is read: "temp" (the temporaries: activations kept for the backward
plus workspace) and "args" (parameters, optimizer state and batch), per device (the program of
one device of the SPMD partition under a mesh). 8 simulated CPU devices. The blocked attention
unrolls T/64 query blocks in Python, so its compile grows with T: cells that do not compile
within --timeout seconds are reported as such.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from dataclasses import replace

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax
import jax.numpy as jnp
import optax

from jaxllm.config import ModelConfig
from jaxllm.models.decoder import Decoder, init_params
from jaxllm.objectives.causal_lm import causal_lm_loss
from jaxllm.optim import TrainState
from jaxllm.parallel.layout import Layout
from jaxllm.parallel.mesh import make_mesh
from jaxllm.parallel.sharded import shard_training
from jaxllm.train.step import make_train_step

# A small Llama-style decoder: 4 layers, d=256, 4 query heads over 2 kv heads (64 wide), RoPE.
MODEL = ModelConfig(vocab_size=256, n_layers=4, n_heads=4, n_kv_heads=2, d_model=256,
                    positions="rope", norm="rmsnorm", mlp="swiglu", use_bias=False,
                    scan_unroll=1)
SGD = optax.sgd(0.1)


class Timeout(Exception):
    pass


def _alarm(*_):
    raise Timeout


def batch(T):
    x = jax.ShapeDtypeStruct((1, T), jnp.int32)
    return {"inputs": x, "targets": x}


def compiled_memory(variant: str, T: int):
    if variant in ("ring (sequence=8)", "allgather (sequence=8)"):
        cfg = replace(MODEL, max_len=T, attention=variant.split()[0])
        layout = Layout.build(make_mesh("sequence=8"))
        setup = shard_training(layout, lambda r: init_params(cfg, r), SGD, jax.random.PRNGKey(0))
        step = make_train_step(causal_lm_loss(Decoder(cfg)), SGD, shardings=setup.shardings,
                               donate=False)
        lowered = step.lower(setup.state, batch(T))
    else:
        cfg = replace(MODEL, max_len=T, attention=variant.split()[0])
        state = TrainState.create(init_params(cfg, jax.random.PRNGKey(0))[0], SGD)
        step = make_train_step(causal_lm_loss(Decoder(cfg)), SGD, donate=False)
        lowered = step.lower(state, batch(T))
    m = lowered.compile().memory_analysis()
    return m.temp_size_in_bytes, m.argument_size_in_bytes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--contexts", default="2048,8192,32768,131072")
    ap.add_argument("--variants", default="reference (1 device),blocked (1 device),"
                                          "ring (sequence=8)")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per compile")
    args = ap.parse_args()
    signal.signal(signal.SIGALRM, _alarm)
    print("| context | variant | temp per device (MiB) | args per device (MiB) | compile (s) |")
    print("|---|---|---|---|---|")
    for T in map(int, args.contexts.split(",")):
        for variant in args.variants.split(","):
            t0 = time.perf_counter()
            signal.alarm(args.timeout)
            try:
                temp, arg = compiled_memory(variant, T)
                cells = f"{temp / 2 ** 20:,.1f} | {arg / 2 ** 20:,.1f}"
            except Timeout:
                cells = f"not compiled in {args.timeout} s | -"
            except Exception as e:  # noqa: BLE001 - reported in the table
                cells = f"{type(e).__name__}: {str(e).splitlines()[0][:60]} | -"
            finally:
                signal.alarm(0)
            print(f"| {T:,} | {variant} | {cells} | {time.perf_counter() - t0:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
