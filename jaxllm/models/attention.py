"""Scaled dot-product attention: one readable reference and the fast implementations held equal
to it by the tests.

    reference_attention   einsum scores, boolean mask, softmax, einsum: the definition
    fast                  jax.nn.dot_product_attention's XLA implementation (any backend)
    cudnn                 jax.nn.dot_product_attention's cuDNN implementation: the fused flash
                          attention of NVIDIA GPUs, bfloat16 or float16 only
    blocked_attention     causal attention by query blocks that skip the fully masked key blocks,
                          with a hand-written backward: the fastest on XLA:CPU
    cached_attention      queries over the CPU decode path's KV cache, read in place
    ring_attention        sequence parallelism: the tokens are split over the mesh's `sequence`
                          axis and key/value blocks travel around the ring of its devices
    pallas_attention      the fused flash-attention kernel of jax.experimental.pallas.ops.gpu
                          (Triton on GPU; Pallas interpret mode on CPU, for the tests)
    splash_attention      the TPU's block-sparse flash attention, jax.experimental.pallas.ops.tpu
                          (interpret mode on CPU, for the tests)

`resolve(attention, dtype)` picks the implementation of model.attention="auto": blocked on
CPU, cudnn on GPU in bfloat16/float16 (fast in float32), fast on TPU; `self_attention` runs the
one it picked. Shapes: q (B, T, N, H); k, v (B, S, K, H) with N = K * G (grouped-query attention);
masks are boolean, True where a query may attend to a key, broadcastable to (B, 1, T, S).

Decoding has two paths, one per kind of backend, chosen by `resolve_decode_path` (see
`LayerCache` for the cache layouts, jaxllm/infer/generate.py for the rest of each path).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.sharding import PartitionSpec as P

from jaxllm.config import ModelConfig
from jaxllm.errors import ConfigError

NEG = jnp.finfo(jnp.float32).min  # the score of a masked pair (finite: no NaN in empty rows)

DECODE_PATHS = ("cpu", "accelerator")


HALF_DTYPES = ("bfloat16", "float16")  # what cuDNN's fused attention takes
SEQUENCE_PARALLEL = ("ring", "allgather")  # model.attention values that split the sequence
FUSED_KERNELS = ("pallas", "splash")  # model.attention values the decoder hands segment ids


def resolve(attention: str, dtype: str = "float32") -> str:
    """The implementation a model.attention value means on the current backend, for a model
    computing in `dtype`. "ring" means ring attention under a mesh with a sequence axis (the
    decoder decides) and "fast" elsewhere (decoding, evaluation off the mesh)."""
    backend = jax.default_backend()
    if attention in SEQUENCE_PARALLEL:
        return "fast"
    if attention == "cudnn" and backend != "gpu":
        raise ConfigError(f"model.attention=cudnn needs an NVIDIA GPU (this backend is "
                          f"{backend}); use model.attention=auto or fast")
    if attention == "splash" and backend == "gpu":
        raise ConfigError("model.attention=splash is the TPU's kernel; on a GPU use "
                          "model.attention=cudnn or pallas")
    if attention != "auto":
        return attention
    if backend == "cpu":
        return "blocked"
    return "cudnn" if backend == "gpu" and dtype in HALF_DTYPES else "fast"


def self_attention(q, k, v, mask, impl: str, causal: bool = True, *,
                   block: int = ModelConfig.attention_block):
    """Attention of q (B, T, N, H) over k, v (B, S, K, H) of the same sequence with the resolved
    implementation `impl`. mask: None for plain causal (or, causal=False, full) attention, which
    the fused implementations then never materialise; else boolean (B|1, 1, T, S), causality
    included. block: the query block of impl "blocked" (model.attention_block)."""
    if impl == "blocked" and causal:
        return blocked_attention(q, k, v, mask, block=block)
    if impl == "reference":
        if mask is None:
            idx = jnp.arange(q.shape[1])
            mask = attention_mask(idx, idx, causal=causal)
        return reference_attention(q, k, v, mask=mask)
    if impl == "cudnn" and mask is not None:  # cuDNN is given the mask whole, not broadcast
        mask = jnp.broadcast_to(mask, (q.shape[0], 1, q.shape[1], k.shape[1]))
    return jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=causal and mask is None,
                                        implementation="cudnn" if impl == "cudnn" else "xla")


def masked_attention(q, k, v, mask, impl: str):
    """Attention of q (B, T, N, H) over k, v (B, S, K, H) under a boolean mask (B|1, 1, T|1, S)
    (cross-attention, a decode step over its cache): the reference with impl "reference", XLA's
    fused attention otherwise (blocked is causal self-attention only)."""
    if impl == "reference":
        return reference_attention(q, k, v, mask=mask)
    return jax.nn.dot_product_attention(q, k, v, mask=mask)


def resolve_decode_path(path: str = "auto") -> str:
    """The decode path a value means on the current backend: "auto" is "cpu" on XLA:CPU and
    "accelerator" on GPU and TPU; "cpu" and "accelerator" choose one anywhere (the tests run
    both on the CPU)."""
    if path == "auto":
        return "cpu" if jax.default_backend() == "cpu" else "accelerator"
    if path not in DECODE_PATHS:
        raise ValueError(f"decode path {path!r}: choose auto or one of {', '.join(DECODE_PATHS)}")
    return path


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
    """Readable attention: einsum scores, mask, softmax, einsum."""
    B, T, N, H = q.shape
    K = k.shape[2]
    q = q.reshape(B, T, K, N // K, H)  # (B, T, K, G, H)
    scores = jnp.einsum("btkgh,bskh->bkgts", q, k).astype(jnp.float32) / jnp.sqrt(H)
    scores = jnp.where(mask[:, :, None], scores, NEG)  # mask (B, 1, 1, T, S)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkgts,bskh->btkgh", probs, v)  # (B, T, K, G, H)
    return out.reshape(B, T, N, H)


# --- blocked causal attention -------------------------------------------------------------------
# Queries are cut into blocks of `block` positions; block i attends only to keys 0 .. end of block
# i, so the fully masked upper-right key blocks are never computed: at T=256 and block 64 that is
# 3/8 fewer score flops and softmax work. The backward is written out from the saved
# probabilities (dS = P * (dP - rowsum(dO * O))), which XLA:CPU runs faster than the autodiff of
# a masked softmax. Inside, queries are grouped by key/value head: (B, K, T*G, H), row t*G + g.
# The block is model.attention_block (a model's config; its default 64 is config.py's).


def _blocks(T: int, block: int):
    return [(t0, min(T, t0 + block)) for t0 in range(0, T, block)]


def _block_mask(t0, t1, G, mask):
    """(B|1, 1, (t1-t0)*G, t1): rows of queries t0..t1 against keys 0..t1."""
    if mask is None:  # plain causal
        tq = t0 + jnp.arange((t1 - t0) * G) // G
        return (jnp.arange(t1)[None, :] <= tq[:, None])[None, None]
    m = mask[:, :, t0:t1, :t1]
    return jnp.repeat(m, G, axis=2) if G > 1 else m


def _blocked_forward(q, k, v, mask, G, block):
    T = q.shape[2] // G
    outs, probs = [], []
    for t0, t1 in _blocks(T, block):
        s = jnp.einsum("bkrh,bksh->bkrs", q[:, :, t0 * G:t1 * G], k[:, :, :t1],
                       preferred_element_type=jnp.float32)
        s = jnp.where(_block_mask(t0, t1, G, mask), s, NEG)
        p = jnp.exp(s - jnp.max(s, axis=-1, keepdims=True))
        p = (p / jnp.sum(p, axis=-1, keepdims=True)).astype(v.dtype)
        outs.append(jnp.einsum("bkrs,bksh->bkrh", p, v[:, :, :t1]))
        probs.append(p)
    return jnp.concatenate(outs, axis=2), probs


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _blocked(q, k, v, mask, G, block):
    return _blocked_forward(q, k, v, mask, G, block)[0]


def _blocked_fwd(q, k, v, mask, G, block):
    o, probs = _blocked_forward(q, k, v, mask, G, block)
    return o, (q, k, v, mask, o, probs)


def _blocked_bwd(G, block, res, do):
    q, k, v, mask, o, probs = res
    T, S = q.shape[2] // G, k.shape[2]
    delta = jnp.sum(do.astype(jnp.float32) * o, axis=-1, keepdims=True)  # rowsum(P * dP)
    dq, dk, dv = [], 0, 0
    for (t0, t1), p in zip(_blocks(T, block), probs):
        rows = slice(t0 * G, t1 * G)
        dp = jnp.einsum("bkrh,bksh->bkrs", do[:, :, rows], v[:, :, :t1],
                        preferred_element_type=jnp.float32)
        ds = (p * (dp - delta[:, :, rows])).astype(q.dtype)
        dq.append(jnp.einsum("bkrs,bksh->bkrh", ds, k[:, :, :t1]))
        pad = ((0, 0), (0, 0), (0, S - t1), (0, 0))  # keys past the block got no gradient
        dk = dk + jnp.pad(jnp.einsum("bkrs,bkrh->bksh", ds, q[:, :, rows]), pad)
        dv = dv + jnp.pad(jnp.einsum("bkrs,bkrh->bksh", p, do[:, :, rows]), pad)
    return jnp.concatenate(dq, axis=2), dk, dv, None


_blocked.defvjp(_blocked_fwd, _blocked_bwd)


def blocked_attention(q, k, v, mask=None, *, block: int = ModelConfig.attention_block):
    """Causal self-attention by query blocks (see above) of `block` queries (model.attention_block;
    the last block may be shorter). mask: None (plain causal) or a (B|1, 1, T, T) mask that
    already includes causality (e.g. causal & same segment)."""
    B, T, N, H = q.shape
    K = k.shape[2]
    G = N // K
    qr = (q * H ** -0.5).reshape(B, T, K, G, H).transpose(0, 2, 1, 3, 4).reshape(B, K, T * G, H)
    o = _blocked(qr, jnp.swapaxes(k, 1, 2), jnp.swapaxes(v, 1, 2), mask, G, block)
    return o.reshape(B, K, T, G, H).transpose(0, 2, 1, 3, 4).reshape(B, T, N, H)


# --- ring attention (sequence parallelism) -------------------------------------------------------
# On a mesh with a `sequence` axis of n devices the decoder puts its tokens in zig-zag order
# (`zigzag_order`): the sequence is cut into 2n chunks of c tokens and device i holds chunks i and
# 2n-1-i, so that under the causal mask every device has the same work (Brandon et al. 2023,
# "striped"/zig-zag ring attention). Each device keeps its queries; the key/value blocks (with
# their segment ids) go around the ring with lax.ppermute, n - 1 hops, and an online softmax
# (running max m, normaliser l, unnormalised output o; FlashAttention) merges the blocks. At hop
# s device i holds the block of device j = i - s (mod n):
#   s = 0   its own block: both query chunks against both key chunks, causal mask
#   j < i   key chunk j precedes both query chunks and key chunk 2n-1-j follows both: all queries
#           against key chunk j only, no causal mask
#   j > i   query chunk i precedes both key chunks and query chunk 2n-1-i follows both: query
#           chunk 2n-1-i against all keys, no causal mask
# so every hop after the first costs half a block on every device. Each hop is rematerialised
# (jax.checkpoint): the backward pass keeps one block's inputs per hop, not its scores.
# Moving the blocks costs as much traffic as one all-gather of K/V ((n-1)/n of it per device);
# the ring only holds two blocks at a time and overlaps each hop with the previous block's
# compute. model.attention=allgather is the alternative (`_gathered_local`): one all-gather of
# K/V, then each device's queries attend over all T keys at once: no sequential hops, but the
# whole K/V and a (T/n) x T score block per head live on every device (which is cheaper when:
# experiments/long_context_memory.py, RESULTS.md).

SEQUENCE_AXIS = "sequence"


@struct.dataclass
class RingSegments:
    """What the decoder passes its attention layers instead of a mask under ring attention: the
    segment ids (B, T) in zigzag order (None: one document per row) and the mesh."""
    segment_ids: jax.Array | None
    mesh: object = struct.field(pytree_node=False)
    gather: bool = struct.field(pytree_node=False, default=False)  # model.attention=allgather

    def attend(self, q, k, v):
        return ring_attention(q, k, v, self.segment_ids, self.mesh, gather=self.gather)


def zigzag_order(T: int, n: int) -> np.ndarray:
    """The permutation of 0..T-1 that puts chunks i and 2n-1-i of T/(2n) tokens next to each
    other for i = 0..n-1 (device i's share of the sequence axis)."""
    chunks = np.arange(T).reshape(2 * n, T // (2 * n))
    return np.concatenate([np.concatenate([chunks[i], chunks[2 * n - 1 - i]]) for i in range(n)])


def _merge(acc, q, k, v, mask):
    """One online-softmax step: acc (o (B,t,K,G,H), m, l (B,K,G,t)) updated with the keys k,
    values v (B,s,K,H) for queries q (B,t,K,G,H) (already scaled); mask (B|1,1,1,t,s) or None."""
    o, m, l = acc
    s = jnp.einsum("btkgh,bskh->bkgts", q, k, preferred_element_type=jnp.float32)
    if mask is not None:
        s = jnp.where(mask, s, NEG)
    m_new = jnp.maximum(m, s.max(-1))
    p = jnp.exp(s - m_new[..., None])
    corr = jnp.exp(m - m_new)
    l = l * corr + p.sum(-1)
    o = o * jnp.moveaxis(corr, -1, 1)[..., None] + jnp.einsum(
        "bkgts,bskh->btkgh", p.astype(v.dtype), v, preferred_element_type=jnp.float32)
    return o, m_new, l


def _segment_mask(qs, ks):
    return None if qs is None else (qs[:, :, None] == ks[:, None, :])[:, None, None]


def _ring_local(q, k, v, seg, n):
    """ring_attention on one device of the sequence axis: q (B, 2c, N, H), k, v (B, 2c, K, H),
    seg (B, 2c) or None; the device's two chunks as zigzag_order places them."""
    B, T2, N, H = q.shape
    K, c = k.shape[2], T2 // 2
    i = jax.lax.axis_index(SEQUENCE_AXIS)
    q = (q * H ** -0.5).reshape(B, T2, K, N // K, H)
    acc = (jnp.zeros(q.shape, jnp.float32), jnp.full((B, K, N // K, T2), NEG, jnp.float32),
           jnp.zeros((B, K, N // K, T2), jnp.float32))
    # step 0: the own block, causal between the global positions of the two chunks
    glob = jnp.concatenate([i * c + jnp.arange(c), (2 * n - 1 - i) * c + jnp.arange(c)])
    mask = (glob[None, :] <= glob[:, None])[None, None, None]
    seg_mask = _segment_mask(seg, seg)
    acc = jax.checkpoint(_merge)(acc, q, k, v, mask if seg_mask is None else mask & seg_mask)

    def earlier(acc, k, v, ks):  # j < i: all queries, the first key chunk
        return _merge(acc, q, k[:, :c], v[:, :c], _segment_mask(seg, None if ks is None
                                                                else ks[:, :c]))

    def later(acc, k, v, ks):  # j > i: the second query chunk, all keys
        o, m, l = acc
        part = (o[:, c:], m[..., c:], l[..., c:])
        o2, m2, l2 = _merge(part, q[:, c:], k, v, _segment_mask(
            None if seg is None else seg[:, c:], ks))
        return (jnp.concatenate([o[:, :c], o2], 1), jnp.concatenate([m[..., :c], m2], -1),
                jnp.concatenate([l[..., :c], l2], -1))

    perm = [(j, (j + 1) % n) for j in range(n)]
    ks = seg
    for step in range(1, n):
        k, v = jax.lax.ppermute(k, SEQUENCE_AXIS, perm), jax.lax.ppermute(v, SEQUENCE_AXIS, perm)
        ks = None if ks is None else jax.lax.ppermute(ks, SEQUENCE_AXIS, perm)
        j = (i - step) % n
        acc = jax.lax.cond(j < i, jax.checkpoint(earlier), jax.checkpoint(later), acc, k, v, ks)
    o, _, l = acc
    o = o / jnp.moveaxis(l, -1, 1)[..., None]
    return o.reshape(B, T2, N, H).astype(v.dtype)


def _gathered_local(q, k, v, seg, n):
    """The all-gather alternative on one device of the sequence axis: the keys, values (and
    segment ids) of every device gathered, then the device's two query chunks attend over all T
    of them at once, masked by the global positions of the zig-zag order."""
    T2 = q.shape[1]
    c = T2 // 2
    i = jax.lax.axis_index(SEQUENCE_AXIS)
    k, v = (jax.lax.all_gather(x, SEQUENCE_AXIS, axis=1, tiled=True) for x in (k, v))
    q_pos = jnp.concatenate([i * c + jnp.arange(c), (2 * n - 1 - i) * c + jnp.arange(c)])
    k_pos = jnp.asarray(zigzag_order(n * T2, n))  # the gathered keys are in zig-zag order
    mask = (k_pos[None, :] <= q_pos[:, None])[None, None]  # (1, 1, 2c, T)
    if seg is not None:
        ks = jax.lax.all_gather(seg, SEQUENCE_AXIS, axis=1, tiled=True)
        mask = mask & (seg[:, :, None] == ks[:, None, :])[:, None]
    return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="xla")


def ring_attention(q, k, v, segment_ids, mesh, *, gather: bool = False):
    """Causal attention of q (B, T, N, H) over k, v (B, T, K, H) whose tokens are in
    zigzag_order for the mesh's sequence axis and split over it (segment ids (B, T) or None,
    in the same order). Batch rows stay split over the mesh's batch axes (data, fsdp) and the
    heads over `tensor` when it divides the kv heads. gather: all-gather the keys and values
    instead of passing them around the ring (model.attention=allgather)."""
    n = mesh.shape[SEQUENCE_AXIS]
    batch = tuple(a for a in ("data", "fsdp") if mesh.shape[a] > 1) or None
    t = mesh.shape["tensor"]
    heads = "tensor" if t > 1 and k.shape[2] % t == 0 else None
    spec = P(batch, SEQUENCE_AXIS, heads, None)
    seg_spec = P(batch, SEQUENCE_AXIS)
    fn = functools.partial(_gathered_local if gather else _ring_local, n=n)
    if segment_ids is None:
        return jax.shard_map(lambda q, k, v: fn(q, k, v, None), mesh=mesh,
                             in_specs=(spec, spec, spec), out_specs=spec)(q, k, v)
    return jax.shard_map(fn, mesh=mesh, in_specs=(spec, spec, spec, seg_spec),
                         out_specs=spec)(q, k, v, segment_ids)


# --- Pallas flash attention (GPU) and splash attention (TPU) ------------------------------------
# model.attention="pallas": JAX's maintained Pallas FlashAttention kernel for GPUs
# (jax.experimental.pallas.ops.gpu.attention.mha, forward and backward kernels). It takes one
# key/value head per query head, so grouped-query keys and values are repeated G times (their
# gradients sum back through the repeat).
# model.attention="splash": JAX's maintained splash attention for TPUs
# (jax.experimental.pallas.ops.tpu.splash_attention): block-sparse over a causal mask (fully
# masked blocks are skipped), grouped-query heads natively, heads-major layout, no scaling of
# its own (the queries are scaled first). Its blocks are multiples of 128 tokens.
# Both take segment ids (B, T) for packed documents. On CPU they run in Pallas interpret mode:
# correct but slow, for tests on tiny shapes.

PALLAS_BLOCK = 64  # query and key block of the Pallas GPU kernel (at most the sequence length)
SPLASH_BLOCK = 128  # of the splash kernel: a multiple of the TPU's 128 lanes


@struct.dataclass
class KernelSegments:
    """What the decoder passes its attention layers under model.attention=pallas or splash:
    the kernel and the segment ids (B, T); rows of one document each carry zeros and
    packed=False (nn.scan's broadcast of a layer's arguments fails at initialisation on a pytree
    without array leaves)."""
    segment_ids: jax.Array
    kernel: str = struct.field(pytree_node=False, default="pallas")
    packed: bool = struct.field(pytree_node=False, default=True)

    def attend(self, q, k, v):
        attend = pallas_attention if self.kernel == "pallas" else splash_attention
        return attend(q, k, v, self.segment_ids if self.packed else None)


def _check_blocks(kernel: str, T: int, block: int) -> None:
    if T % block:
        raise ConfigError(f"{kernel} attention: the sequence length {T} is not a multiple of "
                          f"the kernel's block {block}; use a multiple of {block} for "
                          f"model.max_len")


def pallas_attention(q, k, v, segment_ids=None, *, block: int = PALLAS_BLOCK):
    """Causal self-attention of q (B, T, N, H) over k, v (B, T, K, H) with the Pallas GPU
    kernel; block must divide T (the smaller of block and T is used)."""
    from jax.experimental.pallas.ops.gpu import attention as pallas_gpu

    T, N, H = q.shape[1:]
    G = N // k.shape[2]
    b = min(block, T)
    _check_blocks("pallas", T, b)
    sizes = pallas_gpu.BlockSizes(block_q=b, block_k=b, block_q_dkv=b, block_kv_dkv=b,
                                  block_q_dq=b, block_kv_dq=b)
    if G > 1:
        k, v = jnp.repeat(k, G, axis=2), jnp.repeat(v, G, axis=2)
    return pallas_gpu.mha(q, k, v, segment_ids, sm_scale=H ** -0.5, causal=True,
                          block_sizes=sizes, interpret=jax.default_backend() == "cpu")


def splash_attention(q, k, v, segment_ids=None, *, block: int = SPLASH_BLOCK):
    """Causal self-attention of q (B, T, N, H) over k, v (B, T, K, H) with the TPU splash
    kernel; block (a multiple of 128) must divide T."""
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as splash
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as masks

    T, N, H = q.shape[1:]
    b = block
    _check_blocks("splash", T, b)
    sizes = splash.BlockSizes(block_q=b, block_kv=b, block_kv_compute=b, block_q_dkv=b,
                              block_kv_dkv=b, block_kv_dkv_compute=b, block_q_dq=b,
                              block_kv_dq=b)
    kernel = splash.make_splash_mha(masks.MultiHeadMask([masks.CausalMask((T, T))] * N),
                                    block_sizes=sizes, head_shards=1, q_seq_shards=1,
                                    interpret=jax.default_backend() == "cpu")
    q, k, v = (jnp.swapaxes(x, 1, 2) for x in (q * H ** -0.5, k, v))  # (B, heads, T, H)
    if segment_ids is None:
        out = jax.vmap(kernel)(q, k, v)
    else:
        out = jax.vmap(lambda q, k, v, s: kernel(q, k, v, segment_ids=splash.SegmentIds(s, s)))(
            q, k, v, segment_ids)
    return jnp.swapaxes(out, 1, 2)


# --- decoding ------------------------------------------------------------------------------------

@struct.dataclass
class LayerCache:
    """One layer's keys and values while decoding, in the layout of a decode path:

        "cpu"          keys (B*K, H, S), values (B*K, S, H): the layout cached_attention reads
                       in place (below)
        "accelerator"  keys and values (B, S, K, H): the training layout, attended by the same
                       reference / jax.nn.dot_product_attention call as training, which XLA
                       fuses well on GPU and TPU

    The arrays carry a leading layers axis where the model stacks its layers (KVCache)."""
    k: jax.Array
    v: jax.Array
    layout: str = struct.field(pytree_node=False)

    def write(self, k, v, index) -> "LayerCache":
        """The cache with new keys and values k, v (B, T, K, H) in slots [index, index + T)."""
        k, v = k.astype(self.k.dtype), v.astype(self.v.dtype)
        if self.layout == "accelerator":
            return self.replace(k=jax.lax.dynamic_update_slice(self.k, k, (0, index, 0, 0)),
                                v=jax.lax.dynamic_update_slice(self.v, v, (0, index, 0, 0)))
        B, T, K, H = k.shape
        k = jnp.transpose(k, (0, 2, 3, 1)).reshape(B * K, H, T)  # (B*K, H, T)
        v = jnp.swapaxes(v, 1, 2).reshape(B * K, T, H)  # (B*K, T, H)
        return self.replace(k=jax.lax.dynamic_update_slice(self.k, k, (0, 0, index)),
                            v=jax.lax.dynamic_update_slice(self.v, v, (0, index, 0)))

    def attend(self, q, mask, impl: str):
        """Queries q (B, T, N, H) over every slot of the cache (the mask (B, 1, T, S) decides
        which count), with the resolved model.attention `impl` on the accelerator path."""
        if self.layout == "cpu":
            return cached_attention(q, self.k, self.v, mask)
        return masked_attention(q, self.k, self.v, mask, impl)


PREFILL_BLOCK = 512  # queries per block of a long prefill on the CPU decode path


def cached_attention(q, k, v, mask, *, block: int | None = None):
    """Queries q (B, T, N, H) over the CPU path's KV cache: keys k (B*K, H, S), values
    v (B*K, S, H), mask (B|1, 1, T, S). More than `block` (default PREFILL_BLOCK) queries (a long
    prompt's prefill) are attended `block` at a time in a loop, so that the scores held are (block x S) per head,
    not (T x S): a 16k prompt's would be 9.7 GB per layer for SmolLM2.

    Batch and kv heads are merged and the keys are stored transposed, so that both products,
    scores = q @ k and out = probs @ v, are plain matrix products per (row, kv head) that read
    the cache in place (no copy or transpose of the cache per decode step); for one query token
    they contract over the cache's major axis, which XLA:CPU runs faster than the training
    layout. A one-token step with grouped queries (G > 1 query heads per kv head) multiplies and
    sums instead of calling G-row matrix products, faster on XLA:CPU; with G = 1 XLA:CPU runs
    the multiply-and-sum far slower than the products, so that case keeps them (timings:
    experiments/decode_attention.py, smollm2_decode_variants.py, RESULTS.md).
    """
    B, T, N, H = q.shape
    block = block or PREFILL_BLOCK
    if T > block:
        n = -(-T // block)
        size = -(-T // n)  # n equal blocks of at most `block` queries: fewer than n padded
        pad = ((0, 0), (0, n * size - T))  # padded queries attend somewhere; they are cut off
        qb = jnp.pad(q, pad + ((0, 0), (0, 0))).reshape(B, n, size, N, H).swapaxes(0, 1)
        mb = jnp.pad(mask, ((0, 0), *pad, (0, 0)))
        mb = mb.reshape(mask.shape[0], 1, n, size, -1).transpose(2, 0, 1, 3, 4)
        out = jax.lax.map(lambda qm: _cached_block(qm[0], k, v, qm[1]), (qb, mb))
        return out.swapaxes(0, 1).reshape(B, n * size, N, H)[:, :T]
    return _cached_block(q, k, v, mask)


def _cached_block(q, k, v, mask):
    B, T, N, H = q.shape
    K = k.shape[0] // B
    G, S = N // K, k.shape[2]
    q = jnp.swapaxes(q.reshape(B, T, K, G, H), 1, 2).reshape(B * K, T * G, H)
    rowwise = T == 1 and G > 1
    if rowwise:
        scores = (q[:, :, :, None] * k[:, None]).sum(2)
    else:
        scores = jnp.einsum("xqh,xhs->xqs", q, k)
    scores = scores.astype(jnp.float32).reshape(B, K, T, G, S) / jnp.sqrt(H)
    scores = jnp.where(mask[:, :, :, None], scores, NEG)  # mask (B, 1, T, 1, S)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype).reshape(B * K, T * G, S)
    if rowwise:
        out = (probs[:, :, :, None] * v[:, None]).sum(2)
    else:
        out = jnp.einsum("xqs,xsh->xqh", probs, v)  # (B*K, T*G, H)
    return jnp.swapaxes(out.reshape(B, K, T, G, H), 1, 2).reshape(B, T, N, H)
