"""An independent pure-numpy forward pass of the decoder, written from the papers' equations.

It reads the same parameter tree as jaxllm's Decoder but shares no code with it: loops over
layers and heads, explicit softmax, math.erf for GELU, float64 throughout.
"""

from __future__ import annotations

import math

import numpy as np

_erf = np.vectorize(math.erf)


def layer_norm(x, scale, bias, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * scale + bias


def rms_norm(x, scale, eps):
    return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * scale


def rotate(x, positions, theta):
    """RoPE, rotate-half layout: pairs (i, i + H/2). x (T, H), positions (T,)."""
    H = x.shape[-1]
    out = np.empty_like(x)
    for i in range(H // 2):
        angle = positions * theta ** (-2.0 * i / H)
        a, b = x[:, i], x[:, i + H // 2]
        out[:, i] = a * np.cos(angle) - b * np.sin(angle)
        out[:, i + H // 2] = b * np.cos(angle) + a * np.sin(angle)
    return out


def decoder_logits(cfg, params, tokens, positions=None, segment_ids=None):
    """tokens (B, T) -> logits (B, T, V) in float64."""
    p = to_f64(params)
    B, T = tokens.shape
    N, K, H = cfg.n_heads, cfg.kv_heads, cfg.head_size
    positions = np.tile(np.arange(T), (B, 1)) if positions is None else np.asarray(positions)
    seg = np.ones((B, T), int) if segment_ids is None else np.asarray(segment_ids)

    def norm(x, q):
        if cfg.norm == "rmsnorm":
            return rms_norm(x, q["scale"], cfg.norm_eps)
        return layer_norm(x, q["scale"], q["bias"], cfg.norm_eps)

    def linear(x, q, n_in_dims=1):
        w = q["kernel"]
        y = np.tensordot(x, w, axes=n_in_dims)
        return y + q["bias"] if "bias" in q else y

    logits = np.zeros((B, T, cfg.vocab_size))
    for b in range(B):
        x = p["embed"]["embedding"][tokens[b]]  # (T, D)
        if cfg.positions == "learned":
            x = x + p["pos_embedding"][positions[b]]
        allowed = np.tril(np.ones((T, T), bool)) & (seg[b][:, None] == seg[b][None, :])
        for layer in range(cfg.n_layers):
            lp = layer_of(p["blocks"], layer)
            h = norm(x, lp["attn_norm"])
            q = linear(h, lp["attn"]["query"])  # (T, N, H)
            k = linear(h, lp["attn"]["key"])  # (T, K, H)
            v = linear(h, lp["attn"]["value"])
            heads = np.zeros((T, N, H))
            for n in range(N):
                qn, kn, vn = q[:, n], k[:, n // (N // K)], v[:, n // (N // K)]
                if cfg.positions == "rope":
                    qn = rotate(qn, positions[b], cfg.rope_theta)
                    kn = rotate(kn, positions[b], cfg.rope_theta)
                s = qn @ kn.T / math.sqrt(H)
                s = np.where(allowed, s, -np.inf)
                w = np.exp(s - s.max(-1, keepdims=True))
                heads[:, n] = (w / w.sum(-1, keepdims=True)) @ vn
            x = x + linear(heads, lp["attn"]["out"], n_in_dims=2)
            h = norm(x, lp["mlp_norm"])
            if cfg.mlp == "swiglu":
                g = linear(h, lp["mlp"]["gate"])
                h = g / (1 + np.exp(-g)) * linear(h, lp["mlp"]["up"])
            else:
                u = linear(h, lp["mlp"]["up"])
                h = 0.5 * u * (1 + _erf(u / math.sqrt(2)))
            x = x + linear(h, lp["mlp"]["down"])
        x = norm(x, p["final_norm"])
        w_out = p["embed"]["embedding"].T if cfg.tie_embeddings else p["head"]["kernel"]
        logits[b] = x @ w_out
    return logits


def to_f64(tree):
    """A nested dict of arrays as float64 numpy arrays (shared by the numpy references)."""
    if isinstance(tree, dict):
        return {k: to_f64(v) for k, v in tree.items()}
    return np.asarray(tree, dtype=np.float64)


def layer_of(tree, i):
    """Layer i of a nested dict of arrays stacked on a leading layers axis."""
    if isinstance(tree, dict):
        return {k: layer_of(v, i) for k, v in tree.items()}
    return tree[i]
