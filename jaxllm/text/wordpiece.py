"""WordPiece training: merge the pair with the highest count(ab) / (count(a) * count(b)).

    tok = train_wordpiece(texts, 8192)

Words come from BERT's basic tokenizer (lower-cased, accents stripped, punctuation split).
Symbols are the word-initial characters and "##"-prefixed continuation characters; a merge of
"##a" and "##b" is "##ab". Dividing by the symbols' own counts prefers pairs whose parts rarely
occur apart, which is what distinguishes WordPiece from BPE's raw pair count.

Pair counts are kept incrementally as in bpe.py (a merge touches only the words holding the
pair), but every merge changes two symbols' counts and so the scores of all their pairs: rather
than re-pushing those into a heap, the scores of all pairs are recomputed as one numpy
expression per merge (count / (sym_count[a] * sym_count[b]), argmax), a fraction of a
millisecond for Shakespeare's ~50k pairs. Encoding is greedy longest-match-first
(models.WordPiece), so merges are not stored.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from jaxllm.errors import DataError
from jaxllm.text import models
from jaxllm.text.bpe import count_words
from jaxllm.text.tokenizer import PipelineTokenizer
from jaxllm.text.pretokenize import Bert

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


class _Grow:
    """A numpy array that grows by doubling (pair and symbol tables gain entries every merge)."""

    def __init__(self, dtype):
        self.a = np.zeros(1024, dtype)
        self.n = 0

    def append(self, value) -> int:
        if self.n == self.a.size:
            self.a = np.concatenate([self.a, np.zeros_like(self.a)])
        self.a[self.n] = value
        self.n += 1
        return self.n - 1

    @property
    def view(self) -> np.ndarray:
        return self.a[:self.n]


def learn_wordpiece(word_counts: dict[str, int], n_new: int, min_frequency: int = 2,
                    prefix: str = "##") -> list[str]:
    """Up to n_new merged tokens, in the order WordPiece's score picks them."""
    names: list[str] = []
    ids: dict[str, int] = {}
    sym_count = _Grow(np.float64)

    def sym(name: str) -> int:
        if name not in ids:
            ids[name] = len(names)
            names.append(name)
            sym_count.append(0.0)
        return ids[name]

    words: list[list[int]] = []
    freqs: list[int] = []
    for w, f in word_counts.items():
        syms = [sym(c if i == 0 else prefix + c) for i, c in enumerate(w)]
        for s in syms:
            sym_count.a[s] += f
        words.append(syms)
        freqs.append(f)
    pair_ix: dict[tuple[int, int], int] = {}
    pa, pb, pc = _Grow(np.int64), _Grow(np.int64), _Grow(np.float64)
    where: dict[int, set[int]] = {}

    def add_pair(p: tuple[int, int], f: int, i: int) -> None:
        k = pair_ix.get(p)
        if k is None:
            k = pair_ix[p] = pa.append(p[0])
            pb.append(p[1])
            pc.append(0.0)
            where[k] = set()
        pc.a[k] += f
        where[k].add(i)

    for i, (syms, f) in enumerate(zip(words, freqs)):
        for p in zip(syms, syms[1:]):
            add_pair(p, f, i)
    out: list[str] = []
    while len(out) < n_new and pc.n:
        counts = pc.view
        sc = sym_count.a
        with np.errstate(divide="ignore", invalid="ignore"):  # dead pairs: 0 / 0
            score = np.where(counts >= min_frequency, counts / (sc[pa.view] * sc[pb.view]), -1.0)
        k = int(np.argmax(score))
        if score[k] <= 0:
            break
        a, b = int(pa.a[k]), int(pb.a[k])
        name = names[a] + names[b][len(prefix):] if names[b].startswith(prefix) else \
            names[a] + names[b]
        out.append(name)
        m = sym(name)
        sc = sym_count.a
        for i in where.pop(k, ()):
            syms, f = words[i], freqs[i]
            new: list[int] = []
            j, n, merged = 0, len(syms), 0
            while j < n:
                if j < n - 1 and syms[j] == a and syms[j + 1] == b:
                    new.append(m)
                    j += 2
                    merged += 1
                else:
                    new.append(syms[j])
                    j += 1
            if not merged:
                continue
            for p in zip(syms, syms[1:]):
                pc.a[pair_ix[p]] -= f
            for p in zip(new, new[1:]):
                add_pair(p, f, i)
            sc[a] -= merged * f
            sc[b] -= merged * f
            sc[m] += merged * f
            words[i] = new
        pc.a[k] = 0.0
        where.setdefault(k, set())
    return out


def train_wordpiece(texts: Iterable[str], vocab_size: int,
                    special_tokens: list[str] | None = None, min_frequency: int = 2,
                    lowercase: bool = True, prefix: str = "##") -> PipelineTokenizer:
    special_tokens = list(BERT_SPECIALS if special_tokens is None else special_tokens)
    if "[UNK]" not in special_tokens:
        raise DataError("WordPiece needs [UNK] among its special tokens (for words it cannot "
                        "cover)")
    bert = Bert(lowercase=lowercase)
    if isinstance(texts, str):
        texts = [texts]
    word_counts = count_words((bert.normalize(t) for t in texts), bert)
    firsts = sorted({w[0] for w in word_counts})
    rest = sorted({prefix + c for w in word_counts for c in w[1:]})
    base = special_tokens + firsts + rest
    if vocab_size < len(base):
        raise DataError(f"vocab_size={vocab_size} is smaller than the base alphabet: "
                        f"{len(base)} tokens ({len(special_tokens)} special + "
                        f"{len(base) - len(special_tokens)} characters); use at least "
                        f"{len(base)}")
    vocab = {t: i for i, t in enumerate(base)}
    for token in learn_wordpiece(word_counts, vocab_size - len(base), min_frequency, prefix):
        vocab.setdefault(token, len(vocab))
    special = {t: vocab[t] for t in special_tokens}
    template = None
    if "[CLS]" in special and "[SEP]" in special:
        template = (["[CLS]", "$A", "[SEP]"], ["[CLS]", "$A", "[SEP]", "$B", "[SEP]"])
    return PipelineTokenizer(models.WordPiece(vocab, "[UNK]", prefix), bert, "wordpiece",
                             normalizer=bert, special_tokens=special, template=template)
