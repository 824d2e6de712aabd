"""Transformer building blocks shared by every jaxllm model (decoder, encoder, ViT, CLIP).

Each module is a Flax Linen module configured by a `ModelConfig`. Every parameter is created with
logical axis names, so a mesh rule table (jaxllm.parallel) can shard it without the model ever
naming a mesh axis:

    vocab    vocabulary rows of the embedding / output head
    embed    the model (residual stream) dimension
    mlp      the hidden dimension of the feed-forward block
    heads    query heads;  kv_heads: key/value heads (fewer under grouped-query attention)
    kv       the size of one head
    layers   the stacked (scanned) layer axis, added by nn.scan in the model

Shapes in comments: B batch, T query length, S key length, N query heads, K key/value heads,
G = N // K query heads per key/value head, H head size, D model size, F mlp size.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import flax.linen as nn

from jaxllm.config import ModelConfig

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}

# Named activation-checkpointing policies for the scanned block (what the backward pass may keep
# instead of recomputing). "none" keeps everything (fastest, most memory).
REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


def logical(init, axes: tuple[str | None, ...]):
    """An initializer whose parameter carries logical axis names."""
    return nn.with_logical_partitioning(init, axes)


def dense(cfg: ModelConfig, features, axes, *, in_axes=-1, std=None, name=None):
    """A linear layer (optionally multi-dimensional) with N(0, std) kernels and zero biases."""
    n_out = 1 if isinstance(features, int) else len(features)
    return nn.DenseGeneral(
        features, axis=in_axes, use_bias=cfg.use_bias, dtype=DTYPES[cfg.dtype],
        kernel_init=logical(nn.initializers.normal(std or cfg.init_std), axes),
        bias_init=logical(nn.initializers.zeros, axes[-n_out:]), name=name)


class Norm(nn.Module):
    """LayerNorm (with bias, as GPT-2/BERT) or RMSNorm (Llama) over the last axis, in float32."""
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x):
        cfg = self.cfg
        d = x.shape[-1]
        scale = self.param("scale", logical(nn.initializers.ones, ("embed",)), (d,))
        h = x.astype(jnp.float32)
        if cfg.norm == "rmsnorm":
            h = h * jax.lax.rsqrt(jnp.mean(h * h, axis=-1, keepdims=True) + cfg.norm_eps) * scale
        else:
            bias = self.param("bias", logical(nn.initializers.zeros, ("embed",)), (d,))
            h = h - jnp.mean(h, axis=-1, keepdims=True)
            h = h * jax.lax.rsqrt(jnp.mean(h * h, axis=-1, keepdims=True) + cfg.norm_eps)
            h = h * scale + bias
        return h.astype(DTYPES[cfg.dtype])


def rope(x, positions, theta: float):
    """Rotary position embedding, in the rotate-half layout of Hugging Face's Llama.

    x: (B, T, heads, H); positions: (B, T) integer positions. Pairs (i, i + H/2) are rotated by
    angle position * theta^(-2i/H).
    """
    half = x.shape[-1] // 2
    inv_freq = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)  # (H/2,)
    angles = positions.astype(jnp.float32)[..., None] * inv_freq  # (B, T, H/2)
    sin, cos = jnp.sin(angles)[:, :, None, :], jnp.cos(angles)[:, :, None, :]  # (B, T, 1, H/2)
    x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)


def attention_mask(q_index, kv_index, *, causal=True, q_segments=None, kv_segments=None,
                   kv_valid=None):
    """Boolean mask (B or 1, 1, T, S): True where query t may attend to key s.

    q_index (T,) and kv_index (S,) are the slots of queries and keys in one sequence (for a KV
    cache the queries sit at the end of the filled slots). Segment ids (B, T) / (B, S) keep
    packed documents apart; kv_valid (B, S) drops padding and empty cache slots.
    """
    mask = jnp.ones((1, 1, q_index.shape[0], kv_index.shape[0]), dtype=bool)
    if causal:
        mask = mask & (kv_index[None, None, None, :] <= q_index[None, None, :, None])
    if q_segments is not None:
        mask = mask & (q_segments[:, None, :, None] == kv_segments[:, None, None, :])
    if kv_valid is not None:
        mask = mask & kv_valid[:, None, None, :]
    return mask


def reference_attention(q, k, v, *, mask):
    """Readable attention: einsum scores, mask, softmax, einsum. q (B,T,N,H), k/v (B,S,K,H)."""
    B, T, N, H = q.shape
    K = k.shape[2]
    q = q.reshape(B, T, K, N // K, H)  # (B, T, K, G, H)
    scores = jnp.einsum("btkgh,bskh->bkgts", q, k).astype(jnp.float32) / jnp.sqrt(H)
    scores = jnp.where(mask[:, :, None], scores, jnp.finfo(jnp.float32).min)  # mask (B,1,1,T,S)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkgts,bskh->btkgh", probs, v)  # (B, T, K, G, H)
    return out.reshape(B, T, N, H)


def cached_attention(q, k, v, mask):
    """Attention of queries q (B, T, N, H) over a cache of keys k (B*K, S, H) and values
    v (B*K, H, S), batch-major."""
    B, T, N, H = q.shape
    K = k.shape[0] // B
    S = k.shape[1]
    q = jnp.swapaxes(q.reshape(B, T, K, N // K, H), 1, 2).reshape(B * K, T * (N // K), H)
    scores = jnp.einsum("xqh,xsh->xqs", q, k).astype(jnp.float32) / jnp.sqrt(H)
    scores = scores.reshape(B, K, T, N // K, S)
    scores = jnp.where(mask[:, :, :, None], scores, jnp.finfo(jnp.float32).min)  # mask (B,1,T,1,S)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype).reshape(B * K, T * (N // K), S)
    out = jnp.einsum("xqs,xhs->xqh", probs, v)  # (X, T*G, H)
    return jnp.swapaxes(out.reshape(B, K, T, N // K, H), 1, 2).reshape(B, T, N, H)


class Attention(nn.Module):
    """Multi-head attention with grouped-query option, RoPE option and an optional KV cache."""
    cfg: ModelConfig
    causal: bool = True

    @nn.compact
    def __call__(self, x, positions, mask, cache=None, cache_index=None):
        """x (B, T, D) -> (B, T, D), new cache.

        cache: None, or (keys (B, K, S, H), values (B, K, H, S)); new keys/values go to slots
        [cache_index, cache_index + T) and attention runs over all S slots (mask decides).
        mask None means plain causal (or full, for an encoder) attention without a materialised
        mask on the fast path.
        """
        cfg = self.cfg
        N, K, H = cfg.n_heads, cfg.kv_heads, cfg.head_size
        q = dense(cfg, (N, H), ("embed", "heads", "kv"), name="query")(x)  # (B, T, N, H)
        k = dense(cfg, (K, H), ("embed", "kv_heads", "kv"), name="key")(x)  # (B, T, K, H)
        v = dense(cfg, (K, H), ("embed", "kv_heads", "kv"), name="value")(x)  # (B, T, K, H)
        if cfg.positions == "rope":
            q, k = rope(q, positions, cfg.rope_theta), rope(k, positions, cfg.rope_theta)
        if cache is not None:
            # Cache layouts chosen so that XLA's batched matrix-vector products read them in
            # place, with batch and kv heads merged into one axis X = B*K (no per-step transpose
            # or copy of the whole cache): keys (X, S, H) for K.q, values (X, H, S) for V^T.p.
            ck, cv = cache
            B, T = x.shape[:2]
            k = jnp.swapaxes(k, 1, 2).reshape(B * K, T, H).astype(ck.dtype)  # (X, T, H)
            v = jnp.transpose(v, (0, 2, 3, 1)).reshape(B * K, H, T).astype(cv.dtype)  # (X, H, T)
            cache = (jax.lax.dynamic_update_slice(ck, k, (0, cache_index, 0)),
                     jax.lax.dynamic_update_slice(cv, v, (0, 0, cache_index)))
            y = cached_attention(q, *cache, mask)
        elif mask is None and cfg.attention == "fast":
            # No materialised mask: lets cuDNN (GPU) skip the masked upper triangle.
            y = jax.nn.dot_product_attention(q, k, v, is_causal=self.causal)
        else:
            if mask is None:
                idx = jnp.arange(x.shape[1])
                mask = attention_mask(idx, idx, causal=self.causal)
            attend = jax.nn.dot_product_attention if cfg.attention == "fast" else reference_attention
            y = attend(q, k, v, mask=mask)  # (B, T, N, H)
        out_std = cfg.init_std / (2 * cfg.n_layers) ** 0.5
        out = dense(cfg, cfg.d_model, ("heads", "kv", "embed"), in_axes=(-2, -1), std=out_std,
                    name="out")(y)
        return out, cache


class Mlp(nn.Module):
    """Feed-forward block: GELU (exact erf, GPT-2/BERT) or SwiGLU (Llama)."""
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x):
        cfg = self.cfg
        F = cfg.ff_size
        if cfg.mlp == "swiglu":
            gate = dense(cfg, F, ("embed", "mlp"), name="gate")(x)
            up = dense(cfg, F, ("embed", "mlp"), name="up")(x)
            h = nn.silu(gate) * up
        else:
            h = nn.gelu(dense(cfg, F, ("embed", "mlp"), name="up")(x), approximate=False)
        out_std = cfg.init_std / (2 * cfg.n_layers) ** 0.5
        return dense(cfg, cfg.d_model, ("mlp", "embed"), std=out_std, name="down")(h)


class DecoderBlock(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x)).

    Written for nn.scan: (carry, per-layer input) -> (carry, per-layer output), where the carry is
    the residual stream and the per-layer input/output is this layer's KV cache (or None).
    """
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x, cache, positions, mask, cache_index, train: bool):
        cfg = self.cfg
        h, cache = Attention(cfg, name="attn")(Norm(cfg, name="attn_norm")(x), positions, mask,
                                              cache, cache_index)
        x = x + nn.Dropout(cfg.dropout, deterministic=not train)(h)
        h = Mlp(cfg, name="mlp")(Norm(cfg, name="mlp_norm")(x))
        x = x + nn.Dropout(cfg.dropout, deterministic=not train)(h)
        return x, cache


def scanned(block_cls, cfg: ModelConfig, n_broadcast: int, name: str):
    """Stack n_layers copies of a block with nn.scan (one compiled block, params on a 'layers' axis)
    under the config's remat policy. The block's second argument is scanned over (per-layer
    input/output); the next n_broadcast arguments are shared by all layers."""
    if cfg.remat != "none":
        # prevent_cse=False is safe (and faster) under scan; `train` (last arg) is static.
        block_cls = nn.remat(block_cls, policy=REMAT_POLICIES[cfg.remat], prevent_cse=False,
                             static_argnums=(n_broadcast + 2,))
    return nn.scan(block_cls, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
                   in_axes=(0,) + (nn.broadcast,) * n_broadcast, length=cfg.n_layers, unroll=min(cfg.scan_unroll, cfg.n_layers),
                   metadata_params={nn.PARTITION_NAME: "layers"})(cfg, name=name)
