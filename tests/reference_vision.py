"""Independent pure-numpy forwards of the ViT, CLIP's towers and the symmetric InfoNCE loss,
written from the papers' equations in float64.

They read jaxllm's parameter trees but share no code with jaxllm: patches are cut pixel by pixel
in loops, attention is a loop over heads with an explicit softmax, GELU is math.erf.
"""

from __future__ import annotations

import math

import numpy as np

from reference import layer_of, to_f64

_erf = np.vectorize(math.erf)


def layer_norm(x, q, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * q["scale"] + q["bias"]


def linear(x, q, n_in=1):
    y = np.tensordot(x, q["kernel"], axes=n_in)
    return y + q["bias"] if "bias" in q else y


def transformer(x, blocks, n_layers, n_heads, eps, causal):
    """Pre-norm blocks over one sequence x (T, D): x + attn(LN(x)), x + mlp(LN(x))."""
    T = x.shape[0]
    allowed = np.tril(np.ones((T, T), bool)) if causal else np.ones((T, T), bool)
    for layer in range(n_layers):
        lp = layer_of(blocks, layer)
        h = layer_norm(x, lp["attn_norm"], eps)
        q, k, v = (linear(h, lp["attn"][n]) for n in ("query", "key", "value"))  # (T, N, H)
        H = q.shape[-1]
        heads = np.zeros_like(q)
        for n in range(n_heads):
            s = q[:, n] @ k[:, n].T / math.sqrt(H)
            s = np.where(allowed, s, -np.inf)
            w = np.exp(s - s.max(-1, keepdims=True))
            heads[:, n] = (w / w.sum(-1, keepdims=True)) @ v[:, n]
        x = x + linear(heads, lp["attn"]["out"], n_in=2)
        u = linear(layer_norm(x, lp["mlp_norm"], eps), lp["mlp"]["up"])
        x = x + linear(0.5 * u * (1 + _erf(u / math.sqrt(2))), lp["mlp"]["down"])
    return x


def sincos_2d(rows, cols, width, temperature=10000.0):
    """Position (r, c) gets [sin(c w_i), cos(c w_i), sin(r w_i), cos(r w_i)] over i < width/4,
    with w_i = temperature^(-i / (width/4 - 1))."""
    quarter = width // 4
    out = np.zeros((rows * cols, width))
    for r in range(rows):
        for c in range(cols):
            for i in range(quarter):
                w = temperature ** (-i / max(quarter - 1, 1))
                out[r * cols + c, [i, quarter + i, 2 * quarter + i, 3 * quarter + i]] = [
                    math.sin(c * w), math.cos(c * w), math.sin(r * w), math.cos(r * w)]
    return out


def vit_features(cfg, params, image):
    """One image (H, W, C) -> (pooled features (D,), logits or None)."""
    p = to_f64(params)
    P = cfg.patch_size
    Hh, Ww, C = image.shape
    rows, cols = Hh // P, Ww // P
    patches = []
    for r in range(rows):
        for c in range(cols):
            patch = np.asarray(image[r * P:(r + 1) * P, c * P:(c + 1) * P, :], np.float64)
            patches.append(np.tensordot(patch, p["patch_embed"]["kernel"], axes=3)
                           + p["patch_embed"]["bias"])
    x = np.stack(patches)  # (N, D)
    if cfg.image_positions == "learned":
        x = x + p["pos_embedding"]
    else:
        x = x + sincos_2d(rows, cols, cfg.d_model)
    if cfg.pool == "cls":
        x = np.concatenate([p["cls"][None], x])
    x = transformer(x, p["blocks"], cfg.n_layers, cfg.n_heads, cfg.norm_eps, causal=False)
    x = layer_norm(x, p["final_norm"], cfg.norm_eps)
    pooled = x[0] if cfg.pool == "cls" else x.mean(0)
    logits = linear(pooled, p["head"]) if cfg.num_classes else None
    return pooled, logits


def text_features(cfg, params, tokens, eot):
    """One caption: tokens (T,) and the end-of-text index -> the final-norm state there (Dt,)."""
    p = to_f64(params)
    x = p["embed"]["embedding"][tokens] + p["pos_embedding"][:len(tokens)]
    x = transformer(x, p["blocks"], cfg.text_layers or cfg.n_layers,
                    cfg.text_heads or cfg.n_heads, cfg.norm_eps, causal=True)
    return layer_norm(x, p["final_norm"], cfg.norm_eps)[eot]


def clip_embeddings(cfg, params, images, tokens, eots):
    """L2-normalised image (B, E) and text (B, E) embeddings and the clamped logit scale."""
    p = to_f64(params)
    img = np.stack([vit_features(cfg, params["image"], im)[0] for im in images])
    txt = np.stack([text_features(cfg, params["text"], t, e) for t, e in zip(tokens, eots)])
    img = img @ p["image_proj"]["kernel"]
    txt = txt @ p["text_proj"]["kernel"]
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    return img, txt, min(math.exp(float(p["logit_scale"])), 100.0)


def info_nce(img, txt, scale):
    """Symmetric InfoNCE (CLIP): mean of the image->text and text->image cross-entropies where
    row i's positive is column i."""
    logits = scale * np.asarray(img, np.float64) @ np.asarray(txt, np.float64).T  # (B, B)

    def ce(z):
        z = z - z.max(1, keepdims=True)
        return -(np.diag(z) - np.log(np.exp(z).sum(1))).mean()

    return 0.5 * (ce(logits) + ce(logits.T))
