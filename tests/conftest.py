"""Test set-up: 8 simulated CPU devices, a compilation cache and a private TFDS data dir for the
whole session; under pytest-xdist (`make test` runs two workers) the workers share the cache and
the tiny runs."""

import atexit
import gc
import os
import shutil
import tempfile

# Before jax is imported anywhere: 8 host devices simulate a multi-device mesh on the CPU. (An
# xdist worker inherits the controller's environment, flags included, and so do subprocesses.)
DEVICES_FLAG = "--xla_force_host_platform_device_count=8"
# Most of the suite's time is XLA:CPU compiling thousands of small programs that then run a few
# times on tiny inputs: the tests ask LLVM for its quickest code generation (optimisation level
# 0, no expensive passes), which compiles the same XLA programs in less time and runs them more
# slowly (measured: experiments/RESULTS.md, "Test time"). The jaxllm command keeps XLA's defaults.
FAST_COMPILE_FLAGS = ["--xla_backend_optimization_level=0",
                      "--xla_llvm_disable_expensive_passes=true"]
for flag in [DEVICES_FLAG] + FAST_COMPILE_FLAGS:  # (a value the user set for the last two kept)
    flags = os.environ.get("XLA_FLAGS", "")
    if flag not in flags.split() and (flag == DEVICES_FLAG or flag.split("=")[0] not in flags):
        os.environ["XLA_FLAGS"] = f"{flags} {flag}".strip()

# JAX's persistent compilation cache, kept for this test run only: a program built again by
# another jit object (each make_train_step, each CLI run, a resumed run, a subprocess) is read
# back instead of compiled again (measured in experiments/RESULTS.md, "Test time").
# Set through the environment so that subprocesses share it, and so do pytest-xdist's workers:
# the controller imports this file (and makes the directory) before it starts them, they inherit
# the variable, and the controller removes the directory when the whole run ends. A directory
# the user set is kept.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxllm-tests-xla-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

# numpy's OpenBLAS spins its threads on this shared 2-core machine: the numpy references' small
# matrix-vector products ran ~50x slower multi-threaded (8 ms vs 0.17 ms for 1536 x 576).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402

from jaxllm.platform import configure_cpu  # noqa: E402

configure_cpu()  # the settings the jaxllm command runs with

# Python's cyclic garbage collector scans its youngest objects after every 700 allocations (net);
# tracing and lowering a JAX program allocates millions of short-lived objects, so the default
# spends CPU scanning them again and again (measured in experiments/RESULTS.md, "Test time"). The
# tests collect every 100,000 allocations, and the objects alive now (pytest's and the modules
# imported so far) are frozen: never scanned again. tests/multihost_worker.py does the same.
GC_THRESHOLD = (100_000, 50, 1000)
gc.set_threshold(*GC_THRESHOLD)
gc.freeze()


@pytest.fixture(scope="session")
def session_data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("jaxllm_tfds")


@pytest.fixture(autouse=True)
def data_dir(session_data_dir, monkeypatch):
    """Every test reads and writes TFDS data in one temporary dir, never in ~/.cache."""
    monkeypatch.setenv("JAXLLM_DATA_DIR", str(session_data_dir))
    return session_data_dir


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """tiny_run(kind) -> a run directory of that kind (helpers.RUN_COMMANDS: char, bpe, llama,
    mlm, vit, clip, quantized, lora, exported, exported-mlm), built once per test session on
    first use and shared by every test: never change it in place (tiny_run.copy(kind, dest)
    gives a copy)."""
    from helpers import TinyRuns
    base = tmp_path_factory.getbasetemp()
    # an xdist worker's basetemp is <the run's basetemp>/<worker id>: the workers share one set
    if "PYTEST_XDIST_WORKER" in os.environ:
        base = base.parent
    (base / "tiny_runs").mkdir(exist_ok=True)
    return TinyRuns(base / "tiny_runs")


@pytest.fixture
def tiny_pretrained(monkeypatch):
    """A registered name ("tiny-llama") whose load() gives helpers.tiny_decoder(), so that the
    --model / --init-from paths run in seconds; smollm2-135m-instruct takes the same code path
    (experiments/quantization_smollm2.py, experiments/lora.py --model)."""
    from helpers import register_tiny_llama
    return register_tiny_llama(monkeypatch)


@pytest.fixture(scope="session")
def tiny_smol_tokenizer_lm():
    """helpers.tiny_decoder (one layer, context 256) over SmolLM2-135M-Instruct's tokenizer and
    chat template: "yes" / "no" are single tokens of its vocabulary, as for the real model. Its
    weights (standard deviation 0.3) give logits that differ by a few nats, not a flat softmax."""
    from helpers import tiny_decoder

    from jaxllm.text import load_tokenizer
    return tiny_decoder(256, 1, "tiny-smol", tokenizer=load_tokenizer("smollm2-135m-instruct"),
                        scale=0.3)


@pytest.fixture(scope="session")
def tiny_chat_lm():
    """helpers.tiny_decoder with a context of 1024 bytes: room for a prompt with a few sources."""
    from helpers import tiny_decoder
    return tiny_decoder(1024)

