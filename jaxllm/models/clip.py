"""CLIP (Radford et al. 2021): an image tower and a text tower mapped into one embedding space.

    images (B, H, W, C) -> ViT (no head) -> pooled (B, D)  -> image_proj -> L2 normalise -> (B, E)
    tokens (B, T)       -> TextTower     -> state at the end-of-text token (B, Dt)
                                                         -> text_proj  -> L2 normalise -> (B, E)
    logits = min(exp(logit_scale), 100) * image_emb @ text_emb.T              (B, B)

The text tower is a GPT-style causal transformer (the decoder's blocks, pre-norm) whose output
is read at each caption's end-of-text token: with causal attention the padding after that token
cannot change it, so captions need no attention mask. The logit scale is CLIP's learnable
temperature, initialised to log(1/0.07) and clamped so the scale never exceeds 100 (CLIP clamps
the parameter after each step; clamping in the forward gives the same logits and no gradient
past the clamp).

    model = CLIP(cfg)   # cfg: model.kind="clip"; text_* fields size the text tower
    out = model.apply({"params": p}, images, tokens, eot)
    out["image"], out["text"], out["scale"]
    model.apply({"params": p}, images, method="encode_image")
    model.apply({"params": p}, tokens, eot, method="encode_text")
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxllm.config import ModelConfig
from jaxllm.models.layers import DTYPES, DecoderBlock, Dense, Norm, init_with_axes, logical, scanned
from jaxllm.models.vit import ViT

INIT_LOGIT_SCALE = math.log(1 / 0.07)
MAX_LOGIT_SCALE = 100.0


def image_config(cfg: ModelConfig) -> ModelConfig:
    """The image tower: the model's ViT fields, without a classification head."""
    return dataclasses.replace(cfg, kind="vit", num_classes=0)


def text_config(cfg: ModelConfig) -> ModelConfig:
    """The text tower: text_* fields where set, else the image tower's sizes."""
    return dataclasses.replace(cfg, kind="decoder", n_layers=cfg.text_layers or cfg.n_layers,
                               n_heads=cfg.text_heads or cfg.n_heads,
                               d_model=cfg.text_d_model or cfg.d_model,
                               d_ff=0 if cfg.text_d_model else cfg.d_ff, head_dim=0)


def l2_normalize(x, eps: float = 1e-12):
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


class TextTower(nn.Module):
    """Token + learned position embeddings -> causal pre-norm blocks -> final norm, read at the
    end-of-text token of each row."""
    cfg: ModelConfig  # a text_config()

    @nn.compact
    def __call__(self, tokens, eot, train: bool = False):
        """tokens (B, T) int, eot (B,) int index of each row's end-of-text token -> (B, Dt)."""
        cfg = self.cfg
        B, T = tokens.shape
        init = nn.initializers.normal(cfg.init_std)
        x = nn.Embed(cfg.vocab_size, cfg.d_model, dtype=DTYPES[cfg.dtype],
                     embedding_init=logical(init, ("vocab", "embed")), name="embed")(tokens)
        pos = self.param("pos_embedding", logical(init, (None, "embed")),
                         (cfg.max_len, cfg.d_model))
        x = x + pos[:T].astype(x.dtype)[None]  # (B, T, Dt)
        x = nn.Dropout(cfg.dropout)(x, deterministic=not train)
        positions = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
        x, _ = scanned(DecoderBlock, cfg, n_broadcast=4, name="blocks")(
            x, None, positions, None, None, train)  # causal: no mask needed
        x = Norm(cfg, name="final_norm")(x)
        return jnp.take_along_axis(x, eot[:, None, None], axis=1)[:, 0]  # (B, Dt)


class CLIP(nn.Module):
    cfg: ModelConfig

    def setup(self):
        cfg = self.cfg
        self.image = ViT(image_config(cfg))
        self.text = TextTower(text_config(cfg))
        self.image_proj = Dense(cfg, cfg.embed_dim, ("embed", None), use_bias=False,
                                std=cfg.d_model ** -0.5)
        self.text_proj = Dense(text_config(cfg), cfg.embed_dim, ("embed", None), use_bias=False,
                               std=text_config(cfg).d_model ** -0.5)
        self.logit_scale = self.param("logit_scale", logical(
            nn.initializers.constant(INIT_LOGIT_SCALE), ()), ())

    def encode_image(self, images, train: bool = False):
        """images (B, H, W, C) -> unit-norm embeddings (B, E), float32."""
        feats = self.image(images, train=train)["pre_logits"]  # (B, D)
        return l2_normalize(self.image_proj(feats).astype(jnp.float32))

    def encode_text(self, tokens, eot, train: bool = False):
        """tokens (B, T), eot (B,) -> unit-norm embeddings (B, E), float32."""
        return l2_normalize(self.text_proj(self.text(tokens, eot, train=train)).astype(
            jnp.float32))

    def scale(self):
        """The clamped logit scale exp(logit_scale) <= 100."""
        return jnp.minimum(jnp.exp(self.logit_scale), MAX_LOGIT_SCALE)

    def __call__(self, images, tokens, eot, train: bool = False):
        return {"image": self.encode_image(images, train), "text": self.encode_text(
            tokens, eot, train), "scale": self.scale()}


def init_params(cfg: ModelConfig, rng: jax.Array):
    """Initialise a CLIP: (params, logical axis names of every param)."""
    images = jnp.zeros((1, cfg.image_size, cfg.image_size, cfg.channels), jnp.float32)
    tokens = jnp.zeros((1, cfg.max_len), jnp.int32)
    return init_with_axes(CLIP(cfg), rng, images, tokens, jnp.zeros((1,), jnp.int32))
