"""Logical-axis rules: which mesh axes each logical parameter axis is split over.

Models name the axes of every parameter logically (`vocab`, `embed`, `mlp`, `heads`, `kv_heads`,
`kv`, `layers`, ...; see jaxllm/models/layers.py); they never name a mesh axis. A rule table maps
each logical name to a tuple of mesh axes (mesh.py), and a `Layout` (mesh + rules + ZeRO stage)
turns a tree of logical specs into `NamedSharding`s for parameters, gradients, optimizer state
and batches. A logical name without a rule (for example a transform's new `lora_rank`) is
replicated, so new leaves shard by construction as long as they reuse the base names.

The defaults express every strategy at once; axes of size 1 cost nothing:

    batch    -> (data, fsdp)   data parallel over both batch axes
    embed    -> (fsdp,)        FSDP: every parameter is split along its model dimension
    heads, kv_heads, mlp -> (tensor,)   Megatron: column-parallel q/k/v and up/gate kernels
                               (output dim split), row-parallel out/down kernels (input dim split)
    vocab    -> (tensor,)      vocabulary-parallel embedding and logits
    layers   -> (stage,)       pipeline: stage s holds a contiguous block of the scanned layers
    kv       -> ()             one head's size is never split

ZeRO along `data` (the `fsdp` axis is ZeRO-3 by construction): stage 1 also splits optimizer
state along `data`, stage 2 gradients as well (so XLA reduce-scatters them instead of
all-reducing), stage 3 parameters as well. The extra split goes on the `embed` dimension, the one
every kernel has; the few leaves without one (some biases) stay replicated along `data`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import jax
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxllm.errors import ConfigError
from jaxllm.parallel.mesh import AXES

DEFAULT_RULES: dict[str, tuple[str, ...]] = {
    "batch": ("data", "fsdp"),
    "embed": ("fsdp",),
    "heads": ("tensor",),
    "kv_heads": ("tensor",),
    "mlp": ("tensor",),
    "vocab": ("tensor",),
    "layers": ("stage",),
    "kv": (),
}
ZERO_AXIS, ZERO_DIM = "data", "embed"  # ZeRO splits the embed dimension along data


def parse_rules(text: str) -> dict[str, tuple[str, ...]]:
    """Rule overrides "embed=fsdp+data,vocab=" -> {"embed": ("fsdp", "data"), "vocab": ()}.

    Empty after "=" means replicated; "+" joins several mesh axes (split over their product).
    """
    out = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, eq, axes = part.partition("=")
        mesh_axes = tuple(a.strip() for a in axes.split("+") if a.strip())
        bad = [a for a in mesh_axes if a not in AXES]
        if not eq or not name.strip() or bad:
            raise ConfigError(f"parallel.rules: {part!r} is not LOGICAL=AXIS[+AXIS] with mesh "
                              f"axes from {', '.join(AXES)} (for example embed=fsdp+data,vocab=)")
        out[name.strip()] = mesh_axes
    return out


def _path_name(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
                    for k in path)


def _is_spec(x) -> bool:
    return isinstance(x, P)


@dataclass(frozen=True)
class Layout:
    """A mesh, its logical rules and a ZeRO stage: everything that decides a leaf's sharding."""
    mesh: Mesh
    rules: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_RULES))
    zero: int = 0  # 0-3: ZeRO stage along the data axis
    offload_optimizer: bool = False  # optimizer state in pinned host memory

    def __post_init__(self):
        if self.zero not in (0, 1, 2, 3):
            raise ConfigError(f"parallel.zero={self.zero}: expected 0, 1, 2 or 3")

    @classmethod
    def build(cls, mesh: Mesh, overrides: dict | None = None, **kw) -> "Layout":
        return cls(mesh, {**DEFAULT_RULES, **(overrides or {})}, **kw)

    def size(self, axes) -> int:
        return math.prod(self.mesh.shape[a] for a in axes)

    # --- one leaf ------------------------------------------------------------------------------
    def spec(self, logical: P, shape: tuple[int, ...], role: str = "params",
             name: str = "?") -> P:
        """The mesh PartitionSpec of one leaf with logical names `logical` and shape `shape`.

        role is "params", "grads" or "opt": ZeRO adds the data axis to the embed dimension of the
        roles its stage covers. Raises ConfigError when a dimension is not divisible.
        """
        if len(logical) != len(shape):
            raise ConfigError(f"parameter {name}: logical axes {tuple(logical)} do not match "
                              f"its shape {shape}")
        zero_here = self.zero >= {"opt": 1, "grads": 2, "params": 3}[role]
        used, out = set(), []
        for dim, (lname, n) in enumerate(zip(logical, shape)):
            axes = tuple(self.rules.get(lname, ())) if lname is not None else ()
            if zero_here and lname == ZERO_DIM and ZERO_AXIS not in axes:
                axes = (ZERO_AXIS,) + axes
            axes = tuple(a for a in axes if a not in used and self.mesh.shape[a] > 1)
            k = self.size(axes)
            if n % k:
                raise ConfigError(
                    f"parameter {name}: dimension {dim} ({lname}, size {n}) is not divisible by "
                    f"mesh axes {'x'.join(axes)} (size {k}); change the model size or the mesh, "
                    f"or override the rule with --set parallel.rules={lname}=")
            used.update(axes)
            out.append(None if not axes else axes[0] if len(axes) == 1 else axes)
        return P(*out)

    def sharding(self, spec: P, memory_kind: str | None = None) -> NamedSharding:
        return NamedSharding(self.mesh, spec, memory_kind=memory_kind)

    # --- trees ---------------------------------------------------------------------------------
    def tree_specs(self, abstract, logical_specs, role: str = "params"):
        """PartitionSpecs for a tree of arrays/ShapeDtypeStructs with matching logical specs."""
        return jax.tree_util.tree_map_with_path(
            lambda path, spec, x: self.spec(spec, x.shape, role, _path_name(path)),
            logical_specs, abstract, is_leaf=_is_spec)

    def opt_specs(self, tx: optax.GradientTransformation, abstract_params, logical_specs):
        """PartitionSpecs of tx's state: param-shaped parts (Adam moments, ...) follow their
        parameter's logical names under the "opt" role; everything else (counts) is replicated."""
        abstract_opt = jax.eval_shape(tx.init, abstract_params)
        logical_opt = optax.tree_map_params(tx, lambda _, s: s, abstract_opt, logical_specs,
                                            transform_non_params=lambda _: P(), is_leaf=_is_spec)
        return self.tree_specs(abstract_opt, logical_opt, "opt")

    def batch_spec(self, ndim: int) -> P:
        """Split the leading (batch) axis over the batch axes and, on a mesh with a sequence
        axis, the second (tokens) over it; the rest is replicated."""
        axes = tuple(a for a in self.rules.get("batch", ()) if self.mesh.shape[a] > 1)
        if ndim >= 2 and self.mesh.shape["sequence"] > 1:
            return P(axes or None, "sequence", *([None] * (ndim - 2)))
        return P(axes or None, *([None] * (ndim - 1)))

    def check_batch(self, batch_size: int, what: str = "train.batch_size") -> None:
        axes = tuple(a for a in self.rules.get("batch", ()) if self.mesh.shape[a] > 1)
        k = self.size(axes)
        if batch_size % k:
            raise ConfigError(f"{what}={batch_size} is not divisible by the batch mesh axes "
                              f"{'x'.join(axes)} (size {k}); use a multiple of {k}")


def state_specs(layout: Layout, tx, abstract_params, logical_specs,
                trainable_mask=None) -> dict[str, Any]:
    """{"params", "grads", "opt"} PartitionSpec trees for a model's training state.

    trainable_mask: a bool per parameter (LoRA's): gradients and optimizer state exist for the
    True leaves only (None elsewhere)."""
    from jaxllm.transforms.partition import partition

    trained, trained_specs = abstract_params, logical_specs
    if trainable_mask is not None:
        trained = partition(abstract_params, trainable_mask)[0]
        trained_specs = partition(logical_specs, trainable_mask)[0]
    return {"params": layout.tree_specs(abstract_params, logical_specs, "params"),
            "grads": layout.tree_specs(trained, trained_specs, "grads"),
            "opt": layout.opt_specs(tx, trained, trained_specs)}
