#!/usr/bin/env python3
"""What JAX's persistent compilation cache saves when a test run builds the same program twice.

The tests build many programs more than once through different jit objects (each
make_train_step, each resumed run, each CLI run): JAX's in-memory cache is per jit object, so
each is compiled again, unless the persistent cache (tests/conftest.py sets one per test run)
hands back the first compilation. This builds the parallel tests' tiny train step twice, with
and without a cache directory, and prints the CPU seconds of each build (CPU time, not wall:
the machine is shared).

Usage: python experiments/compile_cache.py  (prints a table and one JSON line)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_twice() -> list[float]:
    """CPU seconds of two builds of the same train step by two jit objects (in this process)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from jaxllm.platform import configure_cpu

    configure_cpu()  # as the tests run
    import jax

    from helpers import ADAMW, MESH_CFG, mesh_batches, mesh_init
    from jaxllm.models.decoder import Decoder
    from jaxllm.objectives.causal_lm import causal_lm_loss
    from jaxllm.optim import TrainState
    from jaxllm.train.step import make_train_step

    batch = mesh_batches(1)[0]
    state = TrainState.create(mesh_init(jax.random.PRNGKey(0))[0], ADAMW)
    seconds = []
    for _ in range(2):
        start = time.process_time()
        step = make_train_step(causal_lm_loss(Decoder(MESH_CFG)), ADAMW, donate=False)
        step.lower(state, batch).compile()
        seconds.append(time.process_time() - start)
    return seconds


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(build_twice()))
        return
    rows = {}
    with tempfile.TemporaryDirectory() as cache:
        for name, value in (("no cache", ""), ("persistent cache", cache)):
            env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=value,
                       JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5")
            out = subprocess.run([sys.executable, __file__, "--child"], env=env, check=True,
                                 capture_output=True, text=True).stdout
            rows[name] = json.loads(out.strip().splitlines()[-1])
    print("| cache | first build, CPU s | second build (another jit object), CPU s |")
    print("|---|---|---|")
    for name, (first, second) in rows.items():
        print(f"| {name} | {first:.2f} | {second:.2f} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
