#!/usr/bin/env python3
"""Why a reward model does (not) rank the programmatic preference pairs: what the inputs carry.

For the programmatic tasks of jaxllm.data.preferences (arithmetic, counting, one_word, json),
draws training pairs (seed 0) and held-out pairs (seed 1, prompts disjoint), runs the model once
over prompt + chosen and prompt + rejected, and measures per task, on the held-out pairs:

  lm        how often the language model itself gives the chosen answer the larger summed
            log-probability (does the model "know" the better answer?)
  probe     a linear Bradley-Terry reward on the frozen final-normed hidden state (what a fresh
            value head alone can learn): logistic regression, no intercept, on
            h(chosen) - h(rejected), fitted on the training pairs; read at the row's last token
            (<|im_end|>, where the reward model reads) and, for comparison, at the answer's last
            token before it
  heldout   the same probe's accuracy on the training pairs (separable at all?)
  verifier  the model as a generative verifier, untrained: its log-odds of "yes" against "no"
            (either case) after a second user turn asks whether the answer is correct (two
            phrasings, VERIFY_QUESTIONS); what a scalar head initialised from those LM-head rows
            would read at step 0

Usage:
  python experiments/reward_diagnostics.py --model RUN_DIR_OR_NAME [--train 100] [--held 50]
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial

from jaxllm.platform import configure_cpu

configure_cpu()

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.linear_model import LogisticRegression

from jaxllm import pretrained
from jaxllm.data import preferences
from jaxllm.data.chat import chat_template
from jaxllm.objectives.preference import sequence_logprobs
from jaxllm.text.chat import PLAIN_CHATML, apply_chat_template
from jaxllm.train import align_inputs, load_run
from jaxllm.transforms import lora


def load(name: str):
    """(model, float params, tokenizer) of a run directory (LoRA merged) or a pretrained model."""
    if name in pretrained.REGISTRY:
        lm = pretrained.load(name)
        return lm.model, lm.params, lm.tokenizer
    run = load_run(name)
    return run.model, lora.merge(run.params), run.tokenizer


def rows(tokenizer, pairs: list[dict], T: int):
    """inputs, targets, answer mask (2N, T), last index (2N,): chosen rows, then rejected (the
    DPO rows of train/align_inputs, the two sides stacked)."""
    r = align_inputs.pair_rows(tokenizer, pairs, T, "diagnostic pairs")
    x, y, m = (np.concatenate([r[f"chosen_{k}"], r[f"rejected_{k}"]])
               for k in ("inputs", "targets", "mask"))
    last = np.minimum(T - np.argmax(m[:, ::-1], axis=1), T - 1)  # the row's last token
    return x, y, m, last


@partial(jax.jit, static_argnums=0)
def _features(model, params, x, y, m, last):
    h = model.apply({"params": params}, x, head="hidden")  # (B, T, D)
    logits = model.apply({"params": params}, h, method="lm_head")
    lp = sequence_logprobs(logits, y, m)[0]
    take = lambda i: jnp.take_along_axis(h, i[:, None, None], axis=1)[:, 0]
    return lp, take(last).astype(jnp.float32), take(last - 1).astype(jnp.float32)


def features(model, params, tokenizer, pairs, T: int, batch: int = 16):
    """(summed answer log-probs (2N,), hidden at the last token (2N, D), at the one before)."""
    x, y, m, last = rows(tokenizer, pairs, T)
    n = len(x)
    out = [[], [], []]
    for start in range(0, n, batch):
        idx = np.arange(start, start + batch) % n  # the last batch wraps: one shape
        got = jax.device_get(_features(model, params, x[idx], y[idx], m[idx], last[idx]))
        keep = min(batch, n - start)
        for acc, g in zip(out, got):
            acc.append(np.asarray(g)[:keep])
    return [np.concatenate(o) for o in out]


VERIFY_QUESTIONS = ("Is your answer correct? Answer yes or no.",
                    "Is that right? Reply with yes or no.")


@partial(jax.jit, static_argnums=0)
def _last_logprobs(model, params, x, last):
    logits = model.apply({"params": params}, x)
    return jax.nn.log_softmax(jnp.take_along_axis(logits, last[:, None, None], axis=1)[:, 0])


def verifier_scores(model, params, tokenizer, pairs, question: str, batch: int = 16):
    """log p(yes) - log p(no) (either case) at the assistant's turn after the user asks
    `question` about the answer: (2N,), chosen rows then rejected."""
    template = chat_template(tokenizer) or PLAIN_CHATML
    seqs = [tokenizer.encode(apply_chat_template(template, [
        {"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r[side]},
        {"role": "user", "content": question}], True))
        for side in ("chosen", "rejected") for r in pairs]
    x = np.zeros((len(seqs), max(map(len, seqs))), np.int32)
    for i, s in enumerate(seqs):
        x[i, :len(s)] = s
    last = np.array([len(s) - 1 for s in seqs], np.int32)
    ids = {w: tokenizer.encode(w) for w in ("yes", "Yes", "no", "No")}
    assert all(len(v) == 1 for v in ids.values()), ids  # one token each in SmolLM2's vocabulary
    out = []
    for start in range(0, len(x), batch):
        idx = np.arange(start, start + batch) % len(x)  # the last batch wraps: one shape
        lp = np.asarray(_last_logprobs(model, params, x[idx], last[idx]))
        lp = lp[:min(batch, len(x) - start)]
        out.append(np.logaddexp(lp[:, ids["yes"][0]], lp[:, ids["Yes"][0]])
                   - np.logaddexp(lp[:, ids["no"][0]], lp[:, ids["No"][0]]))
    return np.concatenate(out)


def per_task(right: np.ndarray, tasks: list[str]) -> dict:
    out = {t: round(float(right[np.array(tasks) == t].mean()), 3) for t in sorted(set(tasks))}
    out["all"] = round(float(right.mean()), 3)
    out["n"] = {t: tasks.count(t) for t in sorted(set(tasks))}
    return out


def probe(train_h, held_h, n_train: int, n_held: int, c: float):
    """Bradley-Terry linear reward on frozen features: (train accuracy, held-out right (N,))."""
    d_train = train_h[:n_train] - train_h[n_train:]
    d_held = held_h[:n_held] - held_h[n_held:]
    scale = np.abs(d_train).std() + 1e-6
    X = np.concatenate([d_train, -d_train]) / scale
    y = np.concatenate([np.ones(n_train), np.zeros(n_train)])
    clf = LogisticRegression(C=c, fit_intercept=False, max_iter=2000).fit(X, y)
    w = clf.coef_[0]
    return (d_train / scale @ w > 0), (d_held / scale @ w > 0)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--train", type=int, default=100, help="training pairs per task")
    p.add_argument("--held", type=int, default=50, help="held-out pairs per task")
    p.add_argument("--seq", type=int, default=48)
    p.add_argument("--c", type=float, default=1.0, help="inverse L2 strength of the probe")
    args = p.parse_args()
    start = time.perf_counter()
    n_tasks = len(preferences.TASKS)
    held = preferences.preference_pairs(args.held * n_tasks, seed=1)
    train = preferences.preference_pairs(args.train * n_tasks, seed=0,
                                         taken={r["prompt"] for r in held})
    model, params, tokenizer = load(args.model)
    _, h_t, h1_t = features(model, params, tokenizer, train, args.seq)
    lp_h, h_h, h1_h = features(model, params, tokenizer, held, args.seq)
    nt, nh = len(train), len(held)
    tasks_t, tasks_h = [r["task"] for r in train], [r["task"] for r in held]
    result = {"model": args.model, "train_pairs": nt, "held_pairs": nh,
              "lm_logprob_heldout": per_task(lp_h[:nh] > lp_h[nh:], tasks_h)}
    for name, (ft, fh) in {"probe_last": (h_t, h_h), "probe_answer_end": (h1_t, h1_h)}.items():
        right_t, right_h = probe(ft, fh, nt, nh, args.c)
        result[name + "_train"] = per_task(right_t, tasks_t)
        result[name + "_heldout"] = per_task(right_h, tasks_h)
    for i, question in enumerate(VERIFY_QUESTIONS):
        v = verifier_scores(model, params, tokenizer, held, question)
        result[f"verifier_{i}_heldout"] = per_task(v[:nh] > v[nh:], tasks_h)
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
