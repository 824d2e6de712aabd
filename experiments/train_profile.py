#!/usr/bin/env python3
"""Where a training step of the benchmark model spends its time (jax.profiler, XLA:CPU).

Builds the step of experiments/train_throughput.py (same model, optimizer, data and flags), runs
--steps steps under jax.profiler.trace, and sums the duration of every XLA operation by what it
computes, using the op_name metadata of the compiled HLO:

    linear-layer matmuls      the q/k/v/out, MLP and head products, forward and both gradients
    attention products        the batched QK^T and PV products and their gradients
    attention softmax/mask    everything else inside attention
    norms, GELU, loss, optimizer, other

Run it on one core (taskset -c 1): with two threads XLA:CPU runs matrix products asynchronously
and the trace records only their dispatch. "CPU time" is the process's user + system time per
step, "op time" what the recorded ops account for.

Usage: taskset -c 1 python experiments/train_profile.py [--profile-steps 5]
Prints a table and one JSON line.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_throughput import build, parser  # noqa: E402  (configures the platform first)

import jax  # noqa: E402

CATEGORIES = [  # (name, pattern on the op_name path), first match wins
    ("linear-layer matmuls", r"(query|key|value|out|up|down|gate|head)/dot|embed\.attend/dot"),
    ("attention products", r"attn/.*(dot_general|bkrh|bkrs|btkgh|bkgts)"),
    ("attention softmax/mask", r"/attn/"),
    ("norms", r"norm"),
    ("GELU / MLP elementwise", r"/mlp/"),
    ("loss", r"logsumexp|take_along_axis|log_softmax|argmax|loss"),
    ("optimizer", r"adam|clip|global_norm|tree_norm|optax|apply_updates|/mul|/add"),
]


def categorize(op_name: str, is_dot: bool) -> str:
    if is_dot:  # a dot, or a fusion around one
        return "attention products" if re.search(r"attn/[^/]*,", op_name) else \
            "linear-layer matmuls"
    for name, pattern in CATEGORIES[2:]:
        if re.search(pattern, op_name):
            return name
    return "other"


def categories_of(hlo_text: str) -> dict[str, str]:
    """Instruction name -> category, for every instruction of the compiled HLO."""
    computations, current = {}, None
    for line in hlo_text.splitlines():
        m = re.match(r"^%?([\w.\-]+) .*\{\s*$", line)
        if m:
            current = m.group(1)
            computations[current] = ""
        elif current:
            computations[current] += line + "\n"
    kinds = {}
    for line in hlo_text.splitlines():
        m = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = ", line)
        if m:
            op = re.search(r'op_name="([^"]+)"', line)
            called = re.search(r"calls=%([\w.\-]+)", line)
            is_dot = " dot(" in line or bool(called and " dot(" in computations.get(called.group(1), ""))
            kinds[m.group(1)] = categorize(op.group(1) if op else "", is_dot)
    return kinds


def main() -> None:
    ap = parser()
    ap.add_argument("--profile-steps", type=int, default=5)
    args = ap.parse_args()
    b = build(args)
    state, batch = b.state, next(b.batches)
    compiled = b.train_step.lower(state, batch).compile()
    kinds = categories_of(compiled.as_text())
    for _ in range(3):  # warm up
        state, metrics = compiled(state, next(b.batches))
        float(metrics["loss"])
    trace_dir = tempfile.mkdtemp(prefix="jaxllm-trace-")
    n = args.profile_steps
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
        for _ in range(n):
            state, metrics = compiled(state, next(b.batches))
            float(metrics["loss"])
    wall = (time.perf_counter() - t0) / n
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / n
    trace = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)[0]
    events = json.load(gzip.open(trace))["traceEvents"]
    totals = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and e["name"] in kinds:
            totals[kinds[e["name"]]] += e["dur"] / 1e3 / n
    op_time = sum(totals.values())
    print(f"step: {wall * 1e3:.0f} ms wall, {cpu * 1e3:.0f} ms CPU, {op_time:.0f} ms in XLA ops "
          f"(thread-ms, {n} steps profiled; profiling adds overhead)")
    print("| part | ms per step | share of op time |")
    print("|---|---|---|")
    for name, ms in totals.most_common():
        print(f"| {name} | {ms:.0f} | {ms / op_time:.0%} |")
    print(json.dumps({"bench": "train_profile", "wall_ms": round(wall * 1e3, 1),
                      "cpu_ms": round(cpu * 1e3, 1), "op_ms": round(op_time, 1),
                      "parts_ms": {k: round(v, 1) for k, v in totals.most_common()},
                      "xla_flags": os.environ.get("XLA_FLAGS", "")}))


if __name__ == "__main__":
    main()
