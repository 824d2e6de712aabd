"""Weight quantization as a pytree -> pytree transform: int8, int4, NF4 and ternary leaves.

    qparams = quantize(params, [Rule("**/kernel", options={"method": "int4", "group": 64})])
    params  = dequantize(qparams)                       # plain float arrays again

A selected leaf becomes a `QArray`, a registered pytree whose arrays are

    q      (*lead, G, g / per_byte, *rest)  integer codes (int8, or uint8 holding 2 int4/NF4
                                            codes or 4 ternary codes per byte)
    scale  (*lead, G, 1, *rest)             float32 step (absmax or min-max or absmean)
    zero   (*lead, G, 1, *rest) | None      float zero point (asymmetric only)
    act_scale  (*lead,) | None              static W8A8: the calibrated input step

where the leaf's shape is (*lead, *in, *rest): `lead` stacked axes (nn.scan's `layers`), the `in`
axes a kernel contracts over (rule.n_in of them, flattened to K = G * g) and the remaining output
axes. Grouping runs along the contraction, so per-channel means one scale per output channel and
layer (g = K), per-group g elements along K share a scale, and per-tensor one scale per layer.
Because every array keeps the leading axes, nn.scan slices a QArray per layer like any
parameter, and the decoder dequantizes one layer at a time (models/layers.Dense calls
`dense_apply`). The QArray carries the logical names of its base leaf: the group axis takes the
name of the first contracted axis and the output axes keep theirs, so it shards like the base.

Methods (`method`, `symmetric`):
  int8  symmetric absmax codes in [-127, 127], or asymmetric min-max codes in [0, 255]
  int4  the same with 4 bits ([-7, 7] or [0, 15]), two codes per byte
  nf4   QLoRA's NormalFloat-4: 16 levels at normal quantiles, absmax-scaled, two per byte
  ternary  BitNet b1.58: {-1, 0, 1} times the absmean of the group, four codes per byte
The uniform methods round to the nearest level, so every element is within half a step of its
original value (tested).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxllm.transforms.select import (Rule, TransformError, check_float, is_transformed,
                                     lead_axes, map_selected)

METHODS = ("int8", "int4", "nf4", "ternary")
BITS = {"int8": 8, "int4": 4, "nf4": 4, "ternary": 2}
ACT_MODES = ("none", "dynamic", "static")

# QLoRA (Dettmers et al. 2023), appendix E: quantiles of N(0, 1), normalised to [-1, 1], with an
# exact zero; 8 positive and 7 negative levels. tests/test_transforms_quantize.py rebuilds them.
NF4_LEVELS = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0], dtype=np.float32)


@partial(jax.tree_util.register_dataclass,
         data_fields=["q", "scale", "zero", "act_scale"],
         meta_fields=["method", "in_shape", "out_shape", "group", "names", "dtype", "act"])
@dataclass(frozen=True)
class QArray:
    q: jax.Array
    scale: jax.Array
    zero: jax.Array | None
    act_scale: jax.Array | None
    method: str
    in_shape: tuple  # sizes of the contracted axes (flattened to K)
    out_shape: tuple  # sizes of the axes after them
    group: int  # g: elements of K sharing one scale
    names: tuple  # logical axis names of the base leaf (full shape, stacked axes included)
    dtype: str  # the base leaf's dtype
    act: str = "none"  # activations: "none" (weight-only), "dynamic" or "static" int8

    # --- shape bookkeeping (valid before and after nn.scan slices the leading axes) ----------
    @property
    def n_lead(self) -> int:
        return self.q.ndim - 2 - len(self.out_shape)

    @property
    def shape(self) -> tuple:
        return (*self.q.shape[:self.n_lead], *self.in_shape, *self.out_shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def symmetric(self) -> bool:
        return self.zero is None

    def codes(self) -> jax.Array:
        """Integer codes unpacked to int32, shape (*lead, G, g, *rest)."""
        a = self.n_lead + 1
        if self.method == "int8":
            return self.q.astype(jnp.int32)
        bits = BITS[self.method]
        per = 8 // bits
        shifts = (jnp.arange(per, dtype=jnp.uint8) * bits).reshape(
            (per,) + (1,) * (self.q.ndim - a - 1))
        parts = (jnp.expand_dims(self.q, a + 1) >> shifts) & ((1 << bits) - 1)  # (.., g/per, per, ..)
        codes = parts.reshape(*self.q.shape[:a], self.q.shape[a] * per, *self.q.shape[a + 1:])
        codes = codes.astype(jnp.int32)
        if self.method == "ternary":
            return codes - 1
        if self.method == "int4" and self.symmetric:
            return codes - 8
        return codes  # nf4: index into the levels; asymmetric int4: 0..15

    def dequantize(self, dtype=None) -> jax.Array:
        """The float array this QArray stands for, in `dtype` (default: the base leaf's)."""
        c = self.codes()
        v = jnp.asarray(NF4_LEVELS)[c] if self.method == "nf4" else c.astype(jnp.float32)
        if self.zero is not None:
            v = v - self.zero
        w = (v * self.scale).reshape(self.shape)
        return w.astype(dtype or self.dtype)

    def take(self, indices) -> "QArray":
        """The rows `indices` of the first stacked axis (an embedding table quantized per row,
        lead=1): gathers only those rows' codes and steps, so a lookup dequantizes B x T rows
        rather than the whole table. indices (*I) -> a QArray of shape (*I, *in, *out)."""
        if self.n_lead < 1:
            raise TransformError("QArray.take needs a leading (row) axis; quantize the table "
                                 "with Rule(..., lead=1)")
        return jax.tree_util.tree_map(lambda a: jnp.take(a, indices, axis=0), self)

    # --- use inside a model ---------------------------------------------------------------------
    def dense_apply(self, x, dtype, module=None):
        """x (M, K) -> x @ W (M, N), for layers.Dense. Weight-only: dequantize this layer's
        kernel and run a float matmul. W8A8: int8 activations x int8 (or ternary) codes with
        int32 accumulation, rescaled by the activation and weight steps."""
        K = x.shape[-1]  # the Dense's contraction (in_shape may cover more under group="tensor")
        if self.act == "none":
            # Under jax.checkpoint, a backward pass (QLoRA training) recomputes this layer's
            # float weights from the codes instead of keeping them: memory stays at the codes.
            return jax.checkpoint(
                lambda x, qa: jnp.dot(x.astype(dtype), qa.dequantize(dtype).reshape(K, -1)),
                policy=jax.checkpoint_policies.nothing_saveable)(x, self)
        w = self.codes().reshape(K, -1).astype(jnp.int8)  # (K, N)
        w_scale = self.scale.reshape(1, -1)  # (1, N) per channel, or (1, 1) per tensor
        xf = x.astype(jnp.float32)
        if self.act == "static":
            x_scale = self.act_scale.astype(jnp.float32)  # ()
        else:  # dynamic: one step per row (token), from its absmax
            x_scale = jnp.max(jnp.abs(xf), axis=-1, keepdims=True) / 127.0  # (M, 1)
        x_scale = jnp.maximum(x_scale, 1e-12)
        xq = jnp.clip(jnp.round(xf / x_scale), -127, 127).astype(jnp.int8)  # (M, K)
        acc = jax.lax.dot_general(xq, w, (((1,), (0,)), ((), ())),
                                  preferred_element_type=jnp.int32)  # (M, N) int32
        return (acc.astype(jnp.float32) * x_scale * w_scale).astype(dtype)

    def logical_axes(self):
        """PartitionSpecs of logical names for (q, scale, zero, act_scale), in a QArray."""
        P = jax.sharding.PartitionSpec
        n_lead = len(self.names) - len(self.in_shape) - len(self.out_shape)
        lead = self.names[:n_lead]
        rest = self.names[n_lead + len(self.in_shape):]
        # The contraction is split into G groups of g: the group axis takes the first input
        # axis's name when there are several groups, else (per channel / tensor) the
        # within-group axis does, which then is the whole contraction, laid out as in the base.
        first = self.names[n_lead]
        grouped = self.q.shape[self.n_lead] > 1
        spec = P(*lead, first if grouped else None, None if grouped else first, *rest)
        step = P(*lead, first if grouped else None, None, *rest)
        return dataclasses.replace(self, q=spec, scale=step,
                                   zero=None if self.zero is None else step,
                                   act_scale=None if self.act_scale is None else P(*lead))


def nbytes(x) -> int:
    return sum(a.size * a.dtype.itemsize for a in jax.tree_util.tree_leaves(x))


# ---------------------------------------------------------------------------------------------
# Quantizing one array.

def quantize_array(w, *, method: str = "int8", group="channel", symmetric: bool = True,
                   n_in: int = 1, lead: int = 0, names=None, path: str = "array") -> QArray:
    """Quantize one float array of shape (*lead, *in, *rest) (see the module docstring).

    group: "channel" (one scale per output channel), "tensor" (one per stacked copy), or an int g
    dividing the flattened contraction size K.
    """
    if method not in METHODS:
        raise TransformError(f"{path}: unknown quantization method {method!r}; choose one of "
                             f"{', '.join(METHODS)}")
    check_float(path, w, "quantize")
    shape = tuple(w.shape)
    if lead + n_in > len(shape) or n_in < 1:
        raise TransformError(f"{path}: shape {shape} has no {n_in} input axes after {lead} "
                             f"stacked axes; set the rule's n_in/lead to fit")
    if group == "tensor":
        n_in_eff = len(shape) - lead  # every non-stacked axis shares the step
    else:
        n_in_eff = n_in
    in_shape, out_shape = shape[lead:lead + n_in_eff], shape[lead + n_in_eff:]
    K = math.prod(in_shape)
    g = K if group in ("channel", "tensor") else group
    if not isinstance(g, int) or isinstance(g, bool) or g < 1:
        raise TransformError(f"{path}: group={group!r}; use 'channel', 'tensor' or a positive int")
    if K % g:
        raise TransformError(f"{path}: contraction size {K} (shape {shape}) is not divisible by "
                             f"group size {g}; choose a group that divides {K}")
    per = 8 // BITS[method]
    if g % per:
        raise TransformError(f"{path}: {method} packs {per} codes per byte, so the group size "
                             f"must be a multiple of {per}, not {g}")
    if method in ("nf4", "ternary") and not symmetric:
        raise TransformError(f"{path}: {method} is symmetric by construction; drop symmetric=False")
    q, scale, zero = _quantize_groups(jnp.asarray(w), method=method, symmetric=symmetric,
                                      lead=lead, G=K // g, g=g, out_shape=out_shape)
    names = tuple(names) if names is not None else (None,) * len(shape)
    return QArray(q=q, scale=scale, zero=zero, act_scale=None, method=method,
                  in_shape=in_shape, out_shape=out_shape, group=g, names=names,
                  dtype=jnp.dtype(w.dtype).name)


@partial(jax.jit, static_argnames=("method", "symmetric", "lead", "G", "g", "out_shape"))
def _quantize_groups(w, *, method: str, symmetric: bool, lead: int, G: int, g: int,
                     out_shape: tuple):
    """(packed codes, float32 steps, zero points or None) of w, checked by quantize_array; one
    compiled program per shape and method rather than a dispatch per operation."""
    x = w.astype(jnp.float32).reshape(*w.shape[:lead], G, g, *out_shape)
    a = lead + 1  # the within-group axis
    zero = None
    if method in ("int8", "int4"):
        bits = BITS[method]
        if symmetric:
            qmax = 2 ** (bits - 1) - 1
            scale = jnp.max(jnp.abs(x), axis=a, keepdims=True) / qmax
            scale = jnp.where(scale > 0, scale, 1.0)
            codes = jnp.clip(jnp.round(x / scale), -qmax, qmax).astype(jnp.int32)
            stored = codes if method == "int8" else codes + 8
        else:
            levels = 2 ** bits - 1
            lo, hi = jnp.min(x, axis=a, keepdims=True), jnp.max(x, axis=a, keepdims=True)
            scale = (hi - lo) / levels
            scale = jnp.where(scale > 0, scale, 1.0)
            zero = -lo / scale  # float zero point: w = (code - zero) * scale
            stored = jnp.clip(jnp.round(x / scale + zero), 0, levels).astype(jnp.int32)
    elif method == "nf4":
        scale = jnp.max(jnp.abs(x), axis=a, keepdims=True)
        scale = jnp.where(scale > 0, scale, 1.0)
        levels = jnp.asarray(NF4_LEVELS)
        # nearest level: compare with the midpoints between consecutive levels
        mids = (levels[1:] + levels[:-1]) / 2
        stored = jnp.searchsorted(mids, (x / scale).reshape(-1)).reshape(x.shape).astype(jnp.int32)
    else:  # ternary (BitNet b1.58): absmean step, round and clip to {-1, 0, 1}
        scale = jnp.mean(jnp.abs(x), axis=a, keepdims=True)
        scale = jnp.where(scale > 0, scale, 1.0)
        stored = jnp.clip(jnp.round(x / scale), -1, 1).astype(jnp.int32) + 1
    return _pack(stored, a, method, symmetric), scale.astype(jnp.float32), zero


def _pack(codes, axis: int, method: str, symmetric: bool = True):
    """Codes (int32) -> int8 (symmetric int8), uint8 (asymmetric int8), or uint8 holding 8/bits
    non-negative codes per byte along `axis`."""
    if method == "int8":
        return codes.astype(jnp.int8 if symmetric else jnp.uint8)
    bits = BITS[method]
    per = 8 // bits
    shape = codes.shape
    c = codes.astype(jnp.uint8).reshape(*shape[:axis], shape[axis] // per, per, *shape[axis + 1:])
    shifts = (jnp.arange(per, dtype=jnp.uint8) * bits).reshape((per,) + (1,) * (len(shape) - axis - 1))
    return jnp.sum(c << shifts, axis=axis + 1, dtype=jnp.uint8)


# ---------------------------------------------------------------------------------------------
# The tree transforms.

def quantize(tree, rules="**/kernel", *, axes=None, method: str = "int8", group="channel",
             symmetric: bool = True, act: str = "none"):
    """Quantize the leaves the rules select; every other leaf is kept as it is.

    rules: Rule(s) or glob(s); a rule's options (method, group, symmetric, act) override the
    keyword defaults for the leaves it claims. axes: the tree's logical axis names (a tree of
    PartitionSpecs, like jaxllm's init_params returns), used to find stacked axes and to name the
    new arrays. act: "none" (weight-only), "dynamic" or "static" (W8A8; calibrate() fills the
    static activation steps).
    """
    def one(path, leaf, rule: Rule, names):
        if is_transformed(leaf):
            raise TransformError(f"quantize: leaf {path!r} is already transformed "
                                 f"({type(leaf).__name__}); quantize before adding LoRA")
        o = {"method": method, "group": group, "symmetric": symmetric, "act": act, **rule.options}
        unknown = set(o) - {"method", "group", "symmetric", "act"}
        if unknown:
            raise TransformError(f"quantize: rule {rule.describe()} has unknown option(s) "
                                 f"{sorted(unknown)}; use method, group, symmetric, act")
        if o["act"] not in ACT_MODES:
            raise TransformError(f"quantize: act={o['act']!r}; choose one of {', '.join(ACT_MODES)}")
        qa = quantize_array(leaf, method=o["method"], group=o["group"], symmetric=o["symmetric"],
                            n_in=rule.n_in, lead=lead_axes(rule, names), names=names, path=path)
        if o["act"] != "none":
            if o["method"] not in ("int8", "ternary") or not qa.symmetric or qa.q.shape[
                    qa.n_lead] != 1:
                raise TransformError(f"quantize: {path!r}: act={o['act']} (integer matmuls) "
                                     f"needs a symmetric int8 or ternary weight with one step "
                                     f"per output channel (group='channel' or 'tensor')")
            # static: a step of 1 per stacked copy until apply_calibration sets the real ones
            act_scale = jnp.ones(qa.q.shape[:qa.n_lead], jnp.float32) if o["act"] == "static" \
                else None
            qa = dataclasses.replace(qa, act=o["act"], act_scale=act_scale)
        return qa

    return map_selected(one, tree, rules, axes=axes, what="quantize")


def dequantize(tree, dtype=None):
    """Replace every QArray of a tree by the float array it stands for."""
    name = None if dtype is None else jnp.dtype(dtype).name
    return jax.tree_util.tree_map(
        lambda x: _dequantize_one(x, dtype=name) if isinstance(x, QArray) else x, tree,
        is_leaf=lambda x: isinstance(x, QArray))


@partial(jax.jit, static_argnames="dtype")
def _dequantize_one(qa: QArray, dtype):
    """QArray.dequantize as one compiled program (called eagerly, the unpacking would dispatch
    one small program per operation)."""
    return qa.dequantize(dtype)


def with_act(tree, act: str):
    """The tree with every QArray's activation mode set ("none", "dynamic", "static")."""
    if act not in ACT_MODES:
        raise TransformError(f"act={act!r}; choose one of {', '.join(ACT_MODES)}")
    return jax.tree_util.tree_map(
        lambda x: dataclasses.replace(x, act=act) if isinstance(x, QArray) else x, tree,
        is_leaf=lambda x: isinstance(x, QArray))
