"""Word-level tokenizer: one id per word (HF `Whitespace` split), `<unk>` beyond a size cap.

The baseline whose trade-off the subword kinds fix: a vocabulary that grows with the corpus
(Shakespeare has ~30k distinct words), every unseen word collapsing to <unk>, and decoding that
cannot restore the spacing (words are joined with single spaces).
"""

from __future__ import annotations

from collections.abc import Iterable

from jaxllm.errors import DataError
from jaxllm.text import models
from jaxllm.text.bpe import count_words
from jaxllm.text.tokenizer import PipelineTokenizer
from jaxllm.text.pretokenize import Whitespace


def train_word(texts: Iterable[str], vocab_size: int, special_tokens: list[str] | None = None,
               min_frequency: int = 1) -> PipelineTokenizer:
    """The vocab_size - len(special_tokens) most frequent words (ties: alphabetical) + <unk>."""
    special_tokens = list(["<unk>"] if special_tokens is None else special_tokens)
    if "<unk>" not in special_tokens:
        raise DataError("a word-level tokenizer needs <unk> among its special tokens")
    if vocab_size <= len(special_tokens):
        raise DataError(f"vocab_size={vocab_size} leaves no room for words after "
                        f"{len(special_tokens)} special tokens")
    pre = Whitespace()
    counts = count_words(texts, pre)
    ranked = sorted((w for w, c in counts.items() if c >= min_frequency),
                    key=lambda w: (-counts[w], w))
    vocab = {t: i for i, t in enumerate(special_tokens)}
    for w in ranked[:vocab_size - len(special_tokens)]:
        vocab.setdefault(w, len(vocab))
    special = {t: vocab[t] for t in special_tokens}
    return PipelineTokenizer(models.WordLevel(vocab, "<unk>"), pre, "words",
                             special_tokens=special)
