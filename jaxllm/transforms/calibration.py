"""Post-training calibration: the input range of every linear layer, for static W8A8.

Static W8A8 quantizes a layer's input with one fixed step found beforehand, so inference does
not compute a range per token. `calibrate` runs a few batches through the model while every
jaxllm Dense records the absolute maximum and a high percentile of its input (flax `sow` into
the "calibration" collection; nn.scan stacks them per layer), then `apply_calibration` stores
step = range / 127 in each QArray and switches it to static int8 x int8 -> int32 matmuls.

    qp = quantize(params, rules, method="int8", act="dynamic", axes=axes)
    ranges = calibrate(model, qp, batches, method="percentile", percentile=99.99)
    qp = apply_calibration(qp, ranges)          # act="static"

min-max keeps every calibration value representable (the step grows with outliers);
a percentile clips the rare outliers for a finer step for everything else.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxllm.transforms.select import TransformError, path_str

PERCENTILE = 99.99


def record(module, x):
    """Called by layers.Dense when the "calibration" collection is mutable: x (M, K)."""
    a = jnp.abs(x.astype(jnp.float32))
    module.sow("calibration", "kernel_absmax", jnp.max(a))
    module.sow("calibration", "kernel_percentile", jnp.percentile(a, PERCENTILE))


def calibrate(model, params, batches, *, method: str = "minmax") -> dict:
    """{kernel path: input range} over the calibration batches (per layer for stacked kernels).

    model: a flax module applied as model.apply({"params": params}, inputs); batches: arrays of
    inputs or dicts with "inputs". method: "minmax" (largest |x| seen) or "percentile" (the
    mean over batches of each batch's 99.99th percentile of |x|).
    """
    if method not in ("minmax", "percentile"):
        raise TransformError(f"calibration method {method!r}; choose minmax or percentile")
    run = jax.jit(lambda p, x: model.apply({"params": p}, x, mutable=["calibration"])[1])
    key = "kernel_absmax" if method == "minmax" else "kernel_percentile"
    seen = []
    for batch in batches:
        inputs = batch["inputs"] if isinstance(batch, dict) else batch
        stats = jax.device_get(run(params, inputs)).get("calibration", {})
        ranges = {}
        for p, v in jax.tree_util.tree_flatten_with_path(stats)[0]:
            parts = path_str(p).split("/")
            if key in parts:
                ranges["/".join(parts[:parts.index(key)] + ["kernel"])] = np.asarray(v)
        seen.append(ranges)
    if not seen or not seen[0]:
        raise TransformError("calibration saw no batches or no jaxllm Dense layers; pass at "
                             "least one batch of a jaxllm model's inputs")
    if method == "minmax":
        return {k: np.max([s[k] for s in seen], axis=0) for k in seen[0]}
    return {k: np.mean([s[k] for s in seen], axis=0) for k in seen[0]}


def apply_calibration(tree, ranges: dict):
    """Set act_scale = range / 127 and act="static" on every QArray that has a range."""
    from jaxllm.transforms.quantize import QArray

    def one(path, x):
        if not isinstance(x, QArray):
            return x
        p = path_str(path)
        if p not in ranges:
            raise TransformError(f"no calibration range for {p!r}; calibrate the same model")
        if x.act == "none" or x.method not in ("int8", "ternary"):
            raise TransformError(f"{p!r}: static activations need a W8A8 QArray (quantize with "
                                 f"act='dynamic' or 'static', method int8 or ternary)")
        scale = jnp.maximum(jnp.asarray(ranges[p], jnp.float32) / 127.0, 1e-12)
        return dataclasses.replace(x, act_scale=scale, act="static")

    return jax.tree_util.tree_map_with_path(one, tree, is_leaf=lambda x: isinstance(x, QArray))
