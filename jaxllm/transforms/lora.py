"""LoRA (Hu et al. 2021) and QLoRA (Dettmers et al. 2023) as pytree -> pytree transforms.

    lp = lora.init(params, lora.targets("attn"), rank=8, alpha=16, rng=key, axes=axes)
    ... train: only lora.trainable(lp) leaves get gradients and optimizer state ...
    merged = lora.merge(lp)                     # plain float params: W + (alpha/rank) A B
    base = lora.unmerge(merged, lp)             # the LoRA tree back from merged weights
    qlp = lora.init(quantize(params, rules, method="nf4", group=64), ...)   # QLoRA

A selected kernel W of shape (*lead, *in, *out) becomes a `LoraArray` holding the frozen base
(a float array, or a QArray for QLoRA) and two factors per stacked copy,

    lora_a  (*lead, K, r)   K = prod(in): random, uniform(+-1/sqrt(K)) as PEFT's Kaiming init
    lora_b  (*lead, r, N)   N = prod(out): zero, so the model starts exactly at the base

and the layer computes x W + (alpha / r) dropout(x) A B (models/layers.Dense -> dense_apply).
The factors carry the logical names of W's first input and first output axes, so they shard
like W. Rank and alpha can differ per rule (Rule options "rank", "alpha", "dropout").
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp

from jaxllm.transforms.select import (Rule, TransformError, check_float, is_transformed,
                                     lead_axes, map_selected, path_str)

TRAINABLE = ("lora_a", "lora_b")


@partial(jax.tree_util.register_dataclass, data_fields=["base", "lora_a", "lora_b"],
         meta_fields=["scale", "dropout", "names", "n_in"])
@dataclass(frozen=True)
class LoraArray:
    base: object  # (*lead, *in, *out) float array, or a QArray (QLoRA)
    lora_a: jax.Array  # (*lead, K, r)
    lora_b: jax.Array  # (*lead, r, N)
    scale: float  # alpha / rank
    dropout: float  # dropout rate on the LoRA branch's input (training only)
    names: tuple  # logical names of the base
    n_in: int  # input axes of the base after its stacked ones

    @property
    def shape(self):
        return tuple(self.base.shape)

    @property
    def rank(self) -> int:
        return self.lora_a.shape[-1]

    def delta(self):
        """(alpha/r) A B in the base's shape (float32)."""
        ab = jnp.einsum("...kr,...rn->...kn", self.lora_a.astype(jnp.float32),
                        self.lora_b.astype(jnp.float32)) * self.scale
        return ab.reshape(self.shape)

    def dense_apply(self, x, dtype, module=None):
        """x (M, K) -> x W + (alpha/r) dropout(x) A B, (M, N)."""
        if is_transformed(self.base):
            y = self.base.dense_apply(x, dtype, module)
        else:
            y = jnp.dot(x.astype(dtype), self.base.reshape(x.shape[-1], -1).astype(dtype))
        h = x
        if self.dropout > 0 and module is not None and module.has_rng("dropout"):
            keep = jax.random.bernoulli(module.make_rng("dropout"), 1 - self.dropout, h.shape)
            h = jnp.where(keep, h / (1 - self.dropout), 0)
        low = jnp.dot(h.astype(dtype), self.lora_a.astype(dtype))  # (M, r)
        return y + jnp.dot(low, self.lora_b.astype(dtype)) * jnp.asarray(self.scale, dtype)

    def logical_axes(self):
        P = jax.sharding.PartitionSpec
        n_lead = len(self.names) - (len(self.shape) - _lead_of(self))  # names: full shape
        lead = self.names[:n_lead]
        base = self.base.logical_axes() if is_transformed(self.base) else P(*self.names)
        return dataclasses.replace(
            self, base=base, lora_a=P(*lead, self.names[n_lead], None),
            lora_b=P(*lead, None, self.names[n_lead + self.n_in]))


def _lead_of(la: LoraArray) -> int:
    return la.lora_a.ndim - 2


# ---------------------------------------------------------------------------------------------

_ATTN = ("**/*attn/query/kernel", "**/*attn/key/kernel", "**/*attn/value/kernel")


def targets(name: str) -> list[Rule]:
    """Rules for the usual LoRA targets of jaxllm models: "attn" (query, key, value, out
    projections of self- and cross-attention: "*attn" also matches an encoder-decoder's
    cross_attn), "all" (every linear layer: attention, MLP and an untied head), or any other
    string as a regular expression on the path."""
    if name == "attn":
        return [Rule(p) for p in _ATTN] + [Rule("**/*attn/out/kernel", n_in=2)]
    if name == "all":
        return [Rule("**/*attn/out/kernel", n_in=2), Rule("**/kernel")]
    return [Rule(regex=name)]


def init(tree, rules, *, rank: int = 8, alpha: float = 16.0, rng=None, dropout: float = 0.0,
         axes=None):
    """Wrap every selected kernel in a LoraArray with fresh factors (B = 0: the function is
    unchanged). Rule options rank/alpha/dropout override the keyword defaults per rule."""
    rng = jax.random.PRNGKey(0) if rng is None else rng

    def one(path, leaf, rule: Rule, names):
        o = {"rank": rank, "alpha": alpha, "dropout": dropout, **rule.options}
        unknown = set(o) - {"rank", "alpha", "dropout"}
        if unknown:
            raise TransformError(f"lora: rule {rule.describe()} has unknown option(s) "
                                 f"{sorted(unknown)}; use rank, alpha, dropout")
        if isinstance(leaf, LoraArray):
            raise TransformError(f"lora: {path!r} already has LoRA factors")
        if not is_transformed(leaf):
            check_float(path, leaf, "lora")
        shape = tuple(leaf.shape)
        lead = lead_axes(rule, names)
        if lead + rule.n_in >= len(shape):
            raise TransformError(f"lora: {path!r} of shape {shape} has no input and output axes "
                                 f"after {lead} stacked axes (n_in={rule.n_in}); LoRA applies to "
                                 f"matrices")
        K = math.prod(shape[lead:lead + rule.n_in])
        N = math.prod(shape[lead + rule.n_in:])
        r = o["rank"]
        if not isinstance(r, int) or r < 1 or r > min(K, N):
            raise TransformError(f"lora: rank={r!r} for {path!r}, a {K} x {N} matrix; the rank "
                                 f"must be an integer from 1 to {min(K, N)}")
        if not 0 <= o["dropout"] < 1:
            raise TransformError(f"lora: dropout={o['dropout']!r}; must be in [0, 1)")
        key = jax.random.fold_in(rng, zlib.crc32(path.encode()) & 0x7FFFFFFF)
        bound = 1.0 / math.sqrt(K)
        a = jax.random.uniform(key, (*shape[:lead], K, r), jnp.float32, -bound, bound)
        b = jnp.zeros((*shape[:lead], r, N), jnp.float32)
        return LoraArray(base=leaf, lora_a=a, lora_b=b, scale=float(o["alpha"]) / r,
                         dropout=float(o["dropout"]), names=tuple(names), n_in=rule.n_in)

    return map_selected(one, tree, rules, axes=axes, what="lora")


def _is_lora(x) -> bool:
    return isinstance(x, LoraArray)


def trainable(tree):
    """A bool per array of the tree: True for LoRA factors (what LoRA training updates)."""
    return jax.tree_util.tree_map_with_path(
        lambda p, _: any(getattr(k, "name", None) in TRAINABLE for k in p), tree)


def merge(tree, dtype=None, *, float_export: bool = True):
    """Replace each LoraArray by W + (alpha/r) A B as a plain float array (a quantized base is
    dequantized first). float_export: also dequantize the quantized leaves without LoRA, so the
    result is a plain float checkpoint (QLoRA's merged export). One compiled program for the
    tree (called eagerly, the unpacking and products would dispatch one small program per
    operation and leaf shape)."""
    return _merge(tree, None if dtype is None else jnp.dtype(dtype).name, float_export)


@partial(jax.jit, static_argnums=(1, 2))
def _merge(tree, dtype, float_export: bool):
    def one(x):
        if not _is_lora(x):
            if float_export and is_transformed(x):
                return x.dequantize(dtype)
            return x
        base = x.base.dequantize(jnp.float32) if is_transformed(x.base) else x.base
        return (base.astype(jnp.float32) + x.delta()).astype(dtype or _dtype(x.base))
    return jax.tree_util.tree_map(one, tree, is_leaf=is_transformed)


def unmerge(merged, lora_tree):
    """The LoRA tree again, with each base recovered as merged - (alpha/r) A B."""
    flat_m = {path_str(p): v for p, v in jax.tree_util.tree_flatten_with_path(merged)[0]}

    def one(path, x):
        if not _is_lora(x):
            return x
        p = path_str(path)
        if p not in flat_m:
            raise TransformError(f"unmerge: the merged tree has no leaf {p!r}")
        w = flat_m[p]
        base = (w.astype(jnp.float32) - x.delta()).astype(w.dtype)
        return dataclasses.replace(x, base=base)

    out = jax.tree_util.tree_map_with_path(one, lora_tree, is_leaf=_is_lora)
    # leaves without LoRA come from the merged tree
    return jax.tree_util.tree_map_with_path(
        lambda p, x: x if _is_lora(x) else flat_m.get(path_str(p), x), out, is_leaf=_is_lora)


def _dtype(x):
    return jnp.dtype(x.dtype) if not is_transformed(x) else jnp.dtype(x.dtype)


def count(tree) -> dict:
    """Parameter counts: {"trainable": LoRA factor elements, "total": all elements}."""
    leaves = jax.tree_util.tree_leaves(tree)
    mask = jax.tree_util.tree_leaves(trainable(tree))
    return {"trainable": sum(x.size for x, m in zip(leaves, mask) if m),
            "total": sum(x.size for x in leaves)}
