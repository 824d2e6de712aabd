"""The objects `jaxllm.pretrained.load` returns: a decoder (logits, generate, chat, perplexity)
and an encoder (embed), each holding .config, .model, .params and .tokenizer.

Rules for text longer than the model's context:
  * decoder prompts (generate, chat) longer than model.max_len raise DataError;
  * perplexity scores a long text in consecutive windows of at most model.max_len tokens;
  * encoder texts longer than max_seq_length (256 for all-minilm-l6-v2, sentence-transformers'
    setting) are truncated to it, keeping the final [SEP], with one warning per call.
"""

from __future__ import annotations

import math
import sys
import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxllm.errors import DataError
from jaxllm.models.decoder import Decoder
from jaxllm.models.encoder import Encoder, l2_normalize, mean_pool
from jaxllm.models.rope import extend_context

# Encoder length buckets: every batch is padded to the smallest bucket that holds its longest
# text, so a handful of shapes are compiled whatever the text lengths.
BUCKETS = (16, 32, 48, 64, 96, 128, 192, 256, 384, 512)


@partial(jax.jit, static_argnums=0)
def _decoder_logits(model, params, tokens):
    return model.apply({"params": params}, tokens)


@partial(jax.jit, static_argnums=0)
def _window_loss(model, params, tokens, targets, weights):
    logits = model.apply({"params": params}, tokens).astype(jnp.float32)
    ce = jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, targets[..., None], -1)[..., 0]
    return jnp.sum(ce * weights), jnp.sum(weights)


class PretrainedDecoder:
    def __init__(self, config, params, tokenizer, name: str, stop_tokens=()):
        self.config, self.params, self.tokenizer, self.name = config, params, tokenizer, name
        self.model = Decoder(config)
        self.stop_tokens = tuple(stop_tokens)

    def __repr__(self):
        return f"PretrainedDecoder({self.name!r}, {self.config.n_layers} layers, d={self.config.d_model})"

    def _need_tokenizer(self):
        if self.tokenizer is None:
            raise DataError(f"model {self.name!r} has no tokenizer; pass token ids instead of text")
        return self.tokenizer

    def with_context(self, scaling: str, factor: float) -> PretrainedDecoder:
        """The same weights reading `factor` times the context, with RoPE scaling "linear",
        "ntk" or "yarn" (jaxllm/models/rope.py)."""
        cfg = extend_context(self.config, scaling, factor)
        return PretrainedDecoder(cfg, self.params, self.tokenizer, self.name, self.stop_tokens)

    def logits(self, token_ids) -> np.ndarray:
        """token_ids (B, T) -> float32 logits (B, T, vocab)."""
        tokens = np.asarray(token_ids, dtype=np.int32)
        if tokens.ndim != 2 or tokens.shape[1] == 0:
            raise DataError(f"token_ids must be a (batch, length) array, got shape {tokens.shape}")
        if tokens.shape[1] > self.config.max_len:
            raise DataError(f"{tokens.shape[1]} tokens exceed the model's context of "
                            f"{self.config.max_len}; shorten the input")
        if tokens.min() < 0 or tokens.max() >= self.config.vocab_size:
            raise DataError(f"token ids must be in [0, {self.config.vocab_size})")
        return np.asarray(_decoder_logits(self.model, self.params, jnp.asarray(tokens)))

    def generate(self, prompts, *, max_new_tokens: int = 100, temperature: float = 0.0,
                 top_k: int = 0, top_p: float = 1.0, seed: int = 0, stop_tokens=None,
                 use_cache: bool = True, **beam_search):
        """Continue a text (str -> str), texts (list[str] -> list[str]) or token ids
        (list[list[int]] -> list[list[int]]). Greedy by default; stops at the model's end
        tokens unless stop_tokens is given. beam_search: num_beams, length_penalty,
        early_stopping of jaxllm.infer.generate."""
        from jaxllm.infer.generate import generate

        single = isinstance(prompts, str)
        texts = [prompts] if single else prompts
        as_text = single or (len(texts) > 0 and isinstance(texts[0], str))
        ids = [self._need_tokenizer().encode(t) for t in texts] if as_text else \
            [list(map(int, p)) for p in texts]
        stops = self.end_tokens() if stop_tokens is None else tuple(stop_tokens)
        outs = generate(self.model, self.params, ids, max_new_tokens=max_new_tokens,
                        temperature=temperature, top_k=top_k, top_p=top_p, stop_tokens=stops,
                        seed=seed, use_cache=use_cache, **beam_search)
        if not as_text:
            return outs
        texts_out = [self.tokenizer.decode(o) for o in outs]
        return texts_out[0] if single else texts_out

    def end_tokens(self) -> tuple[int, ...]:
        """The ids that end an answer: the model's end-of-sequence tokens and, in its
        vocabulary, <|im_end|> and <|endoftext|>."""
        stops = set(self.stop_tokens)
        if self.tokenizer is not None:
            for t in ("<|im_end|>", "<|endoftext|>"):
                try:
                    stops.add(int(self.tokenizer.token_to_id(t)))
                except (DataError, KeyError, TypeError):  # not in this vocabulary
                    pass
        return tuple(sorted(stops))

    def chat(self, messages, **kwargs) -> str:
        """The assistant's answer to a user message (str) or a list of {role, content} messages,
        rendered with the model's chat template."""
        tok = self._need_tokenizer()
        if not hasattr(tok, "apply_chat_template"):  # a jaxllm run's char or byte tokenizer
            raise DataError(f"model {self.name!r} has no chat template (its tokenizer is "
                            f"{type(tok).__name__}); continue a text with a prompt instead, or "
                            f"chat with smollm2-135m-instruct")
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        prompt = tok.apply_chat_template(messages, add_generation_prompt=True)
        kwargs.setdefault("max_new_tokens", 128)
        return self.generate(prompt, **kwargs).strip()

    def corpus_perplexity(self, corpus: str, *, max_tokens: int | None = None,
                          window: int = 512, split: tuple = (), progress: bool = False) -> dict:
        """perplexity() of the first max_tokens tokens (default all) of a corpus's validation
        text (its documents joined by newlines), in windows of `window` tokens. split: the
        (split, val_fraction, text_key) of data.load_split_texts (default: the corpus's own).

            lm.corpus_perplexity("shakespeare", max_tokens=16384)   # what `jaxllm eval` prints
        """
        from jaxllm.data.tfds_builder import load_split_texts

        if max_tokens is not None and max_tokens < 2:
            raise DataError(f"max_tokens={max_tokens}: must be at least 2 (--max-tokens)")
        if window < 2:
            raise DataError(f"window={window}: must be at least 2 (--window)")
        text = "\n".join(load_split_texts(corpus, *split)[1])
        if max_tokens:  # a token is at least one character: encode only what can be scored
            text = text[:max_tokens * 8]
        ids = self._need_tokenizer().encode(text)
        return self.perplexity(ids[:max_tokens] if max_tokens else ids, window=window,
                               progress=progress)

    def perplexity(self, text_or_ids, *, window: int | None = None, batch_size: int = 8,
                   progress: bool = False) -> dict:
        """Mean next-token cross-entropy and perplexity over a text (or token ids), scored in
        consecutive non-overlapping windows of `window` tokens (default min(max_len, 512));
        progress: a bar on stderr."""
        ids = self._need_tokenizer().encode(text_or_ids) if isinstance(text_or_ids, str) \
            else list(text_or_ids)
        window = min(window or 512, self.config.max_len)
        if len(ids) < 2:
            raise DataError("the text must have at least 2 tokens to score")
        n = math.ceil((len(ids) - 1) / window)
        toks = np.zeros((n, window), np.int32)
        tgts = np.zeros((n, window), np.int32)
        wts = np.zeros((n, window), np.float32)
        for r in range(n):
            chunk = ids[r * window: r * window + window + 1]
            toks[r, :len(chunk) - 1] = chunk[:-1]
            tgts[r, :len(chunk) - 1] = chunk[1:]
            wts[r, :len(chunk) - 1] = 1
        total, count = 0.0, 0.0
        for s in tqdm(range(0, n, batch_size), disable=not progress, desc="scoring windows",
                      unit="batch", file=sys.stderr, leave=False):
            sl = slice(s, s + batch_size)
            pad = batch_size - toks[sl].shape[0]
            t, g, w = (np.pad(a[sl], ((0, pad), (0, 0))) for a in (toks, tgts, wts))
            loss, cnt = _window_loss(self.model, self.params, t, g, w)
            total += float(loss)
            count += float(cnt)
        return {"loss": total / count, "perplexity": math.exp(total / count), "tokens": count}


@partial(jax.jit, static_argnums=0)
def _embed_batch(model, params, tokens, mask):
    hidden = model.apply({"params": params}, tokens, None, mask)["hidden"]
    return l2_normalize(mean_pool(hidden, mask))


class PretrainedEncoder:
    def __init__(self, config, params, tokenizer, name: str, max_seq_length: int):
        self.config, self.params, self.tokenizer, self.name = config, params, tokenizer, name
        self.model = Encoder(config)
        self.max_seq_length = min(max_seq_length, config.max_len)

    def __repr__(self):
        return f"PretrainedEncoder({self.name!r}, {self.config.n_layers} layers, d={self.config.d_model})"

    def embed(self, texts, *, batch_size: int = 32) -> np.ndarray:
        """Sentence embeddings (N, D) of a list of texts: mean over real tokens of the last
        hidden states, L2-normalised (sentence-transformers' pipeline for all-MiniLM-L6-v2)."""
        if isinstance(texts, str):
            raise DataError("embed takes a list of texts; wrap a single text in a list")
        if self.tokenizer is None:
            raise DataError(f"model {self.name!r} has no tokenizer; use embed_ids")
        if hasattr(self.tokenizer, "encode_batch"):
            ids = self.tokenizer.encode_batch(list(texts), add_special_tokens=True)  # [CLS]..[SEP]
        else:  # a jaxllm run's char or byte tokenizer (an exported MLM run): no special tokens
            ids = [self.tokenizer.encode(t) for t in texts]
        return self.embed_ids(ids, batch_size=batch_size)

    def embed_ids(self, ids: list[list[int]], *, batch_size: int = 32) -> np.ndarray:
        """Embeddings of token id lists that already hold [CLS] ... [SEP]."""
        if len(ids) == 0:
            return np.zeros((0, self.config.d_model), np.float32)
        limit = self.max_seq_length
        long = sum(len(x) > limit for x in ids)
        if long:
            warnings.warn(f"{long} text(s) longer than {limit} tokens were truncated to {limit} "
                          f"(the model's max_seq_length)", stacklevel=2)
            ids = [x if len(x) <= limit else list(x[:limit - 1]) + [x[-1]] for x in ids]
        order = np.argsort([-len(x) for x in ids], kind="stable")  # similar lengths together
        out = np.zeros((len(ids), self.config.d_model), np.float32)
        for s in range(0, len(ids), batch_size):
            rows = order[s: s + batch_size]
            longest = max(len(ids[r]) for r in rows)
            T = next((b for b in BUCKETS if b >= longest), longest)
            B = batch_size if len(ids) > batch_size else len(rows)
            tokens = np.zeros((B, T), np.int32)
            mask = np.zeros((B, T), bool)
            mask[:, 0] = True  # padding rows attend to one slot (no empty softmax); discarded
            for j, r in enumerate(rows):
                tokens[j, :len(ids[r])] = ids[r]
                mask[j, :len(ids[r])] = True
            emb = _embed_batch(self.model, self.params, jnp.asarray(tokens), jnp.asarray(mask))
            out[rows] = np.asarray(emb)[:len(rows)]
        return out
