"""Where one SmolLM2-135M `generate` call spends its time: a jax.profiler trace of one call
(after a warm-up), read back from its Perfetto JSON.

Prints the prefill time (first op to the first greedy argmax), the decode steps (argmax to
argmax: median, min, max), and the XLA ops of one layer of a middle step with their start
offsets and recorded durations. Matrix products run asynchronously on the thread pool, so a
product's recorded duration is only its dispatch: its cost shows as the gap before the op that
waits for it (the start offsets tell).

    .venv/bin/python experiments/smollm2_decode_profile.py --batch 8
"""
import argparse
import glob
import gzip
import json
import re
import statistics
import tempfile

from jaxllm.platform import configure_cpu

configure_cpu()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxllm import pretrained  # noqa: E402


def xla_ops(trace_dir):
    """The trace's XLA op events, by start time."""
    path = sorted(glob.glob(f"{trace_dir}/plugins/profile/*/perfetto_trace.json.gz"))[-1]
    data = json.load(gzip.open(path))
    events = data["traceEvents"] if isinstance(data, dict) else data
    skip = re.compile(r"^\$|Thunk|Threadpool|asarray|^end:|^while|^PjitFunction")
    return sorted((e for e in events if e.get("ph") == "X" and not skip.search(e["name"])),
                  key=lambda e: e["ts"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--new", type=int, default=128)
    args = ap.parse_args()
    lm = pretrained.load("smollm2-135m-instruct")
    ids = np.random.default_rng(0).integers(100, 49152, (args.batch, 32)).tolist()

    def once():
        return lm.generate(ids, max_new_tokens=args.new, temperature=0, stop_tokens=())

    once()  # compile
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
        once()
        jax.profiler.stop_trace()
        ops = xla_ops(trace_dir)
    argmax = [e["ts"] for e in ops if e["name"].startswith("iota_reduce_fusion")]  # one a step
    steps = [(b - a) / 1e3 for a, b in zip(argmax, argmax[1:])]
    prefill = (argmax[0] - ops[0]["ts"]) / 1e3
    print(f"batch {args.batch}: prefill {prefill:.0f} ms; {len(steps)} steps, median "
          f"{statistics.median(steps):.1f} ms (min {min(steps):.1f}, max {max(steps):.1f})")
    # One layer of the middle step: from the second RMSNorm of the step (each layer has two,
    # named add_rsqrt_fusion.*) to the one two norms later.
    mid = len(argmax) // 2
    step = [e for e in ops if argmax[mid] <= e["ts"] < argmax[mid + 1]]
    norms = [e["ts"] for e in step if e["name"].startswith("add_rsqrt_fusion")]
    start, end = norms[2], norms[4]
    print(f"one layer: {(end - start) / 1e3:.3f} ms; its ops (start offset, recorded duration, ms):")
    for e in step:
        if start <= e["ts"] < end:
            print(f"  {(e['ts'] - start) / 1e3:7.3f} {e['dur'] / 1e3:7.3f}  {e['name']}")
    print(json.dumps({"bench": "smollm2_decode_profile", "batch": args.batch,
                      "prefill_ms": round(prefill, 1),
                      "step_ms_median": round(statistics.median(steps), 2),
                      "layer_ms": round((end - start) / 1e3, 3)}))


if __name__ == "__main__":
    main()
