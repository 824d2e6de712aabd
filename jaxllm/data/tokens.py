"""Corpus -> tokenizer -> token arrays: the one call a training or evaluation run makes for data.

    data = build_data("shakespeare", "char", "position", 0.1)
    it = BatchIterator(data.train, batch_size, seq_len, seed, "windows", data.separator)

The char tokenizer is built from the train and validation texts together, as nanoGPT builds its
char vocabulary from the whole text (so validation never holds an unknown character); a subword
tokenizer (bytebpe, bpe, wordpiece, unigram, word) is trained on the train split only, with
`vocab_size` tokens. A resumed run and `generate` pass in the run's saved tokenizer instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jaxllm.data.tfds_builder import load_split_texts
from jaxllm.errors import DataError
from jaxllm.text import TRAINABLE_KINDS, Tokenizer, build_tokenizer
from jaxllm.text import train as train_tokenizer


@dataclass(frozen=True, eq=False)  # eq=False: numpy arrays have no single truth value
class LMData:
    """Token arrays of both splits, one int32 array per document, and what made them."""

    tokenizer: Tokenizer
    train: list[np.ndarray]
    validation: list[np.ndarray]
    # tokens of "\n": what joins documents into one stream for the windows sampler, so that the
    # train stream is exactly the tokens of the "\n"-joined train text (corpus_text)
    separator: np.ndarray
    # sizes of the joined split texts / token streams (documents joined by "\n" / separator)
    train_chars: int
    validation_chars: int
    train_tokens: int
    validation_tokens: int


def _encode(tokenizer: Tokenizer, texts: list[str], split: str) -> list[np.ndarray]:
    try:
        return [tokenizer.encode_array(t) for t in texts]
    except DataError as e:
        raise DataError(f"the tokenizer cannot encode the {split} split: {e}") from None


def _joined_size(sizes: list[int], sep: int) -> int:
    return sum(sizes) + sep * max(len(sizes) - 1, 0)


def data_tokenizer(kind: str, train_texts, other_texts, tokenizer: Tokenizer | None = None,
                   vocab_size: int = 4096) -> Tokenizer:
    """The run's tokenizer when it has one (checked to be of `kind`), else a new one: a subword
    kind trained on the training texts, a char vocabulary from all the texts (a char tokenizer
    cannot encode what it has not seen), or the byte tokenizer."""
    if tokenizer is None and kind in TRAINABLE_KINDS:
        return train_tokenizer(train_texts, vocab_size, kind=kind)
    if tokenizer is None:
        return build_tokenizer(kind, [*train_texts, *other_texts])
    if tokenizer.kind != kind:
        raise DataError(f"the run's tokenizer is {tokenizer.kind!r} but data.tokenizer="
                        f"{kind!r}; set data.tokenizer={tokenizer.kind} (a resumed or "
                        f"fine-tuning run keeps its base run's tokenizer)")
    return tokenizer


def build_data(
    corpus: str,
    tokenizer_kind: str,
    split: str = "position",
    val_fraction: float = 0.1,
    text_key: str = "text",
    tokenizer: Tokenizer | None = None,
    vocab_size: int = 4096,
) -> LMData:
    """Load a corpus's split texts, build (or reuse) a tokenizer and encode every document."""
    train_texts, val_texts = load_split_texts(corpus, split, val_fraction, text_key)
    # + "\n": the separator must be encodable even for a corpus of one-line documents
    tokenizer = data_tokenizer(tokenizer_kind, train_texts, [*val_texts, "\n"], tokenizer,
                               vocab_size)
    train = _encode(tokenizer, train_texts, "train")
    validation = _encode(tokenizer, val_texts, "validation")
    separator = _encode(tokenizer, ["\n"], "separator")[0]
    return LMData(
        tokenizer=tokenizer,
        train=train,
        validation=validation,
        separator=separator,
        train_chars=_joined_size([len(t) for t in train_texts], 1),
        validation_chars=_joined_size([len(t) for t in val_texts], 1),
        train_tokens=_joined_size([t.size for t in train], separator.size),
        validation_tokens=_joined_size([t.size for t in validation], separator.size),
    )
