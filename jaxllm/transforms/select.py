"""Path rules: the one way every transform (quantize, LoRA, QAT) chooses the leaves it touches.

A leaf's path is its dict keys joined by "/", e.g. "blocks/attn/query/kernel" in jaxllm params
or "encoder/layer_0/w" in anyone's plain dict. A `Rule` matches a path by glob (`*` stays within
one path part, `**` crosses parts) or by regular expression, plus optional conditions on the
leaf's shape and dtype, and carries the settings its transform reads (bits, group size, rank,
alpha, ...). The first rule that matches a leaf claims it; a rule that claims no leaf is an
error, since a silently ignored rule is a transform that silently did nothing.

    rules = [Rule("**/attn/out/kernel", n_in=2), Rule("**/kernel")]
    for path, leaf, rule in select(params, rules): ...

Leading stacked axes (the `layers` axis nn.scan adds) are found from the logical axis names when
the caller passes them (`axes=`, the second value of jaxllm's init_params), or from the rule's
`lead` setting for a plain dict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp

from jaxllm.errors import JaxllmError


class TransformError(JaxllmError, ValueError):
    """A transform asked of leaves it cannot apply to (rule, dtype, shape, method, rank)."""


STACKED_AXES = ("layers",)  # logical names of leading axes that hold copies of a layer


@dataclass(frozen=True)
class Rule:
    """Which leaves a transform touches and with what settings.

    pattern: glob on the path ("**/kernel"); regex: a regular expression instead (full match).
    min_ndim / max_ndim / min_size: shape conditions; dtypes: dtype kinds accepted by the
    selection ("float" or None for any; a selected leaf of another kind is an error in the
    transform that gets it). n_in: how many axes (after the leading stacked ones) are the input
    (contraction) axes of a kernel; lead: leading stacked axes when no axis names are given
    (None: from the names, else 0). options: the transform's settings (bits, group, rank, ...).
    """
    pattern: str | None = None
    regex: str | None = None
    min_ndim: int = 0
    max_ndim: int | None = None
    min_size: int = 0
    dtypes: str | None = None
    n_in: int = 1
    lead: int | None = None
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        if (self.pattern is None) == (self.regex is None):
            raise TransformError("a Rule needs exactly one of pattern= (glob) or regex=")
        try:
            re.compile(self.regex if self.regex is not None else glob_to_regex(self.pattern))
        except re.error as e:
            raise TransformError(f"rule {self.describe()}: bad regular expression ({e})") from None

    def describe(self) -> str:
        return f"pattern={self.pattern!r}" if self.pattern is not None else f"regex={self.regex!r}"

    def matches(self, path: str, leaf) -> bool:
        rx = self.regex if self.regex is not None else glob_to_regex(self.pattern)
        if re.fullmatch(rx, path) is None:
            return False
        shape = getattr(leaf, "shape", ())
        if len(shape) < self.min_ndim or (self.max_ndim is not None and len(shape) > self.max_ndim):
            return False
        size = 1
        for s in shape:
            size *= s
        if size < self.min_size:
            return False
        if self.dtypes == "float" and not jnp.issubdtype(getattr(leaf, "dtype", None), jnp.floating):
            return False
        return True


def glob_to_regex(pattern: str) -> str:
    """'**' matches across '/', '*' within one part, '?' one character; the rest is literal."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def path_str(path) -> str:
    """A tree path (from jax.tree_util) as "a/b/c"."""
    parts = []
    for k in path:
        if isinstance(k, jax.tree_util.DictKey):
            parts.append(str(k.key))
        elif isinstance(k, jax.tree_util.SequenceKey):
            parts.append(str(k.idx))
        elif isinstance(k, jax.tree_util.GetAttrKey):
            parts.append(k.name)
        else:
            parts.append(str(k))
    return "/".join(parts)


def as_rules(rules) -> list[Rule]:
    if isinstance(rules, (Rule, str)):
        rules = [rules]
    out = [Rule(r) if isinstance(r, str) else r for r in rules]
    if not out:
        raise TransformError("no rules given; pass at least one Rule (e.g. Rule('**/kernel'))")
    for r in out:
        if not isinstance(r, Rule):
            raise TransformError(f"rules must be Rule objects or glob strings, got {r!r}")
    return out


def is_transformed(x) -> bool:
    """True for the leaf types the transforms create (they are pytrees, not arrays)."""
    return hasattr(x, "dense_apply")


def map_selected(fn, tree, rules, *, axes=None, what: str = "transform"):
    """Apply fn(path, leaf, rule, names) to every leaf a rule claims; keep the rest.

    A transformed leaf (a QArray, a LoraArray) counts as one leaf here, so transforms compose.
    names is the leaf's tuple of logical axis names (None each when `axes` is not given). Raises
    TransformError naming every rule that claimed no leaf.
    """
    rules = as_rules(rules)
    claimed = [0] * len(rules)
    name_of = {}
    if axes is not None:
        for p, spec in jax.tree_util.tree_flatten_with_path(
                axes, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec) or x is None)[0]:
            name_of[path_str(p)] = tuple(spec) if spec is not None else None

    def visit(path, leaf):
        p = path_str(path)
        for i, rule in enumerate(rules):
            if rule.matches(p, leaf):
                claimed[i] += 1
                names = name_of.get(p)
                ndim = len(leaf.shape)
                if names is None or len(names) != ndim:
                    names = (None,) * ndim
                return fn(p, leaf, rule, names)
        return leaf

    out = jax.tree_util.tree_map_with_path(visit, tree, is_leaf=is_transformed)
    unused = [r.describe() for r, n in zip(rules, claimed) if n == 0]
    if unused:
        paths = [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(
            tree, is_leaf=is_transformed)[0]]
        sample = ", ".join(paths[:6]) + (", ..." if len(paths) > 6 else "")
        raise TransformError(f"{what}: rule(s) {', '.join(unused)} matched no leaf (earlier rules "
                             f"claim a leaf first); the tree's paths are: {sample}")
    return out


def lead_axes(rule: Rule, names: tuple) -> int:
    """How many leading axes of a leaf are stacked copies (nn.scan's `layers`)."""
    if rule.lead is not None:
        return rule.lead
    n = 0
    while n < len(names) and names[n] in STACKED_AXES:
        n += 1
    return n


def check_float(path: str, leaf, what: str) -> None:
    dtype = getattr(leaf, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise TransformError(f"{what}: leaf {path!r} has dtype {dtype}, not a float; narrow the "
                             f"rule (e.g. dtypes='float') so that it selects float weights only")


def tree_bytes(tree) -> int:
    """Bytes held by the arrays of a tree (quantized leaves count their packed storage)."""
    return sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(tree)
               if hasattr(x, "dtype"))


def logical_axes(tree) -> Any:
    """PartitionSpecs of logical names for every array of a tree: a transformed leaf gives the
    names of its inner arrays (from its base leaf's names); a plain array gets None per axis
    (use the model's own axis tree, e.g. init_params' second value, for those)."""
    P = jax.sharding.PartitionSpec

    def spec(x):
        if is_transformed(x):
            return x.logical_axes()
        return P(*((None,) * x.ndim))

    return jax.tree_util.tree_map(spec, tree, is_leaf=is_transformed)
