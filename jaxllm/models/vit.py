"""Vision Transformer (Dosovitskiy et al. 2020, "An Image is Worth 16x16 Words").

    images (B, H, W, C) -> non-overlapping p x p patches, each flattened and projected to D
                        -> + position embeddings (learned, or fixed 2-D sin/cos)
                        -> [CLS] token prepended (pool="cls")
                        -> n_layers pre-norm EncoderBlocks (scanned; bidirectional, no mask)
                        -> final LayerNorm -> pooled: [CLS] token or mean of patches (pool="gap")
                        -> head: dense(num_classes) -> logits (B, num_classes)

The blocks are the decoder's (models/layers.py) with causal=False, as in the BERT encoder; the
patch projection is one Dense over the (p, p, C) axes of each patch, so its kernel has the layout
(p, p, C, D) of big_vision's convolution kernel. Model sizes come by name from the ViT paper's
table, as big_vision does it:

    cfg = vit_config("S/16", image_size=224, channels=3, num_classes=1000)
    out = ViT(cfg).apply({"params": p}, images, intermediates=True)
    out["logits"], out["pre_logits"], out["encoded"], out["patches"]

"Heads for other tasks" sit on the same trunk: num_classes=0 gives the pooled features only
(CLIP's image tower uses that). `check_images` rejects images of the wrong shape before tracing.
"""

from __future__ import annotations


import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxllm.config import ModelConfig
from jaxllm.errors import ConfigError, DataError
from jaxllm.models.layers import Dense, EncoderBlock, Norm, init_with_axes, logical, scanned

# The ViT paper's Table 1 plus the Ti/S sizes of DeiT/big_vision: width D, depth, MLP size, heads.
VARIANTS = {
    "Ti": dict(d_model=192, n_layers=12, d_ff=768, n_heads=3),
    "S": dict(d_model=384, n_layers=12, d_ff=1536, n_heads=6),
    "M": dict(d_model=512, n_layers=12, d_ff=2048, n_heads=8),
    "B": dict(d_model=768, n_layers=12, d_ff=3072, n_heads=12),
    "L": dict(d_model=1024, n_layers=24, d_ff=4096, n_heads=16),
    "H": dict(d_model=1280, n_layers=32, d_ff=5120, n_heads=16),
}


def decode_variant(name: str) -> dict:
    """"S/16" -> {d_model: 384, n_layers: 12, d_ff: 1536, n_heads: 6, patch_size: 16}."""
    size, slash, patch = str(name).partition("/")
    if size not in VARIANTS or not slash or not patch.isdigit() or int(patch) < 1:
        raise ConfigError(f"ViT variant {name!r} is not SIZE/PATCH; SIZE is one of "
                          f"{', '.join(VARIANTS)} and PATCH a positive integer (e.g. S/16)")
    return dict(VARIANTS[size], patch_size=int(patch))


def vit_config(name: str, **overrides) -> ModelConfig:
    """A ViT ModelConfig from a variant name ("Ti/16", "B/32", ...) and field overrides.

    Defaults follow the paper: pre-norm LayerNorm (eps 1e-6), exact GELU, biases, [CLS] pooling.
    """
    fields = dict(kind="vit", norm_eps=1e-6, image_size=224, channels=3, num_classes=1000,
                  max_len=8)
    fields.update(decode_variant(name))
    fields.update(overrides)
    return ModelConfig(**fields)


def sincos_2d(rows: int, cols: int, width: int, temperature: float = 10000.0) -> np.ndarray:
    """Fixed 2-D position embeddings (rows * cols, width): a quarter of the channels each for
    sin(x w), cos(x w), sin(y w), cos(y w) over width/4 geometric frequencies w, as in
    big_vision's posemb_sincos_2d (patches in row-major order)."""
    y, x = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")  # (rows, cols)
    quarter = width // 4
    omega = 1.0 / temperature ** (np.arange(quarter) / max(quarter - 1, 1))  # (width/4,)
    xo = x.reshape(-1)[:, None] * omega[None]  # (rows*cols, width/4)
    yo = y.reshape(-1)[:, None] * omega[None]
    return np.concatenate([np.sin(xo), np.cos(xo), np.sin(yo), np.cos(yo)], axis=1).astype(
        np.float32)


def check_images(cfg: ModelConfig, shape: tuple[int, ...]) -> None:
    """DataError unless `shape` is (B, image_size, image_size, channels) for this model."""
    want = (cfg.image_size, cfg.image_size, cfg.channels)
    if len(shape) != 4 or tuple(shape[1:]) != want:
        raise DataError(f"images of shape {tuple(shape)} do not fit this model; it takes "
                        f"(batch, {want[0]}, {want[1]}, {want[2]}) (height, width, channels)")
    if cfg.image_size % cfg.patch_size:
        raise ConfigError(f"model.patch_size={cfg.patch_size} must divide "
                          f"model.image_size={cfg.image_size} (non-overlapping patches)")


class ViT(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, images, train: bool = False, intermediates: bool = False):
        """images (B, H, W, C) float -> {"logits": (B, num_classes)} (or, with num_classes=0,
        {"pre_logits": (B, D)}); intermediates=True adds every stage's output."""
        cfg = self.cfg
        B, Himg, Wimg, C = images.shape
        p, D = cfg.patch_size, cfg.d_model
        if Himg % p or Wimg % p:  # shapes are static: this fires at trace time, not in the step
            raise ConfigError(f"model.patch_size={p} must divide the image size {Himg}x{Wimg}")
        rows, cols = Himg // p, Wimg // p
        out = {}
        x = images.reshape(B, rows, p, cols, p, C).transpose(0, 1, 3, 2, 4, 5)  # (B, r, c, p, p, C)
        x = Dense(cfg, D, (None, None, None, "embed"), n_in=3, use_bias=True,
                  std=(p * p * C) ** -0.5, name="patch_embed")(x)  # (B, r, c, D)
        x = x.reshape(B, rows * cols, D)  # (B, N, D), patches in row-major order
        if cfg.image_positions == "learned":
            pos = self.param("pos_embedding", logical(nn.initializers.normal(D ** -0.5),
                                                      (None, "embed")), (rows * cols, D))
        else:
            pos = jnp.asarray(sincos_2d(rows, cols, D))
        x = x + pos.astype(x.dtype)[None]
        out["patches"] = x
        if cfg.pool == "cls":
            cls = self.param("cls", logical(nn.initializers.zeros, ("embed",)), (D,))
            x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (B, 1, D)), x], axis=1)
        x = nn.Dropout(cfg.dropout)(x, deterministic=not train)
        T = x.shape[1]
        positions = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))  # unused (no RoPE)
        x, _ = scanned(EncoderBlock, cfg, n_broadcast=4, name="blocks")(
            x, None, positions, None, None, train)  # (B, T, D), full attention
        x = Norm(cfg, name="final_norm")(x)
        out["encoded"] = x
        pooled = x[:, 0] if cfg.pool == "cls" else jnp.mean(x, axis=1)  # (B, D)
        out["pre_logits"] = pooled
        if cfg.num_classes:
            out["logits"] = Dense(cfg, cfg.num_classes, ("embed", None), use_bias=True,
                                  name="head")(pooled)  # (B, classes)
        if not intermediates:
            out = {k: out[k] for k in ("logits", "pre_logits") if k in out and (
                k == "logits" or not cfg.num_classes)}
        return out


def init_params(cfg: ModelConfig, rng: jax.Array):
    """Initialise a ViT: (params, logical axis names of every param)."""
    images = jnp.zeros((1, cfg.image_size, cfg.image_size, cfg.channels), jnp.float32)
    return init_with_axes(ViT(cfg), rng, images)
