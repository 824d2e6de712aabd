#!/usr/bin/env python3
"""BBC News topics (5 classes): all-minilm-l6-v2 fine-tuned in full, with LoRA, and as a linear
probe on its frozen embeddings; test accuracy, macro-F1 and time.

Every variant reads the same rows (train/task_inputs.py: headline + ". " + article, the first
model.max_len WordPiece tokens, the fixed stratified 80/10/10 split) and is scored on the same
test split:

  full    `jaxllm train --preset bbc-topics`: every parameter and a new linear head on the
          mean-pooled hidden states, AdamW lr 1e-4, --steps steps of 16
  lora    the same with LoRA rank 8, alpha 16 on the attention projections (the head trained in
          full), lr 1e-3
  probe   the frozen model's sentence embeddings (mean-pooled, L2-normalised: what
          sentence-transformers gives) of the train rows -> multinomial logistic regression
          (scikit-learn, lbfgs, C=10); its time is embedding train and test rows plus the fit

Time: wall-clock seconds of the whole training call (compilation and evaluations included),
and the run's median sequences/s over the logged steps.

Usage: flock /tmp/jaxllm-bench.lock python experiments/bbc_topics.py --work DIR [--steps 100]
       [--append]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from jaxllm.platform import configure_cpu

configure_cpu()

import jax
import numpy as np
from rag_planted import append  # RESULTS.md's header: command, CPU, versions, load

from jaxllm import config as config_lib
from jaxllm import pretrained
from jaxllm.metrics.classification import accuracy, precision_recall_fscore
from jaxllm.train import load_run, train
from jaxllm.train.params import with_pretrained_model
from jaxllm.train.task_inputs import evaluate_task, task_splits

BASE = "all-minilm-l6-v2"
VARIANTS = {"full": ([], 1e-4), "lora": (["train.lora=rank=8,alpha=16,targets=attn"], 1e-3)}


def trained_variant(name, steps, work: Path) -> dict:
    extra, lr = VARIANTS[name]
    cfg = with_pretrained_model(config_lib.get_preset("bbc-topics"), BASE)
    cfg = config_lib.validate(config_lib.apply_overrides(cfg, extra + [
        f"train.steps={steps}", f"optim.lr={lr}", f"optim.min_lr={lr / 10}",
        f"train.eval_every={steps}", f"train.save_every={steps}"]))
    start = time.perf_counter()
    summary = train(cfg, work / name, progress=False)
    seconds = time.perf_counter() - start
    loaded = load_run(work / name)
    n_train = sum(int(np.size(x)) for k, x in _flat(loaded.params)
                  if not cfg.train.lora or ".lora_" in k or k.startswith("['head']"))
    r = evaluate_task(loaded)
    return {"variant": name, "trainable": n_train, "steps": steps, "seconds": seconds,
            "seq_per_s": summary.get("sequences_per_s_median"),
            "val_accuracy": summary.get("val_accuracy"), "accuracy": r["accuracy"],
            "macro_f1": r["macro_f1"], "test_texts": r["texts"]}


def _flat(tree):
    return [(jax.tree_util.keystr(p), x) for p, x in jax.tree_util.tree_leaves_with_path(tree)]


def probe() -> dict:
    from sklearn.linear_model import LogisticRegression

    enc = pretrained.load(BASE)
    data = task_splits(config_lib.get_preset("bbc-topics"), enc.tokenizer)
    start = time.perf_counter()

    def embed(rows):
        ids = [t[m].tolist() for t, m in zip(rows["tokens"], rows["mask"])]
        return enc.embed_ids(ids, batch_size=32)

    x_train, x_test = embed(data.train), embed(data.test)
    clf = LogisticRegression(C=10.0, max_iter=2000).fit(x_train, data.train["labels"])
    seconds = time.perf_counter() - start
    pred = clf.predict(x_test)
    y = data.test["labels"]
    return {"variant": "probe", "trainable": int(clf.coef_.size + clf.intercept_.size),
            "steps": None, "seconds": seconds, "seq_per_s": None, "val_accuracy": None,
            "accuracy": accuracy(y, pred),
            "macro_f1": float(precision_recall_fscore(y, pred, average="macro")[2]),
            "test_texts": len(y)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", required=True, help="a new directory for the runs")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--variants", default="probe,full,lora")
    p.add_argument("--append", action="store_true", help="append the table to RESULTS.md")
    args = p.parse_args()
    work = Path(args.work)
    rows = []
    for name in args.variants.split(","):
        row = probe() if name == "probe" \
            else trained_variant(name, args.steps, work)
        rows.append(row)
        print(json.dumps(row), flush=True)
    table = [("| variant | trainable params | steps x 16 | time (s) | sequences/s | val accuracy "
              "| test accuracy | test macro-F1 |"), "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| {r['variant']} | {r['trainable']:,} | {r['steps'] or '-'} | "
                     f"{r['seconds']:.0f} | {r['seq_per_s'] or '-'} | "
                     f"{'-' if r['val_accuracy'] is None else format(r['val_accuracy'], '.4f')} | "
                     f"{r['accuracy']:.4f} | {r['macro_f1']:.4f} |")
    text = "\n".join(table)
    print(text)
    if args.append:
        n = rows[0]["test_texts"]
        append("BBC topics: all-MiniLM-L6-v2 fine-tuned, with LoRA, and as a linear probe "
               "(branch heads)",
               f"Test split: {n} articles (10% of each class, fixed seed); rows of the first "
               f"{config_lib.get_preset('bbc-topics').model.max_len} tokens of headline + "
               f"article.\n\n" + text)


if __name__ == "__main__":
    main()
