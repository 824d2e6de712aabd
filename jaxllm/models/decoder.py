"""GPT/Llama-style decoder-only language model.

    tokens (B, T) -> token embedding (+ learned positions) -> n_layers pre-norm blocks (scanned)
                  -> final norm -> logits (B, T, vocab) through the tied embedding or a head

The options of ModelConfig choose GPT-2 (learned positions, LayerNorm, GELU, biases, tied head)
or Llama (RoPE, RMSNorm, SwiGLU, grouped-query attention, no biases) or anything in between.

Two entry points share the parameters:
  model.apply(params, tokens, positions=None, segment_ids=None, train=False) -> logits
      training / scoring; segment ids (B, T) keep packed documents apart (0 = padding).
      Traced in a train step on a mesh with a `sequence` axis (model.attention ring or auto),
      the tokens are put in zig-zag order, split over that axis and attended by ring attention
      (models/attention.py); the final hidden states return to the sequence's order.
      With model.value_head, head="value" gives the scalar head's values (B, T) instead and
      head="both" the pair (logits, values): reward models and PPO's critic.
      head="hidden" gives the final-normed hidden states (B, T, D), which
      model.apply(params, x, method="lm_head") turns into logits (the chunked cross-entropy).
  model.apply(params, tokens, cache, token_mask=None, method="decode") -> (logits, cache)
      incremental decoding with a KV cache: the tokens are appended to the cache.
"""

from __future__ import annotations

from dataclasses import replace

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxllm.config import ModelConfig
from jaxllm.errors import ConfigError
from jaxllm.models.attention import (FUSED_KERNELS, SEQUENCE_AXIS, SEQUENCE_PARALLEL,
                                     KernelSegments, LayerCache, RingSegments, attention_mask,
                                     resolve_decode_path, zigzag_order)
from jaxllm.models.layers import (DTYPES, Dense, DecoderBlock, Embed, Norm, init_with_axes,
                                 logical, scanned, sequence_mesh)


@struct.dataclass
class KVCache:
    """Keys and values of every layer for a batch of sequences being decoded.

    Slots are filled left to right; all rows write at the same slot, and rows whose prompt is
    shorter are left-padded (their padding slots are not `valid`). k and v are stacked over the
    layers, in the layout of a decode path (attention.LayerCache):
        "cpu"          k (L, B*K, H, S), v (L, B*K, S, H)
        "accelerator"  k, v (L, B, S, K, H)
    """
    k: jax.Array
    v: jax.Array
    valid: jax.Array  # (B, S) bool: the slot holds a real token of that row
    length: jax.Array  # () int32: slots filled so far; the next token goes to slot `length`
    next_position: jax.Array  # (B,) int32: position id of each row's next real token
    layout: str = struct.field(pytree_node=False)  # "cpu" or "accelerator"

    @classmethod
    def empty(cls, cfg: ModelConfig, batch: int, size: int, layout: str = "auto") -> "KVCache":
        """An empty cache of `size` slots; layout "auto" is the current backend's decode path."""
        layout = resolve_decode_path(layout)
        L, K, H, dtype = cfg.n_layers, cfg.kv_heads, cfg.head_size, DTYPES[cfg.dtype]
        if layout == "cpu":
            k = jnp.zeros((L, batch * K, H, size), dtype)
            v = jnp.zeros((L, batch * K, size, H), dtype)
        else:
            k = v = jnp.zeros((L, batch, size, K, H), dtype)
        return cls(k=k, v=v, valid=jnp.zeros((batch, size), bool),
                   length=jnp.zeros((), jnp.int32), next_position=jnp.zeros((batch,), jnp.int32),
                   layout=layout)

    @property
    def size(self) -> int:
        return self.valid.shape[1]

    def grow(self, size: int) -> "KVCache":
        """The cache with empty slots appended up to `size`. k and v may also be lists of
        per-layer arrays (the CPU decode loop carries them so)."""
        extra = size - self.size
        if extra == 0:
            return self
        k_axis, v_axis = (-1, -2) if self.layout == "cpu" else (-3, -3)  # the slot axes

        def pad(axis):
            return lambda a: jnp.pad(a, [(0, extra if i == a.ndim + axis else 0)
                                         for i in range(a.ndim)])

        return self.replace(k=jax.tree_util.tree_map(pad(k_axis), self.k),
                            v=jax.tree_util.tree_map(pad(v_axis), self.v),
                            valid=jnp.pad(self.valid, ((0, 0), (0, extra))))


class Decoder(nn.Module):
    cfg: ModelConfig

    def setup(self):
        cfg = self.cfg
        init = nn.initializers.normal(cfg.init_std)
        self.embed = Embed(cfg.vocab_size, cfg.d_model, dtype=DTYPES[cfg.dtype],
                              embedding_init=logical(init, ("vocab", "embed")))
        if cfg.positions == "learned":
            self.pos_embedding = self.param("pos_embedding", logical(init, (None, "embed")),
                                            (cfg.max_len, cfg.d_model))
        self.dropout = nn.Dropout(cfg.dropout)
        # Per-layer input: the layer's cache; shared: positions, mask, cache_index, train.
        self.blocks = scanned(DecoderBlock, cfg, n_broadcast=4, name="blocks")
        self.final_norm = Norm(cfg)
        if not cfg.tie_embeddings:
            self.head = Dense(cfg, cfg.vocab_size, ("embed", "vocab"), use_bias=False)
        if cfg.value_head:
            self.value = Dense(cfg, 1, ("embed", None), use_bias=True)

    def _embed(self, tokens, positions, train):
        x = self.embed(tokens)  # (B, T, D)
        if self.cfg.positions == "learned":
            x = x + self.pos_embedding[positions].astype(x.dtype)
        return self.dropout(x, deterministic=not train)

    def lm_head(self, x):
        """Final-normed hidden states (..., D) -> logits (..., V): the tied embedding or the
        head. The chunked cross-entropy (objectives/causal_lm.py) calls it chunk by chunk."""
        return self.embed.attend(x) if self.cfg.tie_embeddings else self.head(x)

    def _logits(self, x, head: str = "lm"):
        x = self.final_norm(x)
        if head == "value":
            return self.value(x)[..., 0].astype(jnp.float32)  # (B, T)
        if head == "hidden":
            return x
        logits = self.lm_head(x)  # (B, T, V)
        return (logits, self.value(x)[..., 0].astype(jnp.float32)) if head == "both" else logits

    def __call__(self, tokens, positions=None, segment_ids=None, train: bool = False,
                 head: str = "lm"):
        """tokens (B, T) int -> logits (B, T, vocab). positions default to 0..T-1. head: "lm",
        "value" (values (B, T); needs model.value_head), "both" ((logits, values)) or "hidden"
        (the final-normed hidden states (B, T, D), before the head)."""
        B, T = tokens.shape
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
        attention = self.cfg.attention
        mesh = sequence_mesh() if attention == "auto" or attention in SEQUENCE_PARALLEL else None
        if mesh is not None:  # sequence parallel: ring attention over the zig-zag order
            n = mesh.shape[SEQUENCE_AXIS]
            if T % (2 * n):
                raise ConfigError(f"sequence length {T} is not divisible by 2 x the mesh's "
                                  f"sequence axis ({2 * n}, zig-zag chunks); use a multiple of "
                                  f"{2 * n} for model.max_len")
            order = zigzag_order(T, n)
            tokens, positions = tokens[:, order], positions[:, order]
            mask = RingSegments(None if segment_ids is None else segment_ids[:, order], mesh,
                                gather=attention == "allgather")
        elif attention in FUSED_KERNELS:
            mask = (KernelSegments(jnp.zeros((B, T), jnp.int32), attention, packed=False)
                    if segment_ids is None else KernelSegments(segment_ids, attention))
        elif segment_ids is not None:
            idx = jnp.arange(T)
            mask = attention_mask(idx, idx, q_segments=segment_ids, kv_segments=segment_ids)
        else:
            mask = None  # plain causal: the fast path then needs no materialised mask
        x = self._embed(tokens, positions, train)
        x, _ = self.blocks(x, None, positions, mask, None, train)
        if mesh is not None:
            x = x[:, np.argsort(order)]  # back to the sequence's order
        return self._logits(x, head)

    def decode(self, tokens, cache: KVCache, token_mask=None, last_only: bool = False):
        """Append tokens (B, T) to the cache and return their logits (B, T, vocab) and the cache.

        token_mask (B, T) marks real tokens (False for left padding of shorter prompts); the
        caller keeps cache.length + T <= cache.size. last_only: logits of the last token only,
        (B, 1, vocab) (a prompt's prefill: the head is then one row per sequence, not T).
        """
        B, T = tokens.shape
        if token_mask is None:
            token_mask = jnp.ones((B, T), bool)
        counts = jnp.cumsum(token_mask, axis=1, dtype=jnp.int32)  # real tokens so far, per row
        positions = jnp.maximum(cache.next_position[:, None] + counts - 1, 0)  # (B, T)
        start = cache.length
        valid = jax.lax.dynamic_update_slice(cache.valid, token_mask, (0, start))  # (B, S)
        q_index = start + jnp.arange(T)
        mask = attention_mask(q_index, jnp.arange(cache.size), kv_valid=valid)  # (B, 1, T, S)
        x = self._embed(tokens, positions, False)
        x, layers = self.blocks(x, LayerCache(cache.k, cache.v, cache.layout), positions, mask,
                                start, False)
        cache = cache.replace(k=layers.k, v=layers.v, valid=valid, length=start + T,
                              next_position=cache.next_position + counts[:, -1])
        return self._logits(x[:, -1:] if last_only else x), cache


def init_params(cfg: ModelConfig, rng: jax.Array):
    """Initialise a Decoder: (params, logical axis names of every param); see
    layers.init_with_axes."""
    # Traced on 8 tokens with the reference attention: the parameters do not depend on the
    # attention, and the fused kernels' blocks need longer sequences.
    return init_with_axes(Decoder(replace(cfg, attention="reference")), rng,
                          jnp.zeros((1, min(cfg.max_len, 8)), jnp.int32),
                          head="both" if cfg.value_head else "lm")


def init_value_head(cfg: ModelConfig, rng: jax.Array) -> dict:
    """Fresh params of the scalar head (model.value_head) for a decoder trained without one:
    the kernel (D, 1) drawn as the other layers' (N(0, init_std)), the bias zero."""
    return {"kernel": cfg.init_std * jax.random.normal(rng, (cfg.d_model, 1), jnp.float32),
            "bias": jnp.zeros((1,), jnp.float32)}
