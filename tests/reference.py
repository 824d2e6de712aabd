"""An independent pure-numpy forward pass of the decoder, written from the papers' equations.

It reads the same parameter tree as jaxllm's Decoder but shares no code with it: loops over
layers and heads, explicit softmax, math.erf for GELU, float64 throughout.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np

_erf = np.vectorize(math.erf)


def layer_norm(x, scale, bias, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * scale + bias


def rms_norm(x, scale, eps):
    return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * scale


def rope_inv_freq(H, theta, scaling="none", factor=1.0, trained_len=0):
    """(inv_freq (H/2,), attention factor) of RoPE and its context scalings, pair by pair, as
    Hugging Face transformers' modeling_rope_utils defines them: linear (inv_freq / factor),
    NTK-aware (base theta * factor^(H/(H-2))), YaRN (_compute_yarn_parameters: a ramp between
    the interpolated and the original frequency over the pairs whose number of rotations over
    the trained context lies between 32 and 1; attention factor 0.1 ln(factor) + 1)."""
    if scaling == "ntk":
        theta = theta * factor ** (H / (H - 2))
    inv = np.array([theta ** (-2.0 * i / H) for i in range(H // 2)])
    if scaling == "linear":
        return inv / factor, 1.0
    if scaling != "yarn":
        return inv, 1.0

    def pair_turning(rotations):  # pair index d with trained_len * inv_freq[d] = 2 pi rotations
        return H * math.log(trained_len / (2 * math.pi * rotations)) / (2 * math.log(theta))

    lo, hi = max(math.floor(pair_turning(32)), 0), min(math.ceil(pair_turning(1)), H - 1)
    out = np.empty(H // 2)
    for i in range(H // 2):
        interpolate = min(max((i - lo) / (hi - lo if hi != lo else 0.001), 0.0), 1.0)
        out[i] = inv[i] / factor * interpolate + inv[i] * (1 - interpolate)
    return out, 0.1 * math.log(factor) + 1 if factor > 1 else 1.0


def rotate(x, positions, inv_freq, attention=1.0):
    """RoPE, rotate-half layout: pairs (i, i + H/2), times the attention factor. x (T, H),
    positions (T,)."""
    H = x.shape[-1]
    out = np.empty_like(x)
    for i in range(H // 2):
        angle = positions * inv_freq[i]
        a, b = x[:, i], x[:, i + H // 2]
        out[:, i] = (a * np.cos(angle) - b * np.sin(angle)) * attention
        out[:, i + H // 2] = (b * np.cos(angle) + a * np.sin(angle)) * attention
    return out


def norm(cfg, x, q):
    if cfg.norm == "rmsnorm":
        return rms_norm(x, q["scale"], cfg.norm_eps)
    return layer_norm(x, q["scale"], q["bias"], cfg.norm_eps)


def linear(x, q, n_in_dims=1):
    y = np.tensordot(x, q["kernel"], axes=n_in_dims)
    return y + q["bias"] if "bias" in q else y


def attention(cfg, q_in, ap, allowed, kv_in=None, rope=None):
    """Grouped-query attention of q_in (Tq, D) over kv_in (Tk, D; None: q_in, self-attention)
    where allowed (Tq, Tk), one head at a time, through the out projection. rope: (positions,
    inv_freq, attention factor) rotates the queries and keys of a self-attention; None: none."""
    kv_in = q_in if kv_in is None else kv_in
    N, K, H = cfg.n_heads, cfg.kv_heads, cfg.head_size
    q, k, v = linear(q_in, ap["query"]), linear(kv_in, ap["key"]), linear(kv_in, ap["value"])
    heads = np.zeros((q_in.shape[0], N, H))
    for n in range(N):
        qn, kn, vn = q[:, n], k[:, n // (N // K)], v[:, n // (N // K)]
        if rope is not None:
            qn, kn = rotate(qn, *rope), rotate(kn, *rope)
        s = np.where(allowed, qn @ kn.T / math.sqrt(H), -np.inf)
        w = np.exp(s - s.max(-1, keepdims=True))
        heads[:, n] = (w / w.sum(-1, keepdims=True)) @ vn
    return linear(heads, ap["out"], n_in_dims=2)


def mlp(cfg, x, mp):
    if cfg.mlp == "swiglu":
        g = linear(x, mp["gate"])
        return linear(g / (1 + np.exp(-g)) * linear(x, mp["up"]), mp["down"])
    u = linear(x, mp["up"])
    return linear(0.5 * u * (1 + _erf(u / math.sqrt(2))), mp["down"])


def decoder_logits(cfg, params, tokens, positions=None, segment_ids=None):
    """tokens (B, T) -> logits (B, T, V) in float64."""
    p = to_f64(params)
    B, T = tokens.shape
    positions = np.tile(np.arange(T), (B, 1)) if positions is None else np.asarray(positions)
    seg = np.ones((B, T), int) if segment_ids is None else np.asarray(segment_ids)
    trained = cfg.rope_original_len or round(cfg.max_len / cfg.rope_factor)
    inv_freq, factor = rope_inv_freq(cfg.head_size, cfg.rope_theta, cfg.rope_scaling,
                                     cfg.rope_factor, trained)
    logits = np.zeros((B, T, cfg.vocab_size))
    for b in range(B):
        x = p["embed"]["embedding"][tokens[b]]  # (T, D)
        if cfg.positions == "learned":
            x = x + p["pos_embedding"][positions[b]]
        allowed = np.tril(np.ones((T, T), bool)) & (seg[b][:, None] == seg[b][None, :])
        rope = (positions[b], inv_freq, factor) if cfg.positions == "rope" else None
        for layer in range(cfg.n_layers):
            lp = layer_of(p["blocks"], layer)
            h = norm(cfg, x, lp["attn_norm"])
            x = x + attention(cfg, h, lp["attn"], allowed, rope=rope)
            x = x + mlp(cfg, norm(cfg, x, lp["mlp_norm"]), lp["mlp"])
        x = norm(cfg, x, p["final_norm"])
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


def seq2seq_logits(cfg, params, source, target_in, source_mask, target_mask):
    """The encoder-decoder (kind="seq2seq"): source (B, S), target_in (B, T) and their boolean
    masks -> logits (B, T, V) in float64. Post-norm is norm(x + f(x)) with no final norms;
    pre-norm x + f(norm(x)) with a norm after each stack. Padded query rows are computed like
    any other (the caller compares real rows only)."""
    p = to_f64(params)
    B, S = source.shape
    T = target_in.shape[1]
    D = cfg.d_model
    post = cfg.norm_position == "post"

    def sinusoid(n):
        pe = np.zeros((n, D))
        for pos in range(n):
            for i in range(0, D, 2):
                pe[pos, i] = math.sin(pos / 10000 ** (i / D))
                pe[pos, i + 1] = math.cos(pos / 10000 ** (i / D))
        return pe

    def embed(table, pos_table, tokens):
        x = table[tokens]
        if cfg.positions == "learned":
            x = x + pos_table[:len(tokens)]
        elif cfg.positions == "sinusoidal":  # the paper scales the embeddings by sqrt(D)
            x = x * math.sqrt(D) + sinusoid(len(tokens))
        return x

    def rope(n):  # self-attention's rotation over n positions (None without RoPE)
        if cfg.positions != "rope":
            return None
        return np.arange(n), rope_inv_freq(cfg.head_size, cfg.rope_theta)[0]

    def branch(x, nq, f):
        return norm(cfg, x + f(x), nq) if post else x + f(norm(cfg, x, nq))

    source_table = p["embed" if cfg.share_embeddings else "source_embed"]["embedding"]
    logits = np.zeros((B, T, cfg.vocab_size))
    for b in range(B):
        src_ok = np.asarray(source_mask[b], bool)
        m = embed(source_table, p.get("source_pos_embedding"), source[b])
        for layer in range(cfg.n_layers):
            lp = layer_of(p["encoder_blocks"], layer)
            allowed = np.broadcast_to(src_ok[None, :], (S, S))
            m = branch(m, lp["attn_norm"], partial(attention, cfg, ap=lp["attn"],
                                                   allowed=allowed, rope=rope(S)))
            m = branch(m, lp["mlp_norm"], partial(mlp, cfg, mp=lp["mlp"]))
        if not post:
            m = norm(cfg, m, p["encoder_norm"])
        x = embed(p["embed"]["embedding"], p.get("pos_embedding"), target_in[b])
        causal = np.tril(np.ones((T, T), bool)) & np.asarray(target_mask[b], bool)[None, :]
        cross_ok = np.broadcast_to(src_ok[None, :], (T, S))
        for layer in range(cfg.n_layers):
            lp = layer_of(p["blocks"], layer)
            x = branch(x, lp["attn_norm"], partial(attention, cfg, ap=lp["attn"],
                                                   allowed=causal, rope=rope(T)))
            x = branch(x, lp["cross_norm"], partial(attention, cfg, ap=lp["cross_attn"],
                                                    allowed=cross_ok, kv_in=m))
            x = branch(x, lp["mlp_norm"], partial(mlp, cfg, mp=lp["mlp"]))
        if not post:
            x = norm(cfg, x, p["final_norm"])
        w_out = p["embed"]["embedding"].T if cfg.tie_embeddings else p["head"]["kernel"]
        logits[b] = x @ w_out
    return logits
