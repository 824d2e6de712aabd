"""Prompt compression: drop the least informative parts of the retrieved sources.

A token's surprisal is -log p(token | "Question: ...\\nContext:" + the source's tokens before
it), read from the model's own logits: what the model predicts well adds little (the idea of
LLMLingua). Sources are split into sentences (after . ! ? and whitespace); a source's token
stream is its sentences' tokens end to end (each sentence after the first with its leading
space), so every token belongs to one sentence.

    level="sentence"  each sentence scores its tokens' mean surprisal; sentences are taken best
                      first while their tokens fit the budget floor(ratio x all tokens of all
                      sources), skipping any that does not fit; kept in their original order
    level="token"     the floor(ratio x all tokens) most surprising tokens are kept, in order

Sources left empty are dropped. The other way to shorten: `summarizer(lm)` replaces each
source by the model's summary of it.

    compress = compressor(lm, ratio=0.5)          # a stage for rag.answer(compress=...)
    shorter = compress(question, results)
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxllm.errors import ConfigError
from jaxllm.models.decoder import Decoder

LEVELS = ("sentence", "token")


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if s]


@partial(jax.jit, static_argnums=0)
def _next_token_nll(model: Decoder, params, tokens):
    """(B, T-1): -log p(tokens[:, j+1] | tokens[:, :j+1])."""
    logits = model.apply({"params": params}, tokens).astype(jnp.float32)
    logp = jax.nn.log_softmax(logits[:, :-1], axis=-1)
    return -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]


def token_surprisal(lm, question: str, sources: list[list[int]]) -> list[np.ndarray]:
    """Each source's per-token surprisal (nats) after the question prefix; a source longer than
    the context is scored in windows, each after the prefix again."""
    prefix = lm.tokenizer.encode(f"Question: {question}\nContext:")
    width = lm.config.max_len - len(prefix)
    if width < 16:
        raise ConfigError(f"the question takes {len(prefix)} of the model's {lm.config.max_len} "
                          f"tokens; too little is left to score the sources")
    pieces = [(i, s, ids[s:s + width]) for i, ids in enumerate(sources)
              for s in range(0, len(ids), width)]
    out = [np.zeros(len(ids), np.float32) for ids in sources]
    if not pieces:
        return out
    T = min(lm.config.max_len, -(-(len(prefix) + max(len(p) for _, _, p in pieces)) // 64) * 64)
    rows = np.zeros((len(pieces), T), np.int32)  # right padding: causal, nothing leaks back
    for r, (_, _, piece) in enumerate(pieces):
        rows[r, :len(prefix) + len(piece)] = prefix + piece
    nll = np.asarray(_next_token_nll(lm.model, lm.params, jnp.asarray(rows)))
    for r, (i, s, piece) in enumerate(pieces):
        out[i][s:s + len(piece)] = nll[r, len(prefix) - 1: len(prefix) - 1 + len(piece)]
    return out


def _split(lm, results):
    """Per result: its sentences and their token ids (after the first, with a leading space)."""
    split = []
    for r in results:
        sents = sentences(r.text)
        split.append((sents, [lm.tokenizer.encode(s if j == 0 else " " + s)
                              for j, s in enumerate(sents)]))
    return split


def compress(lm, question: str, results, ratio: float = 0.5, level: str = "sentence"):
    """The results with their text shortened to about `ratio` of the tokens (see the module
    docstring); ratio 1 returns them unchanged."""
    if not 0.0 < ratio <= 1.0:
        raise ConfigError(f"ratio={ratio}: a compression ratio is in (0, 1] (1 keeps all)")
    if level not in LEVELS:
        raise ConfigError(f"level={level!r}: choose one of {', '.join(LEVELS)}")
    if ratio == 1.0 or not results:
        return list(results)
    split = _split(lm, results)
    streams = [[t for ids in per for t in ids] for _, per in split]
    surprisal = token_surprisal(lm, question, streams)
    total = sum(map(len, streams))
    budget = math.floor(ratio * total)
    out = []
    if level == "token":
        flat = np.concatenate(surprisal)
        keep = np.zeros(total, bool)
        keep[np.argsort(-flat, kind="stable")[:budget]] = True
        start = 0
        for r, ids in zip(results, streams):
            kept = [t for t, k in zip(ids, keep[start:start + len(ids)]) if k]
            start += len(ids)
            if kept:
                out.append(replace(r, text=lm.tokenizer.decode(kept).strip()))
        return out
    scored = []  # (mean surprisal, result, sentence) over every sentence of every source
    for i, ((_, per), s) in enumerate(zip(split, surprisal)):
        start = 0
        for j, ids in enumerate(per):
            scored.append((float(s[start:start + len(ids)].mean()) if ids else 0.0, i, j))
            start += len(ids)
    keep, used = set(), 0
    for _, i, j in sorted(scored, key=lambda x: (-x[0], x[1], x[2])):
        n = len(split[i][1][j])
        if used + n <= budget:
            keep.add((i, j))
            used += n
    for i, (r, (sents, _)) in enumerate(zip(results, split)):
        kept = [s for j, s in enumerate(sents) if (i, j) in keep]
        if kept:
            out.append(replace(r, text=" ".join(kept)))
    return out


def compressor(lm, ratio: float = 0.5, level: str = "sentence"):
    """A compress stage for rag.answer."""
    if not 0.0 < ratio <= 1.0:
        raise ConfigError(f"ratio={ratio}: a compression ratio is in (0, 1] (1 keeps all)")
    return lambda question, results: compress(lm, question, results, ratio, level)


SUMMARY_PROMPT = ("Summarize the passage in one or two sentences, keeping every fact that helps "
                  "answer the question.\n\nQuestion: {question}\n\nPassage: {passage}")


def summarizer(lm, max_new_tokens: int = 64):
    """A compress stage that replaces each source by the model's summary of it."""
    from jaxllm.rag.prompt import complete

    def summarize(question, results):
        out = []
        for r in results:
            msg = SUMMARY_PROMPT.format(question=question, passage=" ".join(r.text.split()))
            reply = complete(lm, msg, max_new_tokens=max_new_tokens)
            out.append(replace(r, text=reply.text or r.text))
        return out
    return summarize
