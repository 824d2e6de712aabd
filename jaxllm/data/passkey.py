"""Passkey retrieval prompts: a random number hidden at a chosen depth of filler text, and the
model asked to repeat it (the test of Mohtashami & Jaggi 2023, "Landmark Attention", used to
probe how far a model's context reaches).

    p = passkey_prompt(tokenizer.encode, length=4096, depth=0.5, key="52817")
    p.tokens      # exactly `length` token ids: intro, filler, the needle, filler, the question
    p.answer      # the ids of " 52817": what a model that found the key continues with
    parse_answer(tokenizer.decode(generated_ids))   # "52817", or None without digits

The prompt is built from token ids, not text, so that its length is exact whatever the
tokenizer: the filler is FILLER's sentences, each encoded once and repeated, cut to the
tokens left over by the intro, needle and question (the last one cut short); the needle goes
in at the sentence boundary closest to `depth` (0: just after the intro, 1: after the last
whole sentence, less than a sentence before the question). The filler
holds no digit, so the key is the only number in the prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from jaxllm.errors import DataError

INTRO = ("There is an important piece of information hidden inside a lot of irrelevant text. "
         "Find it and memorize it. I will quiz you about it.\n")
FILLER = ("The grass is green. The sky is blue. The sun is yellow. Here we go. "
          "There and back again. ")
NEEDLE = "The pass key is {key}. Remember it. "
QUESTION = "\nWhat is the pass key? The pass key is"
ANSWER = " {key}"


@dataclass(frozen=True)
class PasskeyPrompt:
    tokens: list[int]  # the prompt, exactly the requested length
    answer: list[int]  # the ids of ANSWER: the greedy continuation of a model that found it
    key: str
    needle_start: int  # index in tokens of the needle's first token
    depth: float  # where the needle landed: its share of the filler before it


def random_key(rng: np.random.Generator, digits: int = 5) -> str:
    """A number of `digits` digits without a leading zero."""
    return str(int(rng.integers(10 ** (digits - 1), 10 ** digits)))


def _filler_sentences(encode) -> list[list[int]]:
    parts = [s + ". " for s in FILLER.split(". ") if s.strip()]
    return [encode(s) for s in parts]


def passkey_prompt(encode, length: int, depth: float, key: str) -> PasskeyPrompt:
    """The prompt of `length` tokens with the needle holding `key` at `depth` (0..1) of the
    filler. encode: text -> token ids (a tokenizer's encode, without special tokens)."""
    if not 0.0 <= depth <= 1.0:
        raise DataError(f"depth={depth}: must be between 0 (start) and 1 (end of the filler)")
    if not key.isdigit():
        raise DataError(f"key={key!r}: must be digits (the filler has none, so the key is the "
                        f"only number in the prompt)")
    intro, question = encode(INTRO), encode(QUESTION)
    needle = encode(NEEDLE.format(key=key))
    n_fill = length - len(intro) - len(needle) - len(question)
    sentences = _filler_sentences(encode)
    if n_fill < 0:
        raise DataError(f"length={length}: too short for the passkey prompt; give at least "
                        f"{length - n_fill} tokens")
    filler, bounds = [], [0]  # bounds: where the filler's whole sentences start or end
    while len(filler) < n_fill:
        filler += sentences[(len(bounds) - 1) % len(sentences)]
        if len(filler) <= n_fill:
            bounds.append(len(filler))
    filler = filler[:n_fill]  # the last sentence is cut short to make the length exact
    at = min(bounds, key=lambda b: abs(b - depth * n_fill))
    tokens = intro + filler[:at] + needle + filler[at:] + question
    return PasskeyPrompt(tokens=tokens, answer=encode(ANSWER.format(key=key)), key=key,
                         needle_start=len(intro) + at, depth=at / max(n_fill, 1))


def parse_answer(text: str) -> str | None:
    """The number a model answered: the first run of digits in its continuation (leading
    spaces and punctuation are skipped), or None when it wrote none."""
    m = re.search(r"\d+", text)
    return m.group(0) if m else None


def greedy_continuation(predicted, answer) -> list[int]:
    """What greedy decoding continues with, as far as teacher forcing tells it.

    predicted[i] is the model's argmax after the prompt and answer[:i] (one forward pass over
    prompt + answer). Greedy decoding emits answer[0] if predicted[0] is it, then answer[1] if
    predicted[1] is, ...: its tokens are answer's up to the first disagreement, and then the
    disagreeing prediction (what follows that is not known)."""
    out = []
    for p, a in zip(predicted, answer):
        out.append(int(p))
        if int(p) != int(a):
            break
    return out
