"""The encoder against the numpy BERT forward (through the Hugging Face layout), its padding and
pooling invariants, and the masked-LM / next-sentence objectives' statistics."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxllm.config import ModelConfig
from jaxllm.io.hf import config_to_hf, params_to_hf
from jaxllm.models.encoder import Encoder, init_params, l2_normalize, mean_pool  # noqa: F401
from jaxllm.objectives.mlm import mask_tokens, mlm_loss, nsp_pairs
from reference_pretrained import bert_hidden

BERT = ModelConfig(kind="encoder", norm_position="post", type_vocab_size=2, vocab_size=41,
                   max_len=16, n_layers=2, n_heads=4, d_model=32, norm_eps=1e-12)


@functools.lru_cache(maxsize=None)
def noisy(cfg):
    """Random params of the encoder's shapes (traced, not compiled): N(0, 0.3) kernels and
    embeddings, norm scales around 1, so that every parameter matters."""
    from jaxllm.io.hf import _template

    rng = np.random.default_rng(0)

    def leaf(path, shape):
        x = rng.normal(size=shape).astype(np.float32)
        return 1 + 0.1 * x if path[-1].key == "scale" else 0.3 * x

    return jax.tree_util.tree_map_with_path(leaf, _template(cfg),
                                            is_leaf=lambda x: isinstance(x, tuple))


@functools.partial(jax.jit, static_argnums=0, static_argnames="heads")
def run(cfg, params, tokens, types=None, mask=None, heads=()):
    return Encoder(cfg).apply({"params": params}, tokens, types, mask, heads=heads)


@pytest.mark.parametrize("attention", ["fast", "reference"])
def test_bert_encoder_matches_numpy_reference_with_padding(attention):
    cfg = dataclasses.replace(BERT, attention=attention)
    params = noisy(cfg)
    hf = params_to_hf(cfg, jax.device_get(params), heads=False)
    hf_cfg = config_to_hf(cfg)
    rng = np.random.default_rng(0)
    lengths = [11, 6]
    tokens = np.zeros((2, 11), np.int32)
    types = np.zeros((2, 11), np.int32)
    mask = np.zeros((2, 11), bool)
    for b, n in enumerate(lengths):
        tokens[b, :n] = rng.integers(0, cfg.vocab_size, n)
        types[b, n // 2:n] = 1
        mask[b, :n] = True
    got = np.asarray(run(cfg, params, tokens, types, mask)["hidden"])
    for b, n in enumerate(lengths):
        want = bert_hidden(hf, hf_cfg, tokens[b, :n], types[b, :n])
        np.testing.assert_allclose(got[b, :n], want, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("norm_position", ["post", "pre"])
def test_padding_does_not_change_pooled_embeddings(norm_position):
    cfg = dataclasses.replace(BERT, norm_position=norm_position)
    params = noisy(cfg)
    tokens = jnp.asarray(np.random.default_rng(1).integers(0, cfg.vocab_size, (1, 7)), jnp.int32)
    alone = run(cfg, params, tokens, None, jnp.ones((1, 7), bool))["hidden"]
    padded_tokens = jnp.concatenate([tokens, jnp.full((1, 5), 3, jnp.int32)], axis=1)
    mask = jnp.arange(12)[None] < 7
    padded = run(cfg, params, padded_tokens, None, mask)["hidden"]
    a = l2_normalize(mean_pool(alone, jnp.ones((1, 7), bool)))
    b = l2_normalize(mean_pool(padded, mask))
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(b)), 1.0, atol=1e-6)


def test_heads_have_the_expected_shapes_and_mlm_is_tied():
    params = noisy(BERT)
    tokens = jnp.zeros((3, 9), jnp.int32)
    out = run(BERT, params, tokens, heads=("mlm", "nsp"))
    assert out["mlm_logits"].shape == (3, 9, BERT.vocab_size) and out["nsp_logits"].shape == (3, 2)
    assert "head" not in params  # the MLM decoder reuses the token embedding


def test_mask_tokens_follows_80_10_10():
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 50, (64, 512)), jnp.int32)
    maskable = tokens != 7  # pretend 7 is a special token
    inputs, chosen = mask_tokens(jax.random.PRNGKey(0), tokens, maskable, mask_id=99,
                                 vocab_size=50, rate=0.15)
    inputs, chosen, tokens = map(np.asarray, (inputs, chosen, tokens))
    assert not chosen[tokens == 7].any() and (inputs[~chosen] == tokens[~chosen]).all()
    assert abs(chosen[tokens != 7].mean() - 0.15) < 0.01
    c_in, c_tok = inputs[chosen], tokens[chosen]
    masked = (c_in == 99).mean()
    kept = (c_in == c_tok).mean()  # 10% kept + random draws that hit the original (1/50 of 10%)
    assert abs(masked - 0.8) < 0.02 and abs(kept - (0.1 + 0.1 / 50)) < 0.015


def test_nsp_pairs_keep_or_swap_the_second_half():
    windows = jnp.arange(8 * 10).reshape(8, 10)
    tokens, types, labels = nsp_pairs(jax.random.PRNGKey(3), windows, cls_id=1000)
    tokens, types, labels = map(np.asarray, (tokens, types, labels))
    assert (tokens[:, 0] == 1000).all() and tokens.shape == (8, 11)
    assert (types[:, :6] == 0).all() and (types[:, 6:] == 1).all()
    for b in range(8):
        source = (b - 1) % 8 if labels[b] else b
        np.testing.assert_array_equal(tokens[b, 6:], np.arange(10)[5:] + 10 * source)
    assert 0 < labels.sum() < 8


def test_mlm_loss_is_finite_and_counts_masked_tokens():
    cfg = dataclasses.replace(BERT, vocab_size=43)  # 41 tokenizer ids + [MASK] + [CLS]
    loss_fn = mlm_loss(Encoder(cfg), mask_id=41, cls_id=42, vocab_size=41, nsp_weight=1.0)
    batch = {"inputs": jnp.asarray(np.random.default_rng(0).integers(0, 41, (4, 16)), jnp.int32)}
    params = noisy(cfg)
    loss, m = jax.jit(loss_fn)(params, batch, jax.random.PRNGKey(1))
    assert np.isfinite(float(loss)) and 0 < float(m["tokens"]) < 4 * 16
    evaluate = jax.jit(lambda p, b: loss_fn(p, b, None))
    loss_eval, _ = evaluate(params, batch)
    loss_eval2, _ = evaluate(params, batch)
    assert float(loss_eval) == float(loss_eval2)  # evaluation masks with a fixed key
