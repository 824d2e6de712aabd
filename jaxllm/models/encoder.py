"""BERT-style bidirectional encoder, with masked-LM and next-sentence-prediction heads, or a
task head (model.head) in their place.

    tokens (B, T) -> token + position (+ token-type) embeddings -> [LayerNorm if post-norm]
                  -> n_layers EncoderBlocks (scanned; bidirectional, padding masked)
                  -> [final norm if pre-norm] -> hidden states (B, T, D)

It is built from the decoder's blocks (models/layers.py): `EncoderBlock` is `DecoderBlock` with
causal=False, and model.norm_position="post" gives BERT's norm(x + f(x)). The heads follow BERT:

    mlm:  dense(D) -> GELU -> LayerNorm -> tied token embedding + bias     -> (B, T, vocab)
    nsp:  pooler dense(D) + tanh on the first ([CLS]) token -> dense(2)   -> (B, 2)
          (class 0 = "B follows A", 1 = "B is random", as in BERT)

    out = Encoder(cfg).apply({"params": p}, tokens, token_types, padding_mask, heads=("mlm",))
    out["hidden"], out["mlm_logits"]

With model.head set, the pretraining heads are not built and one task head, params["head"]
(a linear layer, logical axes ("embed", None)), reads the hidden states:

    sequence: pool (model.pool: "cls" = h[:, 0]; "gap" = mean over real tokens) -> dropout
              -> dense(num_classes)                                          out["logits"] (B, C)
    token:    dropout -> dense(num_classes) on every position               out["logits"] (B, T, C)
    span:     dense(2) on every position   out["start_logits"], out["end_logits"] (B, T) each

"gap" is the pooling all-MiniLM-L6-v2 was trained with (sentence-transformers' mean over the
padding mask), so a classifier fine-tuned from it starts from its sentence embeddings; "cls" is
BERT's choice (without BERT's tanh pooler, which MiniLM's sentence training never used).

Sentence embeddings (sentence-transformers' recipe for all-MiniLM-L6-v2) are
`l2_normalize(mean_pool(out["hidden"], padding_mask))`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxllm.config import ModelConfig
from jaxllm.models.attention import attention_mask
from jaxllm.models.layers import (
    DTYPES,
    Dense,
    EncoderBlock,
    Norm,
    gelu,
    init_with_axes,
    logical,
    scanned,
)

HEADS = ("mlm", "nsp")
# the params of the pretraining heads, absent when model.head is set
PRETRAINING_HEADS = ("mlm_dense", "mlm_norm", "mlm_bias", "pooler", "nsp")


class Encoder(nn.Module):
    cfg: ModelConfig

    def setup(self):
        cfg = self.cfg
        init = nn.initializers.normal(cfg.init_std)
        self.embed = nn.Embed(cfg.vocab_size, cfg.d_model, dtype=DTYPES[cfg.dtype],
                              embedding_init=logical(init, ("vocab", "embed")))
        if cfg.positions == "learned":
            self.pos_embedding = self.param("pos_embedding", logical(init, (None, "embed")),
                                            (cfg.max_len, cfg.d_model))
        if cfg.type_vocab_size:
            self.type_embedding = self.param("type_embedding", logical(init, (None, "embed")),
                                             (cfg.type_vocab_size, cfg.d_model))
        # post-norm (BERT) normalises the embeddings; pre-norm normalises the last block's output
        self.embed_norm = Norm(cfg) if cfg.norm_position == "post" else None
        self.final_norm = Norm(cfg) if cfg.norm_position == "pre" else None
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = scanned(EncoderBlock, cfg, n_broadcast=4, name="blocks")
        if cfg.head:  # a task head replaces the pretraining heads
            self.head = task_head_layer(cfg)
            return
        # pretraining heads
        self.mlm_dense = Dense(cfg, cfg.d_model, ("embed", "mlp"), use_bias=True)
        self.mlm_norm = Norm(cfg)
        self.mlm_bias = self.param("mlm_bias", logical(nn.initializers.zeros, ("vocab",)),
                                   (cfg.vocab_size,))
        self.pooler = Dense(cfg, cfg.d_model, ("embed", "mlp"), use_bias=True)
        self.nsp = Dense(cfg, 2, ("embed", None), use_bias=True)

    def __call__(self, tokens, token_types=None, padding_mask=None, train: bool = False,
                 heads: tuple[str, ...] = ()):
        """tokens (B, T) int; token_types (B, T) int (default 0); padding_mask (B, T) bool,
        True for real tokens (default: all real). Returns {"hidden": (B, T, D)} plus
        "mlm_logits" (B, T, V) and/or "nsp_logits" (B, 2) for the heads asked for, or with
        model.head the task head's outputs (the module docstring), whatever `heads` says."""
        cfg = self.cfg
        B, T = tokens.shape
        positions = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
        x = self.embed(tokens)  # (B, T, D)
        if cfg.positions == "learned":
            x = x + self.pos_embedding[:T].astype(x.dtype)[None]
        if cfg.type_vocab_size:
            types = jnp.zeros_like(tokens) if token_types is None else token_types
            x = x + self.type_embedding[types].astype(x.dtype)
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        x = self.dropout(x, deterministic=not train)
        mask = None  # full attention: the fast path then needs no materialised mask
        if padding_mask is not None:
            idx = jnp.arange(T)
            mask = attention_mask(idx, idx, causal=False, kv_valid=padding_mask)  # (B, 1, T, T)
        x, _ = self.blocks(x, None, positions, mask, None, train)
        if self.final_norm is not None:
            x = self.final_norm(x)
        out = {"hidden": x}
        if cfg.head:
            return {**out, **self._task_head(x, padding_mask, train)}
        if "mlm" in heads:
            h = self.mlm_norm(gelu(self.mlm_dense(x)))
            out["mlm_logits"] = self.embed.attend(h) + self.mlm_bias.astype(h.dtype)
        if "nsp" in heads:
            pooled = jnp.tanh(self.pooler(x[:, 0]))  # (B, D): the [CLS] token
            out["nsp_logits"] = self.nsp(pooled)
        return out

    def _task_head(self, x, padding_mask, train: bool) -> dict:
        """The outputs of model.head from the hidden states x (B, T, D), in float32."""
        cfg = self.cfg
        if cfg.head == "span":
            logits = self.head(x).astype(jnp.float32)  # (B, T, 2)
            return {"start_logits": logits[..., 0], "end_logits": logits[..., 1]}
        if cfg.head == "sequence":
            if cfg.pool == "gap":
                mask = jnp.ones(x.shape[:2], bool) if padding_mask is None else padding_mask
                x = mean_pool(x, mask).astype(x.dtype)  # (B, D)
            else:
                x = x[:, 0]  # (B, D): the first ([CLS]) token
        x = self.dropout(x, deterministic=not train)
        return {"logits": self.head(x).astype(jnp.float32)}  # (B, C) or (B, T, C)


def mean_pool(hidden, padding_mask):
    """Mean of the hidden states (B, T, D) over the real tokens (padding_mask (B, T) True)."""
    w = padding_mask.astype(jnp.float32)[..., None]
    return jnp.sum(hidden.astype(jnp.float32) * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1e-9)


def l2_normalize(x, eps: float = 1e-12):
    """x / max(||x||, eps) along the last axis (torch.nn.functional.normalize's rule)."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def task_head_layer(cfg: ModelConfig) -> Dense:
    """The linear layer of model.head: D -> 2 (span: start and end) or num_classes."""
    return Dense(cfg, 2 if cfg.head == "span" else cfg.num_classes, ("embed", None),
                 use_bias=True)


def init_task_head(cfg: ModelConfig, rng: jax.Array) -> dict:
    """Fresh params of model.head for an encoder trained without it (fine-tuning a pretrained
    body), drawn by the head's own layer (Dense's initialisers: the kernel (D, classes) as the
    other layers', the bias zero)."""
    x = jnp.zeros((1, cfg.d_model), jnp.float32)
    return nn.unbox(task_head_layer(cfg).init(rng, x)["params"])


def init_params(cfg: ModelConfig, rng: jax.Array):
    """Initialise an Encoder with both pretraining heads, or its task head (model.head):
    (params, logical axis names of every param)."""
    return init_with_axes(Encoder(cfg), rng, jnp.zeros((1, min(cfg.max_len, 8)), jnp.int32),
                          heads=HEADS)
