"""The decoder against an independent numpy forward, and its invariants: attention paths agree
(with packing and grouped-query attention), packed documents do not see each other, the KV cache
reproduces the full forward, remat changes nothing, every parameter has logical axis names."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxllm.models.decoder import Decoder, KVCache, init_params
from helpers import CONFIGS, GPT, noisy_params
from reference import decoder_logits

LOGICAL_NAMES = {"vocab", "embed", "mlp", "heads", "kv_heads", "kv", "layers", None}


@functools.partial(jax.jit, static_argnums=0, static_argnames="train")
def apply(cfg, params, tokens, positions=None, segment_ids=None, train=False, rngs=None):
    return Decoder(cfg).apply({"params": params}, tokens, positions=positions,
                              segment_ids=segment_ids, train=train, rngs=rngs)


@pytest.mark.parametrize("attention", ["fast", "blocked", "reference"])
@pytest.mark.parametrize("name", ["gpt", "llama"])
def test_matches_numpy_reference(name, attention):
    cfg = dataclasses.replace(CONFIGS[name], attention=attention)
    params = noisy_params(cfg)
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 11))
    got = np.asarray(apply(cfg, params, tokens))
    want = decoder_logits(cfg, jax.device_get(params), tokens)
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["gpt", "llama"])
def test_packed_documents_equal_separate_runs(name):
    cfg = CONFIGS[name]
    params = noisy_params(cfg)
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, cfg.vocab_size, 5), rng.integers(0, cfg.vocab_size, 7)
    packed = np.concatenate([a, b])[None]
    segments = np.array([[1] * 5 + [2] * 7])
    positions = np.array([list(range(5)) + list(range(7))])
    got = np.asarray(apply(cfg, params, packed, positions=positions, segment_ids=segments))[0]
    np.testing.assert_allclose(got[:5], np.asarray(apply(cfg, params, a[None]))[0], atol=1e-5)
    np.testing.assert_allclose(got[5:], np.asarray(apply(cfg, params, b[None]))[0], atol=1e-5)


def segment_layouts(T=12):
    """Segment ids (1, T): consecutive documents 1, 2, ... and padding (0) after the last one."""
    return st.lists(st.integers(1, T), min_size=1, max_size=4).map(lambda n: _layout(n, T))


def _layout(lengths, T):
    seg, start = np.zeros(T, np.int32), 0
    for i, n in enumerate(lengths):
        seg[start:start + n] = i + 1
        start = min(start + n, T)
    return seg[None]


def packed_inputs(segments, vocab, seed=2):
    tokens = np.random.default_rng(seed).integers(0, vocab, segments.shape)
    positions = np.zeros_like(segments)
    for s in np.unique(segments):
        idx = np.flatnonzero(segments[0] == s)
        positions[0, idx] = np.arange(idx.size)
    return tokens, positions


@settings(max_examples=15, deadline=None)
@given(segments=segment_layouts(), name=st.sampled_from(["gpt", "llama"]))
def test_attention_paths_agree_with_packing(segments, name):
    cfg = CONFIGS[name]
    params = noisy_params(cfg)
    tokens, positions = packed_inputs(segments, cfg.vocab_size)
    outs = {a: np.asarray(apply(dataclasses.replace(cfg, attention=a), params, tokens,
                                positions=positions, segment_ids=segments))
            for a in ("fast", "blocked", "reference")}
    np.testing.assert_allclose(outs["fast"], outs["reference"], atol=1e-5)
    np.testing.assert_allclose(outs["blocked"], outs["reference"], atol=1e-5)


@pytest.mark.parametrize("name", ["gpt", "llama"])
def test_kv_cache_reproduces_full_forward(name):
    """Left-padded prompts of different lengths, prefilled then decoded token by token, give the
    logits of running each sequence alone."""
    cfg = CONFIGS[name]
    params = noisy_params(cfg)
    model = Decoder(cfg)
    decode = jax.jit(lambda p, t, c, m=None: model.apply({"params": p}, t, c, m,
                                                         method=Decoder.decode))
    rng = np.random.default_rng(3)
    seqs = [rng.integers(0, cfg.vocab_size, n) for n in (9, 5)]
    prompt_len, total = 6, 12
    lengths = [min(len(s), prompt_len) for s in seqs]
    prompt = np.zeros((2, prompt_len), np.int32)
    mask = np.zeros((2, prompt_len), bool)
    for r, (s, n) in enumerate(zip(seqs, lengths)):
        prompt[r, prompt_len - n:] = s[:n]
        mask[r, prompt_len - n:] = True
    cache = KVCache.empty(cfg, 2, total)
    logits, cache = decode(params, prompt, cache, mask)
    # continue each row with the rest of its sequence (or a filler token), one token at a time
    steps = []
    for i in range(3):
        tok = np.array([[s[n + i] if n + i < len(s) else 1] for s, n in zip(seqs, lengths)])
        out, cache = decode(params, tok, cache)
        steps.append(np.asarray(out)[:, 0])
    for r, (s, n) in enumerate(zip(seqs, lengths)):
        full_seq = np.concatenate([s[:n], [s[n + i] if n + i < len(s) else 1 for i in range(3)]])
        full = np.asarray(apply(cfg, params, full_seq[None]))[0]
        np.testing.assert_allclose(np.asarray(logits)[r, prompt_len - n:], full[:n], atol=1e-5)
        for i in range(3):
            np.testing.assert_allclose(steps[i][r], full[n + i], atol=1e-5)


@pytest.mark.parametrize("name", ["gpt", "llama"])
def test_every_param_has_logical_axes(name):
    cfg = CONFIGS[name]
    params, specs = init_params(cfg, jax.random.PRNGKey(0))
    flat_p = jax.tree_util.tree_leaves_with_path(params)
    flat_s = dict(jax.tree_util.tree_leaves_with_path(
        specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)))
    assert len(flat_p) == len(flat_s)
    for path, leaf in flat_p:
        spec = flat_s[path]
        assert len(spec) == leaf.ndim, (path, spec, leaf.shape)
        assert set(spec) <= LOGICAL_NAMES, (path, spec)
        if jax.tree_util.keystr(path).startswith("['blocks']"):
            assert spec[0] == "layers" and leaf.shape[0] == cfg.n_layers, (path, spec)


@pytest.mark.parametrize("remat", ["full", "dots", "dots_no_batch"])
def test_remat_policies_leave_loss_and_grads_unchanged(remat):
    tokens = jnp.asarray(np.random.default_rng(4).integers(0, GPT.vocab_size, (2, 10)))
    params = noisy_params(GPT)

    def loss(cfg, p):
        return jnp.mean(jax.nn.log_softmax(apply(cfg, p, tokens))[..., 0])

    base = jax.jit(jax.value_and_grad(lambda p: loss(GPT, p)))(params)
    got = jax.jit(jax.value_and_grad(lambda p: loss(dataclasses.replace(GPT, remat=remat), p)))(
        params)
    np.testing.assert_allclose(got[0], base[0], rtol=1e-6)
    for g, b in zip(jax.tree_util.tree_leaves(got[1]), jax.tree_util.tree_leaves(base[1])):
        np.testing.assert_allclose(g, b, atol=1e-6)


def test_dropout_only_in_training():
    cfg = dataclasses.replace(GPT, dropout=0.5)
    params = noisy_params(cfg)
    tokens = jnp.ones((1, 8), jnp.int32)
    a = apply(cfg, params, tokens)
    np.testing.assert_array_equal(a, apply(cfg, params, tokens))
    b = apply(cfg, params, tokens, train=True, rngs={"dropout": jax.random.PRNGKey(0)})
    c = apply(cfg, params, tokens, train=True, rngs={"dropout": jax.random.PRNGKey(1)})
    assert not np.allclose(a, b) and not np.allclose(b, c)
