"""Process settings that make XLA:CPU train faster. They must be applied before JAX first uses a
device; the `jaxllm` command applies them itself, scripts call `configure_cpu()` at the top.

Two settings, each measured on the benchmark model (experiments/RESULTS.md):

- Matrix products on Eigen instead of YNNPACK
  (`--xla_cpu_experimental_ynn_fusion_type=-individual_dot`): the 75 products of one training
  step run in ~370 ms instead of ~460 ms (experiments/gemm_floor.py). Only XLA:CPU reads it.
- glibc malloc keeps freed memory: XLA:CPU allocates each step's ~0.5 GB of activations as one
  block, which glibc hands back to the kernel when the step ends and maps again (128k page
  faults, ~0.2 s of kernel time per step). One arena, no mmap and no trimming make the block
  reusable. The process keeps its peak memory instead of returning it between steps.
"""

from __future__ import annotations

import ctypes
import os
import sys

CPU_XLA_FLAGS = {"--xla_cpu_experimental_ynn_fusion_type": "-individual_dot"}

_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8


def configure_cpu() -> None:
    """Apply the settings above (XLA flags the user already set are left as they are)."""
    flags = os.environ.get("XLA_FLAGS", "")
    for name, value in CPU_XLA_FLAGS.items():
        if name not in flags:
            flags = f"{flags} {name}={value}".strip()
    os.environ["XLA_FLAGS"] = flags
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6")
        except OSError:  # not glibc (e.g. musl): nothing to tune
            return
        libc.mallopt(_M_ARENA_MAX, 1)
        libc.mallopt(_M_MMAP_MAX, 0)
        libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)


def host_memory_bytes() -> int | None:
    """Physical memory of this machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
