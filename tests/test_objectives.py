"""Causal-LM cross-entropy against a numpy reference: masks, z-loss, accuracy, summed metrics."""

import numpy as np
import jax.numpy as jnp
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
