"""Preference data whose better answer is known: programmatic tasks, chatterbot, and the files
the reward, DPO and RL objectives read.

    records = task_records(200, seed=0)        # {"prompt", "answer", "task"}: verifiable tasks
    pairs = preference_pairs(500, seed=0)      # {"prompt", "chosen", "rejected", "task"}
    ranks = rankings(500, seed=0)              # {"prompt", "responses", "ranks"}: K = 4
    chats = demonstrations(600, seed=0)        # {"messages": [user, assistant]}: SFT chats
    write_alignment_data("data/")              # all four, with held-out files
    match_reward(record, completion)           # 1.0 when the completion is the answer, else 0.0
    near_reward(record, completion)            # match, with partial credit for a near number

Tasks (each a prompt, its correct answer and wrong answers of known badness):
  arithmetic  "What is 37 + 48? Answer with the number only."   85; near miss 86 or 95
  sums        "What is 3 + 4? Answer with the number only."     7 (one digit each: a task small
              models solve some of the time, so RL has rewards to compare)
  counting    "How many times does 'plum' appear in this list: ...? Answer with the number only."
  one word    "In one word, what is the opposite of 'hot'?"      Cold; a full sentence breaks it
  json        'Reply with a JSON object whose key "sum" holds 37 + 48.'  {"sum": 85}; a near
              miss is the same object with single quotes or a missing brace (invalid JSON)
  chatterbot  a chatterbot-corpus question: its gold answer against another question's answer
A ranking orders 4 responses of one task instance, right before wrong and, within each, the
asked-for format before the other: arithmetic and counting: the correct number, the correct
number in a sentence, a near miss, a near miss in a sentence; one word: the opposite, the
opposite in a sentence, the prompt's own word, that word in a sentence; json: the valid object,
its invalid near miss, a valid object with a near-miss sum, that object made invalid. Every
task's preference pair (chosen, rejected) is a pair of its ranking in the same order, so a reward
model trained on the rankings sees every contrast the pairs test.

Everything is drawn from numpy generators seeded by `seed`: the same seed gives the same files.
Readers check what a user could get wrong (identical pair, tied ranks, missing keys) and name
the file and line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from jaxllm.data.chat import chatterbot_pairs, read_jsonl
from jaxllm.errors import DataError
from jaxllm.files import atomic_write

TASKS = ("arithmetic", "counting", "one_word", "json")  # and "sums": one-digit additions
NUMBER_ONLY = "Answer with the number only."
FRUITS = ("apple", "pear", "plum", "fig", "kiwi", "lime", "date", "peach")
OPPOSITES = (("hot", "cold"), ("big", "small"), ("fast", "slow"), ("up", "down"),
             ("light", "dark"), ("happy", "sad"), ("open", "closed"), ("early", "late"),
             ("hard", "soft"), ("wet", "dry"), ("full", "empty"), ("old", "new"),
             ("rich", "poor"), ("strong", "weak"), ("loud", "quiet"), ("thick", "thin"),
             ("high", "low"), ("long", "short"), ("win", "lose"), ("push", "pull"),
             ("day", "night"), ("left", "right"), ("buy", "sell"), ("near", "far"),
             ("inside", "outside"), ("first", "last"), ("clean", "dirty"), ("true", "false"))


def _near_miss(rng, n: int) -> int:
    return n + int(rng.choice([-10, -1, 1, 10]))


def _arithmetic(rng) -> dict:
    a, b = (int(x) for x in rng.integers(10, 100, 2))
    op = str(rng.choice(["+", "-"]))
    value = a + b if op == "+" else a - b
    return {"task": "arithmetic", "prompt": f"What is {a} {op} {b}? {NUMBER_ONLY}",
            "answer": str(value), "value": value, "miss": _near_miss(rng, value)}


def _sums(rng) -> dict:
    a, b = (int(x) for x in rng.integers(0, 10, 2))
    return {"task": "sums", "prompt": f"What is {a} + {b}? {NUMBER_ONLY}", "answer": str(a + b),
            "value": a + b, "miss": a + b + int(rng.choice([-1, 1]))}


def _counting(rng) -> dict:
    items = [str(x) for x in rng.choice(FRUITS, int(rng.integers(4, 9)))]
    target = items[int(rng.integers(len(items)))]
    value = items.count(target)
    return {"task": "counting", "prompt": f"How many times does '{target}' appear in this "
            f"list: {', '.join(items)}? {NUMBER_ONLY}", "answer": str(value), "value": value,
            "miss": value + int(rng.choice([-1, 1])) if value > 1 else value + 1}


def _one_word(rng) -> dict:
    word, opposite = OPPOSITES[int(rng.integers(len(OPPOSITES)))]
    if rng.random() < 0.5:
        word, opposite = opposite, word
    return {"task": "one_word", "prompt": f"In one word, what is the opposite of '{word}'?",
            "answer": opposite.capitalize(), "word": word,
            "sentence": f"The opposite of '{word}' is '{opposite}'."}


def _invalid(good: str, single_quotes: bool) -> str:
    """A near miss of a JSON object: single quotes, or the closing brace left out."""
    return good.replace('"', "'") if single_quotes else good[:-1]


def _json(rng) -> dict:
    a, b = (int(x) for x in rng.integers(10, 100, 2))
    good = json.dumps({"sum": a + b})
    single_quotes = bool(rng.random() < 0.5)
    return {"task": "json", "prompt": f'Reply with a JSON object whose key "sum" holds '
            f"{a} + {b}.", "answer": good, "invalid": _invalid(good, single_quotes),
            "single_quotes": single_quotes, "miss": _near_miss(rng, a + b)}


_MAKERS = {"arithmetic": _arithmetic, "counting": _counting, "one_word": _one_word,
           "json": _json, "sums": _sums}


def _draw(n: int, seed: int, tasks, taken: set | None = None) -> list[dict]:
    """n task instances with distinct prompts (none in `taken`), drawing the tasks in turn (a
    task whose few prompts are used up, such as one_word's, stops appearing)."""
    for t in tasks:
        if t not in _MAKERS:
            raise DataError(f"unknown task {t!r}; choose from {', '.join(_MAKERS)}")
    rng = np.random.default_rng(seed)
    out, seen = [], set(taken or ())
    for k in range(100 * n):
        if len(out) == n:
            break
        item = _MAKERS[tasks[k % len(tasks)]](rng)
        if item["prompt"] not in seen:
            seen.add(item["prompt"])
            out.append(item)
    return out


def task_records(n: int, seed: int = 0, tasks=("arithmetic",), taken: set | None = None):
    """Verifiable prompts for RL and task accuracy: {"prompt", "answer", "task"}."""
    return [{"prompt": x["prompt"], "answer": x["answer"], "task": x["task"]}
            for x in _draw(n, seed, tasks, taken)]


def _pair(item: dict) -> tuple[str, str]:
    """(chosen, rejected) of a task instance."""
    if item["task"] in ("arithmetic", "counting", "sums"):
        return item["answer"], str(item["miss"])
    if item["task"] == "one_word":
        return item["answer"], item["sentence"]
    return item["answer"], item["invalid"]


def preference_pairs(n: int, seed: int = 0, tasks=TASKS, chatterbot: int = 0,
                     taken: set | None = None) -> list[dict]:
    """n programmatic pairs (tasks in turn) and `chatterbot` pairs of a chatterbot question's
    gold answer against another question's answer."""
    pairs = []
    for item in _draw(n, seed, tasks, taken):
        chosen, rejected = _pair(item)
        pairs.append({"prompt": item["prompt"], "chosen": chosen, "rejected": rejected,
                      "task": item["task"]})
    if chatterbot:
        qa = [p for p in chatterbot_pairs() if not taken or p[1] not in taken]
        rng = np.random.default_rng([seed, 1])
        for i in rng.permutation(len(qa))[:chatterbot]:
            _, q, a = qa[i]
            other = qa[int(rng.integers(len(qa)))]
            while other[1] == q or other[2] == a:
                other = qa[int(rng.integers(len(qa)))]
            pairs.append({"prompt": q, "chosen": a, "rejected": other[2], "task": "chatterbot"})
    return pairs


def _ranked(item: dict) -> list[str]:
    """The 4 responses of a task instance, best first (see the module docstring)."""
    if item["task"] == "one_word":
        word = item["word"]
        return [item["answer"], item["sentence"], word.capitalize(),
                f"The opposite of '{word}' is '{word}'."]
    if item["task"] == "json":
        wrong = json.dumps({"sum": item["miss"]})
        return [item["answer"], item["invalid"], wrong, _invalid(wrong, item["single_quotes"])]
    good, miss = item["answer"], str(item["miss"])
    return [good, f"The answer is {good}.", miss, f"The answer is {miss}."]


def rankings(n: int, seed: int = 0, tasks=TASKS, taken: set | None = None) -> list[dict]:
    """n rankings of 4 responses (rank 0 best), listed in a seeded random order."""
    rng = np.random.default_rng([seed, 2])
    out = []
    for item in _draw(n, seed, tasks, taken):
        responses = _ranked(item)
        order = rng.permutation(4)
        out.append({"prompt": item["prompt"], "responses": [responses[i] for i in order],
                    "ranks": [int(i) for i in order], "task": item["task"]})
    return out


_INTEGER = re.compile(r"-?\d+")


def _normal(text: str) -> str:
    return text.strip().rstrip(".").strip().lower()


def match_reward(record: dict, completion: str) -> float:
    """1.0 when the completion is the record's answer (JSON tasks: the same JSON value; others:
    the same text up to case, surrounding space and a final period), else 0.0."""
    if record.get("task") == "json":
        try:
            return float(json.loads(completion) == json.loads(record["answer"]))
        except json.JSONDecodeError:
            return 0.0
    return float(_normal(completion) == _normal(record["answer"]))


def near_reward(record: dict, completion: str) -> float:
    """match_reward with partial credit on number tasks: a completion that is a wrong bare
    integer (up to space and a final period) scores 0.5 / (1 + |its distance to the answer|)
    (0.25 one off, 0.1 four off); the answer scores 1.0, anything else 0.0. For RL on tasks a
    small model rarely solves: sampled groups then differ in reward (GRPO has a gradient) where
    exact match gives a whole group 0."""
    if match_reward(record, completion) == 1.0:
        return 1.0
    said, answer = _normal(completion), _normal(str(record["answer"]))
    if not (_INTEGER.fullmatch(said) and _INTEGER.fullmatch(answer)):
        return 0.0
    return 0.5 / (1 + abs(int(said) - int(answer)))


def demonstrations(n: int, seed: int = 0, taken: set | None = None) -> list[dict]:
    """SFT conversations {"messages": [user prompt, assistant answer]} of the programmatic
    tasks, two number prompts (arithmetic, counting) to every JSON and one-word one: what a
    model (and a reward model started from it) has to have seen to judge the numbers."""
    mix = ("arithmetic", "counting", "arithmetic", "counting", "json", "one_word")
    return [{"messages": [{"role": "user", "content": r["prompt"]},
                          {"role": "assistant", "content": r["answer"]}], "task": r["task"]}
            for r in task_records(n, seed, mix, taken)]


def write_alignment_data(out_dir: str | Path, seed: int = 0, *, pairs: int = 2000,
                         chatterbot: int = 500, ranked: int = 2000, tasks: int = 2000,
                         demos: int = 6000, heldout: float = 0.1) -> dict:
    """prefs.jsonl, rankings.jsonl, tasks.jsonl, demos.jsonl (SFT chats of the tasks) and their
    *_heldout.jsonl under out_dir; the held-out prompts never occur in the training files, and
    no held-out prompt of any file is in demos.jsonl."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}

    def write(name, train, held):
        for suffix, rows in (("", train), ("_heldout", held)):
            atomic_write(out / f"{name}{suffix}.jsonl", "".join(json.dumps(r) + "\n"
                                                                for r in rows))
        counts[name] = (len(train), len(held))

    held_prompts = set()  # of every file: none of them is in demos.jsonl

    def split(make, n, **kw):
        held = make(max(1, round(heldout * n)), seed + 1, **kw)
        held_prompts.update(r["prompt"] for r in held)
        return make(n, seed, taken={r["prompt"] for r in held}, **kw), held

    write("prefs", *split(lambda n, s, **kw: preference_pairs(
        n, s, chatterbot=round(chatterbot * n / pairs), **kw), pairs))
    write("rankings", *split(rankings, ranked))
    write("tasks", *split(task_records, tasks))
    demos_held = demonstrations(max(1, round(heldout * demos)), seed + 1, held_prompts)
    held_prompts.update(d["messages"][0]["content"] for d in demos_held)
    write("demos", demonstrations(demos, seed, held_prompts), demos_held)
    return {name: {"train": c[0], "heldout": c[1]} for name, c in counts.items()}


# --- reading ---------------------------------------------------------------------------------

def _text(obj: dict, key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: {key!r} must be a non-empty string")
    return value


def read_pairs(path: str | Path) -> list[dict]:
    """{"prompt", "chosen", "rejected", "system"?} records; a pair whose answers are the same
    text teaches nothing and is refused."""
    return [_pair_record(obj, f"{path} line {n}") for n, obj in read_jsonl(path)]


def _pair_record(obj: dict, where: str) -> dict:
    rec = {k: _text(obj, k, where) for k in ("prompt", "chosen", "rejected")}
    if rec["chosen"].strip() == rec["rejected"].strip():
        raise DataError(f"{where}: chosen and rejected are identical; a preference pair "
                        f"needs two different answers (remove the line)")
    rec["system"] = obj.get("system") or ""
    return rec


def read_rankings(path: str | Path) -> list[dict]:
    """{"prompt", "responses", "ranks", "system"?} records (rank 0 best, no ties); a
    {"prompt", "chosen", "rejected"} line is the ranking of 2."""
    out = []
    for n, obj in read_jsonl(path):
        where = f"{path} line {n}"
        if "chosen" in obj:
            pair = _pair_record(obj, where)
            out.append({"prompt": pair["prompt"], "responses": [pair["chosen"],
                        pair["rejected"]], "ranks": [0, 1], "system": pair["system"]})
            continue
        prompt = _text(obj, "prompt", where)
        responses, ranks = obj.get("responses"), obj.get("ranks")
        if (not isinstance(responses, list) or len(responses) < 2
                or not all(isinstance(r, str) and r.strip() for r in responses)):
            raise DataError(f"{where}: 'responses' must be a list of at least 2 non-empty "
                            f"strings")
        if (not isinstance(ranks, list) or len(ranks) != len(responses)
                or not all(isinstance(r, int) and not isinstance(r, bool) and r >= 0
                           for r in ranks)):
            raise DataError(f"{where}: 'ranks' must give each of the {len(responses)} "
                            f"responses a rank (integers, 0 = best)")
        if len(set(ranks)) != len(ranks):
            raise DataError(f"{where}: ranks {ranks} have ties; give every response its own "
                            f"rank (0 = best)")
        if len({r.strip() for r in responses}) != len(responses):
            raise DataError(f"{where}: two responses are identical; rank distinct responses")
        out.append({"prompt": prompt, "responses": responses, "ranks": ranks,
                    "system": obj.get("system") or ""})
    return out


def read_prompts(path: str | Path) -> list[dict]:
    """{"prompt", "answer"?, "task"?, "system"?} records: the prompts of RL rollouts (the answer
    is what the verifiable reward compares with)."""
    out = []
    for n, obj in read_jsonl(path):
        where = f"{path} line {n}"
        rec = {"prompt": _text(obj, "prompt", where), "system": obj.get("system") or "",
               "task": obj.get("task") or ""}
        if "answer" in obj:
            rec["answer"] = _text(obj, "answer", where)
        out.append(rec)
    return out
