"""Causal-LM cross-entropy against a numpy reference: masks, z-loss, accuracy, summed metrics."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from jaxllm.objectives.causal_lm import finalize_metrics, lm_loss_and_metrics


def numpy_ce(logits, targets):
    logits = logits.astype(np.float64)
    m = logits.max(-1, keepdims=True)
    log_z = (m + np.log(np.exp(logits - m).sum(-1, keepdims=True)))[..., 0]
    return log_z - np.take_along_axis(logits, targets[..., None], -1)[..., 0], log_z


@pytest.mark.parametrize("z_loss", [0.0, 1e-3])
def test_loss_and_metrics_match_numpy(z_loss):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 7, 11)).astype(np.float32) * 3
    targets = rng.integers(0, 11, (3, 7))
    mask = (rng.random((3, 7)) > 0.3).astype(np.float32)
    loss, m = lm_loss_and_metrics(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(mask),
                                  z_loss)
    ce, log_z = numpy_ce(logits, targets)
    n = mask.sum()
    want = (ce * mask).sum() / n + z_loss * (log_z ** 2 * mask).sum() / n
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    np.testing.assert_allclose(float(m["loss_sum"]), (ce * mask).sum(), rtol=1e-5)
    assert float(m["tokens"]) == n
    assert float(m["correct"]) == ((logits.argmax(-1) == targets) * mask).sum()
    final = finalize_metrics(m)
    np.testing.assert_allclose(final["loss"], (ce * mask).sum() / n, rtol=1e-5)
    np.testing.assert_allclose(final["perplexity"], np.exp((ce * mask).sum() / n), rtol=1e-5)


def test_no_mask_means_every_token():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 5, 4)).astype(np.float32)
    targets = rng.integers(0, 4, (2, 5))
    loss, m = lm_loss_and_metrics(jnp.asarray(logits), jnp.asarray(targets))
    np.testing.assert_allclose(float(loss), numpy_ce(logits, targets)[0].mean(), rtol=1e-5)
    assert float(m["tokens"]) == 10


def test_fully_masked_batch_is_zero_not_nan():
    loss, m = lm_loss_and_metrics(jnp.zeros((1, 3, 5)), jnp.zeros((1, 3), jnp.int32),
                                  jnp.zeros((1, 3)))
    assert float(loss) == 0.0 and float(m["tokens"]) == 0.0


def test_chunked_cross_entropy_equals_the_full_one():
    """Chunks of 4 tokens (the last one padded) give the full loss's value, metrics and
    gradients (of the hidden states and of the head), with a loss mask and z-loss."""
    import jax

    from jaxllm.objectives.causal_lm import chunked_lm_loss_and_metrics

    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(2, 7, 5)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(5, 11)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, 11, (2, 7)), jnp.int32)
    mask = jnp.asarray(rng.random((2, 7)) > 0.25, jnp.float32)

    def full(x, w):
        return lm_loss_and_metrics(x @ w, targets, mask, 1e-3)

    def chunked(x, w):
        return chunked_lm_loss_and_metrics(lambda xc: xc @ w, x, targets, mask, 1e-3, rows=4)

    (loss, m), grads = jax.value_and_grad(full, (0, 1), has_aux=True)(x, w)
    (c_loss, c_m), c_grads = jax.value_and_grad(chunked, (0, 1), has_aux=True)(x, w)
    np.testing.assert_allclose(c_loss, loss, rtol=1e-6)
    for key in m:
        np.testing.assert_allclose(c_m[key], m[key], rtol=1e-6, err_msg=key)
    for c, g in zip(c_grads, grads):
        np.testing.assert_allclose(c, g, atol=1e-7, rtol=1e-5)


def test_the_decoder_loss_chunks_through_its_own_head():
    """causal_lm_loss with chunks (the final hidden states, then the tied embedding as head
    chunk by chunk) equals the plain one on a model."""
    import jax
    from helpers import SMOL, random_params

    from jaxllm.models.decoder import Decoder
    from jaxllm.objectives.causal_lm import causal_lm_loss

    cfg = dataclasses.replace(SMOL, n_layers=1, attention="reference")
    rng = np.random.default_rng(3)
    batch = {"inputs": jnp.asarray(rng.integers(0, 37, (2, 6)), jnp.int32),
             "targets": jnp.asarray(rng.integers(0, 37, (2, 6)), jnp.int32)}
    full, chunked = (jax.jit(causal_lm_loss(Decoder(cfg), rows=r))(random_params(cfg), batch)
                     for r in (0, 5))
    np.testing.assert_allclose(chunked[0], full[0], rtol=1e-6)
    np.testing.assert_allclose(chunked[1]["correct"], full[1]["correct"])


def test_the_loss_is_chunked_above_64_mib_of_logits():
    from jaxllm.objectives.causal_lm import chunk_rows
    assert chunk_rows(12 * 256, 65) == 0  # shakespeare-char: the plain loss
    rows = chunk_rows(4 * 256, 49152)  # SmolLM2 at 4 x 256: 201 MB of float32 logits
    assert rows and rows % 8 == 0 and rows * 49152 * 4 <= 2 ** 24


def test_the_chunked_backward_keeps_no_whole_logits():
    """The chunked loss's backward recomputes each chunk's logits (jax.checkpoint on the scan
    body) instead of keeping them: the compiled gradient's temporaries stay far below the
    (tokens x vocab) float32 logits that the plain loss holds."""
    import jax
    import jax.numpy as jnp

    from jaxllm.objectives.causal_lm import chunked_lm_loss_and_metrics

    B, T, D, V, rows = 4, 1024, 16, 8192, 256
    x = jax.ShapeDtypeStruct((B, T, D), jnp.float32)
    w = jax.ShapeDtypeStruct((D, V), jnp.float32)
    targets = jnp.zeros((B, T), jnp.int32)

    def loss(x, w):
        return chunked_lm_loss_and_metrics(lambda xc: xc @ w, x, targets, None, 0.0, rows)[0]

    temp = jax.jit(jax.grad(loss, (0, 1))).lower(x, w).compile().memory_analysis()
    logits_bytes = B * T * V * 4  # 128 MiB
    assert temp.temp_size_in_bytes < logits_bytes / 4, temp.temp_size_in_bytes  # 16 vs 143 MB
