"""Token- and span-labelled rows for the encoder's token and span heads, made from BBC News by
stated rules (no annotated corpus ships offline), through a BERT-style WordPiece tokenizer.

    rows = tag_rows(tokenizer, texts, max_len)                # bbc-tags
    rows = planted_rows(tokenizer, texts, max_len, seed=0)    # bbc-planted

bbc-tags (model.head=token): a text's words (runs of letters and digits, or one other
character) tagged by a rule on their original casing, TAGS:
  O       every other word
  NAME    a word that starts with a capital letter and does not start a sentence (the text's
          first word and a word after ".", "!" or "?" start one)
  NUMBER  a word with a digit
A word's tag sits on its first WordPiece; its later pieces, [CLS], [SEP] and the padding get -1
(left out of the loss). all-MiniLM-L6-v2 is uncased: it reads lower-case text, so NAME asks it
to tell proper nouns from their context, a stand-in for named-entity tagging.

bbc-planted (model.head=span): extractive questions about two facts planted in each text: the
sentences "The {a} code is {x}." and "The {b} code is {y}." ({a} != {b} from KINDS; a code is
two letters and four digits) at random sentence boundaries of the text's leading sentences, and
the question "What is the {a} code?", whose answer is x. Rows are [CLS] question [SEP] context
[SEP] with token types 0 and 1; starts / ends index the answer's first and last WordPiece,
context marks where an answer may lie. Draws come from numpy's default_rng(seed).
"""

from __future__ import annotations

import re

import numpy as np

from jaxllm.data.labeled import CHARS_PER_TOKEN
from jaxllm.errors import DataError

TAGS = ("O", "NAME", "NUMBER")
KINDS = ("access", "booking", "reference", "tracking", "account", "order", "parcel", "voucher")
_WORD = re.compile(r"\w+|[^\w\s]")


def special_ids(tokenizer) -> tuple[int, int]:
    """The ids of [CLS] and [SEP], or a DataError naming the tokenizer these rows need."""
    try:
        return int(tokenizer.token_to_id("[CLS]")), int(tokenizer.token_to_id("[SEP]"))
    except (DataError, KeyError, TypeError, AttributeError):
        raise DataError("token and span rows are [CLS] ... [SEP] rows of a WordPiece tokenizer; "
                        "fine-tune an encoder that has one (train.init_from=all-minilm-l6-v2)"
                        ) from None


def word_tags(text: str) -> list[tuple[str, int]]:
    """(word, index into TAGS) of every word of text, by the rule in the module docstring."""
    out, starts = [], True
    for word in _WORD.findall(text):
        if any(c.isdigit() for c in word):
            tag = 2
        elif word[0].isupper() and not starts:
            tag = 1
        else:
            tag = 0
        out.append((word, tag))
        starts = word in (".", "!", "?")
    return out


class _Pieces:
    """WordPiece ids of single words, each word encoded once."""

    def __init__(self, tokenizer):
        self.tokenizer, self.cache = tokenizer, {}

    def __call__(self, word: str) -> list[int]:
        if word not in self.cache:
            self.cache[word] = list(self.tokenizer.encode(word))
        return self.cache[word]


def tag_rows(tokenizer, texts: list[str], max_len: int) -> dict[str, np.ndarray]:
    """tokens (N, max_len) int32, mask (N, max_len) bool and labels (N, max_len) int32 (-1 where
    nothing is tagged) of [CLS] text [SEP], the text's words cut to what fits."""
    cls, sep = special_ids(tokenizer)
    pieces = _Pieces(tokenizer)
    n = len(texts)
    tokens, labels = np.zeros((n, max_len), np.int32), np.full((n, max_len), -1, np.int32)
    mask = np.zeros((n, max_len), bool)
    for row, text in enumerate(texts):
        ids, tags = [cls], [-1]
        for word, tag in word_tags(text[:max_len * CHARS_PER_TOKEN]):
            p = pieces(word)
            if len(ids) + len(p) > max_len - 1:
                break
            ids += p
            tags += [tag] + [-1] * (len(p) - 1)
        ids.append(sep)
        tags.append(-1)
        tokens[row, :len(ids)], labels[row, :len(ids)], mask[row, :len(ids)] = ids, tags, True
    return {"tokens": tokens, "mask": mask, "labels": labels}


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if s]


def planted_rows(tokenizer, texts: list[str], max_len: int, seed: int = 0
                 ) -> dict[str, np.ndarray]:
    """tokens, types (N, max_len) int32, mask, context (N, max_len) bool, starts, ends (N,)
    int32 of the planted questions (module docstring), one per text."""
    cls, sep = special_ids(tokenizer)
    pieces = _Pieces(tokenizer)
    rng = np.random.default_rng(seed)
    n = len(texts)
    out = {"tokens": np.zeros((n, max_len), np.int32), "types": np.zeros((n, max_len), np.int32),
           "mask": np.zeros((n, max_len), bool), "context": np.zeros((n, max_len), bool),
           "starts": np.zeros(n, np.int32), "ends": np.zeros(n, np.int32)}

    def encode(sentence):
        return [i for w in _WORD.findall(sentence) for i in pieces(w)]

    for row, text in enumerate(texts):
        a, b = rng.choice(len(KINDS), 2, replace=False)
        codes = ["".join(rng.choice(list("abcdefghjkmnpqrstuvwxyz"), 2)) +
                 str(rng.integers(1000, 10000)) for _ in range(2)]
        question = [cls] + encode(f"What is the {KINDS[a]} code?") + [sep]
        facts = [encode(f"The {KINDS[k]} code is {c}.") for k, c in zip((a, b), codes)]
        budget = max_len - len(question) - 1 - sum(map(len, facts))
        if budget < 0:
            raise DataError(f"model.max_len={max_len}: a planted question needs more tokens; "
                            f"use at least 64")
        sentences = []  # the text's leading sentences that fit the budget, the last one cut
        for s in _sentences(text[:max_len * CHARS_PER_TOKEN]):
            ids = encode(s)[:budget - sum(map(len, sentences))]
            if not ids:
                break
            sentences.append(ids)
        for k, fact in enumerate(facts):  # each at a boundary: before sentence i
            sentences.insert(int(rng.integers(len(sentences) + 1)), [-1 - k])
        context, start = [], 0
        for s in sentences:
            if s[0] < 0:  # a planted fact's place; the answer is the code of fact 0
                if s[0] == -1:
                    code = pieces(codes[0])
                    start = len(question) + len(context) + len(facts[0]) - 1 - len(code)
                context += facts[-1 - s[0]]
            else:
                context += s
        ids = question + context + [sep]
        L, q = len(ids), len(question)
        out["tokens"][row, :L], out["mask"][row, :L] = ids, True
        out["types"][row, q:L] = 1
        out["context"][row, q:L - 1] = True
        out["starts"][row] = start
        out["ends"][row] = start + len(pieces(codes[0])) - 1
    return out
