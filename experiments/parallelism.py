"""Per-device memory, pipeline bubble and step time of every parallel layout; the remat table.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 \
        flock /tmp/jaxllm-bench.lock .venv/bin/python experiments/parallelism.py [--append]

Layout table (8 simulated CPU devices, one decoder, one batch): per-device bytes of parameters,
gradients and optimizer state come from the shardings the rules give (a leaf's shard shape
times its itemsize, summed); "temp" is XLA's `compiled.memory_analysis().temp_size_in_bytes`
of the train step (activations kept for the backward plus workspace) per device; the bubble is
(S-1)/(M+S-1); the step time is the median of 5 steps after compilation (simulated devices
share the host's cores, so times compare layouts' overheads, not real speed-ups).

Remat table (one device, layers in a rolled nn.scan so the saved activations are one stacked
buffer the memory analysis can see): temp bytes and step time per policy.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import replace

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from jaxllm.platform import configure_cpu  # noqa: E402

configure_cpu()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxllm.config import ModelConfig, OptimConfig  # noqa: E402
from jaxllm.models.decoder import Decoder, init_params  # noqa: E402
from jaxllm.objectives.causal_lm import causal_lm_loss  # noqa: E402
from jaxllm.parallel.mesh import make_mesh  # noqa: E402
from jaxllm.parallel.pipeline import bubble_fraction, decoder_parts, make_pipeline_grads  # noqa: E402
from jaxllm.parallel.layout import Layout, _is_spec  # noqa: E402
from jaxllm.parallel.sharded import shard_training  # noqa: E402
from jaxllm.optim import TrainState, make_optimizer  # noqa: E402
from jaxllm.train.step import make_train_step  # noqa: E402

MODEL = ModelConfig(vocab_size=256, max_len=64, n_layers=4, n_heads=8, d_model=256,
                    scan_unroll=1)
BATCH = 16
LAYOUTS = [  # name, mesh, zero, pipeline
    ("dp=8", "data=8", 0, None),
    ("fsdp=8", "fsdp=8", 0, None),
    ("tensor=4 x data=2", "data=2,tensor=4", 0, None),
    ("zero1 (data=8)", "data=8", 1, None),
    ("zero2 (data=8)", "data=8", 2, None),
    ("zero3 (data=8)", "data=8", 3, None),
    ("stage=4 x data=2 gpipe", "stage=4,data=2", 0, "gpipe"),
    ("stage=4 x data=2 1f1b", "stage=4,data=2", 0, "1f1b"),
    ("data=2 x tensor=2 x stage=2 gpipe", "data=2,tensor=2,stage=2", 0, "gpipe"),
]
MICROBATCHES = 8


def shard_bytes(layout: Layout, specs, abstract) -> int:
    """Bytes one device holds of a tree laid out by PartitionSpecs."""
    total = 0
    for spec, x in zip(jax.tree_util.tree_leaves(specs, is_leaf=_is_spec),
                       jax.tree_util.tree_leaves(abstract)):
        shape = list(x.shape)
        for dim, axes in enumerate(tuple(spec) + (None,) * (len(shape) - len(spec))):
            if axes is not None:
                shape[dim] //= layout.size((axes,) if isinstance(axes, str) else axes)
        total += math.prod(shape) * x.dtype.itemsize
    return total


def batches(n=6):
    rs = np.random.RandomState(0)
    return [{"inputs": rs.randint(0, MODEL.vocab_size, (BATCH, MODEL.max_len)).astype(np.int32),
             "targets": rs.randint(0, MODEL.vocab_size, (BATCH, MODEL.max_len)).astype(np.int32)}
            for _ in range(n)]


def timed_steps(step, state, data):
    state, m = step(state, data[0])
    jax.block_until_ready(m)
    times = []
    for b in data[1:]:
        t = time.perf_counter()
        state, m = step(state, b)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def layout_row(name, mesh_spec, zero, pipeline, tx):
    layout = Layout.build(make_mesh(mesh_spec), zero=zero)
    init = lambda r: init_params(MODEL, r)  # noqa: E731
    setup = shard_training(layout, init, tx, jax.random.PRNGKey(0))
    model = Decoder(MODEL)
    grads_fn = (make_pipeline_grads(decoder_parts(model), layout.mesh, MICROBATCHES, pipeline)
                if pipeline else None)
    step = make_train_step(causal_lm_loss(model), tx, shardings=setup.shardings,
                           grads_fn=grads_fn, donate=False)
    data = batches()
    compiled = step.lower(setup.state, data[0]).compile()
    temp = compiled.memory_analysis().temp_size_in_bytes
    abstract = jax.eval_shape(lambda: setup.state.params)
    opt_abstract = jax.eval_shape(lambda: setup.state.opt_state)
    p = shard_bytes(layout, setup.specs["params"], abstract)
    g = shard_bytes(layout, setup.specs["grads"], abstract)
    o = shard_bytes(layout, setup.specs["opt"], opt_abstract)
    S = layout.mesh.shape["stage"]
    bubble = bubble_fraction(S, MICROBATCHES) if pipeline else 0.0
    t = timed_steps(step, setup.state, data)
    return dict(layout=name, params=p, grads=g, opt=o, params_opt=p + o, temp=temp,
                bubble=bubble, step_ms=1000 * t)


def remat_row(policy, tx):
    cfg = replace(MODEL, remat=policy, max_len=128)
    model = Decoder(cfg)
    state = TrainState.create(init_params(cfg, jax.random.PRNGKey(0))[0], tx)
    step = make_train_step(causal_lm_loss(model), tx, donate=False)
    rs = np.random.RandomState(0)
    data = [{"inputs": rs.randint(0, 256, (BATCH, 128)).astype(np.int32),
             "targets": rs.randint(0, 256, (BATCH, 128)).astype(np.int32)} for _ in range(6)]
    try:
        compiled = step.lower(state, data[0]).compile()
    except Exception as e:  # offload needs a backend with host memory spaces in remat
        return dict(policy=policy, temp=None, step_ms=None,
                    note=f"{type(e).__name__}: {str(e).splitlines()[0][:80]}")
    temp = compiled.memory_analysis().temp_size_in_bytes
    return dict(policy=policy, temp=temp, step_ms=1000 * timed_steps(compiled, state, data),
                note="")


def mib(x):
    return f"{x / 2 ** 20:.2f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--append", action="store_true", help="append the tables to RESULTS.md")
    args = ap.parse_args()
    tx = make_optimizer(OptimConfig(lr=1e-3, warmup_steps=0, schedule="constant"), 10)
    rows = [layout_row(*spec, tx) for spec in LAYOUTS]
    dp = rows[0]["params_opt"]
    lines = [f"Model: {MODEL.n_layers} layers, d={MODEL.d_model}, {MODEL.n_heads} heads, vocab "
             f"{MODEL.vocab_size}, context {MODEL.max_len}, batch {BATCH}; pipelines "
             f"{MICROBATCHES} micro-batches. Bytes per device, MiB.", "",
             "| layout | params | grads | opt state | params+opt (vs dp) | temp (activations) "
             "| bubble | step ms |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['layout']} | {mib(r['params'])} | {mib(r['grads'])} | "
                     f"{mib(r['opt'])} | {mib(r['params_opt'])} ({r['params_opt'] / dp:.3f}) | "
                     f"{mib(r['temp'])} | {r['bubble']:.3f} | {r['step_ms']:.1f} |")
    remat = [remat_row(p, tx) for p in ("none", "full", "dots", "dots_no_batch",
                                        "save_attention_out", "offload")]
    base = remat[0]["temp"]
    lines += ["", f"Remat (one device, rolled scan, context 128, batch {BATCH}):", "",
              "| policy | temp MiB (vs none) | step ms |", "|---|---|---|"]
    for r in remat:
        if r["temp"] is None:
            lines.append(f"| {r['policy']} | not compiled ({r['note']}) | - |")
        else:
            lines.append(f"| {r['policy']} | {mib(r['temp'])} ({r['temp'] / base:.3f}) | "
                         f"{r['step_ms']:.1f} |")
    table = "\n".join(lines)
    print(table)
    z3 = next(r for r in rows if r["layout"].startswith("zero3"))["params_opt"] / dp
    full = next(r for r in remat if r["policy"] == "full")["temp"] / base
    print(f"\nZeRO-3 params+opt / DP: {z3:.3f} (target ~1/8 = 0.125); "
          f"remat full temp / none: {full:.3f} (target <= 0.5)")
    if args.append:
        header = (f"\n## Parallel layouts: memory, bubble, step time; remat policies\n\n"
                  f"Command: `XLA_FLAGS=--xla_force_host_platform_device_count=8 flock "
                  f"/tmp/jaxllm-bench.lock .venv/bin/python experiments/parallelism.py "
                  f"--append`  \nDate: {time.strftime('%Y-%m-%d', time.gmtime())}; machine: "
                  f"{platform.machine()}, {os.cpu_count()} CPU cores (shared), jax "
                  f"{jax.__version__}, 8 simulated CPU devices.\n\n")
        footer = (f"\n\nZeRO-3 per-device params+optimizer bytes / data-parallel's: {z3:.3f} "
                  f"(1/8 = 0.125; the rest is biases without an embed axis and the replicated "
                  f"step counters). Remat `full` temp / `none`: {full:.3f}.\n")
        path = os.path.join(os.path.dirname(__file__), "RESULTS.md")
        with open(path, "a") as f:
            f.write(header + table + footer)


if __name__ == "__main__":
    main()
