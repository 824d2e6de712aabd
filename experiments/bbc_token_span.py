"""The token and span heads on all-MiniLM-L6-v2 (presets bbc-tags, bbc-planted) on their test
splits, each beside trivial baselines scored the same way (train.task_inputs tag_scores /
span_scores).

    .venv/bin/python experiments/bbc_token_span.py --preset bbc-tags [--steps N] [--out DIR]
    .venv/bin/python experiments/bbc_token_span.py --preset bbc-planted --run DIR

1. trains the preset (with the --set overrides) through jaxllm.train, or reads the run in --run;
2. scores it on the test split with train.task_inputs.evaluate_task (what `jaxllm eval` prints);
3. scores the baselines on the same rows:
   bbc-tags     majority: every tagged token gets the tag most frequent in the train split;
                digit rule: NUMBER when the word's first WordPiece holds a digit, else O (what
                the lower-cased text shows without context; NAME needs the context)
   bbc-planted  first candidate: the first "code is X ." of the context, X the span (a reader
                that ignores the question; two facts are planted, so about half are right)
and prints a markdown table (tags: also each tag's F1) and JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from preset_runs import add_run_args, preset_run

from jaxllm.platform import configure_cpu

PRESETS = ("bbc-tags", "bbc-planted")


def tag_baselines(tokenizer, train: dict, test: dict, n_classes: int) -> dict:
    """{name: predicted class ids (N, T)} of the tag baselines on the test rows."""
    from jaxllm.data.tagging import TAGS

    tagged = train["labels"][train["labels"] >= 0]
    majority = int(np.bincount(tagged, minlength=n_classes).argmax())
    has_digit = np.vectorize(lambda i: any(c.isdigit() for c in tokenizer.id_to_token(int(i))))
    digit = np.where(has_digit(test["tokens"]), TAGS.index("NUMBER"), TAGS.index("O"))
    return {f"majority tag ({TAGS[majority]})": np.full(test["labels"].shape, majority),
            "digit rule (NUMBER if the first piece has a digit, else O)": digit}


def first_candidate(tokenizer, rows: dict) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) (N,): the first span X of "code is X ." inside each row's context, or
    (0, 0) (wrong) when a row has none."""
    code, is_, stop = (tokenizer.token_to_id(t) for t in ("code", "is", "."))
    starts, ends = np.zeros(len(rows["tokens"]), np.int32), np.zeros(len(rows["tokens"]), np.int32)
    for r, (ids, ctx) in enumerate(zip(rows["tokens"].tolist(), rows["context"])):
        for i in range(len(ids) - 3):
            if ctx[i] and ids[i] == code and ids[i + 1] == is_ and ctx[i + 2]:
                j = i + 2
                while j + 1 < len(ids) and ctx[j + 1] and ids[j + 1] != stop:
                    j += 1
                starts[r], ends[r] = i + 2, j
                break
    return starts, ends


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=PRESETS, required=True)
    add_run_args(p, "runs/bbc-token-span")
    args = p.parse_args(argv)
    configure_cpu()

    from jaxllm.metrics.classification import precision_recall_fscore
    from jaxllm.train.task_inputs import (
        evaluate_task,
        predict,
        span_scores,
        tag_scores,
        task_splits,
    )

    loaded, wall = preset_run(args.preset, args)
    cfg, tok = loaded.config, loaded.tokenizer
    model_scores = evaluate_task(loaded, "test")
    data = task_splits(cfg, tok, only=("train", "test"))
    test = data.test
    name = f"MiniLM + {cfg.model.head} head ({cfg.train.steps} steps x {cfg.train.batch_size})"
    rows = [{"reader": name, "train_s": None if wall is None else round(wall),
             **{k: v for k, v in model_scores.items() if k not in ("classes", "split")}}]
    if cfg.model.head == "token":
        preds = {name: predict(loaded.model, loaded.params, test)["logits"].argmax(-1),
                 **tag_baselines(tok, data.train, test, len(data.classes))}
        rows = rows[:1]
        for reader, pred in preds.items():
            keep = test["labels"] >= 0
            f1 = precision_recall_fscore(test["labels"][keep], pred[keep], average=None,
                                         labels=list(range(len(data.classes))))[2]
            per_class = {f"F1 {c}": float(x) for c, x in zip(data.classes, f1)}
            if reader == name:
                rows[0].update(per_class)
                continue
            rows.append({"reader": reader, "texts": len(test["tokens"]),
                         **tag_scores(test["labels"], pred, len(data.classes)), **per_class})
        keys = ("labelled", "accuracy", "macro_f1", *(f"F1 {c}" for c in data.classes))
    else:
        rows.append({"reader": "first candidate (first \"code is X .\" of the context)",
                     "texts": len(test["tokens"]),
                     **span_scores(test, *first_candidate(tok, test))})
        keys = ("exact_match", "f1")
    print(f"{args.preset}, test split ({len(test['tokens'])} texts)\n")
    print("| reader | train s | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for r in rows:
        cells = [f"{r[k]:,}" if isinstance(r[k], int) else f"{r[k]:.4f}" for k in keys]
        print(f"| {r['reader']} | {r.get('train_s') or '-'} | " + " | ".join(cells) + " |")
    out = Path(args.run or args.out, "results.json")
    out.write_text(json.dumps({"preset": args.preset, "rows": rows, "overrides": args.set},
                              indent=1))
    print(json.dumps({"preset": args.preset, "steps": cfg.train.steps, "overrides": args.set}))


if __name__ == "__main__":
    main()
