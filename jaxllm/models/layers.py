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

Activations carry no names except one: every block's residual stream (B, T, D) is split over
the batch mesh axes when the train step asks for it (`split_activations`). Without it, XLA's
sharding propagation under FSDP follows the parameters (split along `embed`) and may keep the
whole batch on every device (experiments/parallelism.py measures the temporaries per device
with and without it; RESULTS.md).

Shapes in comments: B batch, T query length, S key length, N query heads, K key/value heads,
G = N // K query heads per key/value head, H head size, D model size, F mlp size.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import flax.linen as nn
from jax.ad_checkpoint import checkpoint_name

from jaxllm.config import ModelConfig
from jaxllm.models import attention as attn_lib
from jaxllm.models import rope as rope_lib
from jaxllm.transforms import calibration
from jaxllm.transforms import qat as qat_lib
from jaxllm.transforms.quantize import QArray

_BATCH_SHARDING: contextvars.ContextVar = contextvars.ContextVar("batch_sharding", default=None)


@contextlib.contextmanager
def split_activations(batch_sharding: Callable | None):
    """While tracing inside this context, `split_batch` constrains activations to
    batch_sharding(x) (a NamedSharding splitting the leading axis over the batch mesh axes);
    None leaves them to XLA. The sharded train step traces its loss under it."""
    token = _BATCH_SHARDING.set(batch_sharding)
    try:
        yield
    finally:
        _BATCH_SHARDING.reset(token)


def sequence_mesh():
    """The mesh while tracing under `split_activations` on a mesh whose sequence axis has more
    than one device (the decoder then runs ring attention), else None."""
    sharding = _BATCH_SHARDING.get()
    if sharding is None:
        return None
    mesh = sharding(jax.ShapeDtypeStruct((1, 1), jnp.int32)).mesh
    return mesh if mesh.shape.get(attn_lib.SEQUENCE_AXIS, 1) > 1 else None


def split_batch(x):
    """x, constrained to be split along its leading (batch) axis under `split_activations`."""
    sharding = _BATCH_SHARDING.get()
    return x if sharding is None else jax.lax.with_sharding_constraint(x, sharding(x))


def init_with_axes(module: nn.Module, rng, *example_inputs, **kwargs):
    """Initialise a model: (params, logical axis names of every param).

    params is a plain pytree of arrays; the second tree holds a PartitionSpec of logical names
    per leaf, which jaxllm.parallel maps onto a mesh. One compilation per module configuration
    and input shapes (modules compare by their fields)."""
    boxed = _init_boxed(module, rng, example_inputs, tuple(sorted(kwargs.items())))
    return nn.meta.unbox(boxed), nn.get_partition_spec(boxed)


def abstract_init(init_fn: Callable, rng, *init_args):
    """(ShapeDtypeStruct tree, logical spec tree) of init_fn(rng, *init_args) -> (params, specs),
    traced only: nothing is computed or allocated."""
    box = {}

    def params_only(r, *args):
        params, specs = init_fn(r, *args)
        box["specs"] = specs  # static Python objects: captured while tracing
        return params

    return jax.eval_shape(params_only, rng, *init_args), box["specs"]


@partial(jax.jit, static_argnums=(0, 3))
def _init_boxed(module, rng, example_inputs, kwargs):
    return module.init(rng, *example_inputs, **dict(kwargs))["params"]


DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}

# Named activation-checkpointing policies for the scanned block (what the backward pass may keep
# instead of recomputing). "none" keeps everything (fastest, most memory).
REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
    # keep only each block's attention output (named below), recompute the rest
    "save_attention_out": jax.checkpoint_policies.save_only_these_names("attention_out"),
    # keep the weight matmuls' outputs in pinned host memory instead of device memory
    "offload": jax.checkpoint_policies.offload_dot_with_no_batch_dims("device", "pinned_host"),
}


def logical(init, axes: tuple[str | None, ...]):
    """An initializer whose parameter carries logical axis names."""
    return nn.with_logical_partitioning(init, axes)


class Dense(nn.Module):
    """y = x W + b over the last n_in axes of x, into `features` (an int or a tuple of sizes).

    The kernel has shape (*input axes, *features) and logical names `axes`; it is applied as one
    2-D matmul of the flattened rows, which keeps the forward and both gradients plain row-major
    matmuls (multi-axis contractions made XLA:CPU transpose the gradients first).
    """
    cfg: ModelConfig
    features: int | tuple[int, ...]
    axes: tuple[str | None, ...]
    n_in: int = 1
    std: float | None = None  # None: cfg.init_std
    use_bias: bool | None = None  # None: cfg.use_bias

    @nn.compact
    def __call__(self, x):
        cfg = self.cfg
        out = (self.features,) if isinstance(self.features, int) else tuple(self.features)
        lead, inp = x.shape[:x.ndim - self.n_in], x.shape[x.ndim - self.n_in:]
        dtype = DTYPES[cfg.dtype]
        x2 = x.reshape(-1, math.prod(inp))  # (M, K)
        if self.is_mutable_collection("calibration") and not self.is_initializing():
            calibration.record(self, x2)  # input ranges for static W8A8 (jaxllm.transforms)
        kernel = self.get_variable("params", "kernel") if self.has_variable("params", "kernel") \
            else None
        if hasattr(kernel, "dense_apply"):  # a jaxllm.transforms leaf: quantized, LoRA, ...
            y = kernel.dense_apply(x2, dtype, self)  # (M, N)
        else:
            kernel = self.param("kernel", logical(nn.initializers.normal(self.std or cfg.init_std),
                                                  self.axes), (*inp, *out))
            kernel = kernel.reshape(math.prod(inp), -1)  # (K, N)
            if cfg.quant != "none":  # QAT / BitNet: fake-quantized, straight-through gradients
                x2, kernel = qat_lib.fake_quant_dense(x2, kernel, cfg.quant, cfg.quant_group)
            y = jnp.dot(x2.astype(dtype), kernel.astype(dtype))
        if cfg.use_bias if self.use_bias is None else self.use_bias:
            bias = self.param("bias", logical(nn.initializers.zeros, self.axes[-len(out):]), out)
            y = y + bias.reshape(-1).astype(dtype)
        return y.reshape(*lead, *out)


class Embed(nn.Embed):
    """nn.Embed (same parameter, "embedding" of shape (vocab, D)) that also runs a quantized
    table: a jaxllm.transforms QArray quantized per row (Rule("**/embedding", lead=1)). The
    lookup gathers the B x T rows' codes and dequantizes only those; `attend` (tied output head)
    dequantizes the table for the logits matmul."""

    def setup(self):
        table = self.get_variable("params", "embedding") \
            if self.has_variable("params", "embedding") else None
        if isinstance(table, QArray):  # quantized: flax's shape check would reject it
            self.embedding = table
        else:
            super().setup()

    def __call__(self, inputs):
        if isinstance(self.embedding, QArray):
            return self.embedding.take(inputs).dequantize(self.dtype)  # (*inputs.shape, D)
        return super().__call__(inputs)

    def attend(self, query):
        if isinstance(self.embedding, QArray):
            dtype = self.dtype or query.dtype
            table = self.embedding.dequantize(dtype)  # (V, D)
            return jnp.dot(query.astype(dtype), table.T)
        return super().attend(query)


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


def sinusoidal_positions(n: int, d: int):
    """The fixed position table of "Attention Is All You Need" (section 3.5), (n, d) float32:
    PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(p / 10000^(2i/d))."""
    angles = jnp.arange(n, dtype=jnp.float32)[:, None] * 10000.0 ** (
        -jnp.arange(0, d, 2, dtype=jnp.float32) / d)  # (n, d/2)
    return jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(n, d)


def gelu(x):
    """Exact GELU, x * Phi(x), written with erf (one cheap polynomial on XLA:CPU; flax's form uses
    erfc, several times slower there). The same function to float32 rounding."""
    return x * (0.5 + 0.5 * jax.lax.erf(x * (2 ** -0.5)))


class Attention(nn.Module):
    """Multi-head attention with grouped-query option, RoPE option and an optional KV cache."""
    cfg: ModelConfig
    causal: bool = True

    @nn.compact
    def __call__(self, x, positions, mask, cache=None, cache_index=None):
        """x (B, T, D) -> (B, T, D), new cache.

        mask: None for plain causal (or, for an encoder, full) attention, which the fast paths
        then never materialise; else a boolean (B|1, 1, T, S) mask that includes causality.
        cache: None, or this layer's attention.LayerCache (decoding): the new keys/values go to
        slots [cache_index, cache_index + T) and attention runs over all S slots (mask decides).
        """
        cfg = self.cfg
        N, K, H = cfg.n_heads, cfg.kv_heads, cfg.head_size
        q = Dense(cfg, (N, H), ("embed", "heads", "kv"), name="query")(x)  # (B, T, N, H)
        k = Dense(cfg, (K, H), ("embed", "kv_heads", "kv"), name="key")(x)  # (B, T, K, H)
        v = Dense(cfg, (K, H), ("embed", "kv_heads", "kv"), name="value")(x)  # (B, T, K, H)
        if cfg.positions == "rope":
            inv_freq, factor = rope_lib.frequencies(cfg)  # constants of the config
            q = rope_lib.rope(q, positions, inv_freq, factor)
            k = rope_lib.rope(k, positions, inv_freq, factor)
        impl = attn_lib.resolve(cfg.attention, cfg.dtype)
        if isinstance(mask, (attn_lib.RingSegments, attn_lib.KernelSegments)):  # decoder.py
            y = mask.attend(q, k, v)
        elif cache is not None:
            cache = cache.write(k, v, cache_index)
            y = cache.attend(q, mask, impl)
        else:
            y = attn_lib.self_attention(q, k, v, mask, impl, self.causal,
                                        block=cfg.attention_block)  # (B, T, N, H)
        y = checkpoint_name(y, "attention_out")  # what remat="save_attention_out" keeps
        out_std = cfg.init_std / (2 * cfg.n_layers) ** 0.5
        out = Dense(cfg, cfg.d_model, ("heads", "kv", "embed"), n_in=2, std=out_std,
                    name="out")(y)
        return out, cache


class CrossAttention(nn.Module):
    """Multi-head attention of queries from x over keys/values from another sequence (an
    encoder's output, `memory`): the decoder half of an encoder-decoder. No positions are
    applied here; each side carries its own.

    kv: None computes the keys and values from memory; else the (k, v) pair computed earlier
    for the same memory (decoding computes them once per source and passes them at every step).
    """
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x, memory, mask, kv=None):
        """x (B, T, D), memory (B, S, D), mask (B|1, 1, T|1, S) bool -> (B, T, D), (k, v)."""
        cfg = self.cfg
        N, K, H = cfg.n_heads, cfg.kv_heads, cfg.head_size
        q = Dense(cfg, (N, H), ("embed", "heads", "kv"), name="query")(x)  # (B, T, N, H)
        if kv is None:
            kv = (Dense(cfg, (K, H), ("embed", "kv_heads", "kv"), name="key")(memory),
                  Dense(cfg, (K, H), ("embed", "kv_heads", "kv"), name="value")(memory))
        k, v = kv  # (B, S, K, H)
        impl = attn_lib.resolve(cfg.attention, cfg.dtype)
        y = attn_lib.masked_attention(q, k.astype(q.dtype), v.astype(q.dtype), mask,
                                      impl)  # (B, T, N, H)
        out_std = cfg.init_std / (2 * cfg.n_layers) ** 0.5
        out = Dense(cfg, cfg.d_model, ("heads", "kv", "embed"), n_in=2, std=out_std,
                    name="out")(y)
        return out, kv


class Mlp(nn.Module):
    """Feed-forward block: GELU (exact, GPT-2/BERT) or SwiGLU (Llama)."""
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x):
        cfg = self.cfg
        F = cfg.ff_size
        if cfg.mlp == "swiglu":
            gate = Dense(cfg, F, ("embed", "mlp"), name="gate")(x)
            up = Dense(cfg, F, ("embed", "mlp"), name="up")(x)
            h = nn.silu(gate) * up
        else:
            h = gelu(Dense(cfg, F, ("embed", "mlp"), name="up")(x))
        out_std = cfg.init_std / (2 * cfg.n_layers) ** 0.5
        return Dense(cfg, cfg.d_model, ("mlp", "embed"), std=out_std, name="down")(h)


class DecoderBlock(nn.Module):
    """Transformer block. Pre-norm (model.norm_position="pre", GPT-2/Llama):
    x + attn(norm(x)), then x + mlp(norm(x)); post-norm ("post", BERT): norm(x + attn(x)), then
    norm(x + mlp(x)). Both use the same parameters (attn_norm, attn, mlp_norm, mlp).

    Written for nn.scan: (carry, per-layer input) -> (carry, per-layer output), where the carry is
    the residual stream and the per-layer input/output is this layer's KV cache (or None).
    """
    cfg: ModelConfig
    causal: bool = True  # False: bidirectional attention (EncoderBlock)

    @nn.compact
    def __call__(self, x, cache, positions, mask, cache_index, train: bool):
        cfg = self.cfg
        x = split_batch(x)  # (B, T, D)
        attn_norm, mlp_norm = Norm(cfg, name="attn_norm"), Norm(cfg, name="mlp_norm")
        drop = nn.Dropout(cfg.dropout, deterministic=not train)
        post = cfg.norm_position == "post"
        h, cache = Attention(cfg, causal=self.causal, name="attn")(
            x if post else attn_norm(x), positions, mask, cache, cache_index)
        x = attn_norm(x + drop(h)) if post else x + drop(h)
        h = Mlp(cfg, name="mlp")(x if post else mlp_norm(x))
        x = mlp_norm(x + drop(h)) if post else x + drop(h)
        return split_batch(x), cache


class EncoderBlock(DecoderBlock):
    """The same block with bidirectional attention (BERT); padding comes in through the mask."""
    causal: bool = False


def scanned(block_cls, cfg: ModelConfig, n_broadcast: int, name: str):
    """Stack n_layers copies of a block with nn.scan (params on a leading 'layers' axis) under the
    config's remat policy. The block's second argument is scanned over (per-layer input/output);
    the next n_broadcast arguments are shared by all layers.

    model.scan_unroll=0 (automatic) unrolls the loop completely on CPU, where the loop's stacking
    of every layer's saved activations (zero-filled buffers, dynamic-update-slices, then slices in
    the backward) is a measurable share of a training step (RESULTS.md), and keeps a rolled loop
    (fast compiles) on accelerators. The parameter layout is the same either way.
    """
    if cfg.remat != "none":
        # prevent_cse=False is safe (and faster) under scan; `train` (last arg) is static.
        block_cls = nn.remat(block_cls, policy=REMAT_POLICIES[cfg.remat], prevent_cse=False,
                             static_argnums=(n_broadcast + 2,))
    unroll = cfg.scan_unroll or (cfg.n_layers if jax.default_backend() == "cpu" else 1)
    return nn.scan(block_cls, variable_axes={"params": 0, "calibration": 0},
                   split_rngs={"params": True, "dropout": True},
                   in_axes=(0,) + (nn.broadcast,) * n_broadcast, length=cfg.n_layers,
                   unroll=min(unroll, cfg.n_layers),
                   metadata_params={nn.PARTITION_NAME: "layers"})(cfg, name=name)
