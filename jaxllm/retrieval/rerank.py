"""Rerankers: reorder a short list of candidates by reading query and passage together.

- `CrossEncoder`: jaxllm's BERT encoder over "[CLS] query [SEP] passage [SEP]" (token types 0
  then 1), mean-pooled, one linear relevance logit; `probabilities` is its sigmoid. It starts
  from all-MiniLM-L6-v2's weights (a new head) and is fine-tuned by `train_cross_encoder` on an
  index's training queries: for each, the best-ranked chunk of a relevant document in the
  first stage it will rerank (hybrid, or BM25 for an index without vectors) is the positive and
  that stage's best-ranked chunks of other documents the (hard) negatives, with binary
  cross-entropy (so that the sigmoid reads as a probability of relevance) plus a softmax
  cross-entropy over each query's candidates. With `maxp`, a passage longer than the window
  (max_len with the query) is read as overlapping windows and scored as the best of them (MaxP),
  at training (the loss on the best window under the current weights: the gradient of a max)
  as at scoring; without it, the passage is cut to its first window.
- `LLMReranker`: SmolLM2-135M-Instruct asked, in its chat template, whether the passage answers
  the query; the score is log p("yes") - log p("no") of its first answer token (the log-odds,
  each side summed over the " yes"/"Yes"/... spellings that are single tokens). kind="reply":
  the mean log-probability per token of the passage as the model's reply to the query.
  kind="pmi": that, minus the same reply's mean log-probability after an empty user turn (its
  prior, computed once per passage text): how much the query raises the passage's likelihood,
  the pointwise mutual information per token. A generic reply ("I don't know.") is likely
  after any question; its prior takes that back.

Both have .score(query, texts) -> (n,) float scores (higher = more relevant), which
`Index.search(..., reranker=...)` uses to reorder its top candidates. With `rerank_weight=w`
the order is that of hybrid.py's `fuse_rerank`: w * minmax(reranker scores) + (1 - w) *
minmax(first-stage scores), each min-max over the one candidate list (as the hybrid's "rsf"
normalises its lists): w = 0 keeps the first stage's order, w = 1 is the reranker's, and
between them the first stage's score (BM25's exact rare words, say) still counts where the
reranker knows little. A trained cross-encoder is saved in a folder (reranker.json + model.safetensors, written under a temporary name and renamed)
such as IDX/reranker, where `jaxllm search IDX ... --rerank cross` finds it.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import shutil
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxllm.errors import CheckpointError, ConfigError
from jaxllm.models.encoder import Encoder, mean_pool

BASE = "all-minilm-l6-v2"
LLM = "smollm2-135m-instruct"
LLM_PROMPT = ("Does the passage answer the query? Answer yes or no.\n\nQuery: {query}\n\n"
              "Passage: {passage}")
LENGTHS = (64, 128, 256)  # cross-encoder input lengths compiled


@partial(jax.jit, static_argnums=0)
def _cross_logits(model, params, tokens, types, mask):
    hidden = model.apply({"params": params["encoder"]}, tokens, types, mask)["hidden"]
    pooled = mean_pool(hidden, mask)  # (B, D)
    return pooled @ params["head"]["w"] + params["head"]["b"]  # (B,)


class CrossEncoder:
    def __init__(self, base, params, max_len: int = 128, *, maxp: bool = False,
                 overlap: int = 32):
        self.base = base  # the PretrainedEncoder whose config and tokenizer are used
        self.params = params  # {"encoder": ..., "head": {"w": (D,), "b": ()}}
        self.max_len = max_len
        self.maxp = maxp  # score a long passage as the max over windows (else its first window)
        self.overlap = overlap  # passage tokens shared by consecutive windows
        if maxp and not 0 <= overlap < max_len // 2 - 3:
            raise ConfigError(f"overlap {overlap} must be in [0, {max_len // 2 - 3}) for "
                              f"max_len {max_len} (a window holds at least {max_len // 2 - 3} "
                              f"passage tokens); pass a smaller --overlap")
        self.model = Encoder(base.config)
        tok = base.tokenizer
        self.cls, self.sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")

    @classmethod
    def from_pretrained(cls, name: str = BASE, *, max_len: int = 128, seed: int = 0,
                        maxp: bool = False, overlap: int = 32):
        """The base encoder's weights with a new head (small random weights, zero bias)."""
        from jaxllm import pretrained

        base = pretrained.load(name)
        d = base.config.d_model
        w = jax.random.normal(jax.random.PRNGKey(seed), (d,)) * 0.02
        return cls(base, {"encoder": base.params, "head": {"w": w, "b": jnp.zeros(())}}, max_len,
                   maxp=maxp, overlap=overlap)

    def pair_rows(self, query: str, texts: list[str]) -> tuple[list[list[list[int]]], int]:
        """Per text, its [CLS] query [SEP] window [SEP] token rows: every window with maxp (see
        window_starts), else only the first (the passage cut to fit); and the number of
        query-side tokens (token type 0)."""
        tok = self.base.tokenizer
        q = tok.encode(query)[: self.max_len // 2]
        size = self.max_len - len(q) - 3
        head = [self.cls] + q + [self.sep]
        out = []
        for t in texts:
            p = tok.encode(t)
            starts = window_starts(len(p), size, self.overlap) if self.maxp else [0]
            out.append([head + p[s: s + size] + [self.sep] for s in starts])
        return out, len(head)

    def arrays(self, rows: list[list[int]], n_first: int, batch_multiple: int = 1):
        """tokens, token types and padding mask (B, T) of rows, T the smallest of LENGTHS that
        fits, B padded with empty rows to a multiple of batch_multiple (fewer compiled shapes)."""
        longest = max(len(r) for r in rows)
        T = next((n for n in LENGTHS if n >= longest), longest)
        B = -(-len(rows) // batch_multiple) * batch_multiple
        tokens = np.zeros((B, T), np.int32)
        types = np.zeros((B, T), np.int32)
        mask = np.zeros((B, T), bool)
        for i, ids in enumerate(rows):
            tokens[i, :len(ids)] = ids
            types[i, n_first:len(ids)] = 1
            mask[i, :len(ids)] = True
        return tokens, types, mask

    def encode_pairs(self, query: str, texts: list[str]):
        """tokens, token types and padding mask (B, T) of [CLS] query [SEP] passage [SEP]
        pairs, the passage cut to its first window, T the smallest of LENGTHS that fits."""
        rows, n_first = self.pair_rows(query, texts)
        return self.arrays([r[0] for r in rows], n_first)

    def _row_logits(self, rows: list[list[int]], n_first: int, params=None) -> np.ndarray:
        """Logits (len(rows),), in batches of at most 128 rows padded to a multiple of 16."""
        params = self.params if params is None else params
        out = []
        for at in range(0, len(rows), 128):
            part = rows[at: at + 128]
            tokens, types, mask = self.arrays(part, n_first, 16 if self.maxp else 1)
            out.append(np.asarray(_cross_logits(self.model, params, tokens, types,
                                                mask))[:len(part)])
        return np.concatenate(out)

    def _window_logits(self, rows: list[list[list[int]]], n_first: int) -> list[np.ndarray]:
        """Per text, the logits of its windows' rows (pair_rows' first output)."""
        logits = self._row_logits([w for r in rows for w in r], n_first)
        return np.split(logits, np.cumsum([len(r) for r in rows[:-1]]))

    def best_rows(self, query: str, texts: list[str]) -> tuple[list[list[int]], int]:
        """Per text, the row of its best-scoring window (the only one without maxp)."""
        rows, n_first = self.pair_rows(query, texts)
        if not self.maxp or all(len(r) == 1 for r in rows):
            return [r[0] for r in rows], n_first
        scores = self._window_logits(rows, n_first)
        return [r[int(np.argmax(x))] for r, x in zip(rows, scores)], n_first

    def score(self, query: str, texts: list[str]) -> np.ndarray:
        """Relevance logits (n,) of each text for the query (with maxp: of its best window)."""
        if not texts:
            return np.zeros(0, np.float32)
        if not self.maxp:
            tokens, types, mask = self.encode_pairs(query, list(texts))
            return np.asarray(_cross_logits(self.model, self.params, tokens, types, mask))
        rows, n_first = self.pair_rows(query, list(texts))
        return np.array([x.max() for x in self._window_logits(rows, n_first)])  # best window

    def probabilities(self, query: str, texts: list[str]) -> np.ndarray:
        return 1 / (1 + np.exp(-self.score(query, texts).astype(np.float64)))

    def save(self, path) -> None:
        from safetensors.numpy import save_file

        path = Path(path)
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        tmp.mkdir(parents=True)
        try:
            flat = {"/".join(str(getattr(k, "key", k)) for k in keys): np.asarray(v)
                    for keys, v in jax.tree_util.tree_flatten_with_path(self.params)[0]}
            save_file(flat, str(tmp / "model.safetensors"))
            (tmp / "reranker.json").write_text(json.dumps(
                {"kind": "cross-encoder", "base": self.base.name, "max_len": self.max_len,
                 "maxp": self.maxp, "overlap": self.overlap}))
            old = path.parent / f".{path.name}.old.{secrets.token_hex(4)}"
            if path.exists():
                os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, path) -> CrossEncoder:
        from safetensors.numpy import load_file

        path = Path(path)
        try:
            info = json.loads((path / "reranker.json").read_text())
            flat = load_file(str(path / "model.safetensors"))
        except (OSError, ValueError):
            raise CheckpointError(f"{path} holds no trained cross-encoder; train one with "
                                  f"`jaxllm index train-reranker IDX`") from None
        model = cls.from_pretrained(info["base"], max_len=info["max_len"],
                                    maxp=info.get("maxp", False), overlap=info.get("overlap", 32))
        leaves, tree = jax.tree_util.tree_flatten_with_path(model.params)
        values = []
        for keys, leaf in leaves:
            name = "/".join(str(getattr(k, "key", k)) for k in keys)
            if name not in flat or flat[name].shape != np.shape(leaf):
                raise CheckpointError(f"{path}: tensor {name} is missing or misshapen")
            values.append(jnp.asarray(flat[name]))
        model.params = jax.tree_util.tree_unflatten(tree, values)
        return model


def training_pairs(index, queries, negatives: int = 3, depth: int = 30, *,
                   mode: str | None = None, alpha: float = 0.5):
    """(query, positive text, [negative texts]) for each query whose relevant documents have a
    chunk, mined from the first stage that the reranker will reorder (`mode`: "hybrid" at
    `alpha` when the index has vectors, else "bm25"): the positive is its best-ranked chunk of a
    relevant document (else that document's first chunk), the negatives its best-ranked chunks
    of other documents (then other chunks in a seeded order, when it finds too few).

    Negatives come from the same first stage as the candidates at search time: mined with BM25
    alone for a query whose answer BM25 does not find (most of chatterbot's), every negative
    shares words with the query and the positive does not, and a model learns that word overlap
    means irrelevant, which reverses a dense list. A negative never has the text of a relevant
    chunk (BBC holds duplicate articles under two ids) nor of another negative."""
    mode = mode or ("hybrid" if index.encoder_info is not None else "bm25")
    first_chunk = {}
    for i, c in enumerate(index.chunks):
        first_chunk.setdefault(c.metadata["doc_id"], i)
    text_docs: dict[str, set] = {}
    for c in index.chunks:
        text_docs.setdefault(c.text, set()).add(c.metadata["doc_id"])
    hits = index.search_hits([q["query"] for q in queries], mode=mode, alpha=alpha, k=depth)
    out = []
    for q, h in zip(queries, hits):
        relevant = set(q["relevant"])
        ranked = [int(i) for i in h.ids]
        pos = next((i for i in ranked if index.chunks[i].metadata["doc_id"] in relevant),
                   next((first_chunk[d] for d in q["relevant"] if d in first_chunk), None))
        negs, seen = [], set()
        # the ranked list first, then (only when it holds too few) other chunks in a seeded order
        for i in itertools.chain(ranked, _shuffled(len(index.chunks), seed=len(out))):
            if len(negs) == negatives:
                break
            text = index.chunks[i].text
            if not text_docs[text] & relevant and text not in seen:
                negs.append(i)
                seen.add(text)
        if pos is None or len(negs) < negatives:
            continue
        out.append((q["query"], index.chunks[pos].text, [index.chunks[i].text for i in negs]))
    return out


def window_starts(n: int, size: int, overlap: int) -> list[int]:
    """Starts of the windows of `size` tokens that cover n tokens, consecutive windows sharing
    `overlap` tokens (a step of size - overlap), the last one ending at n; [0] when n <= size."""
    if n <= size:
        return [0]
    return list(range(0, n - size, size - overlap)) + [n - size]


def _shuffled(n: int, seed: int):
    """0..n-1 in a seeded order, drawn only when the caller reads past its own candidates."""
    yield from np.random.default_rng(seed).permutation(n).tolist()


def train_cross_encoder(index, queries, *, steps: int = 300, batch_queries: int = 4,
                        negatives: int = 3, max_len: int = 128, lr: float = 3e-5,
                        head_lr: float = 1e-3, mode: str | None = None, alpha: float = 0.5,
                        maxp: bool = False, overlap: int = 32, init=None, seed: int = 0,
                        progress: bool = True, log=None) -> CrossEncoder:
    """Fine-tune a CrossEncoder from all-MiniLM-L6-v2 on an index's training queries with hard
    negatives from the first stage it will rerank (`training_pairs`; mode, alpha).

    The loss is binary cross-entropy (so that the sigmoid reads as a probability of relevance)
    plus the softmax cross-entropy of the positive among its query's candidates (what a ranking
    needs: the positive above those negatives). AdamW, linear warm-up over the first 10% of
    steps; the new head at `head_lr`: at the encoder's rate it moves ~lr per step, and a few
    hundred steps teach it no more than the base rate of positives. With maxp each candidate
    is read as its best window under the current weights (a forward pass over all its windows,
    without gradients), and the step trains on those: the gradient of the max over windows.
    init: a trained cross-encoder's folder to continue from (else all-MiniLM-L6-v2 and a new
    head)."""
    import optax
    from tqdm import tqdm

    pairs = training_pairs(index, queries, negatives, mode=mode, alpha=alpha)
    if not pairs:
        raise ConfigError("no training pairs: the training queries found no relevant chunk and "
                          f"{negatives} other chunks")
    if init is None:
        ce = CrossEncoder.from_pretrained(BASE, max_len=max_len, seed=seed, maxp=maxp,
                                          overlap=overlap)
    else:
        old = CrossEncoder.load(init)
        ce = CrossEncoder(old.base, old.params, max_len, maxp=maxp, overlap=overlap)
    warmup = max(steps // 10, 1)
    tx = optax.multi_transform(
        {"encoder": optax.adamw(optax.linear_schedule(0.0, lr, warmup), weight_decay=0.01),
         "head": optax.adamw(optax.linear_schedule(0.0, head_lr, warmup), weight_decay=0.0)},
        {"encoder": jax.tree_util.tree_map(lambda _: "encoder", ce.params["encoder"]),
         "head": jax.tree_util.tree_map(lambda _: "head", ce.params["head"])})
    opt_state = tx.init(ce.params)
    model = ce.model

    def loss_fn(params, tokens, types, mask, labels):
        hidden = model.apply({"params": params["encoder"]}, tokens, types, mask)["hidden"]
        logits = mean_pool(hidden, mask) @ params["head"]["w"] + params["head"]["b"]
        bce = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))
        listwise = optax.softmax_cross_entropy(logits.reshape(batch_queries, -1),
                                               labels.reshape(batch_queries, -1))
        return bce + jnp.mean(listwise)

    @jax.jit
    def step(params, opt_state, tokens, types, mask, labels):
        loss, grads = jax.value_and_grad(loss_fn)(params, tokens, types, mask, labels)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pairs))
    params = ce.params
    for s in tqdm(range(steps), desc="training the cross-encoder", disable=not progress):
        batch = [pairs[order[(s * batch_queries + j) % len(pairs)]] for j in range(batch_queries)]
        ce.params = params  # best_rows picks each candidate's window with the current weights
        parts = [ce.arrays(*ce.best_rows(q, [p] + n)) for q, p, n in batch]
        T = max(t.shape[1] for t, _, _ in parts)  # one length per step: pad to the longest
        tokens, types, mask = (np.concatenate([np.pad(a[i], ((0, 0), (0, T - a[i].shape[1])))
                                               for a in parts]) for i in range(3))
        labels = np.tile(np.r_[1.0, np.zeros(negatives)], batch_queries).astype(np.float32)
        params, opt_state, loss = step(params, opt_state, tokens, types, mask, labels)
        if log is not None and (s % 25 == 0 or s == steps - 1):
            log(s, float(loss))
    ce.params = params
    return ce


class LLMReranker:
    """kind "yes-no": log p(yes) - log p(no) of the answer to LLM_PROMPT; "reply": the mean
    log-probability per token of the passage (then <|im_end|>) as the assistant's reply to the
    query, the query alone as the user's message; "pmi": the reply's score minus its prior
    (`prior_scores`: the same reply after an empty user message)."""

    KINDS = ("yes-no", "reply", "pmi")

    def __init__(self, name: str = LLM, max_passage_tokens: int = 192, kind: str = "yes-no"):
        from jaxllm import pretrained

        if kind not in self.KINDS:
            raise ConfigError(f"LLM reranker kind {kind!r} is not one of {', '.join(self.KINDS)}")
        self.kind = kind
        self.priors: dict[str, float] = {}  # passage text -> prior_scores' value
        self.lm = pretrained.load(name)
        self.max_passage_tokens = max_passage_tokens
        tok = self.lm.tokenizer
        self.im_end = int(tok.token_to_id("<|im_end|>"))
        vocab = set()
        self.yes, self.no = [], []
        for word, side in (("yes", self.yes), ("no", self.no)):
            for form in (word, word.capitalize(), " " + word, " " + word.capitalize()):
                ids = tok.encode(form)
                if len(ids) == 1 and ids[0] not in vocab:
                    vocab.add(ids[0])
                    side.append(ids[0])
        if not self.yes or not self.no:
            raise ConfigError(f"{name}: 'yes'/'no' are not single tokens of its vocabulary")

    def prompt_ids(self, query: str, text: str) -> list[int]:
        tok = self.lm.tokenizer
        passage = tok.decode(tok.encode(text)[: self.max_passage_tokens])
        msg = [{"role": "user", "content": LLM_PROMPT.format(query=query, passage=passage)}]
        return tok.encode(tok.apply_chat_template(msg, add_generation_prompt=True))

    def score(self, query: str, texts: list[str]) -> np.ndarray:
        """Per text: kind "reply" and "pmi" as `reply_scores` and `pmi_scores`; "yes-no":
        log p(yes) - log p(no) of the answer's first token.

        One batch per query: the tokens every prompt starts with (the chat template, the
        instruction and the query) are run once into a KV cache (infer/prefix.py), which every
        text's row continues with its own tokens (the passage and the template's end). The
        prompts are tokenized whole, so the values are those of each whole prompt. Both parts
        are left-padded to a multiple of 32 tokens (a few compiled shapes)."""
        from jaxllm.infer.prefix import extend, prefill

        if not texts:
            return np.zeros(0, np.float32)
        if self.kind == "reply":
            return self.reply_scores(query, texts)
        if self.kind == "pmi":
            return self.pmi_scores(query, texts)
        ids = [self.prompt_ids(query, t) for t in texts]
        cut = min(shared_prefix(ids), min(map(len, ids)) - 1)  # every row keeps a token
        if cut:
            pre = prefill(self.lm.model, self.lm.params, ids[0][:cut], pad_to=32)
            logits = np.stack(extend(self.lm.model, self.lm.params, pre,
                                     [r[cut:] for r in ids], pad_to=32, last_only=True))
        else:  # a single one-token prompt: nothing to share
            logits = self.lm.logits(ids)[:, -1]
        x = logits.astype(np.float64)
        logp = x - x.max(1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(1, keepdims=True))
        yes = np.logaddexp.reduce(logp[:, self.yes], axis=1)
        no = np.logaddexp.reduce(logp[:, self.no], axis=1)
        return (yes - no).astype(np.float32)

    def reply_ids(self, query: str, text: str) -> tuple[list[int], list[int]]:
        """The user turn `query` up to the assistant's header, and the reply `text` (cut to
        max_passage_tokens) followed by <|im_end|>, as token ids."""
        tok = self.lm.tokenizer
        msg = [{"role": "user", "content": query}]
        head = tok.encode(tok.apply_chat_template(msg, add_generation_prompt=True))
        return head, tok.encode(text)[: self.max_passage_tokens] + [self.im_end]

    def reply_scores(self, query: str, texts: list[str]) -> np.ndarray:
        """Mean log p of each text's reply tokens after the query's turn (one prefix cache)."""
        from jaxllm.infer.prefix import extend, prefill

        head = self.reply_ids(query, "")[0]
        replies = [self.reply_ids(query, t)[1] for t in texts]
        pre = prefill(self.lm.model, self.lm.params, head, pad_to=32)
        rows = extend(self.lm.model, self.lm.params, pre, replies, pad_to=32)
        out = []
        for reply, logits in zip(replies, rows):
            # the logits before each reply token: the prefix's last, then the reply's own
            x = np.concatenate([np.asarray(pre.logits, np.float64)[None],
                                logits[:-1].astype(np.float64)])
            x -= x.max(1, keepdims=True)
            logp = x[np.arange(len(reply)), reply] - np.log(np.exp(x).sum(1))
            out.append(logp.mean())
        return np.array(out, np.float32)

    def prior_scores(self, texts: list[str], batch: int = 16) -> np.ndarray:
        """reply_scores after an empty user message, remembered per text (self.priors): a
        passage that is a candidate of many queries is read once."""
        todo = sorted({t for t in texts if t not in self.priors})
        for at in range(0, len(todo), batch):
            part = todo[at: at + batch]
            self.priors.update(zip(part, map(float, self.reply_scores("", part))))
        return np.array([self.priors[t] for t in texts], np.float32)

    def pmi_scores(self, query: str, texts: list[str]) -> np.ndarray:
        """reply_scores(query, texts) - prior_scores(texts): mean log p(reply | query) - mean
        log p(reply | empty turn) over the same reply tokens."""
        if not texts:
            return np.zeros(0, np.float32)
        return self.reply_scores(query, texts) - self.prior_scores(texts)


def shared_prefix(rows: list[list[int]]) -> int:
    """The number of leading tokens all rows have in common."""
    n = 0
    for column in zip(*rows):
        if any(t != column[0] for t in column):
            break
        n += 1
    return n


def load_reranker(kind: str, index=None, path=None):
    """"cross": the cross-encoder trained for an index (IDX/reranker, or `path`); "llm":
    SmolLM2-135M-Instruct."""
    if kind == "llm":
        return LLMReranker()
    if kind == "cross":
        where = path or (None if index is None or index.path is None
                         else Path(index.path) / "reranker")
        if where is None:
            raise ConfigError("the cross-encoder reranker needs an index folder or a path")
        return CrossEncoder.load(where)
    raise ConfigError(f"reranker {kind!r} is not one of cross, llm")
