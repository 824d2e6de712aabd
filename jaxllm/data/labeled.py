"""Labelled texts for the encoder's task heads: a stratified split and fixed-length token rows.

    texts, names = read_labelled_jsonl("moods.jsonl")        # a user's {"text", "label"} lines
    parts = stratified_split(labels, (0.1, 0.1), seed=0)     # [train, validation, test] indices
    rows = encode_texts(tokenizer, texts, max_len=128)       # {"tokens", "mask"} (N, max_len)

A text is encoded with its tokenizer's special tokens when it has a template (BERT's WordPiece:
[CLS] text [SEP]); one longer than max_len is cut to its first tokens, keeping the final [SEP].
Only the first `max_len * CHARS_PER_TOKEN` characters of a text are encoded, since the rest
would be cut anyway (a WordPiece token of English text averages about 4-5 characters).
"""

from __future__ import annotations

import numpy as np

from jaxllm.data.chat import read_jsonl
from jaxllm.errors import DataError

CHARS_PER_TOKEN = 10  # characters of a text read per token kept: generous, so nothing is lost


def read_labelled_jsonl(path) -> tuple[list[str], list[str]]:
    """(texts, labels) of a JSON-lines file of {"text": "...", "label": "..."} records (a label
    may be a string or an integer; it is read as its string)."""
    texts, labels = [], []
    for n, obj in read_jsonl(path):
        text, label = obj.get("text"), obj.get("label")
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{path} line {n}: \"text\" must be a non-empty string; each line "
                            f"is {{\"text\": \"...\", \"label\": \"...\"}}")
        if isinstance(label, bool) or not isinstance(label, (str, int)) or not str(label):
            raise DataError(f"{path} line {n}: \"label\" must be a non-empty string (or an "
                            f"integer); each line is {{\"text\": \"...\", \"label\": \"...\"}}")
        texts.append(text)
        labels.append(str(label))
    return texts, labels


def stratified_split(labels, fractions: tuple[float, ...], seed: int = 0) -> list[np.ndarray]:
    """Indices of len(fractions) + 1 disjoint parts covering every row: each class's rows are
    shuffled (numpy's default_rng([seed, class])) and the k-th part after the first takes
    round(fractions[k] * n_class) of them; the first part (train) takes the rest. Every part
    keeps the class proportions to within one row per class. Each part's indices are sorted."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) == 0:
        raise DataError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
    if any(f <= 0 for f in fractions) or sum(fractions) >= 1:
        raise DataError(f"split fractions {fractions}: each must be positive and together "
                        f"below 1")
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        rows = rows[np.random.default_rng([seed, int(c)]).permutation(len(rows))]
        start = 0
        for k, f in enumerate(fractions, 1):
            take = round(f * len(rows))
            parts[k].append(rows[start:start + take])
            start += take
        parts[0].append(rows[start:])
    return [np.sort(np.concatenate(p)) for p in parts]


def encode_texts(tokenizer, texts: list[str], max_len: int) -> dict[str, np.ndarray]:
    """tokens (N, max_len) int32 (0 after the end) and mask (N, max_len) bool of the texts."""
    if max_len < 2:
        raise DataError(f"max_len={max_len}: a row needs at least 2 tokens")
    special = getattr(tokenizer, "template", None) is not None
    tokens = np.zeros((len(texts), max_len), np.int32)
    mask = np.zeros((len(texts), max_len), bool)
    for n, text in enumerate(texts):
        text = text[:max_len * CHARS_PER_TOKEN]
        ids = tokenizer.encode(text, add_special_tokens=True) if special else \
            tokenizer.encode(text)
        if len(ids) > max_len:  # keep the last token when it is the template's ([SEP])
            ids = ids[:max_len - 1] + ids[-1:] if special else ids[:max_len]
        if not ids:
            raise DataError(f"text {n} encodes to no tokens; drop empty texts")
        tokens[n, :len(ids)] = ids
        mask[n, :len(ids)] = True
    return {"tokens": tokens, "mask": mask}
