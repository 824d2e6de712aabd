"""Split a tree into the leaves being trained and the frozen rest, and join them again.

LoRA training differentiates and updates only the LoRA factors: `partition(params, mask)` gives
(trainable, frozen) trees of the same structure with None in the other's places, so jax.grad and
the optimizer see only the trainable part (no gradients or optimizer state for the base, and a
quantized base's integer codes are never differentiated); `combine` puts them back together.
"""

from __future__ import annotations

import jax


def _none(x) -> bool:
    return x is None


def partition(tree, mask):
    """(trainable, frozen): tree with None where mask is False, and where it is True."""
    keep = jax.tree_util.tree_map(lambda x, m: x if m else None, tree, mask)
    rest = jax.tree_util.tree_map(lambda x, m: None if m else x, tree, mask)
    return keep, rest


def combine(a, b):
    """The inverse of partition: every leaf from whichever tree holds it."""
    return jax.tree_util.tree_map(lambda x, y: y if x is None else x, a, b, is_leaf=_none)
