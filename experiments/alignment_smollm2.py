#!/usr/bin/env python3
"""Post-training SmolLM2-135M-Instruct on real data: SFT -> reward model -> DPO / GRPO.

Every stage trains as `jaxllm train` does (the printed command), with LoRA rank 16 on every
linear layer, short sequences and few steps: a SmolLM2 step takes seconds on the shared 2-core
CPU, so each run is sized to finish in minutes. Stages (each reads the earlier ones' runs):

  data      jaxllm data chatterbot + jaxllm data preferences (seeded) into WORK/data
  sft       chatterbot SFT for prompt-loss weights 0, 0.1, 1: held-out answer perplexity (every
            held-out conversation's answer tokens once) before and after
  tasksft   SFT on demonstrations of the four programmatic tasks (training prompts only):
            the LM's preference for chosen over rejected on the held-out pairs and its greedy
            accuracy on their number prompts, before and after
  reward    a reward model from the SFT (w=0) run (or --sft, e.g. sft-tasks) on K=4 rankings
            of the four programmatic tasks: held-out pairwise accuracy and Kendall tau;
            pairwise accuracy on held-out programmatic preference pairs, per task
  dpo       DPO from the SFT run: held-out preference accuracy of the implicit reward, greedy
            task accuracy before/after, KL(policy || reference) on sampled completions
  grpo      GRPO from the SFT run on templated one-digit sums (exact-match reward; the SFT
            model answers no two-digit sum, so those give every completion reward 0 and GRPO
            nothing to compare): greedy held-out accuracy per evaluation, train reward and KL
            per step; the curve as a PNG
  signal    the SFT model's probability of sampling each one-digit sum's right answer, and the
            share of GRPO groups that would have mixed rewards (the only ones with a gradient)
  steptime  step time (median of 3) and compiled memory of each objective against SFT, full
            fine-tuning and LoRA, at 4 sequences of --seq tokens per step

Usage:
  python experiments/alignment_smollm2.py STAGE --work DIR [--steps N]
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import statistics
import time
from pathlib import Path

from jaxllm.platform import configure_cpu

configure_cpu()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxllm import config as config_lib, pretrained  # noqa: E402
from jaxllm.cli import train as cli_train  # noqa: E402
from jaxllm.cli.main import build_parser  # noqa: E402
from jaxllm.data import chat, preferences  # noqa: E402
from jaxllm.infer import generate  # noqa: E402
from jaxllm.objectives import policy  # noqa: E402
from jaxllm.objectives.causal_lm import lm_loss_and_metrics  # noqa: E402
from jaxllm.objectives.preference import reward_scores, sequence_logprobs  # noqa: E402
from jaxllm.optim import TrainState, make_optimizer  # noqa: E402
from jaxllm.text.chat import ANSWER_END  # noqa: E402
from jaxllm.train import RunDir, align_inputs, load_run, train  # noqa: E402
from jaxllm.train.loop import evaluate_run  # noqa: E402
from jaxllm.train.objective import model_and_objective  # noqa: E402
from jaxllm.train.params import build_params, trainable_fn  # noqa: E402
from jaxllm.train.rollout import without_lora  # noqa: E402
from jaxllm.train.step import make_train_step  # noqa: E402
from jaxllm.transforms import lora  # noqa: E402

NAME = "smollm2-135m-instruct"
LORA = "rank=16,alpha=32,targets=all"
FIGURE = Path(__file__).parent / "figures" / "grpo_smollm2.png"


def config(objective: str, init_from: str, data: str, validation: str, *, steps: int,
           batch: int, seq: int, lr: float, eval_batches: int = 10, extra=(),
           lora_spec: str = LORA):
    """(the config, the command line) of `jaxllm train --preset sft-smollm2 --objective O
    --init-from X --data D ...`: the config is what the CLI builds from that command line
    (later --set values win, so `extra` may override the defaults below)."""
    sets = [f"data.validation={validation}", f"model.max_len={seq}", "model.scan_unroll=1",
            f"train.batch_size={batch}", f"optim.lr={lr}", f"optim.min_lr={lr / 10}",
            "optim.warmup_steps=5", f"train.eval_every={steps}", f"train.save_every={steps}",
            "train.log_every=5", f"train.eval_batches={eval_batches}", *extra]
    argv = ["train", "--preset", "sft-smollm2", "--objective", objective, "--init-from",
            init_from, "--data", data, "--steps", str(steps), "--lora", lora_spec]
    for s in sets:
        argv += ["--set", s]
    cfg = cli_train._config(build_parser().parse_args(argv))
    return cfg, "jaxllm " + shlex.join(argv)


def run_dir(work: Path, name: str) -> Path:
    return work / "runs" / name


def train_once(cfg, out: Path) -> dict:
    """Train unless out already holds a finished run (stages can be rerun)."""
    if (out / "config.json").exists():
        return {"run_dir": str(out), "reused": True}
    start = time.perf_counter()
    summary = train(cfg, out, progress=False)
    return {**summary, "seconds": round(time.perf_counter() - start, 1)}


def print_table(header: list[str], rows: list[list]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


def metrics(out: Path) -> list[dict]:
    return RunDir(out).read_metrics()


# --- data --------------------------------------------------------------------------------------

def stage_data(args):
    d = args.work / "data"
    print(json.dumps(chat.write_chatterbot_csv(d, seed=0)))
    print(json.dumps(preferences.write_alignment_data(d, seed=0, pairs=400, chatterbot=100,
                                                      ranked=400, tasks=400)))
    # the GRPO prompts: arithmetic only (tasks.jsonl is arithmetic by default)


# --- SFT ---------------------------------------------------------------------------------------

def answer_perplexity(model, params, tokenizer, convs, max_len: int, batch: int = 8) -> dict:
    """Cross-entropy of every held-out conversation's answer tokens (prompt weight 0), each
    conversation in its own row (cut to max_len + 1 tokens)."""
    rows = []
    for c in convs:
        ids, w = chat.encode_chat(tokenizer, c, 0.0)
        ids, w = ids[:max_len + 1], w[:max_len + 1]
        rows.append((ids, w))
    step = jax.jit(lambda p, x, y, m: lm_loss_and_metrics(
        model.apply({"params": p}, x), y, m)[1])
    loss_sum = tokens = 0.0
    for start in range(0, len(rows), batch):
        part = [rows[i % len(rows)] for i in range(start, start + batch)]
        x = np.zeros((batch, max_len), np.int32)
        y = np.zeros((batch, max_len), np.int32)
        m = np.zeros((batch, max_len), np.float32)
        for r, (ids, w) in enumerate(part):
            if start + r >= len(rows):
                break  # padding rows of the last batch: weight 0
            n = len(ids) - 1
            x[r, :n], y[r, :n], m[r, :n] = ids[:-1], ids[1:], w[1:]
        s = jax.device_get(step(params, x, y, m))
        loss_sum += float(s["loss_sum"])
        tokens += float(s["tokens"])
    loss = loss_sum / tokens
    return {"loss": loss, "perplexity": float(np.exp(loss)), "tokens": tokens}


def stage_sft(args):
    d = args.work / "data"
    heldout = chat.read_sft_csv(d / "sft_heldout.csv")
    rows, cmds = [], []
    base = pretrained.load(NAME)
    for weight in (0.0, 0.1, 1.0):
        cfg, cmd = config("lm", NAME, f"csv:{d}/sft.csv", f"csv:{d}/sft_heldout.csv",
                          steps=args.steps, batch=4, seq=args.seq, lr=1e-3,
                          extra=[f"align.prompt_loss_weight={weight}"])
        out = run_dir(args.work, f"sft-w{weight}")
        summary = train_once(cfg, out)
        run = load_run(out)
        if not rows:
            before = answer_perplexity(run.model, base.params, run.tokenizer, heldout,
                                       args.seq)
        after = answer_perplexity(run.model, run.params, run.tokenizer, heldout, args.seq)
        step_s = [r["tokens_per_s"] for r in metrics(out) if "tokens_per_s" in r]
        rows.append({"weight": weight, "before": before, "after": after, "summary": summary,
                     "tokens_per_s_median": statistics.median(step_s) if step_s else None})
        cmds.append(cmd + f" --out {out}")
        print(json.dumps(rows[-1]), flush=True)
    print("\n```\n" + "\n".join(cmds) + "\n```\n")
    print_table(["prompt-loss weight", "held-out answer tokens",
                 "perplexity before (SmolLM2-135M-Instruct)",
                 f"perplexity after {args.steps} steps", "loss before", "loss after"],
                [[r["weight"], f"{r['after']['tokens']:,.0f}", f"{r['before']['perplexity']:.2f}",
                  f"{r['after']['perplexity']:.2f}", f"{r['before']['loss']:.4f}",
                  f"{r['after']['loss']:.4f}"] for r in rows])
    (args.work / "sft.json").write_text(json.dumps(rows, indent=1))


# --- SFT on the programmatic tasks' demonstrations ------------------------------------------

def lm_pair_accuracy(model, params, tokenizer, records, max_len: int, batch: int = 8) -> dict:
    """The language model as a judge: log p(chosen | prompt) > log p(rejected | prompt) (summed
    over the answer tokens), per task."""
    rows = align_inputs.pair_rows(tokenizer, records, max_len, "pairs")
    f = jax.jit(lambda p, x, y, m: sequence_logprobs(model.apply({"params": p}, x), y, m)[0])
    merged = lora.merge(params)
    lp = {}
    for side in ("chosen", "rejected"):
        parts = []
        for start in range(0, len(records), batch):
            idx = np.arange(start, start + batch) % len(records)  # the last batch wraps
            parts.append(np.asarray(f(merged, *(rows[f"{side}_{k}"][idx]
                                                for k in ("inputs", "targets", "mask")))))
        lp[side] = np.concatenate(parts)[:len(records)]
    right = lp["chosen"] > lp["rejected"]
    return {t: (float(right[sel].mean()), int(sel.sum())) for t in preferences.TASKS
            if (sel := np.array([r["task"] == t for r in records])).any()}


def number_accuracy(model, params, tokenizer, records) -> dict:
    """Greedy exact-match accuracy on the pairs' prompts of the two number tasks."""
    return {t: task_accuracy(model, params, tokenizer,
                             [{"prompt": r["prompt"], "answer": r["chosen"], "task": t}
                              for r in records if r["task"] == t])
            for t in ("arithmetic", "counting")}


def stage_tasksft(args):
    """SFT (answers only) on --demos demonstrations of the programmatic tasks, training prompts
    only (none of the --held-pairs held-out prompts of the reward stage): the starting point
    of a reward model that has seen what the right numbers are, token by token. Reports the
    LM's own preference (log-probability of chosen over rejected) on the held-out pairs and
    its greedy accuracy on their number prompts, before and after."""
    d = args.work / "data"
    d.mkdir(parents=True, exist_ok=True)
    held = preferences.preference_pairs(args.held_pairs, seed=1)
    demos = preferences.demonstrations(args.demos, seed=5, taken={r["prompt"] for r in held})
    for name, rows in (("tasks_sft", [[m["content"] for m in c["messages"]] for c in demos]),
                       ("tasks_sft_heldout", [(r["prompt"], r["chosen"]) for r in held])):
        with open(d / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["question", "answer"])
            w.writerows(rows)
    cfg, cmd = config("lm", NAME, f"csv:{d}/tasks_sft.csv", f"csv:{d}/tasks_sft_heldout.csv",
                      steps=args.steps, batch=args.batch, seq=args.seq, lr=args.lr,
                      eval_batches=3,
                      extra=["data.columns=question,answer", "align.prompt_loss_weight=0.0",
                             "optim.warmup_steps=10",
                             f"train.eval_every={args.eval_every or args.steps}"])
    out = run_dir(args.work, f"sft-tasks{args.tag}")
    summary = train_once(cfg, out)
    run = load_run(out)
    base = pretrained.load(NAME)
    result = {"summary": summary,
              "demos": {t: sum(c["task"] == t for c in demos) for t in preferences.TASKS}}
    for when, params in (("before", base.params), ("after", run.params)):
        result[when] = {"lm_pairs": lm_pair_accuracy(run.model, params, run.tokenizer, held, 72),
                        "greedy": number_accuracy(run.model, params, run.tokenizer, held)}
    print(json.dumps(result), flush=True)
    print(f"\n```\n{cmd} --out {out}\n```\n")
    (args.work / f"sft-tasks{args.tag}.json").write_text(json.dumps(result, indent=1,
                                                                    default=str))


# --- reward model ------------------------------------------------------------------------------

def pair_scores(run, records, max_len: int, batch: int = 8) -> np.ndarray:
    """The reward model's (score(prompt + chosen), score(prompt + rejected)) per pair: (n, 2),
    from the rows it trains on (each pair a ranking of 2)."""
    rankings = [{"prompt": r["prompt"], "responses": [r["chosen"], r["rejected"]],
                 "ranks": [0, 1]} for r in records]
    rows = align_inputs.ranking_rows(run.tokenizer, rankings, max_len, 2, "pairs")
    # chosen, rejected of each pair in turn
    x, first, last = rows["inputs"].reshape(-1, max_len), rows["start"].ravel(), rows["last"].ravel()
    weight = run.config.align.reward_logprob
    score = jax.jit(lambda p, x, s, i: reward_scores(run.model, p, x, s, i,
                                                     logprob_weight=weight))
    scores = []
    for start in range(0, len(x), batch):
        idx = np.arange(start, start + batch) % len(x)  # the last batch wraps: one shape
        scores += list(np.asarray(score(run.params, x[idx], first[idx], last[idx])))
    return np.asarray(scores[:len(x)]).reshape(-1, 2)


def pair_accuracy(run, records, max_len: int, batch: int = 8) -> dict:
    """The reward model's accuracy on pairs: score(prompt + chosen) > score(prompt + rejected),
    per task."""
    scores = pair_scores(run, records, max_len, batch)
    right = scores[:, 0] > scores[:, 1]
    out = {"all": float(right.mean()), "n": len(records)}
    for task in sorted({r.get("task", "") for r in records}):
        sel = np.array([r.get("task", "") == task for r in records])
        out[task] = (float(right[sel].mean()), int(sel.sum()))
    return out


def stage_reward(args):
    """The reward model from the SFT run on K=4 rankings of the four programmatic tasks; the
    held-out pairs are those of --held-pairs prompts (seed 1) that no training ranking has, and
    the held-out rankings are the rankings of the same prompts (each holds its pair)."""
    d = args.work / "data"
    d.mkdir(parents=True, exist_ok=True)
    held_pairs = preferences.preference_pairs(args.held_pairs, seed=1)
    held_ranks = preferences.rankings(args.held_pairs, seed=1)
    train_ranks = preferences.rankings(args.rankings, seed=0,
                                       taken={r["prompt"] for r in held_pairs})
    for name, recs in (("rankings_prog", train_ranks), ("rankings_prog_heldout", held_ranks),
                       ("prefs_prog_heldout", held_pairs)):
        (d / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    sft = run_dir(args.work, args.sft)
    cfg, cmd = config("reward", str(sft), f"jsonl:{d}/rankings_prog.jsonl",
                      f"jsonl:{d}/rankings_prog_heldout.jsonl", steps=args.steps,
                      batch=args.batch, seq=args.seq, lr=args.lr,
                      eval_batches=-(-args.held_pairs // args.batch),
                      extra=[f"train.eval_every={args.eval_every or args.steps}",
                             f"align.reward_logprob={args.logprob_weight}",
                             f"train.seed={args.seed}"])
    out = run_dir(args.work, f"reward{args.tag}")
    summary = train_once(cfg, out)
    run = load_run(out)
    acc = pair_accuracy(run, held_pairs, args.seq)
    m = metrics(out)
    step0 = next(r for r in m if r["step"] == 0)
    final = [r for r in m if "val_accuracy" in r][-1]  # the evaluation after the last step
    held = {"accuracy": final["val_accuracy"], "kendall_tau": final["val_kendall_tau"]}
    result = {"summary": summary, "heldout_rankings": held, "step0": step0, "pairs": acc,
              "train_tasks": {t: sum(r["task"] == t for r in train_ranks)
                              for t in preferences.TASKS}}
    print(json.dumps(result), flush=True)
    print(f"\n```\n{cmd} --out {out}\n```\n")
    print("| held-out set | metric | step 0 (fresh head) | after |")
    print("|---|---|---|---|")
    print(f"| rankings_prog_heldout.jsonl (K=4, {args.held_pairs}) | pairwise accuracy | "
          f"{step0['val_accuracy']:.3f} | {held['accuracy']:.3f} |")
    print(f"| rankings_prog_heldout.jsonl (K=4, {args.held_pairs}) | Kendall tau | "
          f"{step0['val_kendall_tau']:.3f} | {held['kendall_tau']:.3f} |")
    for task, v in acc.items():
        if isinstance(v, tuple):
            print(f"| prefs_prog_heldout.jsonl, {task} ({v[1]} pairs) | pairwise accuracy | | "
                  f"{v[0]:.3f} |")
    print(f"| prefs_prog_heldout.jsonl, all ({acc['n']} pairs) | pairwise accuracy | | "
          f"{acc['all']:.3f} |")
    (args.work / f"reward{args.tag}.json").write_text(json.dumps(result, indent=1, default=str))


# --- DPO ---------------------------------------------------------------------------------------

def task_accuracy(model, params, tokenizer, records, max_new_tokens: int = 8) -> float:
    prompts = [chat.encode_prompt(tokenizer, r["prompt"]) for r in records]
    stop = tokenizer.encode(ANSWER_END)
    outs = generate(model, lora.merge(params), prompts, max_new_tokens=max_new_tokens,
                    temperature=0.0, stop_tokens=stop, vocab_size=tokenizer.vocab_size)
    return float(np.mean([preferences.match_reward(r, tokenizer.decode(o).split(ANSWER_END)[0])
                          for r, o in zip(records, outs)]))


def sampled_kl(model, params, tokenizer, records, seq: int, max_new_tokens: int = 16) -> float:
    """Mean over held-out prompts of sum_t log pi(y_t) - log ref(y_t) on one completion y
    sampled from pi (temperature 1): a Monte-Carlo estimate of KL(pi || ref) per sequence; the
    reference is the run's base (LoRA off)."""
    prompts = [chat.encode_prompt(tokenizer, r["prompt"]) for r in records]
    stop = tokenizer.encode(ANSWER_END)
    outs = generate(model, lora.merge(params), prompts, max_new_tokens=max_new_tokens,
                    temperature=1.0, stop_tokens=stop, seed=1, vocab_size=tokenizer.vocab_size)
    x = np.zeros((len(prompts), seq + 1), np.int32)
    mask = np.zeros((len(prompts), seq), np.float32)
    for i, (p, c) in enumerate(zip(prompts, outs)):
        s = (p + c + (stop if len(c) < max_new_tokens else []))[:seq + 1]
        x[i, :len(s)] = s
        mask[i, len(p) - 1:len(s) - 1] = 1
    lp = jax.jit(lambda prm: policy.token_logprobs(model.apply({"params": prm}, x[:, :-1]),
                                                   x[:, 1:]))
    diff = (np.asarray(lp(params)) - np.asarray(lp(without_lora(params)))) * mask
    return float(diff.sum(1).mean())


def stage_dpo(args):
    d = args.work / "data"
    sft = run_dir(args.work, "sft-w0.0")
    train_pairs = d / "prefs_dpo.jsonl"  # a subset: the reference pass scores every pair
    lines = (d / "prefs.jsonl").read_text().splitlines()
    rng = np.random.default_rng(0)
    train_pairs.write_text("\n".join(lines[i] for i in sorted(rng.permutation(len(lines))[
        :args.pairs])) + "\n")
    cfg, cmd = config("dpo", str(sft), f"jsonl:{train_pairs}", f"jsonl:{d}/prefs_heldout.jsonl",
                      steps=args.steps, batch=4, seq=args.seq, lr=1e-3)
    out = run_dir(args.work, "dpo")
    summary = train_once(cfg, out)
    run, base = load_run(out), load_run(sft)
    held = evaluate_run(run)
    step0 = next(r for r in metrics(out) if r["step"] == 0)
    tasks = [json.loads(x) for x in (d / "tasks_heldout.jsonl").read_text().splitlines()][:40]
    before = task_accuracy(base.model, base.params, base.tokenizer, tasks)
    after = task_accuracy(run.model, run.params, run.tokenizer, tasks)
    kl = sampled_kl(run.model, run.params, run.tokenizer, tasks, args.seq)
    result = {"summary": summary, "heldout": held, "step0": step0, "task_before": before,
              "task_after": after, "kl": kl}
    print(json.dumps(result), flush=True)
    print(f"\n```\n{cmd} --out {out}\n```\n")
    print("| metric | SFT model (step 0) | after DPO |")
    print("|---|---|---|")
    print(f"| held-out pairs: preference accuracy of the implicit reward | "
          f"{step0['val_accuracy']:.3f} | {held['accuracy']:.3f} |")
    print(f"| held-out pairs: reward margin (beta {cfg.align.beta}) | {step0['val_margin']:.3f} | "
          f"{held['margin']:.3f} |")
    print(f"| held-out arithmetic, greedy exact-match accuracy ({len(tasks)} prompts) | "
          f"{before:.3f} | {after:.3f} |")
    print(f"| KL(policy || SFT) per sampled completion (nats) | 0 | {kl:.3f} |")
    (args.work / "dpo.json").write_text(json.dumps(result, indent=1, default=str))


# --- GRPO --------------------------------------------------------------------------------------

def stage_grpo(args):
    d = args.work / "data"
    held = preferences.task_records(args.held, seed=1, tasks=("sums",))
    train_records = preferences.task_records(80, seed=0, tasks=("sums",),
                                             taken={r["prompt"] for r in held})
    for name, recs in (("sums", train_records), ("sums_heldout", held)):
        (d / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    sft = run_dir(args.work, "sft-w0.0")
    cfg, cmd = config("grpo", str(sft), f"jsonl:{d}/sums.jsonl", f"jsonl:{d}/sums_heldout.jsonl",
                      steps=args.steps, batch=args.batch, seq=args.seq, lr=args.lr,
                      eval_batches=-(-args.held // args.batch),
                      extra=[f"align.group_size={args.group}", f"align.reward={args.reward}",
                             "align.max_new_tokens=4",
                             "align.kl_coef=0.04", f"align.temperature={args.temperature}",
                             f"train.eval_every={args.eval_every or 5}", "train.log_every=1",
                             "optim.warmup_steps=2"])
    out = run_dir(args.work, f"grpo{args.tag}")
    summary = train_once(cfg, out)
    m = metrics(out)
    evals = [(r["step"], r["val_accuracy"], r["val_reward"]) for r in m if "val_accuracy" in r]
    steps = [(r["step"], r["train_reward"], r["train_kl"]) for r in m if "train_reward" in r]
    result = {"summary": summary, "evals": evals, "train": steps}
    print(json.dumps(result), flush=True)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)
    a1.plot([e[0] for e in evals], [e[1] for e in evals], "o-", label="held-out accuracy (greedy)")
    a1.plot([s[0] for s in steps], [s[1] for s in steps], alpha=0.6,
            label="train reward (sampled)")
    a1.set_xlabel("step")
    a1.set_ylabel("exact-match accuracy / reward")
    a1.legend()
    a1.grid(alpha=0.3)
    a2.plot([s[0] for s in steps], [s[2] for s in steps])
    a2.set_xlabel("step")
    a2.set_ylabel("KL to the SFT model (k3, per token)")
    a2.grid(alpha=0.3)
    fig.suptitle("GRPO on one-digit sums, SmolLM2-135M-Instruct + LoRA")
    fig.tight_layout()
    FIGURE.parent.mkdir(exist_ok=True)
    figure = FIGURE.with_name(f"grpo_smollm2{args.tag}.png")
    fig.savefig(figure)
    print(f"\n```\n{cmd} --out {out}\n```\n")
    print("| step | held-out accuracy (greedy, exact match) | held-out mean reward |")
    print("|---|---|---|")
    for e in evals:
        print(f"| {e[0]} | {e[1]:.3f} | {e[2]:.3f} |")
    print(f"\n| step | train reward (sampled, groups of {args.group}) | KL (k3, per token) |")
    print("|---|---|---|")
    for s in steps:
        print(f"| {s[0]} | {s[1]:.3f} | {s[2]:.4f} |")
    (args.work / f"grpo{args.tag}.json").write_text(json.dumps(result, indent=1, default=str))


def stage_signal(args):
    """What GRPO has to reinforce: for every one-digit sum, the probability p that one sampled
    answer (temperature 1) is exactly the right number and <|im_end|> under the SFT model, and
    the expected share of groups of G samples with mixed rewards, 1 - p^G - (1 - p)^G (a group
    whose rewards are all equal has advantages 0: no policy gradient)."""
    sft = load_run(run_dir(args.work, "sft-w0.0"))
    records = preferences.task_records(100, seed=0, tasks=("sums",))
    # prompt + right answer + <|im_end|>, the rows DPO reads (their "chosen" side)
    pairs = align_inputs.pair_rows(sft.tokenizer, [{**r, "chosen": r["answer"], "rejected": ""}
                                                   for r in records], args.seq, "sums")
    x, y, mask = (pairs[f"chosen_{k}"] for k in ("inputs", "targets", "mask"))
    params = lora.merge(sft.params)
    lp = jax.jit(lambda prm, xs, ys: policy.token_logprobs(sft.model.apply({"params": prm}, xs),
                                                           ys))
    logp = np.concatenate([np.asarray(lp(params, x[i:i + 20], y[i:i + 20]))
                           for i in range(0, len(x), 20)])
    p_right = np.exp((logp * mask).sum(1))
    rows = []
    for G in (4, 8, 16):
        mixed = 1 - p_right ** G - (1 - p_right) ** G
        rows.append([G, f"{mixed.mean():.3f}"])
    result = {"p_right": p_right.tolist(), "prompts": [r["prompt"] for r in records]}
    (args.work / "signal.json").write_text(json.dumps(result))
    qs = np.quantile(p_right, [0.1, 0.5, 0.9])
    print(f"p(right answer) over the 100 one-digit sums: mean {p_right.mean():.3f}, quantiles "
          f"10/50/90% {qs[0]:.4f} / {qs[1]:.4f} / {qs[2]:.4f}; prompts with p > 0.5: "
          f"{int((p_right > 0.5).sum())}, p < 0.01: {int((p_right < 0.01).sum())}")
    print_table(["group size G", "expected share of groups with mixed rewards"], rows)


# --- step time and memory ----------------------------------------------------------------------

def example_batch(objective: str, seqs: int, T: int, vocab: int) -> dict:
    """A batch of `seqs` sequences of T tokens for objective (random ids; timing only)."""
    rng = np.random.default_rng(0)
    ids = lambda *s: rng.integers(1, vocab, s).astype(np.int32)  # noqa: E731
    ones = lambda *s: np.ones(s, np.float32)  # noqa: E731
    if objective == "lm":
        return {"inputs": ids(seqs, T), "targets": ids(seqs, T), "loss_mask": ones(seqs, T)}
    if objective == "reward":
        return {"inputs": ids(seqs // 4, 4, T), "start": np.full((seqs // 4, 4), 1, np.int32),
                "last": np.full((seqs // 4, 4), T - 1, np.int32),
                "ranks": np.tile(np.arange(4, dtype=np.int32), (seqs // 4, 1))}
    if objective == "dpo":
        b = seqs // 2
        out = {f"{s}_{k}": ids(b, T) for s in ("chosen", "rejected") for k in ("inputs",
                                                                               "targets")}
        out.update(chosen_mask=ones(b, T), rejected_mask=ones(b, T),
                   ref_chosen=-np.ones(b, np.float32), ref_rejected=-np.ones(b, np.float32))
        return out
    out = {"inputs": ids(seqs, T), "targets": ids(seqs, T), "mask": ones(seqs, T),
           "old_logps": -ones(seqs, T), "ref_logps": -ones(seqs, T),
           "scores": ones(seqs), "solved": ones(seqs)}
    if objective == "ppo":
        out.update(old_values=ones(seqs, T) * 0, returns=ones(seqs, T), advantages=ones(seqs, T))
    else:
        out["advantages"] = np.tile(np.array([1, -1], np.float32), seqs // 2)
    return out


def stage_steptime(args):
    rows = []
    logprob = ["align.reward_logprob=1"]
    variants = [("lm", "full (SFT, no LoRA)", "", []), ("lm", "SFT", LORA, []),
                ("reward", "reward", LORA, []),
                ("reward", "reward, align.reward_logprob=1", LORA, logprob),
                ("dpo", "DPO", LORA, []), ("ppo", "PPO", LORA, []), ("grpo", "GRPO", LORA, [])]
    for objective, label, spec, extra in variants:
        cfg, _ = config(objective, NAME, "jsonl:unused.jsonl", "", steps=10, batch=4,
                        seq=args.seq, lr=1e-3, lora_spec=spec or LORA,
                        extra=["align.group_size=2"] + extra)
        if not spec:
            cfg = config_lib.apply_overrides(cfg, ["train.lora="])
        cfg = config_lib.validate(cfg)
        _, loss_fn = model_and_objective(cfg, cfg.model.vocab_size)
        tx = make_optimizer(cfg.optim, cfg.train.steps)
        trainable = trainable_fn(cfg)
        base = pretrained.load(NAME).params
        if cfg.model.value_head:
            from jaxllm.models.decoder import init_value_head
            base = {**base, "value": init_value_head(cfg.model, jax.random.PRNGKey(0))}
        base = jax.tree_util.tree_map(jnp.copy, base)
        state = TrainState.create(build_params(cfg, jax.random.PRNGKey(0), base), tx, trainable)
        step = make_train_step(loss_fn, tx, trainable=trainable)
        batch = example_batch(objective, 4, args.seq, cfg.model.vocab_size)
        compiled = step.lower(state, batch).compile()
        mem = compiled.memory_analysis()
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            state, m = compiled(state, batch)
            jax.block_until_ready(m["loss"])
            times.append(time.perf_counter() - start)
        total = (mem.argument_size_in_bytes + mem.output_size_in_bytes
                 + mem.temp_size_in_bytes - mem.alias_size_in_bytes)
        rows.append({"objective": label,
                     "median_s": statistics.median(times) if times else float("nan"),
                     "times": times, "live_bytes": total, "temp_bytes": mem.temp_size_in_bytes})
        print(json.dumps(rows[-1]), flush=True)
        del state, compiled
    full, ref = rows[0], rows[1]
    print_table([(f"objective (4 sequences x {args.seq} tokens per step; PPO/GRPO: the update "
                  f"only, no rollout)"), f"step time, median of {args.repeats}", "vs full SFT", "vs SFT (LoRA)",
                 "compiled memory: live (args + outputs + temps, donated counted once)",
                 "vs full SFT", "vs SFT (LoRA)", "temporaries"],
                [[r["objective"], f"{r['median_s']:.2f} s",
                  f"{r['median_s'] / full['median_s']:.2f}x",
                  f"{r['median_s'] / ref['median_s']:.2f}x",
                  f"{r['live_bytes'] / 1e6:.0f} MB", f"{r['live_bytes'] / full['live_bytes']:.2f}x",
                  f"{r['live_bytes'] / ref['live_bytes']:.2f}x",
                  f"{r['temp_bytes'] / 1e6:.0f} MB"] for r in rows])
    (args.work / "steptime.json").write_text(json.dumps(rows, indent=1))


STAGES = {"data": stage_data, "sft": stage_sft, "tasksft": stage_tasksft, "reward": stage_reward,
          "dpo": stage_dpo, "grpo": stage_grpo, "signal": stage_signal, "steptime": stage_steptime}


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=list(STAGES))
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--pairs", type=int, default=200, help="dpo: training pairs")
    p.add_argument("--rankings", type=int, default=400, help="reward: training rankings")
    p.add_argument("--logprob-weight", type=float, default=0.0,
                   help="reward: align.reward_logprob (0: the scalar head alone)")
    p.add_argument("--seed", type=int, default=0,
                   help="reward: train.seed (the head's initialisation, the batches' order)")
    p.add_argument("--held-pairs", type=int, default=160,
                   help="reward: held-out programmatic pairs (and their rankings)")
    p.add_argument("--eval-every", type=int, default=None,
                   help="grpo (default 5), reward, tasksft (default --steps): steps between "
                   "evaluations")
    p.add_argument("--batch", type=int, default=8,
                   help="grpo: completions per step (--group a prompt); reward: rankings per "
                   "step; tasksft: packed rows per step")
    p.add_argument("--group", type=int, default=4, help="grpo: completions per prompt")
    p.add_argument("--reward", default="match", choices=["match", "near"],
                   help="grpo: align.reward (near: partial credit for a near number)")
    p.add_argument("--held", type=int, default=16, help="grpo: held-out sums (greedy)")
    p.add_argument("--lr", type=float, default=1e-3,
                   help="grpo, reward, tasksft: peak learning rate")
    p.add_argument("--temperature", type=float, default=1.0, help="grpo: rollout temperature")
    p.add_argument("--repeats", type=int, default=3,
                   help="steptime: timed steps per objective (0: compiled memory only)")
    p.add_argument("--demos", type=int, default=6000,
                   help="tasksft: demonstrations of the programmatic tasks")
    p.add_argument("--sft", default="sft-w0.0",
                   help="reward: the run under WORK/runs the reward model starts from")
    p.add_argument("--tag", default="",
                   help="grpo, reward, tasksft: suffix of the run directory (and figure)")
    args = p.parse_args()
    STAGES[args.stage](args)


if __name__ == "__main__":
    main()
