"""Text generation: greedy, temperature, top-k and top-p sampling in one jitted decode loop.

    out = generate(model, params, [[5, 8, 2], [7]], max_new_tokens=100, temperature=0.8, top_k=40)
    # out[i] is the list of new token ids of prompt i (cut before the first stop token)

Prompts of different lengths are left-padded into one batch. With the KV cache (default) the
prompt is run once (prefill) and then one token per step; the loop is lax.while_loops inside
one jit (one per size the KV cache grows through, see cache_sizes), so there is no Python
dispatch per token, and it stops early once every row has produced a stop token. Past the
model's context (max_len) the loop continues with a sliding window (the last max_len tokens
are re-run each step, as nanoGPT's sample does). use_cache=False re-runs the window every
step; greedy output is the same either way.

Two decode paths, one per kind of backend (`decode_path`, "auto" resolved by
attention.resolve_decode_path from jax.default_backend() at call time):

    "cpu"          what XLA:CPU runs fastest: a second copy of the weights split per layer with
                   a (D, vocab) head (kept for the params of the last call), the layer loop
                   fully unrolled over it, the KV cache split per layer in a transposed
                   (B*K, H, S) key layout, grouped-query attention as multiply-and-sum
                   (attention.cached_attention); see _cpu_path
    "accelerator"  the plain program XLA fuses well on GPU and TPU: the model's own weights, a
                   rolled loop over its stacked layers, a (B, S, K, H) cache and the training
                   attention call; see _accelerator_path

Both give the same logits (tests/test_generate.py runs both on the CPU).
"""

from __future__ import annotations

import dataclasses
import weakref
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxllm.errors import ConfigError, DataError
from jaxllm.infer.beam import beam_search
from jaxllm.infer.constrain import Constraint
from jaxllm.models.attention import DECODE_PATHS, resolve_decode_path
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
    return [jax.tree_util.tree_map(lambda a, i=i: a[i], tree) for i in range(n)]


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
def _cpu_decode_weights(params, *, n_layers: int, tied: bool):
    """The CPU decode path's copy of the weights: each layer's own arrays, and the head as a
    (D, vocab) matrix.

    XLA:CPU copies a layer's weights out of the stacked (L, ...) arrays wherever it slices them
    (inside a while loop at every step; outside, once per call), and it multiplies by a tied
    (vocab, D) embedding in its transposed form far slower than by a (D, vocab) matrix
    (experiments/RESULTS.md, "SmolLM2-135M decoding: where the time goes").
    """
    if tied:  # a quantized table (model.weights embed=true) is dequantized for the head; the
        table = params["embed"]["embedding"]  # lookups keep reading its codes
        head = (table.dequantize() if isinstance(table, QArray) else table).T
    else:
        head = params["head"]["kernel"]
    return _split_layers(params["blocks"], n_layers), head


# The CPU decode weights of the params of the last call (held by weak references: the slot is
# emptied when they are freed). Repeated calls with the same params skip the copies above at
# the price of holding the weights twice while the slot lives.
_LAST_CPU_DECODE_WEIGHTS: dict = {}


def _cached_cpu_decode_weights(model: Decoder, params):
    """_cpu_decode_weights(params), reused while the same params (the same leaf objects) come
    back."""
    leaves = jax.tree_util.tree_leaves(params)
    slot = _LAST_CPU_DECODE_WEIGHTS.get("slot")
    if slot is not None and slot[0] == model.cfg and len(slot[1]) == len(leaves) and all(
            ref() is leaf for ref, leaf in zip(slot[1], leaves)):
        return slot[2]
    _LAST_CPU_DECODE_WEIGHTS.clear()
    weights = _cpu_decode_weights(params, n_layers=model.cfg.n_layers,
                                  tied=model.cfg.tie_embeddings)
    try:
        refs = [weakref.ref(leaf) for leaf in leaves]
        weakref.finalize(leaves[0], _LAST_CPU_DECODE_WEIGHTS.clear)
    except TypeError:  # a leaf that takes no weak reference (a Python scalar): do not cache
        return weights
    _LAST_CPU_DECODE_WEIGHTS["slot"] = (model.cfg, refs, weights)
    return weights


def cache_sizes(prompt_len: int, window: int, first: int = 64) -> list[int]:
    """The sizes the KV cache grows through while decoding: the multiple of `first` slots that
    holds the prompt and one new token, then doubling, up to `window`.

    A step's attention reads every slot of the cache, filled or not, so a cache of the whole
    window from the start reads far more slots than are filled early on. Growing it costs a
    longer compile (one loop per size; doubling keeps their number logarithmic) and one copy
    of the cache per size (timings: experiments/smollm2_decode_variants.py, RESULTS.md)."""
    size = min(window, -(-(prompt_len + 1) // first) * first)
    sizes = [size]
    while size < window:
        size = min(window, 2 * size)
        sizes.append(size)
    return sizes


def _prefill(model: Decoder, params, prompt, prompt_mask, cache: KVCache):
    """The prompt written into the cache; the logits (B, vocab) of its last position."""
    logits, cache = model.apply({"params": params}, prompt, cache, prompt_mask, last_only=True,
                                method=Decoder.decode)
    return logits[:, -1], cache


def _cpu_path(cfg, params, layers, head):
    """The CPU decode path: (model, params) of the prompt and sliding-window passes, and its
    prefill(prompt, prompt_mask, size) and step(tokens, cache) -> (logits, cache).

    It decodes with the separate (D, vocab) head (the same numbers when tied) and the layer
    loop fully unrolled over the per-layer weights of _cpu_decode_weights: stacking them inside
    the step lets XLA's simplifier turn slice(stack(xs)) back into xs, so no weight is copied
    per step. The cache is carried through the loop split per layer, for the same reason, in
    the "cpu" layout (attention.LayerCache). The prompt and the sliding window run the model's
    own layer loop (rolled for the pretrained models: an unrolled prefill compiles much longer
    to save one copy of the weights per call).
    """
    model = Decoder(dataclasses.replace(cfg, tie_embeddings=False))
    unrolled = Decoder(dataclasses.replace(cfg, tie_embeddings=False, scan_unroll=cfg.n_layers))
    params = dict(params, head={"kernel": head})

    def split(cache):
        return cache.replace(k=_split_layers(cache.k, cfg.n_layers),
                             v=_split_layers(cache.v, cfg.n_layers))

    def prefill(prompt, prompt_mask, size):
        cache = KVCache.empty(cfg, prompt.shape[0], size, "cpu")
        logits, cache = _prefill(model, params, prompt, prompt_mask, cache)
        return logits, split(cache)

    def step(tokens, cache):
        stacked_params = dict(params, blocks=_stack_layers(layers))
        stacked = cache.replace(k=_stack_layers(cache.k), v=_stack_layers(cache.v))
        logits, cache = unrolled.apply({"params": stacked_params}, tokens[:, None], stacked,
                                       method=Decoder.decode)
        return logits[:, 0], split(cache)

    return model, params, prefill, step


def _accelerator_path(cfg, params):
    """The accelerator decode path, what XLA fuses well on GPU and TPU: the model as trained,
    a rolled loop over its stacked layers (unless model.scan_unroll says otherwise), its own
    (tied or separate) head, and a KV cache in the training layout (attention.LayerCache,
    "accelerator"). Returns what _cpu_path returns."""
    model = Decoder(dataclasses.replace(cfg, scan_unroll=cfg.scan_unroll or 1))

    def prefill(prompt, prompt_mask, size):
        cache = KVCache.empty(cfg, prompt.shape[0], size, "accelerator")
        return _prefill(model, params, prompt, prompt_mask, cache)

    def step(tokens, cache):
        logits, cache = model.apply({"params": params}, tokens[:, None], cache,
                                    method=Decoder.decode)
        return logits[:, 0], cache

    return model, params, prefill, step


def _stream(tokens, step):
    """Host side of generate's on_token: hands each step's tokens to the current callback."""
    if _ON_TOKEN:
        _ON_TOKEN[-1](int(step), np.asarray(tokens))


_ON_TOKEN: list = []  # the on_token callbacks of the generate calls in progress (innermost last)


def _masked(logits, state, i, constraint, max_new_tokens, is_stop):
    """The logits with the tokens a constraint forbids at step i set to -inf (see
    constrain.py): a token must lead to a state that can still accept within the steps left;
    stop tokens only in an accepting state."""
    table, accept, dist = constraint
    nxt = table[state]  # (B, V): the state after each token
    left = max_new_tokens - i - 1  # tokens that may follow this one
    ok = (nxt >= 0) & (dist[jnp.maximum(nxt, 0)] <= left)
    ok = ok | (is_stop[None, :] & accept[state][:, None])
    return jnp.where(ok, logits, -jnp.inf)


@partial(jax.jit, static_argnames=("model", "path", "max_new_tokens", "temperature", "top_k",
                                   "top_p", "stop_tokens", "use_cache", "n_tokens",
                                   "keep_logits", "keep_scores", "stream"))
def _generate(params, cpu_weights, prompt, prompt_mask, rng, constraint, *, model: Decoder,
              path: str, max_new_tokens: int, temperature: float, top_k: int, top_p: float,
              stop_tokens: tuple[int, ...], use_cache: bool, n_tokens: int, keep_logits: bool,
              keep_scores: bool, stream: bool):
    """(new tokens (B, max_new_tokens), how many were made, their logits (B, max_new_tokens,
    n_tokens) float32 if keep_logits else None, (log-probs, entropies) (B, max_new_tokens) if
    keep_scores else None, each row's length under a constraint else None). params: the
    model's own; cpu_weights: _cpu_decode_weights(params) on the "cpu" path, None on the
    "accelerator" path; constraint: (table, accept, dist) arrays or None."""
    cfg = model.cfg
    if path == "cpu":
        model, params, prefill, step = _cpu_path(cfg, params, *cpu_weights)
    else:
        model, params, prefill, step = _accelerator_path(cfg, params)
    batch, prompt_len = prompt.shape
    window = min(prompt_len + max_new_tokens, cfg.max_len)
    buffer = jnp.concatenate([prompt, jnp.full((batch, max_new_tokens), PAD, jnp.int32)], axis=1)
    mask = jnp.concatenate([prompt_mask, jnp.ones((batch, max_new_tokens), bool)], axis=1)
    stops = jnp.asarray(stop_tokens or (-1,), jnp.int32)

    sizes = cache_sizes(prompt_len, window) if use_cache else []
    if use_cache:
        logits, cache = prefill(prompt, prompt_mask, sizes[0])
    else:
        cache = None
        logits = _window_logits(model, params, buffer, mask, prompt_len, window)

    def cached_logits(tok, cache, buffer, cur):
        return step(tok, cache)

    def window_logits(tok, cache, buffer, cur):
        return _window_logits(model, params, buffer, mask, cur, window), cache

    is_stop = jnp.zeros((cfg.vocab_size,), bool).at[jnp.asarray(stop_tokens or (0,))].set(
        bool(stop_tokens))

    def phase(carry, stop, next_logits):
        """Steps i < stop: sample token i from the logits, write it, compute the next logits."""
        def cond(carry):
            i, _, _, _, done, _, _, _, _ = carry
            return (i < stop) & ~jnp.all(done)

        def body(carry):
            i, logits, cache, buffer, done, rng, kept, scores, cstate = carry
            if keep_logits:
                kept = jax.lax.dynamic_update_slice_in_dim(
                    kept, logits[:, None, :n_tokens].astype(jnp.float32), i, axis=1)
            raw = logits
            if n_tokens < cfg.vocab_size:  # rows a mesh padded the vocabulary with: never drawn
                logits = jnp.where(jnp.arange(cfg.vocab_size) < n_tokens, logits, -jnp.inf)
            if constraint is not None:
                state, length = cstate
                logits = _masked(logits, state, i, constraint, max_new_tokens, is_stop)
            tok = sample_logits(logits, jax.random.fold_in(rng, i), temperature, top_k, top_p)
            if keep_scores:  # under the model's own distribution over the tokenizer's ids
                logp = jax.nn.log_softmax(raw[:, :n_tokens].astype(jnp.float32), axis=-1)
                picked = jnp.take_along_axis(logp, tok[:, None], axis=1)[:, 0]
                entropy = -jnp.sum(jnp.where(logp > -jnp.inf, jnp.exp(logp) * logp, 0.0), -1)
                scores = tuple(jax.lax.dynamic_update_slice_in_dim(a, x[:, None], i, axis=1)
                               for a, x in zip(scores, (picked, entropy)))
            if stream:
                jax.debug.callback(_stream, tok, i, ordered=True)
            buffer = jax.lax.dynamic_update_slice_in_dim(buffer, tok[:, None], prompt_len + i,
                                                         axis=1)
            stopped = jnp.any(tok[:, None] == stops[None, :], axis=1)
            if constraint is not None:  # a row also ends in an accepting state nothing extends
                table, accept, _ = constraint
                nxt = jnp.take_along_axis(table[state], tok[:, None], axis=1)[:, 0]
                nxt = jnp.where(done | stopped, state, nxt)
                complete = accept[nxt] & ~jnp.any(table[nxt] >= 0, axis=1)
                length = jnp.where(done, length, jnp.where(stopped, i, jnp.where(
                    complete, i + 1, length)))
                cstate = (nxt, length)
                stopped = stopped | complete
            done = done | stopped
            logits, cache = next_logits(tok, cache, buffer, prompt_len + i + 1)
            return i + 1, logits, cache, buffer, done, rng, kept, scores, cstate

        return jax.lax.while_loop(cond, body, carry)

    kept = jnp.zeros((batch, max_new_tokens, n_tokens), jnp.float32) if keep_logits else None
    scores = (jnp.zeros((batch, max_new_tokens), jnp.float32),) * 2 if keep_scores else None
    cstate = None if constraint is None else (jnp.zeros((batch,), jnp.int32),
                                              jnp.full((batch,), max_new_tokens, jnp.int32))
    carry = (jnp.zeros((), jnp.int32), logits, cache, buffer, jnp.zeros((batch,), bool), rng,
             kept, scores, cstate)
    # With the cache, token i can be appended while slot prompt_len + i exists. The cache grows
    # through cache_sizes, one loop per size (shapes are static), so that attention reads only
    # about as many slots as are filled. The sliding-window phase is only built when the
    # context runs out.
    stop = 0
    for size in sizes:
        if stop == max_new_tokens:
            break
        carry = carry[:2] + (carry[2].grow(size),) + carry[3:]
        stop = min(max_new_tokens, size - prompt_len)
        carry = phase(carry, stop, cached_logits)
    if stop < max_new_tokens:
        carry = phase(carry, max_new_tokens, window_logits)
    n, _, _, buffer, _, _, kept, scores, cstate = carry
    return buffer[:, prompt_len:], n, kept, scores, None if cstate is None else cstate[1]


def _take_cache(cache: KVCache, rows) -> KVCache:
    """The cache of the batch rows `rows` (beam search's reordering), in the layout of either
    decode path: "accelerator" k, v (L, B, S, K, H); "cpu" k, v lists of per-layer arrays
    (B*K, ...) whose K rows per sequence stay together."""
    if cache.layout == "cpu":
        B = cache.valid.shape[0]

        def pick(a):  # (B*K, ...) -> (R*K, ...)
            return jnp.take(a.reshape(B, -1, *a.shape[1:]), rows, axis=0).reshape(
                -1, *a.shape[1:])
    else:
        def pick(a):
            return jnp.take(a, rows, axis=1)
    return cache.replace(k=jax.tree_util.tree_map(pick, cache.k),
                         v=jax.tree_util.tree_map(pick, cache.v), valid=cache.valid[rows],
                         next_position=cache.next_position[rows])


@partial(jax.jit, static_argnames=("model", "path", "num_beams", "max_new_tokens",
                                   "stop_tokens", "early_stopping", "n_tokens"))
def _beam_generate(params, cpu_weights, prompt, prompt_mask, length_penalty, *, model: Decoder,
                   path: str, num_beams: int, max_new_tokens: int,
                   stop_tokens: tuple[int, ...], early_stopping: bool, n_tokens: int):
    """infer/beam.py's beam search over a decode path (as _generate: path "cpu" with
    cpu_weights, or "accelerator"), on a cache of the whole context whose rows beam search
    reorders: (sequences, lengths) of the best hypothesis of each prompt."""
    if path == "cpu":
        _, params, prefill, step = _cpu_path(model.cfg, params, *cpu_weights)
    else:
        _, params, prefill, step = _accelerator_path(model.cfg, params)
    batch, prompt_len = prompt.shape
    logits, cache = prefill(prompt, prompt_mask, prompt_len + max_new_tokens)
    rows = jnp.repeat(jnp.arange(batch), num_beams)  # every prompt's cache once per beam
    seqs, lengths, _ = beam_search(
        logits[rows], _take_cache(cache, rows), step, _take_cache, batch=batch,
        num_beams=num_beams, max_new_tokens=max_new_tokens, end_ids=stop_tokens,
        length_penalty=length_penalty, early_stopping=early_stopping, n_tokens=n_tokens)
    return seqs[:, 0], lengths[:, 0]


def left_padded(prompts: list[list[int]], pad_to: int, limit: int):
    """(tokens (B, P) int32, mask (B, P) bool): the prompts left-padded with PAD so that each
    ends at slot P - 1; P is the longest prompt's length rounded up to a multiple of pad_to,
    but not past `limit` (the context less the new tokens: the padding never makes the window
    slide earlier than the longest prompt would), and never shorter than the longest prompt."""
    longest, step = max(len(p) for p in prompts), max(1, pad_to)
    width = max(longest, min(-(-longest // step) * step, limit))
    tokens = np.full((len(prompts), width), PAD, np.int32)
    mask = np.zeros((len(prompts), width), bool)
    for row, p in enumerate(prompts):
        tokens[row, width - len(p):] = p
        mask[row, width - len(p):] = True
    return tokens, mask


def best_beams(seqs, lengths, stop_tokens) -> list[list[int]]:
    """Each row's tokens up to its length, without a final stop token."""
    out = []
    for row, n in zip(np.asarray(seqs).tolist(), np.asarray(lengths).tolist()):
        row = row[:n]
        out.append(row[:-1] if row and row[-1] in set(stop_tokens) else row)
    return out


def generate(model: Decoder, params, prompts: list[list[int]], *, max_new_tokens: int = 100,
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
             stop_tokens: tuple[int, ...] | list[int] = (), seed: int = 0,
             use_cache: bool = True, vocab_size: int | None = None,
             decode_path: str = "auto", return_logits: bool = False,
             return_scores: bool = False, constraint: Constraint | None = None,
             on_token=None, pad_to: int = 1, num_beams: int = 1,
             length_penalty: float = 1.0, early_stopping: bool = True):
    """New token ids for each prompt (a list of token ids), cut before the first stop token.

    num_beams > 1: beam search (infer/beam.py: length_penalty, early_stopping as Hugging Face
    defines them) instead of sampling; it returns the best hypothesis of each prompt, needs
    the prompt and the new tokens to fit the context, and takes none of temperature, top-k,
    top-p, constraint, logits, scores or streaming.

    vocab_size: the tokenizer's vocabulary when the model's is larger (a run trained on a mesh
    pads it to what the mesh divides); ids from there up are never generated.
    return_logits: also return logits, where logits[i] is a float32 array
    (len(ids[i]), vocab_size) of the model's logits each new token was drawn from (before
    temperature, top-k, top-p and any constraint).
    return_scores: also return log_probs and entropies, float32 arrays (len(ids[i]),) per row:
    each new token's log-probability and the entropy (nats) of the distribution it was drawn
    from, both under the model's own softmax of those logits (uncertainty.py reads them).
    The result is ids, (ids, logits), (ids, log_probs, entropies) or (ids, logits, log_probs,
    entropies).
    constraint: a constrain.Constraint over the tokenizer's ids; every row's output then
    matches it (complete within max_new_tokens, which must be at least its min_tokens).
    on_token: called on the host as on_token(step, tokens) with each step's new token of
    every row (an int array (B,)) while the loop runs, for streaming.
    pad_to: left-pad the prompts to a multiple of this many tokens (at most the context), so
    that prompts of different lengths share one compiled loop; the tokens are the same (the
    padding stops short of making the window slide earlier).
    decode_path: "auto" (the current backend's), "cpu" or "accelerator" (see the module
    docstring); the tokens are the same either way, the speed is not."""
    cfg = model.cfg
    if decode_path not in ("auto", *DECODE_PATHS):
        raise DataError(f"decode_path={decode_path!r}: choose auto, {', '.join(DECODE_PATHS)}")
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
    if num_beams < 1:
        raise DataError(f"num_beams={num_beams}: must be at least 1 (1 is no beam search)")
    if num_beams > 1:
        extras = {"constraint": constraint is not None, "return_logits": return_logits,
                  "return_scores": return_scores, "on_token": on_token is not None}
        if any(extras.values()):
            raise DataError(f"num_beams={num_beams}: beam search takes no "
                            f"{', '.join(k for k, v in extras.items() if v)}; use num_beams=1")
        if max(lengths) + max_new_tokens > cfg.max_len:
            raise DataError(f"num_beams={num_beams}: the prompt ({max(lengths)} tokens) and "
                            f"max_new_tokens={max_new_tokens} exceed the model's context "
                            f"{cfg.max_len}; lower max_new_tokens")
    if constraint is not None and constraint.min_tokens > max_new_tokens:
        raise ConfigError(f"max_new_tokens={max_new_tokens}: the {constraint.description} "
                          f"needs at least {constraint.min_tokens} tokens; raise it")
    tokens, mask = left_padded(prompts, pad_to, cfg.max_len - max_new_tokens)
    path = resolve_decode_path(decode_path)
    cpu_weights = _cached_cpu_decode_weights(model, params) if path == "cpu" else None
    if num_beams > 1:
        stops = tuple(int(s) for s in stop_tokens)
        seqs, lens = _beam_generate(
            params, cpu_weights, jnp.asarray(tokens), jnp.asarray(mask),
            jnp.float32(length_penalty), model=model, path=path, num_beams=num_beams,
            max_new_tokens=max_new_tokens, stop_tokens=stops,
            early_stopping=bool(early_stopping), n_tokens=n_tokens)
        return best_beams(seqs, lens, stops)
    tables = None
    if constraint is not None:
        # rows padded to a power of two: constraints of similar size share one compiled loop
        rows = max(64, 1 << (len(constraint.table) - 1).bit_length())
        tables = tuple(jnp.asarray(a) for a in constraint.padded(rows, cfg.vocab_size))
    if on_token is not None:
        _ON_TOKEN.append(on_token)
    try:
        out, n, logits, scores, ends = _generate(
            params, cpu_weights, jnp.asarray(tokens), jnp.asarray(mask),
            jax.random.PRNGKey(seed), tables, model=model, path=path,
            max_new_tokens=max_new_tokens, temperature=float(temperature), top_k=int(top_k),
            top_p=float(top_p), stop_tokens=tuple(int(s) for s in stop_tokens),
            use_cache=use_cache, n_tokens=n_tokens, keep_logits=return_logits,
            keep_scores=return_scores, stream=on_token is not None)
        out = np.asarray(out)  # waits for the loop (and its callbacks)
        if on_token is not None:
            jax.effects_barrier()
    finally:
        if on_token is not None:
            _ON_TOKEN.pop()
    out = out[:, : int(n)]
    ends = None if ends is None else np.asarray(ends)
    results = []
    for r, row in enumerate(out.tolist()):
        cut = next((i for i, t in enumerate(row) if t in set(stop_tokens)), len(row))
        results.append(row[:cut if ends is None else min(cut, int(ends[r]))])
    extra = []
    if return_logits:
        logits = np.asarray(logits)
        extra.append([logits[row, :len(ids)] for row, ids in enumerate(results)])
    if return_scores:
        for a in scores:
            a = np.asarray(a)
            extra.append([a[row, :len(ids)] for row, ids in enumerate(results)])
    return (results, *extra) if extra else results
