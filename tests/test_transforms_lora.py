"""LoRA/QLoRA, QAT and BitNet: B = 0 leaves the model unchanged, merge = W + (alpha/r) A B in
numpy, unmerge recovers the base, dropout only in training, a train step updates only the LoRA
factors and keeps optimizer state for them only (NF4 base included), factors shard like their
base; straight-through gradients; a BitNet-trained model runs as int8 x ternary matmuls."""

from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpers import GPT, noisy_params
from jaxllm.models.decoder import Decoder, init_params
from jaxllm.objectives.causal_lm import causal_lm_loss
from jaxllm.optim import TrainState
from jaxllm.train.step import make_train_step
from jaxllm.transforms import (Rule, TransformError, linear_rules, logical_axes, lora, quantize,
                               tree_bytes)
from jaxllm.transforms.lora import LoraArray
from jaxllm.transforms.qat import fake_quant_weight


def test_lora_on_a_plain_dict_merge_unmerge():
    rng = np.random.default_rng(0)
    tree = {"enc": {"w": jnp.asarray(rng.normal(size=(12, 6)), jnp.float32)},
            "bias": jnp.zeros(6)}
    lp = lora.init(tree, [Rule("enc/w", options={"rank": 3, "alpha": 6.0})])
    la = lp["enc"]["w"]
    assert la.lora_a.shape == (12, 3) and la.lora_b.shape == (3, 6) and not la.lora_b.any()
    la = replace(la, lora_b=jnp.asarray(rng.normal(size=(3, 6)), jnp.float32))
    lp = {**lp, "enc": {"w": la}}
    merged = lora.merge(lp)
    want = np.asarray(tree["enc"]["w"]) + 2.0 * np.asarray(la.lora_a) @ np.asarray(la.lora_b)
    np.testing.assert_allclose(merged["enc"]["w"], want, rtol=1e-5, atol=1e-6)
    back = lora.unmerge(merged, lp)
    np.testing.assert_allclose(back["enc"]["w"].base, tree["enc"]["w"], atol=1e-6)
    x = jnp.asarray(rng.normal(size=(4, 12)), jnp.float32)
    np.testing.assert_allclose(la.dense_apply(x, jnp.float32), x @ want, rtol=1e-5, atol=1e-5)
    assert lora.count(lp) == {"trainable": 12 * 3 + 3 * 6, "total": 12 * 6 + 6 + 12 * 3 + 18}


def _setup(cfg=GPT, quant=None, targets="attn", rank=4, group=16):
    params = noisy_params(cfg)
    _, axes = init_params(cfg, jax.random.PRNGKey(0))
    base = params if quant is None else quantize(params, linear_rules(), axes=axes,
                                                 method=quant, group=group)
    return params, axes, base, lora.init(base, lora.targets(targets), rank=rank, alpha=8.0,
                                         rng=jax.random.PRNGKey(5), axes=axes)


@pytest.mark.parametrize("quant", [None, "nf4"])
def test_training_updates_only_lora_factors(quant):
    cfg = GPT
    params, axes, base, lp = _setup(quant=quant)
    model = Decoder(cfg)
    tokens = jax.random.randint(jax.random.PRNGKey(3), (4, 9), 0, cfg.vocab_size)
    batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}
    loss_fn = causal_lm_loss(model)
    # B = 0: the LoRA model is the base model
    fwd = jax.jit(lambda p: model.apply({"params": p}, batch["inputs"]))
    np.testing.assert_allclose(fwd(lp), fwd(base), rtol=1e-5, atol=1e-5)
    tx = optax.adam(1e-2)
    state = TrainState.create(lp, tx, lora.trainable)
    n_factors = sum(jax.tree_util.tree_leaves(lora.trainable(lp)))
    assert n_factors == 8  # query, key, value, out: A and B each
    adam_leaves = [x for x in jax.tree_util.tree_leaves(state.opt_state) if x.ndim > 0]
    assert len(adam_leaves) == 2 * n_factors  # mu and nu of the factors, nothing else
    step = make_train_step(loss_fn, tx, trainable=lora.trainable, donate=False)
    new, metrics = step(state, batch)
    new, metrics2 = step(new, batch)
    assert float(metrics2["loss"]) < float(metrics["loss"])
    mask = jax.tree_util.tree_leaves(lora.trainable(lp))
    for old, upd, m in zip(jax.tree_util.tree_leaves(lp), jax.tree_util.tree_leaves(new.params),
                           mask):
        assert m or np.array_equal(old, upd)  # frozen leaves bit-for-bit unchanged
    assert any(not np.array_equal(o, u) for o, u, m in zip(
        jax.tree_util.tree_leaves(lp), jax.tree_util.tree_leaves(new.params), mask) if m)
    # merged export: a plain float tree that computes what the LoRA model computes
    merged = lora.merge(new.params)
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(merged))
    np.testing.assert_allclose(fwd(merged), fwd(new.params), rtol=1e-4, atol=1e-4)


def test_lora_dropout_only_with_a_dropout_rng():
    cfg = replace(GPT, n_layers=1)
    _, _, _, lp = _setup(cfg)
    lp = jax.tree_util.tree_map(
        lambda x: replace(x, dropout=0.5, lora_b=jnp.ones_like(x.lora_b))
        if isinstance(x, LoraArray) else x, lp, is_leaf=lambda x: isinstance(x, LoraArray))
    model = Decoder(cfg)
    tokens = jnp.ones((1, 8), jnp.int32)
    f = jax.jit(lambda p, r: model.apply({"params": p}, tokens, train=r is not None,
                                         rngs=None if r is None else {"dropout": r}))
    a, b, c = f(lp, None), f(lp, None), f(lp, jax.random.PRNGKey(1))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_lora_factors_shard_like_their_base_on_8_devices():
    cfg = replace(GPT, n_heads=4, d_model=32)
    _, _, _, lp = _setup(cfg, quant="nf4", targets="all", group=8)
    specs = logical_axes(lp)
    up = specs["blocks"]["mlp"]["up"]["kernel"]
    assert tuple(up.lora_a) == ("layers", "embed", None)
    assert tuple(up.lora_b) == ("layers", None, "mlp")
    P = jax.sharding.PartitionSpec
    mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    rules = {"mlp": "model", "heads": "model", "kv_heads": "model"}
    sh = jax.tree_util.tree_map(
        lambda s: jax.sharding.NamedSharding(mesh, P(*(rules.get(n) for n in s))), specs,
        is_leaf=lambda s: isinstance(s, P))
    placed = jax.device_put(lp, sh)
    b = placed["blocks"]["mlp"]["up"]["kernel"].lora_b
    assert b.sharding.spec[-1] == "model" and b.addressable_shards[0].data.shape[-1] == \
        b.shape[-1] // 4
    model = Decoder(cfg)
    tokens = jnp.ones((2, 8), jnp.int32)
    f = jax.jit(lambda p: model.apply({"params": p}, tokens))
    np.testing.assert_allclose(f(placed), f(lp), rtol=1e-5, atol=1e-5)


def test_qlora_training_memory_below_full_fine_tuning():
    """Compiled train-step memory at a weight-dominated size (activations tiny)."""
    cfg = replace(GPT, n_layers=2, d_model=256, n_heads=4, vocab_size=64, max_len=8,
                  scan_unroll=1)
    params, axes = init_params(cfg, jax.random.PRNGKey(0))
    model = Decoder(cfg)
    batch = {"inputs": jnp.zeros((1, 8), jnp.int32), "targets": jnp.zeros((1, 8), jnp.int32)}
    tx = optax.adamw(1e-3)

    def total(params, trainable):
        state = TrainState.create(params, tx, trainable)
        step = make_train_step(causal_lm_loss(model), tx, trainable=trainable, donate=False)
        m = step.lower(state, batch).compile().memory_analysis()
        return m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes

    full = total(params, None)
    qlora = lora.init(quantize(params, linear_rules(), axes=axes, method="nf4", group=64),
                      lora.targets("all"), rank=8, axes=axes)
    assert total(qlora, lora.trainable) < full / 3


def test_bad_lora_input():
    tree = {"w": jnp.ones((8, 4)), "ids": jnp.ones((8, 4), jnp.int32), "v": jnp.ones(4)}
    with pytest.raises(TransformError, match="rank must be an integer from 1 to 4"):
        lora.init(tree, "w", rank=5)
    with pytest.raises(TransformError, match="not a float"):
        lora.init(tree, "ids")
    with pytest.raises(TransformError, match="LoRA applies to matrices"):
        lora.init(tree, "v")
    with pytest.raises(TransformError, match="matched no leaf"):
        lora.init(tree, lora.targets("attn"))


# --- QAT and BitNet -------------------------------------------------------------------------

def test_fake_quant_has_straight_through_gradients():
    w = jax.random.normal(jax.random.PRNGKey(0), (16, 4))
    c = jax.random.normal(jax.random.PRNGKey(1), (16, 4))
    for method in ("int4", "ternary"):
        g = jax.grad(lambda w: jnp.sum(fake_quant_weight(w, method) * c))(w)
        np.testing.assert_allclose(g, c, rtol=1e-6)
    q = fake_quant_weight(w, "int4")
    assert len(np.unique(np.round(np.asarray(q / (jnp.abs(w).max(0) / 7)), 4))) <= 15


def test_bitnet_model_runs_as_int8_times_ternary():
    """A model trained with model.quant=ternary computes, at inference, exactly what packed
    ternary weights with int8 absmax activations and int32 accumulation compute."""
    cfg = replace(GPT, quant="ternary")
    params = noisy_params(replace(cfg, quant="none"))
    _, axes = init_params(cfg, jax.random.PRNGKey(0))
    tokens = jax.random.randint(jax.random.PRNGKey(3), (2, 9), 0, cfg.vocab_size)
    fake = jax.jit(lambda p: Decoder(cfg).apply({"params": p}, tokens))(params)
    packed = quantize(params, linear_rules(), axes=axes, method="ternary", group="tensor",
                      act="dynamic")
    real = jax.jit(lambda p: Decoder(replace(cfg, quant="none")).apply({"params": p}, tokens))(
        packed)
    np.testing.assert_allclose(real, fake, rtol=2e-4, atol=2e-4)
    kernels = sum(x.size for p, x in jax.tree_util.tree_flatten_with_path(params)[0]
                  if "kernel" in str(p))
    q_bytes = sum(x.q.size for x in jax.tree_util.tree_leaves(
        packed, is_leaf=lambda x: hasattr(x, "q")) if hasattr(x, "q"))
    assert q_bytes * 4 == kernels  # 2 bits per weight
    assert tree_bytes(packed) < tree_bytes(params)
