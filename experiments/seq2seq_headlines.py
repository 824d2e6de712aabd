"""BBC News headlines from the article: the bbc-headlines encoder-decoder against the
lead-sentence baseline, ROUGE-1/2/L (jaxllm.metrics.rouge, rouge-score's defaults, F-measure).

    .venv/bin/python experiments/seq2seq_headlines.py [--steps N] [--set KEY=VALUE ...]
    .venv/bin/python experiments/seq2seq_headlines.py --baseline-only

The test split is data/pairs.py's (223 articles, seed 0). The lead baseline's headline is the
article's first sentence (up to the first ". ", "! " or "? "). The model decodes greedily and
with 4 beams from the article's first model.max_len characters.
"""

from __future__ import annotations

import argparse
import json
import re
import time

from jaxllm import config as config_lib
from jaxllm.platform import configure_cpu


def lead_sentence(article: str) -> str:
    return re.split(r"(?<=[.!?])\s", article, maxsplit=1)[0]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default="runs/seq2seq-headlines")
    p.add_argument("--baseline-only", action="store_true")
    args = p.parse_args(argv)
    configure_cpu()

    from jaxllm.data.pairs import bbc_headline_splits
    from jaxllm.infer.seq2seq import evaluate_pairs, score_texts

    test = bbc_headline_splits().test
    refs = [t for _, t in test]
    rows = [("lead sentence", score_texts([lead_sentence(a) for a, _ in test], refs), None)]
    if not args.baseline_only:
        from jaxllm.train import load_run, train

        cfg = config_lib.get_preset("bbc-headlines")
        cfg = config_lib.apply_overrides(cfg, args.set + ([f"train.steps={args.steps}"]
                                                          if args.steps else []))
        start = time.perf_counter()
        train(cfg, args.out, progress=False)
        wall = time.perf_counter() - start
        loaded = load_run(args.out)
        for beams in (1, 4):
            scores, hyps = evaluate_pairs(loaded.model, loaded.params, loaded.tokenizer, test,
                                          num_beams=beams, max_new_tokens=64)
            how = "greedy" if beams == 1 else "beam 4"
            name = f"encoder-decoder, {how} ({cfg.train.steps} steps, {wall:.0f} s)"
            rows.append((name, scores, hyps[:3]))
    print(f"| headline from | ROUGE-1 | ROUGE-2 | ROUGE-L |  ({len(test)} test articles)")
    print("|---|---|---|---|")
    for name, s, _ in rows:
        print(f"| {name} | {s['rouge1']:.4f} | {s['rouge2']:.4f} | {s['rougeL']:.4f} |")
    for name, _, hyps in rows:
        if hyps:
            print(json.dumps({name: list(zip(hyps, refs[:3]))}, indent=1))


if __name__ == "__main__":
    main()
