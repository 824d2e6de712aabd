"""Rotary position embedding (RoPE) and the scalings that stretch a trained model's context.

    inv_freq, attention_factor = frequencies(cfg)     # numpy (H/2,), float
    q = rope(q, positions, inv_freq, attention_factor)

Pairs (i, i + H/2) of a head (the rotate-half layout of Hugging Face's Llama) are rotated by
position * inv_freq[i], with inv_freq[i] = theta^(-2i/H). model.rope_scaling changes the
frequencies so that a model trained on a context of L = model.rope_original_len tokens reads
rope_factor * L tokens; the definitions are those of Hugging Face transformers'
modeling_rope_utils (ROPE_INIT_FUNCTIONS):

    linear  position interpolation (Chen et al. 2023): inv_freq / factor, i.e. positions squeezed
            into the trained range
    ntk     NTK-aware scaling (bloc97, 2023): the base raised, theta * factor^(H/(H-2)), which
            leaves the fastest frequency unchanged and stretches the slowest by the factor.
            transformers has its dynamic form ("dynamic"), whose base at length s is
            theta * (factor * s / L - (factor - 1))^(H/(H-2)); this is that base at a fixed length
    yarn    YaRN (Peng et al. 2023, "_compute_yarn_parameters"): per frequency a ramp between
            interpolation (inv_freq / factor, for the slow frequencies that complete fewer than
            beta_slow = 1 rotations over L) and extrapolation (inv_freq unchanged, for those with
            more than beta_fast = 32), and an attention temperature: cos and sin are multiplied
            by 0.1 * ln(factor) + 1, so the attention logits grow by its square

`rope_original_len` 0 means model.max_len / rope_factor: the config's max_len is the extended
context and the trained one follows from the factor. `extend_context` makes such a config from a
trained model's (jaxllm generate --rope-scaling yarn --rope-factor 4).
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from jaxllm.config import ModelConfig
from jaxllm.errors import ConfigError

SCALINGS = ("none", "linear", "ntk", "yarn")
YARN_BETA_FAST, YARN_BETA_SLOW = 32.0, 1.0


def original_len(cfg) -> int:
    """The context the model was trained at (see the module docstring)."""
    return cfg.rope_original_len or max(1, round(cfg.max_len / cfg.rope_factor))


def check_factor(factor: float) -> None:
    """A ConfigError unless the scaling factor (--rope-factor) is positive."""
    if not factor > 0:
        raise ConfigError(f"--rope-factor {factor}: must be positive (new context / trained "
                          f"context, e.g. 4)")


def extend_context(cfg: ModelConfig, scaling: str, factor: float) -> ModelConfig:
    """cfg reading `factor` times its context (max_len) with RoPE scaling `scaling`: the trained
    context becomes rope_original_len. The parameters are unchanged."""
    if scaling not in SCALINGS[1:]:
        raise ConfigError(f"--rope-scaling {scaling!r}: expected one of {', '.join(SCALINGS[1:])}")
    check_factor(factor)
    if cfg.positions != "rope":
        raise ConfigError(f"--rope-scaling {scaling}: the model has {cfg.positions} positions, "
                          f"not RoPE; only a RoPE model's context can be scaled")
    trained = original_len(cfg)
    return dataclasses.replace(cfg, rope_scaling=scaling, rope_factor=factor,
                               rope_original_len=trained, max_len=max(1, round(trained * factor)))


def frequencies(cfg) -> tuple[np.ndarray, float]:
    """(inv_freq (H/2,) float32, attention factor) of a ModelConfig's RoPE and its scaling."""
    H, theta, factor = cfg.head_size, cfg.rope_theta, cfg.rope_factor
    exponents = np.arange(0, H, 2, dtype=np.float64) / H  # 2i / H
    scaling = cfg.rope_scaling
    if scaling == "ntk":
        theta = theta * factor ** (H / (H - 2))
    inv_freq = theta ** -exponents
    attention = 1.0
    if scaling == "linear":
        inv_freq = inv_freq / factor
    elif scaling == "yarn":
        inv_freq, attention = _yarn(inv_freq, H, theta, factor, original_len(cfg))
    return inv_freq.astype(np.float32), attention


def _yarn(inv_freq, H, theta, factor, length):
    def dim_of(rotations):  # the (fractional) pair index that turns `rotations` times over L
        return H * math.log(length / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low = max(math.floor(dim_of(YARN_BETA_FAST)), 0)
    high = min(math.ceil(dim_of(YARN_BETA_SLOW)), H - 1)
    if low == high:
        high += 0.001
    ramp = np.clip((np.arange(H // 2) - low) / (high - low), 0.0, 1.0)  # 0 fast .. 1 slow
    mixed = inv_freq / factor * ramp + inv_freq * (1 - ramp)
    attention = 0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0
    return mixed, attention


def rope(x, positions, inv_freq, attention: float = 1.0):
    """x (B, T, heads, H) rotated at integer positions (B, T); the result times `attention`."""
    half = x.shape[-1] // 2
    angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)  # (B, T, H/2)
    sin = jnp.sin(angles)[:, :, None, :] * attention  # (B, T, 1, H/2)
    cos = jnp.cos(angles)[:, :, None, :] * attention
    x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)
