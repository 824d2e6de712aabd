"""The encoder-decoder (model.kind="seq2seq") against the numpy reference, with padding on
both sides, and its cached decoding against its own teacher-forced forward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import SEQ2SEQ, random_params, seq2seq_batch
from reference import seq2seq_logits

from jaxllm import models
from jaxllm.models.seq2seq import Seq2Seq, Seq2SeqCache
from jaxllm.objectives.seq2seq import seq2seq_loss
from jaxllm.transforms import lora


@pytest.mark.parametrize("name", sorted(SEQ2SEQ))
def test_matches_numpy_reference(name):
    cfg = SEQ2SEQ[name]
    params = random_params(cfg, scale=0.3)
    src, src_mask, tgt, tgt_mask = seq2seq_batch()
    got = np.asarray(jax.jit(models.build(cfg).apply)({"params": params}, src, tgt, src_mask,
                                                      tgt_mask))
    want = seq2seq_logits(cfg, params, src, tgt, src_mask, tgt_mask)
    for b in range(len(src)):  # the real target rows (padded queries are never read)
        n = tgt_mask[b].sum()
        np.testing.assert_allclose(got[b, :n], want[b, :n], atol=2e-5, rtol=1e-4)


def test_cached_decoding_matches_forward():
    """One token at a time through the cache (cross-attention keys/values computed at the
    first step and reused) gives the teacher-forced logits of every step."""
    cfg = SEQ2SEQ["modern"]
    params = random_params(cfg, scale=0.3)
    src, src_mask, tgt, _ = seq2seq_batch()
    model = Seq2Seq(cfg)

    @jax.jit
    def both(params, src, src_mask, tgt):
        full = model.apply({"params": params}, src, tgt, src_mask)
        memory = model.apply({"params": params}, src, src_mask, method=Seq2Seq.encode)
        cache = Seq2SeqCache.empty(cfg, len(src), tgt.shape[1])
        steps = []
        for t in range(tgt.shape[1]):
            logits, cache = model.apply({"params": params}, tgt[:, t:t + 1],
                                        memory if t == 0 else None, src_mask, cache,
                                        method=Seq2Seq.decode)
            steps.append(logits[:, 0])
        return full, jnp.stack(steps, axis=1), cache

    full, steps, cache = both(params, src, src_mask, tgt)
    np.testing.assert_allclose(np.asarray(steps), np.asarray(full), atol=1e-5)
    assert cache.cross_k.shape == (cfg.n_layers, len(src), src.shape[1], cfg.kv_heads,
                                   cfg.head_size)


def test_loss_matches_numpy():
    """Teacher forcing: the decoder reads <s> + target[:-1]; the loss is the mean over the real
    target tokens of -log p(target), computed from the numpy reference's logits."""
    cfg = SEQ2SEQ["learned"]
    params = random_params(cfg, scale=0.3)
    src, src_mask, tgt, tgt_mask = seq2seq_batch(seed=1)
    start = 12  # any id; the objective puts it first
    batch = {"source": src, "source_mask": src_mask, "target": tgt, "target_mask": tgt_mask}
    loss, sums = jax.jit(seq2seq_loss(models.build(cfg), start_id=start))(params, batch)
    target_in = np.concatenate([np.full((len(tgt), 1), start), tgt[:, :-1]], axis=1)
    logits = seq2seq_logits(cfg, params, src, target_in, src_mask, np.ones_like(tgt_mask))
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, tgt[..., None], -1)[..., 0]
    np.testing.assert_allclose(float(loss), nll[tgt_mask].mean(), rtol=1e-5)
    assert float(sums["tokens"]) == tgt_mask.sum()


def test_lora_on_every_linear_layer_equals_its_merged_weights():
    """lora.targets("all") selects the cross-attention too (its output kernel contracts two
    axes, as the self-attention's): with nonzero factors the LoRA forward equals the forward of
    the merged weights W + (alpha / r) A B."""
    cfg = SEQ2SEQ["learned"]
    params = random_params(cfg, scale=0.3)
    lp = lora.init(params, lora.targets("all"), rank=2, alpha=4.0, rng=jax.random.PRNGKey(1),
                   axes=models.abstract_params(cfg)[1])  # the stacked layers axis
    leaves, tree = jax.tree_util.tree_flatten(lp)
    keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
    lp = jax.tree_util.tree_unflatten(tree, [x + 0.1 * jax.random.normal(k, x.shape)
                                             for x, k in zip(leaves, keys)])
    assert isinstance(lp["blocks"]["cross_attn"]["out"]["kernel"], lora.LoraArray)
    src, src_mask, tgt, tgt_mask = seq2seq_batch()
    apply = jax.jit(models.build(cfg).apply)
    np.testing.assert_allclose(np.asarray(apply({"params": lp}, src, tgt, src_mask, tgt_mask)),
                               np.asarray(apply({"params": lora.merge(lp)}, src, tgt, src_mask,
                                                tgt_mask)), atol=2e-5)
