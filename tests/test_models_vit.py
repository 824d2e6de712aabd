"""The ViT against the numpy forward (learned/sin-cos positions, CLS/GAP pooling), its variant
names, logical axis names, intermediates and bad input."""

import dataclasses
import functools

import jax
import numpy as np
import pytest

from helpers import noisy_params
from jaxllm.config import ModelConfig, validate, Config, apply_overrides
from jaxllm.errors import ConfigError, DataError, JaxllmError
from jaxllm.models.vit import (ViT, check_images, decode_variant, init_params, sincos_2d,
                               vit_config)
from reference_vision import sincos_2d as np_sincos_2d, vit_features

TINY = ModelConfig(kind="vit", image_size=8, channels=2, patch_size=4, num_classes=5,
                   n_layers=2, n_heads=2, d_model=16, norm_eps=1e-6)


@functools.partial(jax.jit, static_argnums=0, static_argnames="intermediates")
def run(cfg, params, images, intermediates=False):
    return ViT(cfg).apply({"params": params}, images, intermediates=intermediates)


@pytest.mark.parametrize("pool,positions,attention", [("cls", "learned", "fast"),
                                                      ("gap", "sincos2d", "reference")])
def test_vit_matches_numpy_reference(pool, positions, attention):
    cfg = dataclasses.replace(TINY, pool=pool, image_positions=positions, attention=attention)
    params = noisy_params(cfg, scale=0.1)
    images = np.random.default_rng(0).normal(size=(3, 8, 8, 2)).astype(np.float32)
    out = run(cfg, params, images, intermediates=True)
    for b in range(3):
        pooled, logits = vit_features(cfg, jax.device_get(params), images[b])
        np.testing.assert_allclose(out["pre_logits"][b], pooled, atol=2e-5, rtol=1e-4)
        np.testing.assert_allclose(out["logits"][b], logits, atol=2e-5, rtol=1e-4)
    assert out["patches"].shape == (3, 4, 16) and out["encoded"].shape == (
        3, 4 + (pool == "cls"), 16)


def test_sincos_2d_matches_reference_and_non_square_grids():
    np.testing.assert_allclose(sincos_2d(3, 5, 16), np_sincos_2d(3, 5, 16), atol=1e-6)


def test_features_only_head_and_logical_axes():
    cfg = dataclasses.replace(TINY, num_classes=0)
    params, axes = init_params(cfg, jax.random.PRNGKey(0))
    assert "head" not in params
    out = run(cfg, params, np.zeros((2, 8, 8, 2), np.float32))
    assert set(out) == {"pre_logits"} and out["pre_logits"].shape == (2, 16)
    # every parameter carries logical names, one per axis
    for spec, leaf in zip(jax.tree_util.tree_leaves(axes, is_leaf=lambda x: isinstance(
            x, jax.sharding.PartitionSpec)), jax.tree_util.tree_leaves(params)):
        assert len(spec) == leaf.ndim
    assert axes["patch_embed"]["kernel"][-1] == "embed"
    assert axes["blocks"]["attn"]["query"]["kernel"][0] == "layers"


def test_variants_from_the_paper_table():
    assert decode_variant("S/16") == dict(d_model=384, n_layers=12, d_ff=1536, n_heads=6,
                                          patch_size=16)
    cfg = vit_config("B/32")
    assert (cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.ff_size, cfg.patch_size) == (
        768, 12, 12, 3072, 32)
    # ViT-B/16 at 224 with 1000 classes: 86.6M (the paper: 86M); timm has 768 more (a position
    # for the [CLS] token), big_vision the same count as here
    shapes = jax.eval_shape(lambda: init_params(vit_config("B/16"), jax.random.PRNGKey(0))[0])
    n = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(shapes))
    assert n == 86_566_888
    for bad in ("Q/16", "S", "S/0", "S/x", ""):
        with pytest.raises(ConfigError, match="SIZE/PATCH"):
            decode_variant(bad)


def test_bad_images_and_patch_sizes_are_one_line_errors():
    with pytest.raises(DataError, match=r"\(batch, 8, 8, 2\)") as e:
        check_images(TINY, (4, 8, 8, 3))  # wrong channels
    assert "\n" not in str(e.value)
    with pytest.raises(DataError):
        check_images(TINY, (4, 28, 28, 2))  # wrong size
    with pytest.raises(DataError):
        check_images(TINY, (8, 8, 2))  # no batch axis
    cfg = Config(model=dataclasses.replace(TINY, patch_size=3))
    with pytest.raises(ConfigError, match="model.patch_size=3.*must divide") as e:
        validate(cfg)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="must divide"):
        check_images(cfg.model, (1, 8, 8, 2))
    with pytest.raises(JaxllmError, match="model.pool"):
        validate(apply_overrides(Config(model=TINY), ["model.pool=max"]))
