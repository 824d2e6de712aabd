"""Encoder-decoder transformer ("Attention Is All You Need"), from the decoder's blocks.

    source (B, S) -> token embedding + positions -> n_layers EncoderBlocks (bidirectional,
                     source padding masked) -> [norm if pre-norm] -> memory (B, S, D)
    target (B, T) -> token embedding + positions -> n_layers Seq2SeqBlocks (causal
                     self-attention, cross-attention to memory, MLP) -> [norm if pre-norm]
                  -> logits (B, T, vocab) through the tied target embedding or a head

The decoder's input is the target shifted right (a start token first; the objective builds it,
objectives/seq2seq.py). Both stacks are models/layers.py's blocks: EncoderBlock as the BERT
encoder uses it, and Seq2SeqBlock (below) wraps the same Attention and Mlp around
layers.CrossAttention. model.norm_position "pre" normalises inside each residual branch and
after each stack; "post" is the paper's norm(x + f(x)) with no extra norms.

Positions (model.positions): "learned" (a table per side), "sinusoidal" (the paper's fixed
sin/cos table) or "rope" (rotary, relative positions in both self-attentions; cross-attention
gets none). T5's bucketed relative bias is not built (no block provides it). With
"sinusoidal" the token embeddings are multiplied by sqrt(d_model), as in the paper (section
3.4), so that they are not drowned by the unit-sized position table; the other kinds add
positions of the embeddings' own scale and do not scale.
model.share_embeddings: one token table for both sides (the paper's), else one per side.

Entry points sharing the parameters:
    model.apply(params, source, target_in, source_mask, target_mask, train=False) -> logits
    model.apply(params, source, source_mask, method="encode") -> memory
    model.apply(params, tokens, memory, source_mask, cache, method="decode") -> (logits, cache)
        incremental decoding: the first call computes every layer's cross-attention keys and
        values from memory and keeps them in the cache; later calls reuse them (memory None).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from jaxllm.config import ModelConfig
from jaxllm.models.attention import LayerCache, attention_mask
from jaxllm.models.layers import (
    DTYPES,
    Attention,
    CrossAttention,
    Dense,
    Embed,
    EncoderBlock,
    Mlp,
    Norm,
    init_with_axes,
    logical,
    scanned,
    sinusoidal_positions,
    split_batch,
)


@struct.dataclass
class Seq2SeqCache:
    """What decoding a batch of targets keeps between steps, stacked over the decoder's layers:
    self-attention keys/values k, v (L, B, T_max, K, H) in slots [0, length), and the
    cross-attention keys/values cross_k, cross_v (L, B, S, K, H) of the source (None until the
    first decode call computes them)."""
    k: jax.Array
    v: jax.Array
    length: jax.Array  # () int32: target slots filled so far
    cross_k: jax.Array | None = None
    cross_v: jax.Array | None = None

    @classmethod
    def empty(cls, cfg: ModelConfig, batch: int, size: int) -> Seq2SeqCache:
        shape = (cfg.n_layers, batch, size, cfg.kv_heads, cfg.head_size)
        zeros = jnp.zeros(shape, DTYPES[cfg.dtype])
        return cls(k=zeros, v=zeros, length=jnp.zeros((), jnp.int32))

    def take(self, rows) -> Seq2SeqCache:
        """The cache of the batch rows `rows` (B',) int, each taken from a row of the same
        source: beam search's reordering (among one source's beams). The cross-attention keys
        and values, the same in all of a source's rows, are kept as they are."""
        return self.replace(k=jnp.take(self.k, rows, axis=1), v=jnp.take(self.v, rows, axis=1))

    def select(self, rows) -> Seq2SeqCache:
        """The cache of the batch rows `rows` (B',) int, every array's (the cross-attention
        keys/values too): a cache of B sources made into one of B' rows (beam search's
        W rows per source)."""
        def pick(a):
            return None if a is None else jnp.take(a, rows, axis=1)
        return self.replace(k=pick(self.k), v=pick(self.v), cross_k=pick(self.cross_k),
                            cross_v=pick(self.cross_v))


class Seq2SeqBlock(nn.Module):
    """Decoder block of an encoder-decoder: causal self-attention, cross-attention to the
    encoder output, MLP, each a residual branch (pre-norm x + f(norm(x)) or post-norm
    norm(x + f(x)), as DecoderBlock).

    Written for nn.scan: per-layer input/output `cache` is None (training) or the pair
    (LayerCache of the self-attention, (k, v) of the cross-attention or None to compute them).
    """
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x, cache, memory, memory_mask, positions, mask, cache_index, train: bool):
        cfg = self.cfg
        x = split_batch(x)  # (B, T, D)
        self_cache, cross_kv = (None, None) if cache is None else cache
        norms = [Norm(cfg, name=n) for n in ("attn_norm", "cross_norm", "mlp_norm")]
        drop = nn.Dropout(cfg.dropout, deterministic=not train)
        post = cfg.norm_position == "post"

        def residual(x, norm, f):
            h = f(x if post else norm(x))
            return norm(x + drop(h)) if post else x + drop(h)

        out = {}

        def self_attention(h):
            h, out["self"] = Attention(cfg, causal=True, name="attn")(h, positions, mask,
                                                                      self_cache, cache_index)
            return h

        def cross_attention(h):
            h, out["cross"] = CrossAttention(cfg, name="cross_attn")(h, memory, memory_mask,
                                                                     cross_kv)
            return h

        x = residual(x, norms[0], self_attention)
        x = residual(x, norms[1], cross_attention)
        x = residual(x, norms[2], Mlp(cfg, name="mlp"))
        return split_batch(x), None if cache is None else (out["self"], out["cross"])


class Seq2Seq(nn.Module):
    cfg: ModelConfig

    def setup(self):
        cfg = self.cfg
        init = nn.initializers.normal(cfg.init_std)
        table = {"dtype": DTYPES[cfg.dtype],
                 "embedding_init": logical(init, ("vocab", "embed"))}
        self.embed = Embed(cfg.vocab_size, cfg.d_model, **table)  # the target side's (+ head)
        self.source_embed = self.embed if cfg.share_embeddings else \
            Embed(cfg.vocab_size, cfg.d_model, **table)
        if cfg.positions == "learned":
            shape = (cfg.max_len, cfg.d_model)
            self.pos_embedding = self.param("pos_embedding", logical(init, (None, "embed")), shape)
            self.source_pos_embedding = self.param("source_pos_embedding",
                                                   logical(init, (None, "embed")), shape)
        self.dropout = nn.Dropout(cfg.dropout)
        # shared by every encoder layer: positions, mask, cache_index (unused), train
        self.encoder_blocks = scanned(EncoderBlock, cfg, n_broadcast=4, name="encoder_blocks")
        # shared by every decoder layer: memory, memory_mask, positions, mask, cache_index, train
        self.blocks = scanned(Seq2SeqBlock, cfg, n_broadcast=6, name="blocks")
        if cfg.norm_position == "pre":
            self.encoder_norm = Norm(cfg)
            self.final_norm = Norm(cfg)
        if not cfg.tie_embeddings:
            self.head = Dense(cfg, cfg.vocab_size, ("embed", "vocab"), use_bias=False)

    def _embed(self, embed, table, tokens, positions, train):
        x = embed(tokens)  # (B, T, D)
        if self.cfg.positions == "learned":
            x = x + table[positions].astype(x.dtype)
        elif self.cfg.positions == "sinusoidal":  # the paper's: embeddings times sqrt(D)
            pe = sinusoidal_positions(self.cfg.max_len, self.cfg.d_model)[positions]
            x = x * self.cfg.d_model ** 0.5 + pe.astype(x.dtype)
        return self.dropout(x, deterministic=not train)

    def encode(self, source, source_mask=None, train: bool = False):
        """source (B, S) int, source_mask (B, S) bool (True: a real token; default all) ->
        memory (B, S, D)."""
        B, S = source.shape
        positions = jnp.broadcast_to(jnp.arange(S, dtype=jnp.int32), (B, S))
        table = self.source_pos_embedding if self.cfg.positions == "learned" else None
        x = self._embed(self.source_embed, table, source, positions, train)
        mask = None  # no padding: full attention, no materialised mask
        if source_mask is not None:
            idx = jnp.arange(S)
            mask = attention_mask(idx, idx, causal=False, kv_valid=source_mask)  # (B, 1, S, S)
        x, _ = self.encoder_blocks(x, None, positions, mask, None, train)
        return self.encoder_norm(x) if self.cfg.norm_position == "pre" else x

    def _logits(self, x):
        if self.cfg.norm_position == "pre":
            x = self.final_norm(x)
        return self.embed.attend(x) if self.cfg.tie_embeddings else self.head(x)

    @staticmethod
    def _memory_mask(length: int, source_mask):
        """The cross-attention mask (B or 1, 1, 1, S) of a source of `length` tokens."""
        if source_mask is None:
            return jnp.ones((1, 1, 1, length), bool)
        return source_mask[:, None, None, :]

    def __call__(self, source, target_in, source_mask=None, target_mask=None,
                 train: bool = False):
        """Teacher forcing: logits (B, T, vocab) of the next target token at every position of
        target_in (the target shifted right). Masks (B, S) / (B, T) bool, True for real tokens;
        a right-padded target needs no mask (causality already hides the padding after it)."""
        memory = self.encode(source, source_mask, train)
        B, T = target_in.shape
        positions = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
        mask = None  # plain causal
        if target_mask is not None:
            idx = jnp.arange(T)
            mask = attention_mask(idx, idx, kv_valid=target_mask)  # (B, 1, T, T)
        x = self._embed(self.embed, self._target_table(), target_in, positions, train)
        x, _ = self.blocks(x, None, memory, self._memory_mask(memory.shape[1], source_mask),
                           positions, mask, None, train)
        return self._logits(x)

    def _target_table(self):
        return self.pos_embedding if self.cfg.positions == "learned" else None

    def decode(self, tokens, memory, source_mask, cache: Seq2SeqCache):
        """Append target tokens (B, T) at slots [cache.length, cache.length + T) and return
        their logits (B, T, vocab) and the cache. memory (B, S, D) is read only while the cache
        has no cross-attention keys/values yet (pass None afterwards)."""
        B, T = tokens.shape
        start = cache.length
        positions = jnp.broadcast_to(start + jnp.arange(T, dtype=jnp.int32), (B, T))
        size = cache.k.shape[2]
        mask = attention_mask(start + jnp.arange(T), jnp.arange(size))  # causal over the slots
        cross = None if cache.cross_k is None else (cache.cross_k, cache.cross_v)
        S = (memory if cross is None else cache.cross_k).shape[-3]
        x = self._embed(self.embed, self._target_table(), tokens, positions, False)
        x, (layers, (ck, cv)) = self.blocks(
            x, (LayerCache(cache.k, cache.v, "accelerator"), cross), memory,
            self._memory_mask(S, source_mask), positions, mask, start, False)
        cache = cache.replace(k=layers.k, v=layers.v, length=start + T, cross_k=ck, cross_v=cv)
        return self._logits(x), cache


def init_params(cfg: ModelConfig, rng: jax.Array):
    """Initialise a Seq2Seq: (params, logical axis names of every param)."""
    example = jnp.zeros((1, min(cfg.max_len, 8)), jnp.int32)
    return init_with_axes(Seq2Seq(cfg), rng, example, example)
