"""Quantization-aware training: fake quantization in the forward pass, straight-through gradients.

Training a model that will run quantized sees the rounding while it learns: the forward pass uses
quantize-then-dequantize weights (and, for BitNet, activations), and the backward pass treats
the rounding as the identity (the straight-through estimator, STE): w + stop_gradient(q(w) - w)
has the value q(w) and the gradient of w. The float weights stay the trained parameters; after
training, `quantize` with the same method stores them as codes (see experiments/quantization.py).

`model.quant` selects it (models/layers.Dense calls `fake_quant_dense`):
  ternary  BitNet b1.58 (Ma et al. 2024): W -> round-clip(W / mean|W|) in {-1, 0, 1} times
           mean|W| (one absmean step per weight matrix); activations -> 8-bit absmax per token.
           Trained from scratch, it runs at inference as int8 x ternary matmuls
           (quantize(method="ternary", group="tensor", act="dynamic")).
  int8, int4  symmetric absmax weights per output channel, or per group of model.quant_group
           inputs; activations stay float (weight-only QAT).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def ste(x, q):
    """Value q, gradient of x (straight-through)."""
    return x + jax.lax.stop_gradient(q - x)


def fake_quant_weight(w, method: str, group: int = 0):
    """w (K, N) -> the dequantized values of its quantization, with straight-through gradients."""
    w32 = w.astype(jnp.float32)
    if method == "ternary":
        scale = jnp.maximum(jnp.mean(jnp.abs(w32)), 1e-8)
        q = jnp.clip(jnp.round(w32 / scale), -1, 1) * scale
    else:
        qmax = {"int8": 127, "int4": 7}[method]
        K, N = w32.shape
        g = group or K
        wg = w32.reshape(K // g, g, N)  # (G, g, N): groups along the contraction
        scale = jnp.maximum(jnp.max(jnp.abs(wg), axis=1, keepdims=True) / qmax, 1e-12)
        q = (jnp.clip(jnp.round(wg / scale), -qmax, qmax) * scale).reshape(K, N)
    return ste(w32, q).astype(w.dtype)


def fake_quant_activation(x, bits: int = 8):
    """x (M, K) -> absmax per row (token), symmetric `bits`-bit, straight-through."""
    x32 = x.astype(jnp.float32)
    qmax = 2 ** (bits - 1) - 1
    scale = jnp.maximum(jnp.max(jnp.abs(x32), axis=-1, keepdims=True) / qmax, 1e-12)
    q = jnp.clip(jnp.round(x32 / scale), -qmax, qmax) * scale
    return ste(x32, q).astype(x.dtype)


def fake_quant_dense(x, kernel, method: str, group: int = 0):
    """The (input, kernel) a fake-quantized Dense multiplies: x (M, K), kernel (K, N)."""
    if method == "ternary":
        return fake_quant_activation(x), fake_quant_weight(kernel, "ternary")
    return x, fake_quant_weight(kernel, method, group)
