"""Every attention implementation against the reference definition: values and gradients, with
causal masks, packed segments, grouped-query attention and several query blocks."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxllm.errors import ConfigError
from jaxllm.models.attention import (attention_mask, blocked_attention, cached_attention,
                                     reference_attention, resolve, resolve_decode_path)


@st.composite
def problems(draw):
    """q, k, v, segment ids (or None) and a block size; few distinct shapes, to compile once."""
    B, T = draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 9, 24, 40]))
    K, G = draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 3]))
    block = draw(st.sampled_from([4, 16, 64]))
    cuts = sorted(set(draw(st.lists(st.integers(1, T), max_size=3))))
    segments = np.zeros((B, T), np.int32)
    for i, c in enumerate([0] + cuts):
        segments[:, c:] = i + 1
    rng = np.random.default_rng(draw(st.integers(0, 100)))
    q, k, v = (jnp.asarray(rng.normal(size=(B, T, n, 8)), jnp.float32) for n in (K * G, K, K))
    return q, k, v, (segments if draw(st.booleans()) else None), block


def causal_mask(T, segments):
    idx = jnp.arange(T)
    if segments is None:
        return attention_mask(idx, idx)
    return attention_mask(idx, idx, q_segments=segments, kv_segments=segments)


def weighted_sum(f, weights):
    return lambda q, k, v: jnp.sum(f(q, k, v) * weights)


# Each check below is one jitted program per drawn shape (an eager mask or reference attention
# compiles each of its operations for every new shape: hundreds of small programs per file).
@partial(jax.jit, static_argnames=("block",))
def blocked_and_grads(q, k, v, segments, weights, block):
    mask = causal_mask(q.shape[1], segments)
    f = lambda q, k, v: blocked_attention(q, k, v, None if segments is None else mask,
                                          block=block)
    return f(q, k, v), jax.grad(weighted_sum(f, weights), argnums=(0, 1, 2))(q, k, v)


@jax.jit
def reference_and_grads(q, k, v, segments, weights):
    mask = causal_mask(q.shape[1], segments)
    f = lambda q, k, v: reference_attention(q, k, v, mask=mask)
    return f(q, k, v), jax.grad(weighted_sum(f, weights), argnums=(0, 1, 2))(q, k, v)


@settings(max_examples=10, deadline=None)
@given(problems())
def test_blocked_equals_reference_values_and_gradients(problem):
    q, k, v, segments, block = problem
    weights = jnp.asarray(np.random.default_rng(0).normal(size=q.shape), jnp.float32)
    out, grads = blocked_and_grads(q, k, v, segments, weights, block=block)
    want, want_grads = reference_and_grads(q, k, v, segments, weights)
    np.testing.assert_allclose(out, want, atol=2e-5)
    for a, b in zip(grads, want_grads):
        np.testing.assert_allclose(a, b, atol=5e-5, rtol=1e-4)


@jax.jit
def fast_and_reference(q, k, v, segments):
    """jax.nn.dot_product_attention with the mask, with is_causal (unpacked rows only: None
    otherwise), and the reference."""
    mask = causal_mask(q.shape[1], segments)
    causal = (jax.nn.dot_product_attention(q, k, v, is_causal=True) if segments is None
              else None)
    return (jax.nn.dot_product_attention(q, k, v, mask=mask), causal,
            reference_attention(q, k, v, mask=mask))


@settings(max_examples=10, deadline=None)
@given(problems())
def test_fast_equals_reference(problem):
    q, k, v, segments, _ = problem
    fast, causal, want = fast_and_reference(q, k, v, segments)
    np.testing.assert_allclose(fast, want, atol=2e-5)
    if segments is None:
        np.testing.assert_allclose(causal, want, atol=2e-5)


@partial(jax.jit, static_argnames=("n", "empty", "block"))
def cached_and_reference(q, k, v, n: int, empty: int, block: int = 512):
    """Attention of the last n queries of a sequence over a cache holding all of its keys plus
    `empty` empty slots at the end, and the reference attention of those queries."""
    B, T, K, H = k.shape
    S = T + empty
    pad = ((0, 0), (0, empty), (0, 0), (0, 0))
    ck = jnp.transpose(jnp.pad(k, pad), (0, 2, 3, 1)).reshape(B * K, H, S)
    cv = jnp.swapaxes(jnp.pad(v, pad), 1, 2).reshape(B * K, S, H)
    valid = jnp.broadcast_to(jnp.arange(S) < T, (B, S))
    mask = attention_mask(jnp.arange(T - n, T), jnp.arange(S), kv_valid=valid)
    want = reference_attention(q, k, v, mask=causal_mask(T, None))[:, T - n:]
    return cached_attention(q[:, T - n:], ck, cv, mask, block=block), want


def assert_cached_equals_reference(q, k, v, n: int, empty: int = 3, block: int = 512):
    """The last n queries against the cache (n = 1: a decode step) equal the reference."""
    got, want = cached_and_reference(q, k, v, n=n, empty=empty, block=block)
    np.testing.assert_allclose(got, want, atol=2e-5)


@settings(max_examples=10, deadline=None)
@given(problems())
def test_cached_equals_reference_over_the_filled_slots(problem):
    q, k, v, _, _ = problem
    for n in sorted({1, max(q.shape[1] // 2, 1)}):
        assert_cached_equals_reference(q, k, v, n)


@pytest.mark.parametrize("groups", [1, 3])
def test_cached_one_token_step_equals_reference(groups):
    """A decode step (one query token) takes the multiply-and-sum path when groups > 1 and the
    matrix products when groups == 1: both equal the reference."""
    B, T, K, H = 2, 7, 2, 8
    rng = np.random.default_rng(groups)
    q, k, v = (jnp.asarray(rng.normal(size=(B, T, n, H)), jnp.float32) for n in (K * groups, K, K))
    assert_cached_equals_reference(q, k, v, 1)


@pytest.mark.parametrize("n", [7, 6])
def test_a_long_prefill_attends_block_by_block(n):
    """More queries than a block of 3 (a long prompt's prefill) go through the cache in equal
    blocks, 3 of 3 with 2 padded queries (7) or 2 of 3 (6): the same as the reference, with
    grouped queries."""
    B, T, K, H = 2, 7, 2, 8
    rng = np.random.default_rng(n)
    q, k, v = (jnp.asarray(rng.normal(size=(B, T, m, H)), jnp.float32) for m in (K * 3, K, K))
    assert_cached_equals_reference(q, k, v, n, block=3)


def test_the_decode_path_follows_the_backend_unless_named(monkeypatch):
    assert resolve_decode_path() == "cpu"  # these tests run on XLA:CPU
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert resolve_decode_path("auto") == "accelerator"
    assert resolve_decode_path("cpu") == "cpu"
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert resolve_decode_path("accelerator") == "accelerator"


def test_the_models_query_block_is_its_config_field(monkeypatch):
    """model.attention_block is the block the model's blocked attention runs with (read from
    the config at every trace: experiments/passkey.py sets it there, no module global)."""
    from jaxllm import models
    from jaxllm.config import ModelConfig
    from jaxllm.models import attention

    seen, real = [], attention.blocked_attention

    def spy(*args, block, **kw):
        seen.append(block)
        return real(*args, block=block, **kw)

    monkeypatch.setattr(attention, "blocked_attention", spy)
    for block in (8, 512, 64):
        cfg = ModelConfig(vocab_size=50, max_len=32, n_layers=1, n_heads=2, d_model=16,
                          attention="blocked", **({"attention_block": block} if block != 64
                                                  else {}))
        jax.eval_shape(lambda cfg=cfg: models.build(cfg).init(jax.random.PRNGKey(0),
                                                               jnp.zeros((1, 32), jnp.int32)))
        assert set(seen) == {block}, (block, seen)
        seen.clear()


def test_auto_attention_follows_the_backend_and_dtype(monkeypatch):
    """model.attention=auto: blocked on CPU; cuDNN's fused kernel on GPU in bfloat16/float16
    (the fastest there: experiments/gpu_attention.py, RESULTS.md), XLA's in float32 and on TPU;
    a named implementation is kept; cudnn off a GPU is a one-line error."""
    assert resolve("auto") == "blocked"  # these tests run on XLA:CPU
    with pytest.raises(ConfigError, match="model.attention=cudnn needs an NVIDIA GPU"):
        resolve("cudnn", "bfloat16")
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert [resolve("auto", d) for d in ("bfloat16", "float16", "float32")] == \
        ["cudnn", "cudnn", "fast"]
    assert resolve("pallas", "bfloat16") == "pallas"
    assert resolve("cudnn", "bfloat16") == "cudnn"
    with pytest.raises(ConfigError, match="model.attention=splash is the TPU's kernel"):
        resolve("splash", "bfloat16")
    monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
    assert resolve("auto", "bfloat16") == "fast"


def test_cudnn_attention_off_a_gpu_stops_before_the_run_dir(capsys, tmp_path):
    from helpers import error_of

    line = error_of(["train", "--preset", "shakespeare-char", "--steps", "1", "--out",
                     str(tmp_path / "r"), "--set", "model.dtype=bfloat16", "--set",
                     "model.attention=cudnn"], capsys)
    assert "model.attention=cudnn needs an NVIDIA GPU (this backend is cpu)" in line
    assert not (tmp_path / "r").exists()


def kernel_equals_reference(kernel, T, seg, block):
    """A fused kernel (interpret mode on this CPU) equals the reference attention in values and
    gradients: causal, packed documents `seg`, 4 query heads over 2 kv heads."""
    from jaxllm.models import attention as attn

    B, N, K, H = 1, 4, 2, 8
    rng = np.random.default_rng(7)
    q, k, v = (jnp.asarray(rng.normal(size=(B, T, h, H)), jnp.float32) for h in (N, K, K))
    w = jnp.asarray(rng.normal(size=(B, T, N, H)), jnp.float32)
    idx = jnp.arange(T)
    mask = attn.attention_mask(idx, idx, q_segments=seg, kv_segments=seg)
    got = jax.value_and_grad(lambda *x: jnp.sum(kernel(*x, seg, block=block) * w),
                             (0, 1, 2))(q, k, v)
    want = jax.value_and_grad(lambda *x: jnp.sum(attn.reference_attention(*x, mask=mask) * w),
                              (0, 1, 2))(q, k, v)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
    for g, r in zip(got[1], want[1]):
        np.testing.assert_allclose(g, r, atol=2e-6)


@pytest.mark.slow  # Pallas interpret mode: ~10 s of CPU
def test_pallas_kernel_in_interpret_mode_equals_the_reference():
    """The GPU kernel, two blocks of 4 queries and keys, two packed documents."""
    from jaxllm.models import attention as attn

    kernel_equals_reference(attn.pallas_attention, 8,
                            jnp.asarray([[1, 1, 1, 2, 2, 2, 2, 2]], jnp.int32), 4)


@pytest.mark.slow  # Pallas interpret mode: ~10 s of CPU
def test_splash_kernel_in_interpret_mode_equals_the_reference():
    """The TPU kernel, two blocks of 128 (its least), two packed documents that straddle the
    block boundary."""
    from jaxllm.models import attention as attn

    kernel_equals_reference(attn.splash_attention, 256,
                            jnp.asarray([[1] * 100 + [2] * 156], jnp.int32), 128)


@pytest.mark.parametrize("kernel", ["pallas", "splash"])
def test_the_decoder_calls_the_kernel(kernel):
    from dataclasses import replace

    from helpers import LLAMA

    from jaxllm import models
    from jaxllm.models.decoder import Decoder

    T = 128
    cfg = replace(LLAMA, attention=kernel, n_layers=1, max_len=T)
    params = jax.eval_shape(lambda: models.init_params(cfg, jax.random.PRNGKey(0))[0])
    tokens = jax.ShapeDtypeStruct((1, T), jnp.int32)
    jaxpr = str(jax.make_jaxpr(lambda p, t: Decoder(cfg).apply(
        {"params": p}, t, segment_ids=jnp.ones((1, T), jnp.int32)))(params, tokens))
    assert "pallas_call" in jaxpr
    assert ("splash" in jaxpr) == (kernel == "splash")
