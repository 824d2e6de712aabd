"""Path rules and quantization: selection semantics, the round-trip error bound (hypothesis),
packing, the NF4 levels rebuilt from normal quantiles, weight-only inference in the scanned
decoder (equal to the float model on the dequantized weights), W8A8 integer matmuls against a
numpy reference, sharding of quantized leaves on 8 devices, peak memory falling with the bits."""

from dataclasses import replace
from statistics import NormalDist

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from helpers import GPT, LLAMA, noisy_params
from jaxllm.models.decoder import Decoder, init_params
from jaxllm.transforms import (QArray, Rule, TransformError, apply_calibration, calibrate,
                               dequantize, linear_rules, logical_axes, quantize, tree_bytes)
from jaxllm.transforms.quantize import NF4_LEVELS, quantize_array
from jaxllm.transforms.select import glob_to_regex, map_selected
from reference_quantize import quantize_uniform


# --- rules ------------------------------------------------------------------------------------

def test_glob_semantics():
    assert glob_to_regex("**/kernel") and __import__("re").fullmatch(glob_to_regex("**/kernel"),
                                                                     "kernel")
    rx = __import__("re")
    assert rx.fullmatch(glob_to_regex("**/kernel"), "blocks/attn/query/kernel")
    assert rx.fullmatch(glob_to_regex("*/kernel"), "head/kernel")
    assert not rx.fullmatch(glob_to_regex("*/kernel"), "blocks/attn/kernel")
    assert not rx.fullmatch(glob_to_regex("**/kernel"), "blocks/attn/kernel_x")


def test_first_rule_claims_a_leaf_and_conditions_apply():
    tree = {"enc": {"w": jnp.ones((4, 8)), "b": jnp.ones(8), "ids": jnp.ones((4, 8), jnp.int32)},
            "out": {"w": jnp.ones((8, 2))}}
    seen = {}
    map_selected(lambda p, x, r, n: seen.setdefault(p, r.options["tag"]) and x, tree,
                 [Rule("enc/*", min_ndim=2, dtypes="float", options={"tag": 1}),
                  Rule(regex=r".*/w", options={"tag": 2})])
    assert seen == {"enc/w": 1, "out/w": 2}


def test_rule_matching_nothing_is_an_error():
    tree = {"w": jnp.ones((4, 4))}
    with pytest.raises(TransformError, match="matched no leaf"):
        quantize(tree, [Rule("w"), Rule("**/nothing")])
    with pytest.raises(TransformError, match="matched no leaf"):
        quantize(tree, [Rule("**"), Rule("w")])  # the first rule claims w


# --- round trip ---------------------------------------------------------------------------------

@jax.jit
def codes_and_values(qa):
    """A QArray's unpacked codes and dequantized values, one compiled program per QArray kind
    (eagerly, each unpacking operation would compile for every drawn shape and method)."""
    return qa.codes(), qa.dequantize()


def _per_element(qa, a, lead):
    """A QArray's steps or zero points (*lead, G, 1, *rest) repeated over the g elements of
    each group: the leaf's shape."""
    return np.repeat(np.asarray(a), qa.group, axis=lead + 1).reshape(qa.shape)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from(["int8", "int4"]), st.booleans(),
       st.sampled_from(["channel", "tensor", 4, 8]),
       st.sampled_from([((16, 3), 0), ((8, 2, 5), 0), ((2, 8, 4), 1)]), st.floats(1e-3, 1e3))
def test_uniform_quantization_equals_numpy_quantizer(seed, method, symmetric, group, shape_lead,
                                                      scale):
    """Codes, steps and zero points against tests/reference_quantize.py, int8/int4, symmetric
    or not, per tensor/channel/group, with and without a stacked (layers) axis."""
    shape, lead = shape_lead
    w = scale * np.random.default_rng(seed).standard_t(3, size=shape).astype(np.float32)
    qa = quantize_array(jnp.asarray(w), method=method, group=group, symmetric=symmetric,
                        lead=lead)
    codes, steps, zeros, deq = quantize_uniform(w, method, symmetric, group, lead)
    np.testing.assert_allclose(_per_element(qa, qa.scale, lead), steps, rtol=1e-6)
    assert (qa.zero is None) == symmetric
    if not symmetric:
        np.testing.assert_allclose(_per_element(qa, qa.zero, lead), zeros, rtol=1e-5, atol=1e-5)
    # codes are equal except on a rounding tie, where float32 operation order may pick the
    # other neighbour
    exact = w.astype(np.float64) / steps + (0 if zeros is None else zeros)
    tie = np.abs(np.abs(exact - np.floor(exact)) - 0.5) < 1e-3
    got, back = map(np.asarray, codes_and_values(qa))
    got = got.reshape(w.shape)
    np.testing.assert_array_equal(got[~tie], codes[~tie])
    assert np.all(np.abs(got - codes) <= 1)
    assert np.all(np.abs(back - deq)[~tie] <= 1e-4 * steps[~tie])
    assert np.all(np.abs(back - w) <= steps / 2 * (1 + 1e-5) + 1e-30)  # the reference's step
    bits = {"int8": 8, "int4": 4}[method]
    assert qa.q.size * qa.q.dtype.itemsize == w.size * bits // 8  # packed


def test_nf4_levels_are_normal_quantiles():
    # QLoRA's construction: 8 positive quantiles and 7 negative ones of N(0, 1), plus zero
    offset = 0.9677083
    inv = NormalDist().inv_cdf
    pos = [inv(offset + (0.5 - offset) * i / 8) for i in range(8)]
    neg = [-inv(offset + (0.5 - offset) * i / 7) for i in range(7)]
    levels = np.sort(np.array(pos + [0.0] + neg))
    levels /= levels.max()
    np.testing.assert_allclose(NF4_LEVELS, levels, atol=2e-6)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([8, 16, "channel"]))
def test_nf4_and_ternary_round_trip(seed, group):
    w = np.random.default_rng(seed).normal(size=(32, 6)).astype(np.float32)
    qa = quantize_array(jnp.asarray(w), method="nf4", group=group)
    g = qa.group
    absmax = np.abs(w.reshape(-1, g, 6)).max(axis=1, keepdims=True)
    x = (w.reshape(-1, g, 6) / absmax)
    nearest = NF4_LEVELS[np.abs(x[..., None] - NF4_LEVELS).argmin(-1)]  # nearest level, numpy
    np.testing.assert_allclose(np.asarray(codes_and_values(qa)[1]),
                               (nearest * absmax).reshape(w.shape), rtol=1e-6, atol=1e-7)
    assert qa.q.size == w.size // 2
    t = quantize_array(jnp.asarray(w), method="ternary", group=group)
    codes, values = map(np.asarray, codes_and_values(t))
    codes = codes.reshape(w.shape)
    assert set(np.unique(codes)) <= {-1, 0, 1} and t.q.size == w.size // 4
    step = np.abs(w.reshape(-1, g, 6)).mean(axis=1, keepdims=True)
    expect = np.clip(np.round(w.reshape(-1, g, 6) / step), -1, 1) * step
    np.testing.assert_allclose(values, expect.reshape(w.shape), rtol=1e-6)


# --- inside the decoder -----------------------------------------------------------------------

@pytest.mark.parametrize("name,methods", [("gpt", [("int8", "channel"), ("nf4", 16)]),
                                          ("llama", [("int4", 16), ("ternary", "tensor")])])
def test_weight_only_decoder_equals_float_model_on_dequantized_weights(name, methods):
    cfg = {"gpt": GPT, "llama": LLAMA}[name]
    params = noisy_params(cfg)
    _, axes = init_params(cfg, jax.random.PRNGKey(0))
    model = Decoder(cfg)
    forward = jax.jit(lambda p, t: model.apply({"params": p}, t))
    tokens = jax.random.randint(jax.random.PRNGKey(3), (2, 9), 0, cfg.vocab_size)
    for method, group in methods:
        qp = quantize(params, linear_rules(), axes=axes, method=method, group=group)
        np.testing.assert_allclose(forward(qp, tokens), forward(dequantize(qp), tokens),
                                   rtol=1e-5, atol=1e-5)
    assert tree_bytes(quantize(params, linear_rules(), axes=axes, method="int4", group=16)) < \
        tree_bytes(quantize(params, linear_rules(), axes=axes)) < tree_bytes(params)


def test_quantized_embedding_is_per_row_and_runs_in_the_decoder():
    # GPT ties the embedding (lookup and output head); embed=true quantizes it per vocabulary
    # row, and the decoder (gathering rows' codes, dequantizing the table for the head) equals
    # the float model on the dequantized weights.
    from jaxllm.transforms import apply_weights_spec

    params = noisy_params(GPT)
    _, axes = init_params(GPT, jax.random.PRNGKey(0))
    spec, group = "method=int4,group=16,embed=true", 16
    qp = apply_weights_spec(params, spec, axes)
    emb, table = qp["embed"]["embedding"], params["embed"]["embedding"]  # table (V, D)
    assert isinstance(emb, QArray) and emb.shape == table.shape
    assert emb.scale.shape == (GPT.vocab_size, GPT.d_model // group, 1)  # steps per row, group
    chan = apply_weights_spec(params, "method=int8,embed=true", axes)["embed"]["embedding"]
    assert chan.scale.shape == (GPT.vocab_size, 1, 1)  # "channel": one step per vocabulary row
    step = np.repeat(np.asarray(emb.scale)[:, :, 0], group, axis=1)  # (V, D)
    assert np.all(np.abs(np.asarray(emb.dequantize()) - table) <= step / 2 + 1e-6)
    ids = jnp.array([[3, 0], [36, 3]])
    rows = emb.take(ids)  # only those rows' codes are gathered
    np.testing.assert_array_equal(rows.dequantize(), np.asarray(emb.dequantize())[np.asarray(ids)])
    forward = jax.jit(lambda p, t: Decoder(GPT).apply({"params": p}, t))
    tokens = jax.random.randint(jax.random.PRNGKey(3), (2, 9), 0, GPT.vocab_size)
    np.testing.assert_allclose(forward(qp, tokens), forward(dequantize(qp), tokens),
                               rtol=1e-5, atol=1e-5)
    without = apply_weights_spec(params, spec.replace(",embed=true", ""), axes)
    assert not isinstance(without["embed"]["embedding"], QArray)  # the default keeps it float
    assert tree_bytes(qp) < tree_bytes(without)


def _np_w8a8(x, w, per_row_scale):
    """numpy reference: int8 rows x int8 per-column codes, int32 accumulate, rescale."""
    w_scale = np.abs(w).max(axis=0) / 127
    wq = np.clip(np.round(w / w_scale), -127, 127).astype(np.int32)
    xq = np.clip(np.round(x / per_row_scale), -127, 127).astype(np.int32)
    return (xq @ wq).astype(np.float32) * per_row_scale * w_scale


def test_w8a8_dynamic_and_static_match_integer_reference():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 24)).astype(np.float32)
    w = rng.normal(size=(24, 7)).astype(np.float32)
    qa = quantize_array(jnp.asarray(w), method="int8")
    dyn = replace(qa, act="dynamic")
    got = np.asarray(dyn.dense_apply(jnp.asarray(x), jnp.float32))
    row = np.abs(x).max(axis=1, keepdims=True) / 127
    np.testing.assert_allclose(got, _np_w8a8(x, w, row), rtol=1e-5, atol=1e-5)
    static = replace(qa, act="static", act_scale=jnp.float32(1.5 / 127))
    got = np.asarray(static.dense_apply(jnp.asarray(x), jnp.float32))
    np.testing.assert_allclose(got, _np_w8a8(x, w, np.float32(1.5 / 127)), rtol=1e-5, atol=1e-5)
    hlo = jax.jit(lambda x: dyn.dense_apply(x, jnp.float32)).lower(x).as_text()
    assert "i8" in hlo and "i32" in hlo  # an int8 x int8 -> int32 dot


def test_static_calibration_in_the_decoder():
    cfg = GPT
    params = noisy_params(cfg)
    _, axes = init_params(cfg, jax.random.PRNGKey(0))
    model = Decoder(cfg)
    tokens = jax.random.randint(jax.random.PRNGKey(3), (4, 16), 0, cfg.vocab_size)
    qp = quantize(params, linear_rules(), axes=axes, act="dynamic")
    ranges = calibrate(model, qp, [tokens[:2], tokens[2:]])
    assert ranges["blocks/mlp/down/kernel"].shape == (cfg.n_layers,)
    # min-max calibration on the same data: every input is representable, so the static model
    # stays close to the float one
    static = apply_calibration(qp, ranges)
    forward = jax.jit(lambda p, t: model.apply({"params": p}, t))
    ref = forward(params, tokens)
    got = forward(static, tokens)
    assert float(jnp.max(jnp.abs(got - ref))) < 0.05 * float(jnp.max(jnp.abs(ref)))
    pct = calibrate(model, qp, [tokens], method="percentile")
    assert all(np.all(pct[k] <= ranges[k] + 1e-6) for k in ranges)


# --- sharding and memory ----------------------------------------------------------------------

# A test-local logical -> mesh table (jaxllm.parallel owns the real one).
MESH_RULES = {"mlp": "model", "heads": "model", "kv_heads": "model", "vocab": "model"}


def shardings(mesh, specs):
    P = jax.sharding.PartitionSpec
    return jax.tree_util.tree_map(
        lambda s: jax.sharding.NamedSharding(mesh, P(*(MESH_RULES.get(n) for n in s))), specs,
        is_leaf=lambda s: isinstance(s, P))


def test_quantized_leaves_shard_like_their_base_on_8_devices():
    cfg = replace(GPT, n_heads=4, d_model=32, vocab_size=40)
    params = noisy_params(cfg)
    _, axes = init_params(cfg, jax.random.PRNGKey(0))
    qp = quantize(params, [Rule("**/mlp/down/kernel", options={"method": "int8", "group": "channel"}),
                           Rule("**/attn/out/kernel", n_in=2), Rule("**/kernel")],
                  axes=axes, method="int4", group=8)
    specs = logical_axes(qp)
    up = qp["blocks"]["mlp"]["up"]["kernel"]
    # (layers, G, g/2, mlp): the group axis is named after `embed`, the output keeps `mlp`
    assert tuple(specs["blocks"]["mlp"]["up"]["kernel"].q) == ("layers", "embed", None, "mlp")
    # per channel: (layers, 1, K, embed), the contraction keeps the name `mlp`
    assert tuple(specs["blocks"]["mlp"]["down"]["kernel"].q) == ("layers", None, "mlp", "embed")
    assert tuple(specs["blocks"]["mlp"]["down"]["kernel"].scale) == ("layers", None, None, "embed")
    mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    placed = jax.device_put(qp, shardings(mesh, specs))
    q = placed["blocks"]["mlp"]["up"]["kernel"].q
    assert q.sharding.spec[-1] == "model" and len(q.addressable_shards) == 8
    assert q.addressable_shards[0].data.shape == (cfg.n_layers, up.q.shape[1], up.q.shape[2],
                                                  up.q.shape[3] // 4)
    tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 8), 0, cfg.vocab_size)
    model = Decoder(cfg)
    got = jax.jit(lambda p, t: model.apply({"params": p}, t))(placed, tokens)
    down = placed["blocks"]["mlp"]["down"]["kernel"].q
    assert down.sharding.spec[2] == "model"  # sharded along its contraction, as its base
    np.testing.assert_allclose(got, jax.jit(lambda p, t: model.apply({"params": p}, t))(qp, tokens),
                               rtol=1e-5, atol=1e-5)


def test_peak_memory_falls_with_bit_width():
    """Weight-only inference keeps codes in memory and dequantizes one layer per scan step."""
    cfg = replace(GPT, n_layers=4, d_model=64, n_heads=4, scan_unroll=1)
    params, axes = init_params(cfg, jax.random.PRNGKey(0))
    model = Decoder(cfg)
    tokens = jnp.zeros((1, 8), jnp.int32)
    sizes = []
    for method in [None, "int8", "int4"]:
        p = params if method is None else quantize(params, linear_rules(), axes=axes,
                                                   method=method, group=32)
        mem = jax.jit(lambda p, t: model.apply({"params": p}, t)).lower(p, tokens).compile() \
            .memory_analysis()
        sizes.append(mem.argument_size_in_bytes + mem.temp_size_in_bytes)
    assert sizes[0] > sizes[1] > sizes[2]


# --- bad input ----------------------------------------------------------------------------------

def test_bad_quantization_input():
    tree = {"w": jnp.ones((12, 4)), "ids": jnp.ones((4, 4), jnp.int32)}
    with pytest.raises(TransformError, match="not a float"):
        quantize(tree, "**")
    with pytest.raises(TransformError, match="not divisible by group size 8"):
        quantize(tree, "w", group=8, method="int8")
    with pytest.raises(TransformError, match="unknown quantization method 'int3'"):
        quantize(tree, "w", method="int3")
    with pytest.raises(TransformError, match="multiple of 4"):
        quantize(tree, "w", method="ternary", group=6)
    with pytest.raises(TransformError, match="integer matmuls"):
        quantize(tree, "w", method="int4", act="dynamic", group=4)
