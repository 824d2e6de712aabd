"""Train/validation splits of a corpus: pure functions of (documents, strategy, val_fraction).

Two strategies:

- "position" (nanoGPT): the last val_fraction of the corpus text is validation. The cut is made in
  the joined text `corpus_text(docs)`, so it equals a peer script's `data[:int(0.9 * len(data))]`
  character for character; the document containing the cut is split into its two parts.
- "document": whole documents (whole plays) are held out, so validation measures generalisation
  to unseen documents, not to the next few pages of a seen one.
"""

from __future__ import annotations

from jaxllm.data.corpora import Document, corpus_text
from jaxllm.errors import DataError

SPLITS = ("position", "document")


def check_val_fraction(val_fraction: float) -> float:
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) \
            or not 0.0 < val_fraction < 1.0:
        raise DataError(f"data.val_fraction={val_fraction!r} is not valid; use a number strictly "
                        f"between 0 and 1, such as 0.1")
    return float(val_fraction)


def position_split(
    docs: list[Document], val_fraction: float
) -> tuple[list[Document], list[Document]]:
    """Cut the joined text at `int((1 - val_fraction) * len(text))` characters.

    With text = corpus_text(docs) ("\\n".join of the document texts) and cut as above, the
    result (train, validation) satisfies exactly:

        "\\n".join(d.text for d in train) == text[:cut]
        "\\n".join(d.text for d in validation) == text[cut:]

    so the two joined texts concatenated (with nothing in between) give back `text`. The document
    containing the cut contributes its head to train and its tail to validation, under the same
    title. If the cut falls exactly on a document boundary one of those two parts is the empty
    string; it is kept, because without it the joins above would lose a "\\n".
    """
    val_fraction = check_val_fraction(val_fraction)
    if not docs:
        raise DataError("cannot split an empty corpus: it has no documents")
    total = len(corpus_text(docs))
    cut = int((1 - val_fraction) * total)
    start = 0  # offset of docs[i] in the joined text
    for i, doc in enumerate(docs):
        end = start + len(doc.text)
        if cut <= end:  # the first document ending at or after the cut (cut >= start holds)
            head = Document(doc.title, doc.text[: cut - start])
            tail = Document(doc.title, doc.text[cut - start:])
            train, validation = docs[:i] + [head], [tail] + docs[i + 1:]
            break
        start = end + 1  # + the "\n" that joins this document to the next
    if cut == 0 or cut == total:
        side = "train" if cut == 0 else "validation"
        raise DataError(f"data.val_fraction={val_fraction} leaves the {side} split empty: the "
                        f"corpus has only {total} characters; use a larger corpus or another "
                        f"val_fraction")
    return train, validation


def validation_indices(n_docs: int, val_fraction: float) -> list[int]:
    """Evenly spaced indices of max(1, round(val_fraction * n_docs)) held-out documents.

    Index k sits in the middle of the k-th of n_val equal strides, e.g. 38 plays at 0.1 -> 4
    plays: [4, 14, 23, 33]. At least one document always stays in train.
    """
    n_val = min(max(1, round(val_fraction * n_docs)), n_docs - 1)
    return [int((k + 0.5) * n_docs / n_val) for k in range(n_val)]


def document_split(
    docs: list[Document], val_fraction: float
) -> tuple[list[Document], list[Document]]:
    """Hold out whole documents at evenly spaced positions (see `validation_indices`)."""
    val_fraction = check_val_fraction(val_fraction)
    if len(docs) < 2:
        raise DataError(f"data.split=document needs at least 2 documents, the corpus has "
                        f"{len(docs)}; use data.split=position")
    held_out = set(validation_indices(len(docs), val_fraction))
    train = [d for i, d in enumerate(docs) if i not in held_out]
    validation = [d for i, d in enumerate(docs) if i in held_out]
    return train, validation


def split_documents(
    docs: list[Document], split: str, val_fraction: float
) -> tuple[list[Document], list[Document]]:
    """(train, validation) documents by the named strategy, "position" or "document"."""
    if split == "position":
        return position_split(docs, val_fraction)
    if split == "document":
        return document_split(docs, val_fraction)
    raise DataError(f"data.split={split!r} is not valid; choose one of {', '.join(SPLITS)}")
