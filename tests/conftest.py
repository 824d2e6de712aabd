"""Test set-up: 8 simulated CPU devices, a compilation cache and a private TFDS data dir for the
whole session."""

import atexit
import os
import shutil
import tempfile

# Before jax is imported anywhere: 8 host devices simulate a multi-device mesh on the CPU.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=8").strip()

# JAX's persistent compilation cache, kept for this test run only: a program built again by
# another jit object (each make_train_step, each CLI run, a resumed run, a subprocess) is read
# back instead of compiled again (measured in experiments/RESULTS.md, "Test time").
# Set through the environment so that subprocesses share it; a directory the user set is kept.
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
    return TinyRuns(tmp_path_factory.mktemp("tiny_runs"))


def tiny_decoder(max_len: int = 64):
    """A small Llama-style PretrainedDecoder over bytes with random weights: RoPE positions, so
    the weights are the same whatever its context (max_len)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxllm import pretrained
    from jaxllm.config import ModelConfig
    from jaxllm.models.decoder import init_params
    from jaxllm.text import ByteTokenizer

    cfg = ModelConfig(vocab_size=256, max_len=max_len, n_layers=2, n_heads=4, n_kv_heads=2,
                      d_model=64, positions="rope", norm="rmsnorm", mlp="swiglu", use_bias=False,
                      scan_unroll=1)
    rng = np.random.default_rng(5)  # random weights of the model's shapes (traced, not run)
    params = jax.tree_util.tree_map(
        lambda s: jnp.asarray(0.05 * rng.standard_normal(s.shape), jnp.float32),
        jax.eval_shape(lambda: init_params(cfg, jax.random.PRNGKey(0))[0]))
    return pretrained.PretrainedDecoder(cfg, params, ByteTokenizer(), "tiny-llama")


@pytest.fixture
def tiny_pretrained(monkeypatch):
    """A registered name whose load() gives tiny_decoder(), so that the --model / --init-from
    paths run in seconds; smollm2-135m-instruct takes the same code path
    (experiments/quantization_smollm2.py, experiments/lora.py --model)."""
    from jaxllm import pretrained

    lm = tiny_decoder()
    monkeypatch.setitem(pretrained.REGISTRY, "tiny-llama",
                        pretrained.Entry("none", "none", "none", "gguf", "none"))
    monkeypatch.setitem(pretrained._CACHE, "tiny-llama", lm)
    return lm


@pytest.fixture(scope="session")
def tiny_chat_lm():
    """tiny_decoder with a context of 1024 bytes: room for a prompt with a few sources."""
    return tiny_decoder(1024)
