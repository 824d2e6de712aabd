"""Passkey retrieval prompts: a random number hidden at a chosen depth of filler text, and the
model asked to repeat it (the test of Mohtashami & Jaggi 2023, "Landmark Attention", used to
probe how far a model's context reaches).

    p = passkey_prompt(tokenizer.encode, length=4096, depth=0.5, key="52817")
    p.tokens      # exactly `length` token ids: intro, filler, the needle, filler, the question
    p.answer      # the ids of " 52817": what a model that found the key continues with
    parse_answer(tokenizer.decode(generated_ids))   # "52817", or None without digits

A grid of prompts (lengths x depths x RoPE scalings) that outlasts one session is run through a
records file, one JSON line per prompt appended as soon as its answer is known; a rerun of the
same grid skips the prompts recorded there, and the table is built from the records:

    prompts = grid([16384, 32768], [1], [0.5, 0, 1, 0.25, 0.75], ["none", "yarn"], 8192)
    run_grid(prompts, "records.jsonl", run_prompt)   # run_prompt(prompt) -> outcome fields
    print(report_table(prompts, read_records("records.jsonl")))

The prompt is built from token ids, not text, so that its length is exact whatever the
tokenizer: the filler is FILLER's sentences, each encoded once and repeated, cut to the
tokens left over by the intro, needle and question (the last one cut short); the needle goes
in at the sentence boundary closest to `depth` (0: just after the intro, 1: after the last
whole sentence, less than a sentence before the question). The filler
holds no digit, so the key is the only number in the prompt.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
from dataclasses import asdict, dataclass

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


# --- a resumable grid of prompts -----------------------------------------------------------------

@dataclass(frozen=True)
class GridPrompt:
    """One prompt of a grid: `length` tokens, the key at `depth`, RoPE `scaling` at `factor`
    (1 for none), the sample-th key of its cell, run in `dtype`."""
    length: int
    scaling: str
    factor: float
    depth: float
    sample: int
    key: str
    dtype: str = "float32"


def record_id(r) -> tuple:
    """What makes a prompt the same one (a GridPrompt or a record dict): a record with this id
    answers the prompt, whatever commit, machine or attention implementation ran it."""
    get = r.get if isinstance(r, dict) else lambda f: getattr(r, f)
    return (int(get("length")), get("scaling"), float(get("factor")), float(get("depth")),
            str(get("key")), get("dtype"))


def grid(lengths, samples, depths, scalings, trained: int, *, factors=(), seed: int = 0,
         dtype: str = "float32") -> list[GridPrompt]:
    """The prompts in the order they run, so that a grid cut short is still useful: length by
    length as given, depth by depth as given (the most telling depth first), every scaling at a
    depth before the next depth. samples: prompts per cell, one number per length.

    A scaling other than "none" runs at each of `factors`, or (no factors) only past the
    trained context, at length / trained. Keys: the same for every length and scaling, from
    numpy's default_rng(seed), one draw skipped (experiments/passkey.py drew it first to size
    the answer, before it kept records: the keys match its earlier runs at one length), then
    one key per depth in the order of `depths` for the first sample, then for the second..."""
    prompts = []
    for length, n in zip(lengths, samples, strict=True):
        rng = np.random.default_rng(seed)
        random_key(rng)
        keys = {d: [] for d in depths}
        for _ in range(n):  # sample by sample: the first keys do not depend on n
            for d in depths:
                keys[d].append(random_key(rng))
        runs = []
        for s in scalings:
            if s == "none":
                runs.append((s, 1.0))
            elif factors:
                runs += [(s, float(f)) for f in factors]
            elif length > trained:
                runs.append((s, length / trained))
        prompts += [GridPrompt(length, s, f, float(d), i, k, dtype)
                    for d in depths for s, f in runs for i, k in enumerate(keys[d])]
    return prompts


def read_records(path) -> list[dict]:
    """The records of a records file (none when it does not exist). A line that does not parse
    (a run killed while writing it) is skipped with a warning: its prompt runs again."""
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    print(f"{path}:{n}: not a JSON record, skipped", file=sys.stderr)
    return out


def append_record(path, record: dict) -> None:
    """Append one record as a line, on a line of its own even after a torn last line."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a+") as f:
        f.seek(0, os.SEEK_END)
        if f.tell():
            f.seek(f.tell() - 1)
            torn = f.read(1) != "\n"
            f.seek(0, os.SEEK_END)
            if torn:
                f.write("\n")
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def run_grid(prompts, path, run_prompt, meta: dict | None = None, log=print) -> int:
    """Run the prompts not recorded in `path` yet, in order, appending each one's record:
    the prompt's fields, then run_prompt(prompt)'s (a dict: the outcome), then meta's. Returns
    how many ran."""
    done = {record_id(r) for r in read_records(path)}
    todo = [p for p in prompts if record_id(p) not in done]
    log(f"{len(prompts) - len(todo)} of {len(prompts)} prompts already in {path}; "
        f"{len(todo)} to run")
    for p in todo:
        append_record(path, {**asdict(p), **run_prompt(p), **(meta or {})})
    return len(todo)


def grid_cells(prompts, records) -> list[dict]:
    """One dict per recorded (length, scaling, factor, depth) cell of the grid: correct and n
    over its recorded prompts, accuracy, and the records themselves (rows)."""
    by_id = {record_id(r): r for r in records}
    cells = {}
    for p in prompts:
        r = by_id.get(record_id(p))
        if r is not None:
            cell = cells.setdefault((p.length, p.scaling, p.factor, p.depth), [])
            cell.append(r)
    return [{"length": L, "scaling": s, "factor": f, "depth": d, "rows": rows,
             "correct": sum(bool(r["right"]) for r in rows), "n": len(rows),
             "accuracy": sum(bool(r["right"]) for r in rows) / len(rows)}
            for (L, s, f, d), rows in cells.items()]


def report_table(prompts, records) -> str:
    """Markdown: one row per (length, scaling, factor) of the grid, right/recorded prompts per
    depth ("-" where none is recorded yet), all depths, the median seconds per prompt and of
    its program's compile, and how many of the grid's prompts are recorded."""
    depths = sorted({p.depth for p in prompts})
    cells = {(c["length"], c["scaling"], c["factor"], c["depth"]): c
             for c in grid_cells(prompts, records)}
    lines = ["| length | scaling (factor) | " + " | ".join(f"depth {d:.0%}" for d in depths)
             + " | all | s / prompt | compile (s) |",
             "|---|---|" + "---|" * len(depths) + "---|---|---|"]
    for length, s, f in dict.fromkeys((p.length, p.scaling, p.factor) for p in prompts):
        row = [cells.get((length, s, f, d)) for d in depths]
        rows = [r for c in row if c for r in c["rows"]]
        secs = [r["seconds"] for r in rows if r.get("seconds") is not None]
        comp = [r["compile"] for r in rows if r.get("compile") is not None]
        lines.append(
            f"| {length:,} | {s} ({f:g}) | "
            + " | ".join(f"{c['correct']}/{c['n']}" if c else "-" for c in row)
            + f" | {sum(bool(r['right']) for r in rows)}/{len(rows)} | "
            + (f"{statistics.median(secs):.1f}" if secs else "-") + " | "
            + (f"{statistics.median(comp):.0f}" if comp else "-") + " |")
    done = sum(1 for c in cells.values() for _ in c["rows"])
    lines.append(f"\n{done} of {len(prompts)} prompts of this grid recorded.")
    return "\n".join(lines)
