"""Captions for digit images, made from labels through templates.

    captions(labels, TRAIN_TEMPLATES, rng)   ->  ["a photo of the digit seven", "a handwritten 7", ...]

Each template has one "{}" slot, filled with the digit as a word ("seven") or a numeral ("7")
according to the template. CLIP trains on TRAIN_TEMPLATES; HELDOUT_TEMPLATES are never seen in
training and measure zero-shot classification by prompts whose wording is new (their words
"picture", "figure", "written", "shows", "number" in new places ... reach the model as
[UNK] or in unseen orders). The caption tokenizer is trained on the training captions only.

The caption tokenizer is word-level (jaxllm.text's WordLevel model in the HF-style pipeline,
saved as a tokenizer.json): BERT's lower-casing and punctuation split, one id per training word,
[UNK] for any other word, so that a zero-shot prompt may use words training never saw. Id 0 is
[PAD] and 2 is [EOT], appended to every caption: CLIP's text tower reads its output there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxllm.errors import DataError
from jaxllm.text.models import WordLevel
from jaxllm.text.tokenizer import PipelineTokenizer
from jaxllm.text.pretokenize import Bert

SPECIALS = ("[PAD]", "[UNK]", "[EOT]")
PAD_ID, UNK_ID, EOT_ID = 0, 1, 2
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
NUMERALS = tuple(str(i) for i in range(10))

# (template, "word" | "numeral")
TRAIN_TEMPLATES = (
    ("a photo of the digit {}", "word"),
    ("a handwritten {}", "numeral"),
    ("the number {}", "word"),
    ("an image of a {}", "numeral"),
    ("a drawing of the digit {}", "numeral"),
    ("{}", "word"),
    ("a scan of a handwritten {}", "word"),
    ("this is a {}", "numeral"),
)
HELDOUT_TEMPLATES = (
    ("a picture of the number {}", "word"),
    ("a handwritten digit {}", "numeral"),
    ("{}", "numeral"),
    ("this figure shows a written {}", "word"),
)


def check_template(template: str) -> str:
    """DataError unless the template has exactly one "{}" slot."""
    if template.count("{}") != 1:
        raise DataError(f"template {template!r} must contain one {{}} where the label goes, "
                        f"e.g. \"a photo of the digit {{}}\"")
    return template


def fill(template: str, form: str, label: int) -> str:
    return template.replace("{}", (DIGIT_WORDS if form == "word" else NUMERALS)[label])


def captions(labels: Sequence[int], templates=TRAIN_TEMPLATES, rng=None) -> list[str]:
    """One caption per label, through a template drawn by rng (the first one if rng is None)."""
    which = (np.zeros(len(labels), int) if rng is None
             else rng.integers(0, len(templates), len(labels)))
    return [fill(*templates[w], int(y)) for w, y in zip(which, labels)]


def class_prompts(labels: Sequence[str], template: str) -> list[str]:
    """The zero-shot prompts of a user's labels: template with each label in the slot."""
    check_template(template)
    labels = [str(label).strip() for label in labels]
    if not labels or not all(labels):
        raise DataError("the label list is empty (or has an empty label); pass names such as "
                        "\"zero,one,two,three,four,five,six,seven,eight,nine\"")
    return [template.replace("{}", label) for label in labels]


def caption_tokenizer() -> PipelineTokenizer:
    """The word tokenizer of every training caption (held-out templates contribute nothing)."""
    texts = [fill(t, form, y) for t, form in TRAIN_TEMPLATES for y in range(10)]
    bert = Bert()  # lower-cases and strips accents, then splits on spaces and punctuation
    words = sorted({w for text in texts for w in bert.split(bert.normalize(text))})
    vocab = {t: i for i, t in enumerate([*SPECIALS, *words])}
    return PipelineTokenizer(WordLevel(vocab, "[UNK]"), bert, "words", normalizer=bert,
                             special_tokens={t: vocab[t] for t in SPECIALS},
                             template=(["$A", "[EOT]"], ["$A", "[EOT]", "$B", "[EOT]"]))


def encode_captions(tokenizer, texts: Sequence[str], length: int) -> tuple[np.ndarray, np.ndarray]:
    """(tokens (N, length) int32 padded with [PAD], eot (N,) int32 index of each [EOT]).

    A caption longer than length - 1 words is cut to fit, keeping its [EOT]."""
    if length < 1:
        raise DataError(f"caption length {length} leaves no room for the end token; use 1 or more")
    tokens = np.full((len(texts), length), PAD_ID, np.int32)
    eot = np.zeros(len(texts), np.int32)
    for i, text in enumerate(texts):
        ids = tokenizer.encode(text, add_special_tokens=True)
        if len(ids) > length:
            ids = ids[:length - 1] + [EOT_ID]
        tokens[i, :len(ids)] = ids
        eot[i] = len(ids) - 1
    return tokens, eot
