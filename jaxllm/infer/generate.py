"""Text generation: greedy, temperature, top-k and top-p sampling in one jitted decode loop.

    out = generate(model, params, [[5, 8, 2], [7]], max_new_tokens=100, temperature=0.8, top_k=40)
    # out[i] is the list of new token ids of prompt i (cut before the first stop token)

Prompts of different lengths are left-padded into one batch. With the KV cache (default) the
prompt is run once (prefill) and then one token per step; the loop is lax.while_loops inside
one jit (one per size the KV cache grows through, see cache_sizes), so there is no Python
dispatch per token, and it stops early once every row has produced a stop token. Past the
model's context (max_len) the loop continues with a sliding window (the last max_len tokens
are re-run each step, as nanoGPT's sample does). use_cache=False re-runs
the window every step; greedy output is the same either way.
"""

from __future__ import annotations

import dataclasses
import weakref
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxllm.errors import DataError
from jaxllm.models.decoder import Decoder, KVCache
from jaxllm.transforms.quantize import QArray

PAD = 0


def sample_logits(logits, rng, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0):
    """Next tokens (B,) from logits (B, V): argmax when temperature == 0, else a sample from
    softmax(logits / temperature) restricted to the top_k tokens and/or the smallest set of
    tokens whose probability reaches top_p (nucleus)."""
    if temperature == 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits.astype(jnp.float32) / temperature
    if top_k:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]  # (B, 1): the k-th largest logit
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if top_p < 1.0:
        sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]  # descending
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs  # probability mass of the better tokens
        kept = before < top_p  # always keeps the best token
        threshold = jnp.min(jnp.where(kept, sorted_logits, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(logits < threshold, -jnp.inf, logits)
    return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)


def _split_layers(tree, n: int) -> list:
    """(L, ...) leaves -> a list of L trees with one layer each."""
    return [jax.tree_util.tree_map(lambda a: a[i], tree) for i in range(n)]


def _stack_layers(trees: list):
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def _window_logits(model, params, buffer, mask, cur, window: int):
    """Logits of the next token after slot cur-1, from a fresh forward pass over the last
    `window` slots (positions counted from the first real token inside the window)."""
    start = jnp.maximum(cur - window, 0)
    toks = jax.lax.dynamic_slice_in_dim(buffer, start, window, axis=1)  # (B, W)
    real = jax.lax.dynamic_slice_in_dim(mask, start, window, axis=1)
    positions = jnp.maximum(jnp.cumsum(real, axis=1) - 1, 0)
    logits = model.apply({"params": params}, toks, positions=positions,
                         segment_ids=real.astype(jnp.int32))
    return jax.lax.dynamic_index_in_dim(logits, cur - 1 - start, axis=1, keepdims=False)


@partial(jax.jit, static_argnames=("n_layers", "tied"))
def _prepare(params, *, n_layers: int, tied: bool):
    """The decode loop's weights: each layer's own arrays, and the head as a (D, vocab) matrix.

    XLA:CPU copies a layer's weights out of the stacked (L, ...) arrays wherever it slices them
    (inside a while loop at every step; outside, once per call: ~0.3-0.6 s of a 5 s SmolLM2
    call). The tied (vocab, D) embedding multiplied in its transposed form ran ~10x slower than
    a (D, vocab) matrix (0.40 vs 0.03 s per step for SmolLM2's 49152 x 576).
    """
    if tied:  # a quantized table (model.weights embed=true) is dequantized for the head; the
        table = params["embed"]["embedding"]  # lookups keep reading its codes
        head = (table.dequantize() if isinstance(table, QArray) else table).T
    else:
        head = params["head"]["kernel"]
    return _split_layers(params["blocks"], n_layers), head


# One prepared copy, for the parameters of the last call (held by weak references: the slot is
# emptied when they are freed). Repeated calls with the same params skip the copies above at
# the price of holding the weights twice while the slot lives.
_PREPARED: dict = {}


def _prepared(model: Decoder, params):
    leaves = jax.tree_util.tree_leaves(params)
    slot = _PREPARED.get("slot")
    if slot is not None and slot[0] == model.cfg and len(slot[1]) == len(leaves) and all(
            ref() is leaf for ref, leaf in zip(slot[1], leaves)):
        return slot[2]
    _PREPARED.clear()
    prepared = _prepare(params, n_layers=model.cfg.n_layers, tied=model.cfg.tie_embeddings)
    try:
        refs = [weakref.ref(leaf) for leaf in leaves]
        weakref.finalize(leaves[0], _PREPARED.clear)
    except TypeError:  # a leaf that takes no weak reference (a Python scalar): do not cache
        return prepared
    _PREPARED["slot"] = (model.cfg, refs, prepared)
    return prepared


def cache_sizes(prompt_len: int, window: int, first: int = 64) -> list[int]:
    """The sizes the KV cache grows through while decoding: the multiple of `first` slots that
    holds the prompt and one new token, then doubling, up to `window`.

    A step's attention reads every slot of the cache, filled or not, so a cache of the whole
    window from the start reads ~1.7x the filled slots on average for a 32-token prompt and 128
    new tokens. Growing it (64, 128, 160 slots there) made SmolLM2-135M decode ~9% faster at
    batch 8 and ~5% at batch 1, for a longer compile (one loop per size; doubling
    keeps their number logarithmic) and one copy of the cache per size
    (experiments/smollm2_decode_variants.py, RESULTS.md)."""
    size = min(window, -(-(prompt_len + 1) // first) * first)
    sizes = [size]
    while size < window:
        size = min(window, 2 * size)
        sizes.append(size)
    return sizes


def _grow(cache: KVCache, size: int) -> KVCache:
    """The per-layer cache (lists of keys (B*K, H, S) and values (B*K, S, H)) with empty slots
    appended up to `size`."""
    extra = size - cache.size
    if extra == 0:
        return cache
    return cache.replace(k=[jnp.pad(k, ((0, 0), (0, 0), (0, extra))) for k in cache.k],
                         v=[jnp.pad(v, ((0, 0), (0, extra), (0, 0))) for v in cache.v],
                         valid=jnp.pad(cache.valid, ((0, 0), (0, extra))))


@partial(jax.jit, static_argnames=("model", "max_new_tokens", "temperature", "top_k", "top_p",
                                   "stop_tokens", "use_cache", "n_tokens"))
def _generate(params, layers, head, prompt, prompt_mask, rng, *, model: Decoder,
              max_new_tokens: int, temperature: float, top_k: int, top_p: float,
              stop_tokens: tuple[int, ...], use_cache: bool, n_tokens: int):
    """params: the model's own; layers, head: from _prepare (what the cached path reads)."""
    cfg = model.cfg
    # The cached path decodes with a separate (D, vocab) head (the same numbers when tied) and
    # the layer loop unrolled over the per-layer weights: stacking them inside the step lets the
    # simplifier turn slice(stack(xs)) back into xs, so no weight is copied (2.9 -> 1.1 ms per
    # token for the 4-layer, d=256 model of experiments/decode_throughput.py).
    fast_cfg = dataclasses.replace(cfg, tie_embeddings=False, scan_unroll=cfg.n_layers)
    unrolled = Decoder(fast_cfg)
    fast_params = dict(params, head={"kernel": head})
    # Prefill and sliding window: the model's own layer loop (rolled for the pretrained models:
    # an unrolled prefill would compile ~10 s longer to save one ~0.2 s copy of the weights).
    model = Decoder(dataclasses.replace(cfg, tie_embeddings=False))
    B, P = prompt.shape
    total = P + max_new_tokens
    window = min(total, cfg.max_len)
    buffer = jnp.concatenate([prompt, jnp.full((B, max_new_tokens), PAD, jnp.int32)], axis=1)
    mask = jnp.concatenate([prompt_mask, jnp.ones((B, max_new_tokens), bool)], axis=1)
    stops = jnp.asarray(stop_tokens or (-1,), jnp.int32)

    sizes = cache_sizes(P, window) if use_cache else []
    if use_cache:
        cache = KVCache.empty(cfg, B, sizes[0])
        logits, cache = model.apply({"params": fast_params}, prompt, cache, prompt_mask,
                                    last_only=True, method=Decoder.decode)
        logits = logits[:, -1]
        cache = cache.replace(k=_split_layers(cache.k, cfg.n_layers),
                              v=_split_layers(cache.v, cfg.n_layers))
    else:
        cache = None
        logits = _window_logits(model, fast_params, buffer, mask, P, window)

    # The cache is split per layer too (carried through the loop as L arrays), for the same
    # reason as the weights.
    def cached_logits(tok, cache, buffer, cur):
        p = dict(fast_params, blocks=_stack_layers(layers))
        stacked = cache.replace(k=_stack_layers(cache.k), v=_stack_layers(cache.v))
        out, cache = unrolled.apply({"params": p}, tok[:, None], stacked, method=Decoder.decode)
        cache = cache.replace(k=_split_layers(cache.k, cfg.n_layers),
                              v=_split_layers(cache.v, cfg.n_layers))
        return out[:, 0], cache

    def window_logits(tok, cache, buffer, cur):
        return _window_logits(model, fast_params, buffer, mask, cur, window), cache

    def phase(carry, stop, next_logits):
        """Steps i < stop: sample token i from the logits, write it, compute the next logits."""
        def cond(carry):
            i, _, _, _, done, _ = carry
            return (i < stop) & ~jnp.all(done)

        def body(carry):
            i, logits, cache, buffer, done, rng = carry
            if n_tokens < cfg.vocab_size:  # rows a mesh padded the vocabulary with: never drawn
                logits = jnp.where(jnp.arange(cfg.vocab_size) < n_tokens, logits, -jnp.inf)
            tok = sample_logits(logits, jax.random.fold_in(rng, i), temperature, top_k, top_p)
            buffer = jax.lax.dynamic_update_slice_in_dim(buffer, tok[:, None], P + i, axis=1)
            done = done | jnp.any(tok[:, None] == stops[None, :], axis=1)
            logits, cache = next_logits(tok, cache, buffer, P + i + 1)
            return i + 1, logits, cache, buffer, done, rng

        return jax.lax.while_loop(cond, body, carry)

    carry = (jnp.zeros((), jnp.int32), logits, cache, buffer, jnp.zeros((B,), bool), rng)
    # With the cache, token i can be appended while slot P + i exists. The cache grows through
    # cache_sizes, one loop per size (shapes are static), so that attention reads only about as
    # many slots as are filled. The sliding-window phase is only built when the context runs out.
    stop = 0
    for size in sizes:
        if stop == max_new_tokens:
            break
        carry = carry[:2] + (_grow(carry[2], size),) + carry[3:]
        stop = min(max_new_tokens, size - P)
        carry = phase(carry, stop, cached_logits)
    if stop < max_new_tokens:
        carry = phase(carry, max_new_tokens, window_logits)
    n, _, _, buffer, _, _ = carry
    return buffer[:, P:], n


def generate(model: Decoder, params, prompts: list[list[int]], *, max_new_tokens: int = 100,
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
             stop_tokens: tuple[int, ...] | list[int] = (), seed: int = 0,
             use_cache: bool = True, vocab_size: int | None = None) -> list[list[int]]:
    """New token ids for each prompt (a list of token ids), cut before the first stop token.

    vocab_size: the tokenizer's vocabulary when the model's is larger (a run trained on a mesh
    pads it to what the mesh divides); ids from there up are never generated."""
    cfg = model.cfg
    n_tokens = cfg.vocab_size if vocab_size is None else int(vocab_size)
    if not 0 < n_tokens <= cfg.vocab_size:
        raise DataError(f"vocab_size={vocab_size}: must be between 1 and the model's "
                        f"{cfg.vocab_size}")
    if not prompts:
        raise DataError("no prompts given; pass at least one list of token ids")
    if max_new_tokens < 1:
        raise DataError(f"max_new_tokens={max_new_tokens}: must be at least 1")
    if temperature < 0:
        raise DataError(f"temperature={temperature}: must be >= 0 (0 is greedy)")
    if top_k < 0 or top_k > cfg.vocab_size:
        raise DataError(f"top_k={top_k}: must be between 0 (off) and the vocabulary size "
                        f"{cfg.vocab_size}")
    if not 0.0 < top_p <= 1.0:
        raise DataError(f"top_p={top_p}: must be in (0, 1] (1 is off)")
    lengths = [len(p) for p in prompts]
    if min(lengths) == 0:
        raise DataError("a prompt is empty; give every prompt at least one token")
    if max(lengths) > cfg.max_len:
        raise DataError(f"a prompt has {max(lengths)} tokens but the model's context is "
                        f"{cfg.max_len} (model.max_len); shorten the prompt")
    for p in prompts:
        bad = [t for t in p if not 0 <= t < cfg.vocab_size]
        if bad:
            raise DataError(f"token ids {bad[:5]} are outside the vocabulary [0, {cfg.vocab_size})")
    P = max(lengths)
    tokens = np.full((len(prompts), P), PAD, np.int32)
    mask = np.zeros((len(prompts), P), bool)
    for row, p in enumerate(prompts):  # left padding: every prompt ends at slot P - 1
        tokens[row, P - len(p):] = p
        mask[row, P - len(p):] = True
    layers, head = _prepared(model, params)
    out, n = _generate(
        params, layers, head, jnp.asarray(tokens), jnp.asarray(mask), jax.random.PRNGKey(seed),
        model=model, max_new_tokens=max_new_tokens, temperature=float(temperature),
        top_k=int(top_k), top_p=float(top_p), stop_tokens=tuple(int(s) for s in stop_tokens),
        use_cache=use_cache, n_tokens=n_tokens)
    out = np.asarray(out)[:, : int(n)]
    results = []
    for row in out.tolist():
        cut = next((i for i, t in enumerate(row) if t in set(stop_tokens)), len(row))
        results.append(row[:cut])
    return results
