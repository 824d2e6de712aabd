"""One entry point for training any tokenizer kind: `train(texts, vocab_size, kind=...)`.

    kind       what it learns                                          module
    bytebpe    GPT-2 style byte-level BPE (regex words, 256 bytes)     bpe.py
    bpe        SentencePiece-style BPE ("▁" words, byte fallback)      bpe.py
    wordpiece  BERT WordPiece (score = count(ab) / count(a)count(b))   wordpiece.py
    unigram    SentencePiece-style Unigram LM (EM + pruning)           unigram.py
    word       word-level, most frequent words + <unk>                 word.py
"""

from __future__ import annotations

from collections.abc import Iterable

from jaxllm.errors import DataError
from jaxllm.text.tokenizer import PipelineTokenizer

TRAINABLE_KINDS = ("bytebpe", "bpe", "wordpiece", "unigram", "word")


def train(texts: Iterable[str], vocab_size: int, kind: str = "bytebpe",
          special_tokens: list[str] | None = None, **options) -> PipelineTokenizer:
    if kind not in TRAINABLE_KINDS:
        raise DataError(f"unknown tokenizer kind {kind!r}; choose one of "
                        f"{', '.join(TRAINABLE_KINDS)}")
    if not isinstance(vocab_size, int) or vocab_size <= 0:
        raise DataError(f"vocab_size must be a positive integer, got {vocab_size!r}")
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not any(texts):
        raise DataError("cannot train a tokenizer on an empty corpus: the texts are empty")
    if kind in ("bytebpe", "bpe"):
        from jaxllm.text.bpe import train_bpe
        return train_bpe(texts, vocab_size, byte_level=kind == "bytebpe",
                         special_tokens=special_tokens, **options)
    if kind == "wordpiece":
        from jaxllm.text.wordpiece import train_wordpiece
        return train_wordpiece(texts, vocab_size, special_tokens, **options)
    if kind == "unigram":
        from jaxllm.text.unigram import train_unigram
        return train_unigram(texts, vocab_size, special_tokens, **options)
    from jaxllm.text.word import train_word
    return train_word(texts, vocab_size, special_tokens, **options)
