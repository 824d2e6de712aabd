"""Flax Linen models, one module per `model.kind`, and the one place that picks by kind.

    model = build(cfg.model)                      # Decoder, Encoder, ViT, CLIP or Seq2Seq
    params, axes = init_params(cfg.model, rng)    # plain arrays + logical axis names per leaf
    shapes, axes = abstract_params(cfg.model)     # the same, traced only (nothing computed)
"""

from __future__ import annotations

import jax

from jaxllm.config import ModelConfig
from jaxllm.errors import ConfigError
from jaxllm.models import clip, decoder, encoder, seq2seq, vit
from jaxllm.models.layers import abstract_init

# model.kind -> (Linen module class, its init_params(model_cfg, rng) -> (params, axes))
KINDS = {
    "decoder": (decoder.Decoder, decoder.init_params),
    "encoder": (encoder.Encoder, encoder.init_params),
    "vit": (vit.ViT, vit.init_params),
    "clip": (clip.CLIP, clip.init_params),
    "seq2seq": (seq2seq.Seq2Seq, seq2seq.init_params),
}


def build(cfg: ModelConfig):
    """The Linen module of cfg.kind."""
    return KINDS[cfg.kind][0](cfg)


def init_params(cfg: ModelConfig, rng: jax.Array):
    """(params, logical axis names) of a fresh model of cfg.kind."""
    if cfg.kind != "vit" and cfg.vocab_size < 1:  # a preset's 0 means "from the tokenizer"
        raise ConfigError(f"model.vocab_size={cfg.vocab_size}: a model needs its vocabulary "
                          f"size (a run sets it from its tokenizer; in Python, set it)")
    return KINDS[cfg.kind][1](cfg, rng)


def abstract_params(cfg: ModelConfig, rng: jax.Array | None = None):
    """(ShapeDtypeStruct tree, logical axis names) of init_params, without computing anything."""
    return abstract_init(lambda r: init_params(cfg, r),
                         jax.random.PRNGKey(0) if rng is None else rng)
