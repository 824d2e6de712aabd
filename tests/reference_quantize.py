"""An independent numpy quantizer for the uniform methods (int8, int4), written from their
definitions with a loop over the blocks that share one step.

It shares no code with jaxllm.transforms: the block of a step is cut out explicitly (a whole
stacked copy per tensor, one output column per channel, g consecutive rows of a column per
group), and the integer grid is stated per method below.
"""

from __future__ import annotations

import numpy as np

# The integer grids: symmetric codes in [-qmax, qmax] (absmax maps to qmax), asymmetric codes
# in [0, levels] (the block's minimum maps to 0 and its maximum to levels).
SYMMETRIC_QMAX = {"int8": 127, "int4": 7}
ASYMMETRIC_LEVELS = {"int8": 255, "int4": 15}


def _blocks(shape, lead: int, group):
    """Index tuples of the blocks sharing one step, for an array (*lead, K, *rest) whose one
    contracted axis is K: per "tensor" all of one stacked copy, per "channel" one column of K
    values, per int g the g consecutive rows of one column."""
    lead_shape, K, rest = shape[:lead], shape[lead], shape[lead + 1:]
    for l in np.ndindex(*lead_shape):
        if group == "tensor":
            yield l
            continue
        g = K if group == "channel" else group
        for start in range(0, K, g):
            for r in np.ndindex(*rest):
                yield (*l, slice(start, start + g), *r)


def quantize_uniform(w, method: str, symmetric: bool, group, lead: int = 0):
    """(codes, steps, zero points or None, dequantized) of w, each of w's shape (a block's step
    and zero point repeated over its elements). Arithmetic in float32, as the library's."""
    w = np.asarray(w, np.float32)
    codes = np.zeros(w.shape, np.int64)
    steps = np.zeros(w.shape, np.float32)
    zeros = None if symmetric else np.zeros(w.shape, np.float32)
    for idx in _blocks(w.shape, lead, group):
        block = w[idx]
        if symmetric:
            qmax = SYMMETRIC_QMAX[method]
            step = np.float32(np.abs(block).max() / np.float32(qmax))
            step = step if step > 0 else np.float32(1.0)
            codes[idx] = np.clip(np.round(block / step), -qmax, qmax)
        else:
            levels = ASYMMETRIC_LEVELS[method]
            lo, hi = block.min(), block.max()
            step = np.float32((hi - lo) / np.float32(levels))
            step = step if step > 0 else np.float32(1.0)
            zero = np.float32(-lo / step)
            codes[idx] = np.clip(np.round(block / step + zero), 0, levels)
            zeros[idx] = zero
        steps[idx] = step
    deq = (codes - (0 if zeros is None else zeros)) * steps
    return codes, steps, zeros, deq.astype(np.float32)
