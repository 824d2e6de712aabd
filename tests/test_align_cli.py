"""The alignment chain through the CLI on a tiny stand-in for SmolLM2 (bytes, ChatML rendered
as text): SFT from a CSV -> reward model from rankings -> DPO and GRPO from the SFT run -> PPO
scored by the reward model; generate --chat and eval on every result; and bad input answered
with one line, exit status 2 and nothing written."""

import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

from jaxllm.cli.main import main
from jaxllm.data.chat import encode_answer, encode_prompt
from jaxllm.data.preferences import read_rankings
from jaxllm.objectives.preference import reward_scores
from jaxllm.train import RunDir, load_run
from jaxllm.train.align_inputs import ranking_rows
from jaxllm.train.rollout import RewardModel

from helpers import error_of, register_tiny_llama

COMMON = ["--steps", "2", "--no-progress", "--set", "model.max_len=128", "--set",
          "train.batch_size=4", "--set", "train.eval_batches=1", "--set", "optim.warmup_steps=1",
          "--set", "train.log_every=1", "--set", "model.weights="]
LORA = ["--lora", "rank=2,alpha=4,targets=attn"]
QLORA = LORA + ["--set", "model.weights=method=nf4,group=32"]


@pytest.fixture
def files(tmp_path, monkeypatch):
    # one layer and LoRA on attention only: the chain's programs compile in ~2/3 of the time
    register_tiny_llama(monkeypatch, max_len=128, n_layers=1)
    sums = [(a, b) for a in range(4) for b in range(4)]
    (tmp_path / "sft.csv").write_text("system,question,answer\n" + "".join(
        f",{a}+{b}?,{a + b}\n" for a, b in sums))
    lines = {
        "rank.jsonl": [{"prompt": f"{a}+{b}?", "responses": [f"It is {a + b + 3}.", str(a + b),
                        str(a + b + 1)], "ranks": [2, 0, 1]} for a, b in sums],
        "prefs.jsonl": [{"prompt": f"{a}+{b}?", "chosen": str(a + b), "rejected": str(a + b + 1)}
                        for a, b in sums],
        "tasks.jsonl": [{"prompt": f"{a}+{b}?", "answer": str(a + b)} for a, b in sums]}
    for name, rows in lines.items():
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def rows(run):
    return RunDir(run).read_metrics()


@pytest.mark.slow
def test_sft_reward_dpo_grpo_ppo_chain(files, capsys):
    """SFT with QLoRA (NF4 base), DPO with full fine-tuning, the others with LoRA; the later runs
    set model.weights= (float weights, as the merged SFT run is) over the NF4 setting a run
    inherits from its base."""
    runs = {k: str(files / k) for k in ("sft", "reward", "dpo", "grpo", "ppo")}
    assert main(["train", "--init-from", "tiny-llama", "--data", f"csv:{files}/sft.csv",
                 "--out", runs["sft"]] + COMMON + QLORA) == 0
    assert main(["train", "--objective", "reward", "--init-from", runs["sft"], "--data",
                 f"jsonl:{files}/rank.jsonl", "--out", runs["reward"], "--set",
                 "align.reward_logprob=1"] + COMMON + LORA) == 0
    assert main(["train", "--objective", "dpo", "--init-from", runs["sft"], "--data",
                 f"jsonl:{files}/prefs.jsonl", "--out", runs["dpo"]] + COMMON) == 0
    rl = ["--set", "align.max_new_tokens=4"] + LORA
    assert main(["train", "--objective", "grpo", "--init-from", runs["sft"], "--data",
                 f"jsonl:{files}/tasks.jsonl", "--out", runs["grpo"]] + COMMON + rl) == 0
    assert main(["train", "--objective", "ppo", "--init-from", runs["sft"], "--data",
                 f"jsonl:{files}/tasks.jsonl", "--out", runs["ppo"], "--set",
                 f"align.reward={runs['reward']}"] + COMMON + rl) == 0
    capsys.readouterr()
    config = {name: RunDir(run).load_config() for name, run in runs.items()}
    assert config["sft"].model.weights.startswith("method=nf4") and config["sft"].train.lora
    assert not config["dpo"].model.weights and not config["dpo"].train.lora  # full fine-tuning
    # before its first step the DPO policy is its reference: every margin 0, loss log 2
    dpo0 = rows(runs["dpo"])[0]
    assert dpo0["step"] == 0 and abs(dpo0["val_loss"] - math.log(2)) < 1e-4
    assert (files / "dpo" / "reference.npz").exists()
    # the first rollout's policy is the LoRA-off reference: KL 0; later steps log reward and KL
    for rl_run in ("grpo", "ppo"):
        first = next(r for r in rows(runs[rl_run]) if "train_kl" in r)
        assert abs(first["train_kl"]) < 1e-5 and "train_reward" in first
    assert {"train_chosen_reward", "train_margin"} <= set(rows(runs["dpo"])[1])
    assert "val_kendall_tau" in rows(runs["reward"])[-1]
    assert_rl_scores_as_trained(runs["reward"], files / "rank.jsonl")
    for name, run in runs.items():
        assert main(["generate", "--run", run, "--chat", "1+2?", "--max-new-tokens", "3"]) == 0
        assert main(["eval", "--run", run]) == 0
        assert f"({'lm' if name == 'sft' else name}, held-out" in capsys.readouterr().out


def assert_rl_scores_as_trained(run_path, rankings):
    """PPO's reward (train.rollout.RewardModel, prompt and completion ids) is the score the
    reward model was trained and evaluated with (the rows of train/align_inputs.ranking_rows),
    the response's log-probability term included."""
    run = load_run(run_path)
    assert run.config.align.reward_logprob == 1.0
    records = read_rankings(str(rankings))[:4]
    r = ranking_rows(run.tokenizer, records, run.config.model.max_len, 3, "rankings")
    x, start, last = r["inputs"].reshape(12, -1), r["start"].reshape(12), r["last"].reshape(12)
    want = reward_scores(run.model, run.params, jnp.asarray(x), jnp.asarray(start),
                         jnp.asarray(last), logprob_weight=1.0)
    prompts = [encode_prompt(run.tokenizer, rec["prompt"]) for rec in records for _ in range(3)]
    answers = [encode_answer(run.tokenizer, y) for rec in records for y in rec["responses"]]
    got = RewardModel(run_path, run.tokenizer)(prompts, answers)
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-5, atol=1e-5)


def test_sft_reads_chat_jsonl_as_the_same_rows_in_csv(files, capsys):
    """JSONL conversations ({"messages": [...]}, as `jaxllm data preferences` writes demos.jsonl)
    are the same SFT data as the CSV of the same rows: the same losses, step by step."""
    convs = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in
             (line.split(",")[1:] for line in (files / "sft.csv").read_text().splitlines()[1:])]
    (files / "sft.jsonl").write_text("".join(json.dumps({"messages": c}) + "\n" for c in convs))
    losses = {}
    for fmt in ("csv", "jsonl"):
        run = files / f"sft-{fmt}"
        assert main(["train", "--init-from", "tiny-llama", "--data", f"{fmt}:{files}/sft.{fmt}",
                     "--out", str(run)] + COMMON + LORA) == 0
        losses[fmt] = [(r["step"], r.get("train_loss"), r.get("val_loss")) for r in rows(run)]
    capsys.readouterr()
    assert len(convs) == 16 and len(losses["csv"]) >= 3
    assert losses["jsonl"] == losses["csv"]


@pytest.mark.parametrize("objective,data,extra,expected", [
    ("lm", "csv:bad_cols.csv", [], "no column 'system', 'question', 'answer'"),
    ("lm", "csv:empty_answer.csv", [], "line 3: column 'answer' is empty"),
    ("dpo", "jsonl:same.jsonl", [], "line 1: chosen and rejected are identical"),
    ("reward", "jsonl:ties.jsonl", [], "ranks [0, 0] have ties"),
    ("grpo", "jsonl:long.jsonl", ["--set", "model.max_len=100"],
     "the prompt has 100 tokens, which with 16 for the answer exceed model.max_len=100"),
    ("dpo", "jsonl:same.jsonl", ["--init-from", ""], "needs a reference model: pass --init-from"),
    ("reward", "jsonl:prefs.jsonl", ["--set", "align.reward_logprob=-1"],
     "align.reward_logprob=-1.0: must be zero or positive"),
    ("dpo", "jsonl:prefs.jsonl", ["--set", "data.validation=csv:sft.csv"],
     "data.validation='csv:sft.csv': train.objective=dpo holds out a file; set it to jsonl:FILE"),
    ("lm", "csv:sft.csv", ["--set", "data.validation=notes.txt"],
     "data.validation='notes.txt': train.objective=lm holds out a file; set it to csv:FILE or "
     "jsonl:FILE"),
])
def test_bad_alignment_input(files, capsys, objective, data, extra, expected):
    (files / "bad_cols.csv").write_text("q,a\nhi,there\n")
    (files / "empty_answer.csv").write_text("system,question,answer\n,hi,yes\n,why,\n")
    (files / "same.jsonl").write_text(json.dumps({"prompt": "p", "chosen": "a",
                                                  "rejected": "a"}) + "\n")
    (files / "ties.jsonl").write_text(json.dumps({"prompt": "p", "responses": ["a", "b"],
                                                  "ranks": [0, 0]}) + "\n")
    (files / "long.jsonl").write_text(json.dumps({"prompt": "x" * 50, "answer": "1"}) + "\n"
                                      + json.dumps({"prompt": "y", "answer": "2"}) + "\n")
    out = files / "out"
    fmt, name = data.split(":")
    argv = ["train", "--objective", objective, "--data", f"{fmt}:{files}/{name}", "--out",
            str(out), "--no-progress", "--init-from", "tiny-llama", "--steps", "1"] + extra
    assert expected in error_of(argv, capsys)
    assert not out.exists()  # nothing written
