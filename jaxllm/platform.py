"""Process settings: the XLA:CPU tuning the `jaxllm` command applies before JAX starts, and a
context that keeps other libraries' logs and progress bars quiet around jaxllm's own work.

Importing jaxllm changes no global state; only these two do, and only when called:

- `configure_cpu()` tunes a process that will run on the CPU (and leaves a TPU or GPU host's
  allocator and XLA flags alone). Two settings, each measured on the benchmark model
  (experiments/RESULTS.md, "Training throughput, peer benchmark config"):
  - matrix products on Eigen instead of YNNPACK
    (`--xla_cpu_experimental_ynn_fusion_type=-individual_dot`): XLA:CPU's YNNPACK products
    were slower than Eigen's at the training step's shapes. Only XLA:CPU reads the flag.
  - glibc malloc keeps freed memory: XLA:CPU allocates each step's activations as one large
    block, which glibc hands back to the kernel when the step ends and maps again (page faults
    on every step). One arena, no mmap and no trimming make the block reusable. The process
    keeps its peak memory instead of returning it between steps.
- `quiet()` lowers the absl logger (orbax, TFDS) to warnings and turns TFDS's progress bars
  off while jaxllm saves a checkpoint or prepares a dataset, and restores both afterwards.

`host_memory_bytes()` only reads the machine's memory size (the config's size warnings).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import importlib.util
import logging
import os
import pkgutil
import sys
from collections.abc import Iterator

CPU_XLA_FLAGS = {"--xla_cpu_experimental_ynn_fusion_type": "-individual_dot"}

_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8


def accelerator_plugins() -> list[str]:
    """The accelerator backends installed for JAX, found without importing them: PJRT plugins
    (modules of the `jax_plugins` namespace package or entry points of that group, e.g. the
    CUDA plugin) and libtpu (the libtpu package or TPU_LIBRARY_PATH)."""
    found = [e.name for e in importlib.metadata.entry_points(group="jax_plugins")]
    spec = importlib.util.find_spec("jax_plugins")
    if spec is not None and spec.submodule_search_locations:
        found += [m.name for m in pkgutil.iter_modules(spec.submodule_search_locations)]
    if importlib.util.find_spec("libtpu") is not None or os.path.isfile(
            os.environ.get("TPU_LIBRARY_PATH", "")):
        found.append("libtpu")
    return sorted(set(found))


def jax_will_use_cpu() -> bool:
    """Whether JAX's default platform in this process will be the CPU, decided without starting
    a backend. When platforms are named (jax.config.jax_platforms, whose default is the
    JAX_PLATFORMS variable), JAX defaults to the first one; otherwise it picks an accelerator
    whenever one is installed, so any accelerator plugin counts as "not the CPU" (set
    JAX_PLATFORMS=cpu to run and tune a host that has one on its CPU)."""
    jax = sys.modules.get("jax")  # imported already: its config may have been updated in code
    platforms = jax.config.jax_platforms if jax is not None else os.environ.get("JAX_PLATFORMS")
    if platforms:
        return platforms.split(",")[0].strip().lower() == "cpu"
    return not accelerator_plugins()


def configure_cpu() -> bool:
    """Apply the CPU settings above when JAX will run on the CPU (XLA flags the user already set
    are left as they are); returns whether it did. Call it before JAX starts a backend."""
    if not jax_will_use_cpu():
        return False
    flags = os.environ.get("XLA_FLAGS", "")
    for name, value in CPU_XLA_FLAGS.items():
        if name not in flags:
            flags = f"{flags} {name}={value}".strip()
    os.environ["XLA_FLAGS"] = flags
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6")
        except OSError:  # not glibc (e.g. musl): nothing to tune
            return True
        libc.mallopt(_M_ARENA_MAX, 1)
        libc.mallopt(_M_MMAP_MAX, 0)
        libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    return True


@contextlib.contextmanager
def quiet(absl_level: int = logging.WARNING) -> Iterator[None]:
    """Inside: the absl logger (orbax's and TFDS's messages) shows absl_level and above (never
    more than it already did), and TFDS's progress bars are off if TFDS is loaded. Both are
    restored on the way out, so a user's own logging and TFDS settings are left as they were."""
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    # TFDS keeps its progress-bar switch in a module global with a setter and no getter.
    bars = sys.modules.get("tensorflow_datasets.core.utils.tqdm_utils")
    bars_on = getattr(bars, "_active", None)
    absl_logger.setLevel(max(absl_logger.getEffectiveLevel(), absl_level))
    if bars_on is not None:
        bars.display_progress_bar(False)
    try:
        yield
    finally:
        absl_logger.setLevel(level)
        if bars_on is not None:
            bars.display_progress_bar(bars_on)


def host_memory_bytes() -> int | None:
    """Physical memory of this machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
