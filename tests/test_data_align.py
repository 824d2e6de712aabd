"""Alignment data: chat rendering and loss weights, packing with weights, the prompt-loss weight's
effect on gradients, CSV / JSONL / ShareGPT readers, programmatic preferences and their errors."""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxllm.data import chat, preferences
from jaxllm.data.batches import BatchIterator
from jaxllm.errors import DataError
from jaxllm.objectives.causal_lm import lm_loss_and_metrics
from jaxllm.text import ByteTokenizer
from jaxllm.text.chat import apply_chat_template, chat_segments

SMOL_LIKE = ("{% for m in messages %}{% if loop.first and m.role != 'system' %}<|im_start|>"
             "system\nYou are helpful<|im_end|>\n{% endif %}<|im_start|>{{ m.role }}\n"
             "{{ m.content }}<|im_end|>\n{% endfor %}")
CONV = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]


@pytest.mark.parametrize("template", [None, SMOL_LIKE])
def test_chat_segments_mark_exactly_the_answers(template):
    pieces = chat_segments(template, CONV)
    full = apply_chat_template(template or chat.PLAIN_CHATML, CONV, add_generation_prompt=False)
    assert "".join(t for t, _ in pieces) == full
    assert [t for t, a in pieces if a] == ["Hello!<|im_end|>", "4<|im_end|>"]
    assert ("You are helpful" in full) == (template is not None)


def test_encode_chat_weights_answers_and_prompt():
    tok = ByteTokenizer()
    ids, w = chat.encode_chat(tok, CONV, prompt_weight=0.25)
    assert tok.decode(ids) == apply_chat_template(chat.PLAIN_CHATML, CONV, False)
    assert tok.decode(ids[w == 1.0]) == "Hello!<|im_end|>4<|im_end|>"
    assert set(np.unique(w)) == {0.25, 1.0}


def _packed(prompt_weight, seq_len=256):
    """Three short chats packed into one row of 256 bytes (+1), as the SFT trainer packs them."""
    tok = ByteTokenizer()
    convs = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}]
             for q, a in (("a", "bc"), ("dd", "e"), ("f", "ghij"))]
    encoded = [chat.encode_chat(tok, c, prompt_weight) for c in convs]
    it = BatchIterator([e[0] for e in encoded], 1, seq_len, seed=0, sampling="packed",
                       weights=[e[1] for e in encoded])
    return it.batch(0), encoded


def test_packed_rows_keep_documents_and_their_weights():
    """Each segment of a packed row is one document: its inputs are the document's tokens, its
    loss mask the weights of the document's tokens after the first, and
    no target crosses into the next document or the padding."""
    b, encoded = _packed(0.1)
    seg = b["segment_ids"][0]
    assert sorted(set(seg.tolist()) - {0}) == [1, 2, 3]
    docs = {tuple(ids.tolist()): w for ids, w in encoded}
    for k in (1, 2, 3):
        cols = np.flatnonzero(seg == k)
        w = docs[tuple(int(t) for t in b["inputs"][0, cols])]
        np.testing.assert_array_equal(b["loss_mask"][0, cols[:-1]], w[1:])
        assert b["loss_mask"][0, cols[-1]] == 0  # the next token belongs to another document
    np.testing.assert_array_equal(b["loss_mask"][0, seg == 0], 0)


def test_prompt_loss_weight_scales_the_prompt_tokens_gradient():
    """d loss / d logits at prompt targets, relative to the answer targets' gradient, scales
    exactly with the prompt-loss weight (the loss is the weighted mean); weight 0 gives none."""
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(1, 256, 256)), jnp.float32)
    reference = _packed(0.1)[0]["loss_mask"]  # which targets are answer and prompt tokens
    answer, prompt = reference == 1.0, np.isclose(reference, 0.1)
    assert answer.sum() == 7 + 3 * 10 and prompt.sum() > 100  # bc e ghij, 3 x <|im_end|> bytes
    ratio = {}
    for w in (0.0, 0.1, 0.5, 1.0):
        b, _ = _packed(w)
        grad = jax.grad(lambda x, b=b: lm_loss_and_metrics(x, b["targets"], b["loss_mask"])[0])(
            logits)
        per_pos = np.abs(np.asarray(grad)).sum(-1)  # (1, T)
        ratio[w] = per_pos[prompt].sum() / per_pos[answer].sum()
    assert ratio[0.0] == 0.0
    np.testing.assert_allclose([ratio[0.1] / ratio[1.0], ratio[0.5] / ratio[1.0]], [0.1, 0.5],
                               rtol=1e-5)


def test_sft_csv_reader_and_its_errors(tmp_path):
    f = tmp_path / "sft.csv"
    f.write_text('sys,q,a\n"Be brief.","What is 1+1?","2"\n,"Hi","Hello, you."\n')
    convs = chat.read_sft_csv(f, columns="sys,q,a")
    assert convs[0] == [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "What is 1+1?"},
                        {"role": "assistant", "content": "2"}]
    assert convs[1][0] == {"role": "user", "content": "Hi"}  # empty system: the template's
    with pytest.raises(DataError, match=r"no column 'system', 'question', 'answer' \(the "
                       r"header has 'sys', 'q', 'a'\); set data.columns"):
        chat.read_sft_csv(f)
    f.write_text("system,question,answer\nS,Q,\n")
    with pytest.raises(DataError, match=r"line 2: column 'answer' is empty"):
        chat.read_sft_csv(f)


def test_chatterbot_csv_holds_out_a_tenth_of_the_questions(tmp_path):
    out = chat.write_chatterbot_csv(tmp_path / "a", seed=3)
    again = chat.write_chatterbot_csv(tmp_path / "b", seed=3)
    assert (tmp_path / "a/sft.csv").read_bytes() == (tmp_path / "b/sft.csv").read_bytes()
    total = out["train_rows"] + out["heldout_rows"]
    assert 1800 < total < 2300 and again["heldout_rows"] == out["heldout_rows"]
    train = {c[1]["content"] for c in chat.read_sft_csv(out["train"])}
    held = {c[1]["content"] for c in chat.read_sft_csv(out["heldout"])}
    assert not train & held
    assert 0.08 < len(held) / len(train | held) < 0.12


def test_sharegpt_is_read_record_by_record(tmp_path):
    recs = [{"id": "a", "conversations": [{"from": "human", "value": "Q1"},
                                          {"from": "gpt", "value": "A1"}]},
            {"id": "b", "conversations": [{"from": "gpt", "value": "starts wrong"},
                                          {"from": "human", "value": "x"}]},
            {"id": "c", "conversations": [{"from": "human", "value": "Q3"}]}]
    text = json.dumps(recs, indent=2)
    cut = text[: text.index('"id": "c"') + 20]  # truncated inside the third record
    got = list(chat.sharegpt_records(cut))
    assert [r["id"] for r in got] == ["a", "b"]
    assert chat.sharegpt_conversation(got[0]) == [{"role": "user", "content": "Q1"},
                                                  {"role": "assistant", "content": "A1"}]
    assert chat.sharegpt_conversation(got[1]) is None
    # the real file's first 400 kB: a truncated JSON array like the whole file
    with open(chat.sharegpt_file(), encoding="utf-8") as f:
        head = f.read(400_000)
    real = list(chat.sharegpt_records(head))
    assert 10 < len(real) and all("conversations" in r for r in real)
    with pytest.raises(json.JSONDecodeError):
        json.loads(head)


def test_preferences_are_reproducible_correct_and_held_out(tmp_path):
    a = preferences.write_alignment_data(tmp_path / "a", seed=1, pairs=40, chatterbot=10,
                                         ranked=20, tasks=20, demos=300)
    preferences.write_alignment_data(tmp_path / "b", seed=1, pairs=40, chatterbot=10,
                                     ranked=20, tasks=20, demos=300)
    for name in ("prefs", "rankings", "tasks", "demos", "prefs_heldout"):
        assert ((tmp_path / "a" / f"{name}.jsonl").read_bytes()
                == (tmp_path / "b" / f"{name}.jsonl").read_bytes())
    assert a["prefs"] == {"train": 50, "heldout": 5}
    for name in ("prefs", "rankings", "tasks"):
        train, held = ({json.loads(x)["prompt"] for x in (tmp_path / "a" / f"{name}{suffix}.jsonl")
                        .read_text().splitlines()} for suffix in ("", "_heldout"))
        assert held and not train & held
    for rec in map(json.loads, (tmp_path / "a/prefs.jsonl").read_text().splitlines()):
        if rec["task"] != "chatterbot":  # the chosen answer is right, the rejected one is not
            task = {"answer": rec["chosen"], "task": rec["task"]}
            assert preferences.match_reward(task, rec["chosen"]) == 1.0
            assert preferences.match_reward(task, rec["rejected"]) == 0.0
    for rec in preferences.read_rankings(tmp_path / "a/rankings.jsonl"):
        assert sorted(rec["ranks"]) == [0, 1, 2, 3]
    sums = preferences.task_records(100, seed=2, tasks=("sums",))
    assert len({r["prompt"] for r in sums}) == 100  # every one-digit sum, once
    for rec in sums + preferences.read_prompts(tmp_path / "a/tasks.jsonl"):  # solvable
        _, _, a_, op, b_ = rec["prompt"].split("?")[0].split()
        a_, b_ = int(a_), int(b_)
        assert int(rec["answer"]) == (a_ + b_ if op == "+" else a_ - b_)
    # demos.jsonl: SFT chats whose answers are right, none of any file's held-out prompts
    assert a["demos"] == {"train": 300, "heldout": 30}  # one_word: 56 prompts in all
    held = {json.loads(x)["prompt"] for name in ("prefs", "rankings", "tasks")
            for x in (tmp_path / "a" / f"{name}_heldout.jsonl").read_text().splitlines()}
    held |= {c[0]["content"] for c in chat.read_chat_jsonl(tmp_path / "a/demos_heldout.jsonl")}
    demos = chat.read_chat_jsonl(tmp_path / "a/demos.jsonl")
    assert not {c[0]["content"] for c in demos} & held
    opposites = {frozenset(p) for p in preferences.OPPOSITES}
    for user, assistant in ((c[0]["content"], c[1]["content"]) for c in demos):
        numbers = re.search(r"(\d+) ([+-]) (\d+)", user)
        if user.startswith("How many"):
            target, items = re.fullmatch(r"How many times does '(\w+)' appear in this list: "
                                         r"([\w, ]+)\? .*", user).groups()
            assert int(assistant) == items.split(", ").count(target)
        elif user.startswith("In one word"):
            word = re.search(r"'(\w+)'", user).group(1)
            assert frozenset((word, assistant.lower())) in opposites
        else:
            x, op, y = int(numbers[1]), numbers[2], int(numbers[3])
            value = x + y if op == "+" else x - y
            said = json.loads(assistant)["sum"] if user.startswith("Reply") else int(assistant)
            assert said == value, (user, assistant)
    assert {c[0]["content"].split()[0] for c in demos} == {"What", "How", "Reply", "In"}


def test_rankings_hold_every_contrast_of_the_preference_pairs():
    """A reward model trained on the rankings must see what the held-out pairs test: every
    programmatic task is ranked, the best response is the right answer in the asked-for format
    (match_reward 1, the others 0), and each task's (chosen, rejected) pair of the same prompt
    is ranked in that order."""
    ranks = preferences.rankings(40, seed=3)
    pairs = {p["prompt"]: p for p in preferences.preference_pairs(40, seed=3)}
    assert {r["task"] for r in ranks} == set(preferences.TASKS)
    for r in ranks:
        rank = dict(zip(r["responses"], r["ranks"]))
        best = r["responses"][r["ranks"].index(0)]
        record = {"answer": best, "task": r["task"]}
        assert [preferences.match_reward(record, x) for x in r["responses"]] == [
            float(x == best) for x in r["responses"]]
        pair = pairs[r["prompt"]]
        assert pair["chosen"] == best and rank[pair["chosen"]] < rank[pair["rejected"]]


@pytest.mark.parametrize("line,expected", [
    ({"prompt": "p", "chosen": "same", "rejected": "same "}, "chosen and rejected are identical"),
    ({"prompt": "p", "responses": ["a", "b", "c"], "ranks": [0, 1, 1]},
     r"ranks \[0, 1, 1\] have ties"),
    ({"prompt": "p", "responses": ["a", "b"]}, "'ranks' must give each"),
    ({"chosen": "a", "rejected": "b"}, "'prompt' must be a non-empty string"),
])
def test_bad_preference_files(tmp_path, line, expected):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "ok", "chosen": "a", "rejected": "b"}\n' + json.dumps(line) + "\n")
    with pytest.raises(DataError, match=f"line 2: {expected}"):
        preferences.read_rankings(f)


def test_match_reward():
    assert preferences.match_reward({"answer": "85"}, " 85.") == 1.0
    assert preferences.match_reward({"answer": "85"}, "The answer is 85.") == 0.0
    rec = {"answer": '{"sum": 12}', "task": "json"}
    assert preferences.match_reward(rec, '{ "sum" : 12 }') == 1.0
    assert preferences.match_reward(rec, "{'sum': 12}") == 0.0


def test_near_reward_gives_partial_credit_to_near_numbers_only():
    rec = {"answer": "7", "task": "sums"}
    got = [preferences.near_reward(rec, c) for c in
           (" 7.", "8", "3", "-1", "12", "The answer is 7.", "seven", "7 apples", "")]
    assert got == [1.0, 0.25, 0.1, 0.5 / 9, 0.5 / 6, 0.0, 0.0, 0.0, 0.0]
    assert preferences.near_reward({"answer": "-12"}, "-10") == 0.5 / 3
    rec = {"answer": '{"sum": 12}', "task": "json"}  # not a number task: match only
    assert [preferences.near_reward(rec, c) for c in ('{"sum": 12}', '{"sum": 13}', "12")] == [
        1.0, 0.0, 0.0]


def test_a_run_directory_keeps_the_chat_template(tmp_path):
    """A run fine-tuned from a model with a chat template (SmolLM2's adds a default system
    prompt) reads its prompts back rendered the same way: the template is saved beside
    tokenizer.json (which has no place for it) and restored by load_tokenizer."""
    from jaxllm.config import get_preset
    from jaxllm.train import RunDir

    tok = ByteTokenizer()
    tok.chat_template = SMOL_LIKE
    run = RunDir(tmp_path / "run")
    run.create(get_preset("sft-smollm2"), tok)
    loaded = run.load_tokenizer()
    want = "<|im_start|>system\nYou are helpful<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
    assert tok.decode(chat.encode_prompt(loaded, "hi")).startswith(want)
    assert chat.encode_prompt(loaded, "hi") == chat.encode_prompt(tok, "hi")
    # a tokenizer without a template writes no tokenizer_config.json and loads without one
    plain = RunDir(tmp_path / "plain")
    plain.create(get_preset("sft-smollm2"), ByteTokenizer())
    assert getattr(plain.load_tokenizer(), "chat_template", None) is None
    assert not (tmp_path / "plain" / "tokenizer_config.json").exists()
