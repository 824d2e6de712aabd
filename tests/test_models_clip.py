"""CLIP against the numpy towers, the InfoNCE loss against numpy, and the data-parallel loss
(all-gather with gradients, local loss) equal to the single-device loss and gradients on 8
simulated devices."""

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from helpers import noisy_params
from jaxllm.config import ModelConfig
from jaxllm.models.clip import CLIP, INIT_LOGIT_SCALE, init_params
from jaxllm.objectives.contrastive import clip_loss, info_nce, sharded_info_nce
from reference_vision import clip_embeddings, info_nce as np_info_nce

TINY = ModelConfig(kind="clip", image_size=8, channels=1, patch_size=4, num_classes=0,
                   n_layers=1, n_heads=2, d_model=16, vocab_size=11, max_len=6, embed_dim=8,
                   text_layers=2, text_heads=2, text_d_model=12, norm_eps=1e-6)


def batch(n, seed=0):
    rng = np.random.default_rng(seed)
    eot = rng.integers(1, TINY.max_len, n).astype(np.int32)
    tokens = rng.integers(1, TINY.vocab_size, (n, TINY.max_len)).astype(np.int32)
    return {"images": rng.normal(size=(n, 8, 8, 1)).astype(np.float32), "tokens": tokens,
            "eot": eot, "labels": rng.integers(0, 3, n).astype(np.int32)}


def test_clip_matches_numpy_towers_and_loss():
    params = noisy_params(TINY, scale=0.1)
    b = batch(3)
    # rows 3..5: the same captions with padding after the end-of-text token, which the causal
    # text tower must ignore (one forward, one compile)
    padded = b["tokens"].copy()
    for i, e in enumerate(b["eot"]):
        padded[i, e + 1:] = 0
    both = {"images": np.concatenate([b["images"]] * 2), "eot": np.concatenate([b["eot"]] * 2),
            "tokens": np.concatenate([b["tokens"], padded])}
    out = jax.jit(lambda p, b: CLIP(TINY).apply({"params": p}, b["images"], b["tokens"],
                                                b["eot"]))(params, both)
    img, txt, scale = clip_embeddings(TINY, jax.device_get(params), b["images"], b["tokens"],
                                      b["eot"])
    np.testing.assert_allclose(out["image"][:3], img, atol=2e-5)
    np.testing.assert_allclose(out["text"][:3], txt, atol=2e-5)
    np.testing.assert_allclose(out["scale"], scale, rtol=1e-6)
    np.testing.assert_allclose(info_nce(out["image"][:3], out["text"][:3], out["scale"]),
                               np_info_nce(img, txt, scale), rtol=1e-5)
    np.testing.assert_allclose(out["text"][3:], out["text"][:3], atol=1e-6)


def test_logit_scale_starts_at_one_over_0_07_and_is_clamped_at_100():
    params, axes = init_params(TINY, jax.random.PRNGKey(0))
    assert math.isclose(float(params["logit_scale"]), math.log(1 / 0.07), rel_tol=1e-6)
    assert INIT_LOGIT_SCALE == math.log(1 / 0.07)
    big = dict(params, logit_scale=jnp.asarray(7.0))  # exp(7) = 1097
    scale = CLIP(TINY).apply({"params": big}, method="scale")
    assert float(scale) == 100.0
    g = jax.grad(lambda s: CLIP(TINY).apply({"params": dict(params, logit_scale=s)},
                                            method="scale"))(jnp.asarray(7.0))
    assert float(g) == 0.0  # no gradient pushes past the clamp
    assert axes["image_proj"]["kernel"] == P("embed", None)


def test_info_nce_is_log_batch_for_uninformative_embeddings_and_zero_for_perfect_ones():
    e = jnp.ones((4, 3)) / math.sqrt(3)
    np.testing.assert_allclose(info_nce(e, e, 10.0), math.log(4), rtol=1e-6)
    eye = jnp.eye(4)
    assert float(info_nce(eye, eye, 100.0)) < 1e-30 + 1e-6


def test_data_parallel_loss_and_gradients_equal_single_device():
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    rng = np.random.default_rng(0)
    img = rng.normal(size=(16, 5)).astype(np.float32)
    txt = rng.normal(size=(16, 5)).astype(np.float32)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    scale = jnp.float32(7.5)

    single = jax.jit(jax.value_and_grad(info_nce, argnums=(0, 1, 2)))
    sharded = jax.jit(jax.value_and_grad(sharded_info_nce(mesh), argnums=(0, 1, 2)))
    rows = NamedSharding(mesh, P("data"))
    want_loss, want_grads = single(img, txt, scale)
    got_loss, got_grads = sharded(jax.device_put(img, rows), jax.device_put(txt, rows), scale)
    np.testing.assert_allclose(got_loss, np_info_nce(img, txt, 7.5), rtol=1e-5)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-6)
    for g, w in zip(got_grads, want_grads):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)
    assert got_grads[0].sharding.spec == P("data")

    # through both towers: the model runs data-parallel (jit), the loss under shard_map
    params = noisy_params(TINY, scale=0.1)
    b = batch(16, seed=1)
    model = CLIP(TINY)
    grad_single = jax.jit(jax.value_and_grad(clip_loss(model), has_aux=True))
    grad_sharded = jax.jit(jax.value_and_grad(clip_loss(model, mesh), has_aux=True))
    (l1, m1), g1 = grad_single(params, b)
    (l2, m2), g2 = grad_sharded(params, jax.device_put(b, rows))
    np.testing.assert_allclose(l2, l1, rtol=1e-5)
    assert float(m1["correct"]) == float(m2["correct"])
    for a, c in zip(jax.tree_util.tree_leaves(g2), jax.tree_util.tree_leaves(g1)):
        np.testing.assert_allclose(a, c, rtol=2e-4, atol=2e-6)
