"""A prompt prefix run once into a KV cache, then continued by many suffixes.

    pre = prefill(model, params, prefix_ids, pad_to=64)     # one forward over the prefix
    logits = extend(model, params, pre, [suffix_a, suffix_b], last_only=True)
    # logits[i] (vocab,) == the logits of the last token of prefix_ids + suffix_i in one pass
    ids = sample(model, params, pre, 4, max_new_tokens=32, temperature=0.7, seed=1)
    # 4 continuations, drawn as generate(model, params, [prefix_ids] * 4, ...) draws them

Many prompts that repeat a long prefix (a judge asking about each sentence of an answer against
the same sources) then cost one prefill of the prefix and a short forward per suffix, instead
of a full prefill each; and n samples of one prompt cost one prefill and n rows of decoding,
not n prefills. The suffixes of one call are a batch: the prefix's cache is copied to
every row, and the suffixes are left-padded to one width behind it (the padding slots are not
`valid`, so no token attends to them, and position ids count real tokens only, so each suffix
continues at the position after the prefix's last real token).

The prefix too may be left-padded to a multiple of `pad_to` tokens and the suffixes to a
multiple of theirs: prompts of nearby lengths then share one compiled function.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxllm.errors import DataError
from jaxllm.infer.generate import PAD, left_padded, sample_logits
from jaxllm.models.attention import DECODE_PATHS, resolve_decode_path
from jaxllm.models.decoder import Decoder, KVCache


@dataclasses.dataclass(frozen=True)
class Prefix:
    ids: tuple[int, ...]  # the prefix's tokens, unpadded
    cache: KVCache  # batch 1: the prefix's keys and values (padding slots not valid)
    logits: jax.Array  # (vocab,): the logits after the prefix's last token


def _rolled(model: Decoder) -> Decoder:
    """The model with a rolled layer loop, unless it asks for another (compiles faster)."""
    return Decoder(dataclasses.replace(model.cfg, scan_unroll=model.cfg.scan_unroll or 1))


@partial(jax.jit, static_argnames=("model", "layout"))
def _prefill(params, tokens, mask, *, model: Decoder, layout: str):
    cache = KVCache.empty(model.cfg, 1, tokens.shape[1], layout)
    logits, cache = model.apply({"params": params}, tokens, cache, mask, last_only=True,
                                method=Decoder.decode)
    return logits[0, -1], cache


def _rows(cache: KVCache, rows: int) -> KVCache:
    """The one-row cache copied to `rows` rows, batch-major on both layouts' row axes (axis 1
    of the stacked k, v: B of (L, B, S, K, H) or B*K of (L, B*K, H, S) with one row's K
    heads)."""
    def tile(a):
        return jnp.tile(a, (1, rows) + (1,) * (a.ndim - 2))

    return cache.replace(k=tile(cache.k), v=tile(cache.v), valid=jnp.tile(cache.valid, (rows, 1)),
                         next_position=jnp.tile(cache.next_position, rows))


@partial(jax.jit, static_argnames=("model", "last_only"))
def _extend(params, cache: KVCache, tokens, mask, *, model: Decoder, last_only: bool):
    cache = _rows(cache.grow(cache.size + tokens.shape[1]), tokens.shape[0])
    logits, _ = model.apply({"params": params}, tokens, cache, mask, last_only=last_only,
                            method=Decoder.decode)
    return logits


@partial(jax.jit, static_argnames=("model", "rows", "max_new_tokens", "temperature", "top_k",
                                   "top_p"))
def _sample(params, cache: KVCache, logits, rng, *, model: Decoder, rows: int,
            max_new_tokens: int, temperature: float, top_k: int, top_p: float):
    """(rows, max_new_tokens) tokens: token i drawn from the logits with the key
    fold_in(rng, i) (as generate does), then appended to every row's cache."""
    cache = _rows(cache.grow(cache.size + max_new_tokens), rows)

    def step(i, carry):
        logits, cache, out = carry
        tok = sample_logits(logits, jax.random.fold_in(rng, i), temperature, top_k, top_p)
        logits, cache = model.apply({"params": params}, tok[:, None], cache,
                                    method=Decoder.decode)
        return logits[:, 0], cache, out.at[:, i].set(tok)

    out = jnp.full((rows, max_new_tokens), PAD, jnp.int32)
    logits = jnp.tile(logits[None], (rows, 1))
    return jax.lax.fori_loop(0, max_new_tokens, step, (logits, cache, out))[2]


def prefill(model: Decoder, params, ids, *, pad_to: int = 1, decode_path: str = "auto") -> Prefix:
    """The prefix `ids` (a list of token ids) run into a KV cache of its (padded) length, in
    the cache layout of `decode_path` (generate.py's: "auto", "cpu" or "accelerator")."""
    ids = [int(t) for t in ids]
    if decode_path not in ("auto", *DECODE_PATHS):
        raise DataError(f"decode_path={decode_path!r}: choose auto, {', '.join(DECODE_PATHS)}")
    if not ids:
        raise DataError("the prefix is empty; give at least one token")
    if len(ids) >= model.cfg.max_len:
        raise DataError(f"the prefix has {len(ids)} tokens but the model's context is "
                        f"{model.cfg.max_len} (model.max_len); leave room for a suffix")
    tokens, mask = left_padded([ids], pad_to, model.cfg.max_len - 1)
    logits, cache = _prefill(params, jnp.asarray(tokens), jnp.asarray(mask),
                             model=_rolled(model), layout=resolve_decode_path(decode_path))
    return Prefix(tuple(ids), cache, logits)


def extend(model: Decoder, params, prefix: Prefix, suffixes, *, pad_to: int = 1,
           last_only: bool = False) -> list[np.ndarray]:
    """The logits of each suffix continuing the prefix: per suffix a float32 array
    (len(suffix), vocab), or (vocab,) of its last token with last_only."""
    suffixes = [[int(t) for t in s] for s in suffixes]
    if not suffixes or min(map(len, suffixes)) == 0:
        raise DataError("a suffix is empty (or none was given); give each at least one token")
    room = model.cfg.max_len - prefix.cache.size
    if max(map(len, suffixes)) > room:
        raise DataError(f"a suffix has {max(map(len, suffixes))} tokens but the (padded) prefix "
                        f"of {prefix.cache.size} leaves {room} of the model's context "
                        f"{model.cfg.max_len}; shorten it")
    tokens, mask = left_padded(suffixes, pad_to, room)
    logits = np.asarray(_extend(params, prefix.cache, jnp.asarray(tokens), jnp.asarray(mask),
                                model=_rolled(model), last_only=last_only), np.float32)
    if last_only:
        return list(logits[:, -1])
    return [logits[row, tokens.shape[1] - len(s):] for row, s in enumerate(suffixes)]


def sample(model: Decoder, params, prefix: Prefix, n: int, *, max_new_tokens: int,
           temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
           stop_tokens=(), seed: int = 0) -> list[list[int]]:
    """n continuations of the prefix, each cut before its first stop token: the tokens
    generate(model, params, [list(prefix.ids)] * n, ...) draws with the same settings (its
    sample_logits and keys), from one prefill. Always runs max_new_tokens steps."""
    if n < 1 or max_new_tokens < 1:
        raise DataError(f"n={n}, max_new_tokens={max_new_tokens}: both must be at least 1")
    if prefix.cache.size + max_new_tokens > model.cfg.max_len:
        raise DataError(f"max_new_tokens={max_new_tokens}: the (padded) prefix of "
                        f"{prefix.cache.size} leaves {model.cfg.max_len - prefix.cache.size} "
                        f"of the model's context {model.cfg.max_len}; lower it")
    out = np.asarray(_sample(params, prefix.cache, prefix.logits, jax.random.PRNGKey(seed),
                             model=_rolled(model), rows=n, max_new_tokens=max_new_tokens,
                             temperature=float(temperature), top_k=int(top_k),
                             top_p=float(top_p))).tolist()
    stops = {int(t) for t in stop_tokens}
    return [row[:next((i for i, t in enumerate(row) if t in stops), len(row))] for row in out]
