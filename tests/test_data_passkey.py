"""The passkey prompt builder (data/passkey.py): exact length, the needle at the asked depth on a
sentence boundary, the key the only number in the prompt, and the answer read back."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxllm.data.passkey import (
    FILLER,
    INTRO,
    NEEDLE,
    QUESTION,
    GridPrompt,
    greedy_continuation,
    grid,
    parse_answer,
    passkey_prompt,
    random_key,
    read_records,
    report_table,
    run_grid,
)
from jaxllm.errors import DataError
from jaxllm.text import ByteTokenizer

TOK = ByteTokenizer()
LONGEST_SENTENCE = max(len(s) + 2 for s in FILLER.split(". "))  # bytes, with ". "


def _find(seq, sub):
    """Every start index of the sublist sub in seq."""
    return [i for i in range(len(seq) - len(sub) + 1) if seq[i:i + len(sub)] == sub]


@settings(max_examples=25, deadline=None)
@given(length=st.integers(300, 900), depth=st.floats(0.0, 1.0), seed=st.integers(0, 10**6))
def test_prompt_length_depth_and_a_single_number(length, depth, seed):
    key = random_key(np.random.default_rng(seed))
    p = passkey_prompt(TOK.encode, length, depth, key)
    assert len(p.tokens) == length
    text = TOK.decode(p.tokens)
    assert re.findall(r"\d+", text) == [key]  # the key, once; no other number
    assert text.startswith(INTRO) and text.endswith(QUESTION)
    needle = TOK.encode(NEEDLE.format(key=key))
    (at,) = _find(p.tokens, needle)
    assert at == p.needle_start
    before = at - len(INTRO)  # filler bytes before the needle
    n_fill = length - len(INTRO) - len(needle) - len(QUESTION)
    assert abs(before - depth * n_fill) <= LONGEST_SENTENCE  # half one inside, one at the end
    assert text[:at].endswith((". ", "\n"))  # on a sentence boundary
    assert p.answer == TOK.encode(" " + key)


def test_depth_ends_and_too_short():
    key = "31415"
    first = passkey_prompt(TOK.encode, 400, 0.0, key)
    last = passkey_prompt(TOK.encode, 400, 1.0, key)
    text = TOK.decode(first.tokens)
    assert text[len(INTRO):].startswith(NEEDLE.format(key=key))  # right after the intro
    tail = TOK.decode(last.tokens).split(NEEDLE.format(key=key))[1]
    assert tail.endswith(QUESTION) and len(tail) - len(QUESTION) < LONGEST_SENTENCE
    assert first.depth == 0.0 and last.depth > 0.9
    with pytest.raises(DataError, match="length=100"):
        passkey_prompt(TOK.encode, 100, 0.5, key)
    with pytest.raises(DataError, match="depth=1.5"):
        passkey_prompt(TOK.encode, 400, 1.5, key)


def test_answer_parsing_and_greedy_continuation():
    assert parse_answer(" 52817.") == "52817"
    assert parse_answer(": the pass key is 52817") == "52817"
    assert parse_answer(" 528 17") == "528"
    assert parse_answer("\nThe grass") is None
    # teacher forcing: greedy follows the answer until the first wrong prediction
    assert greedy_continuation([5, 2, 8, 9, 9], [5, 2, 8, 1, 7]) == [5, 2, 8, 9]
    assert greedy_continuation([4, 2, 8, 1, 7], [5, 2, 8, 1, 7]) == [4]
    assert greedy_continuation([5, 2, 8, 1, 7], [5, 2, 8, 1, 7]) == [5, 2, 8, 1, 7]
    assert len(random_key(np.random.default_rng(0))) == 5


# --- the resumable grid (records file): a stand-in for the model, no SmolLM2 -------------------

def _stand_in(calls, stop_after=None):
    """A run_prompt that answers right when the key is even, and records what it was asked;
    raises KeyboardInterrupt on its (stop_after + 1)-th call (a run killed mid-grid)."""
    def run(p):
        if stop_after is not None and len(calls) == stop_after:
            raise KeyboardInterrupt
        calls.append(p)
        return {"greedy": f" {p.key}", "right": int(p.key) % 2 == 0, "seconds": 10.0 + len(calls),
                "compile": 5.0}
    return run


def test_grid_order_and_keys():
    prompts = grid([2000, 4000], [1, 2], [0.5, 0.0], ["none", "yarn"], 1000)
    got = [(p.length, p.scaling, p.factor, p.depth, p.sample) for p in prompts]
    assert got == [(2000, "none", 1.0, 0.5, 0), (2000, "yarn", 2.0, 0.5, 0),
                   (2000, "none", 1.0, 0.0, 0), (2000, "yarn", 2.0, 0.0, 0),
                   (4000, "none", 1.0, 0.5, 0), (4000, "none", 1.0, 0.5, 1),
                   (4000, "yarn", 4.0, 0.5, 0), (4000, "yarn", 4.0, 0.5, 1),
                   (4000, "none", 1.0, 0.0, 0), (4000, "none", 1.0, 0.0, 1),
                   (4000, "yarn", 4.0, 0.0, 0), (4000, "yarn", 4.0, 0.0, 1)]
    # seed 0's key at the first depth: 67326, the key of the 16k runs recorded in RESULTS.md
    assert prompts[0].key == prompts[1].key == prompts[4].key == "67326"
    assert prompts[4].key != prompts[5].key and prompts[8].key != prompts[4].key
    assert [p.key for p in prompts[:4:2]] == [p.key for p in prompts[4:10:4]]  # same per length
    # inside the trained context a scaling runs only at the factors asked for
    assert [(p.scaling, p.factor) for p in grid([800], [1], [0.5], ["none", "ntk"], 1000)] == [
        ("none", 1.0)]
    assert [(p.scaling, p.factor) for p in grid([800], [1], [0.5], ["ntk"], 1000,
                                                factors=[2, 4])] == [("ntk", 2.0), ("ntk", 4.0)]


def test_run_grid_resumes_where_it_stopped(tmp_path):
    path = tmp_path / "records" / "grid.jsonl"
    prompts = grid([2000, 4000], [1, 2], [0.5, 0.0, 1.0], ["none", "linear", "yarn"], 1000)
    calls = []
    with pytest.raises(KeyboardInterrupt):
        run_grid(prompts, path, _stand_in(calls, stop_after=4), {"commit": "abc"}, log=str)
    assert calls == prompts[:4] and len(read_records(path)) == 4
    with open(path, "a") as f:
        f.write('{"length": 20')  # a line torn by the kill
    calls2 = []
    assert run_grid(prompts, path, _stand_in(calls2), {"commit": "def"}, log=str) == len(
        prompts) - 4
    assert calls2 == prompts[4:]  # only what was missing, in order
    records = read_records(path)  # the torn line skipped
    assert [GridPrompt(**{f: r[f] for f in GridPrompt.__dataclass_fields__}) for r in records
            ] == prompts
    assert [r["commit"] for r in records] == ["abc"] * 4 + ["def"] * (len(prompts) - 4)
    assert records[0]["greedy"] == " 67326" and records[0]["right"] is True
    calls3 = []
    assert run_grid(prompts, path, _stand_in(calls3), log=str) == 0 and calls3 == []
    # another dtype is another prompt: it runs again
    assert run_grid(prompts[:1], path, _stand_in(calls3), log=str) == 0
    other = grid([2000], [1], [0.5], ["none"], 1000, dtype="bfloat16")
    assert run_grid(other, path, _stand_in(calls3), log=str) == 1 and calls3 == other


def test_report_table_from_records(tmp_path):
    path = tmp_path / "grid.jsonl"
    prompts = grid([2000], [2], [0.5, 0.0], ["none", "yarn"], 1000)
    calls = []
    with pytest.raises(KeyboardInterrupt):
        run_grid(prompts, path, _stand_in(calls, stop_after=5), log=str)
    table = report_table(prompts, read_records(path)).splitlines()
    keys = [p.key for p in prompts]
    right = ["1" if int(k) % 2 == 0 else "0" for k in keys]
    # recorded: none 50% (keys 0, 1), yarn 50% (2, 3), none 0% (4); seconds 11, 12, 13, 14, 15
    assert table[0] == ("| length | scaling (factor) | depth 0% | depth 50% | all | s / prompt"
                        " | compile (s) |")
    n_none = int(right[0]) + int(right[1]) + int(right[4])
    assert table[2] == (f"| 2,000 | none (1) | {right[4]}/1 | {int(right[0]) + int(right[1])}/2"
                        f" | {n_none}/3 | 12.0 | 5 |")
    assert table[3] == (f"| 2,000 | yarn (2) | - | {int(right[2]) + int(right[3])}/2 | "
                        f"{int(right[2]) + int(right[3])}/2 | 13.5 | 5 |")
    assert table[-1] == "5 of 8 prompts of this grid recorded."
