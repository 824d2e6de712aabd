"""Data: corpora -> train/validation splits (as TFDS datasets) -> token arrays -> batches.

    corpora.py       named corpora (shakespeare, pydoc, your own), Document, corpus_text
    splits.py        the "position" and "document" train/validation splits
    tfds_builder.py  corpora prepared as array_record TFDS datasets; "tfds:NAME" readers
    tokens.py        build_data: texts -> tokenizer -> one int32 array per document
    batches.py       deterministic, resumable windows / packed batches / rows of examples
    chat.py          chat files (CSV, JSONL, chatterbot, ShareGPT) -> token ids with loss weights
    preferences.py   programmatic tasks, preference pairs, rankings; their readers
    passkey.py       passkey retrieval prompts (a number hidden in filler text) and their answers
"""

from jaxllm.data.batches import (
    PAD_ID,
    SAMPLINGS,
    BatchIterator,
    RowBatches,
    eval_batches,
    fixed_rows,
    join_tokens,
    sequential_batches,
)
from jaxllm.data.corpora import (
    Document,
    corpus_text,
    list_corpora,
    load_documents,
    register_corpus,
    render_play,
)
from jaxllm.data.tokens import LMData, build_data
from jaxllm.data.splits import SPLITS, document_split, position_split, split_documents
from jaxllm.data.tfds_builder import (
    default_data_dir,
    load_split_texts,
    load_tfds_texts,
    prepare_corpus,
)

__all__ = [
    "PAD_ID",
    "SAMPLINGS",
    "SPLITS",
    "BatchIterator",
    "RowBatches",
    "Document",
    "LMData",
    "build_data",
    "corpus_text",
    "default_data_dir",
    "document_split",
    "eval_batches",
    "fixed_rows",
    "join_tokens",
    "list_corpora",
    "load_documents",
    "load_split_texts",
    "load_tfds_texts",
    "position_split",
    "prepare_corpus",
    "register_corpus",
    "render_play",
    "sequential_batches",
    "split_documents",
]
