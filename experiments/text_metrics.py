"""jaxllm.metrics' BLEU, chrF and ROUGE on the peer's 10,000 sentence pairs: time and exactness.

The pairs are those `../shared/peers/07_text_metrics.py` writes (`--pairs-out FILE`, TSV:
hypothesis, tab, reference): pydoc sentences and seeded perturbations of them.

    python experiments/text_metrics.py --pairs /tmp/metrics_pairs.tsv
        times what the peer times (1 warm-up + --runs; median, min, max seconds), under the
        peer's JSON keys, so that compare_interleaved.py can pair them:
          corpus_bleu_time         corpus_bleu(hyps, refs)                 13a, exp smoothing
          corpus_chrf_time         corpus_chrf(hyps, refs)
          sentence_bleu_loop_time  sentence_bleu_scores(hyps, refs)        every pair's BLEU
          rougeL_time              rouge(hyps, refs, ["rougeL"])           per-pair F1
          rougeL_stem_time         the same with use_stemmer=True
        and, not timed by the peer: rouge1/2/L/Lsum together (rouge_all_time).

    python experiments/text_metrics.py --pairs /tmp/metrics_pairs.tsv --exactness
        the largest |jaxllm - reference| over all pairs, against sacrebleu and rouge-score in
        this interpreter: corpus BLEU (4 tokenizers x 4 smoothings, plain and lowercased),
        sentence BLEU, corpus and sentence chrF and chrF++, ROUGE-1/2/L/Lsum (rougeLsum with
        each ". " made a line break) with and without stemming.

    python experiments/text_metrics.py --summarize PEER.jsonl JAXLLM.jsonl
        the table of an interleaved comparison: each file holds one side's JSON lines, in run
        order (compare_interleaved.py prints one key; tee both sides' lines to keep them all).

Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

from jaxllm.metrics import (corpus_bleu, corpus_chrf, rouge, sentence_bleu_scores,
                            sentence_chrf_scores)


def read_pairs(path: str) -> tuple[list[str], list[str]]:
    hyps, refs = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            h, r = line.rstrip("\n").split("\t")
            hyps.append(h)
            refs.append(r)
    return hyps, refs


def timeit(fn, runs: int):
    out = fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, {"median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4),
                 "max_s": round(max(times), 4), "n": len(times)}


def timing(hyps, refs, runs: int) -> dict:
    res = {}
    bleu, res["corpus_bleu_time"] = timeit(lambda: corpus_bleu(hyps, refs), runs)
    res["corpus_bleu"] = round(bleu.score, 3)
    chrf, res["corpus_chrf_time"] = timeit(lambda: corpus_chrf(hyps, refs), runs)
    res["corpus_chrf"] = round(chrf.score, 3)
    sb, res["sentence_bleu_loop_time"] = timeit(lambda: sentence_bleu_scores(hyps, refs), runs)
    res["sentence_bleu_mean"] = round(float(np.mean(sb)), 3)
    for stem in (False, True):
        key = "rougeL_stem" if stem else "rougeL"
        scores, res[f"{key}_time"] = timeit(
            lambda stem=stem: rouge(hyps, refs, ["rougeL"], use_stemmer=stem)["rougeL"].fmeasure,
            runs)
        res[f"{key}_f1_mean"] = round(float(np.mean(scores)), 4)
        res[f"{key}_pairs_per_s"] = round(len(refs) / res[f"{key}_time"]["median_s"])
        print(key, res[f"{key}_time"], file=sys.stderr, flush=True)
    _, res["rouge_all_time"] = timeit(
        lambda: rouge(hyps, refs, ["rouge1", "rouge2", "rougeL", "rougeLsum"]), runs)
    return res


def exactness(hyps, refs) -> dict:
    import sacrebleu
    from rouge_score import rouge_scorer

    diffs = {}

    def record(name, ours, theirs):
        diffs[name] = float(np.max(np.abs(np.asarray(ours) - np.asarray(theirs))))
        print(f"{name:40s} max |diff| {diffs[name]:.3g}", file=sys.stderr, flush=True)

    for tokenize in ("13a", "intl", "char", "none"):
        for smooth in ("exp", "none", "floor", "add-k"):
            for lowercase in (False, True):
                options = dict(tokenize=tokenize, smooth_method=smooth, lowercase=lowercase)
                record(f"corpus_bleu {tokenize} {smooth}{' lc' if lowercase else ''}",
                       corpus_bleu(hyps, refs, **options).score,
                       sacrebleu.corpus_bleu(hyps, [refs], **options).score)
    metric = sacrebleu.BLEU(effective_order=True)
    record("sentence_bleu 13a exp", sentence_bleu_scores(hyps, refs),
           [metric.sentence_score(h, [r]).score for h, r in zip(hyps, refs)])
    for word_order in (0, 2):
        chrf = sacrebleu.CHRF(word_order=word_order)
        record(f"corpus_chrf word_order={word_order}",
               corpus_chrf(hyps, refs, word_order=word_order).score,
               chrf.corpus_score(hyps, [refs]).score)
        record(f"sentence_chrf word_order={word_order}",
               sentence_chrf_scores(hyps, refs, word_order=word_order),
               [chrf.sentence_score(h, [r]).score for h, r in zip(hyps, refs)])
    types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    lines_h = [h.replace(". ", ".\n") for h in hyps]
    lines_r = [r.replace(". ", ".\n") for r in refs]
    for stem in (False, True):
        ours = rouge(lines_h, lines_r, types, use_stemmer=stem)
        scorer = rouge_scorer.RougeScorer(types, use_stemmer=stem)
        theirs = [scorer.score(r, h) for h, r in zip(lines_h, lines_r)]
        for t in types:
            for field in ("precision", "recall", "fmeasure"):
                record(f"{t} {field}{' stem' if stem else ''}", getattr(ours[t], field),
                       [getattr(s[t], field) for s in theirs])
    return {"max_abs_diff": max(diffs.values()), "checks": len(diffs), "diffs": diffs}


TIMED = ["corpus_bleu_time", "corpus_chrf_time", "sentence_bleu_loop_time", "rougeL_time",
         "rougeL_stem_time"]


def summarize(peer_path: str, ours_path: str) -> dict:
    """Per timed key: each pair's seconds and jaxllm/peer ratio, and the median ratio."""
    def runs(path):
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.startswith("{")]

    peer, ours = runs(peer_path), runs(ours_path)
    print("| measure | peer s (per pair) | jaxllm s (per pair) | jaxllm / peer (per pair) | "
          "median ratio |")
    print("|---|---|---|---|---|")
    out = {}
    for key in TIMED:
        a = [r[key]["median_s"] for r in peer]
        b = [r[key]["median_s"] for r in ours]
        ratios = [y / x for x, y in zip(a, b)]
        out[key] = statistics.median(ratios)
        print(f"| {key[:-5]} | {', '.join(f'{x:.2f}' for x in a)} | "
              f"{', '.join(f'{y:.2f}' for y in b)} | {', '.join(f'{r:.3f}' for r in ratios)} | "
              f"**{out[key]:.3f}** |")
    return {"median_ratio": out, "pairs": min(len(peer), len(ours))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", default="/tmp/metrics_pairs.tsv",
                    help="the peer's --pairs-out file")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--exactness", action="store_true")
    ap.add_argument("--summarize", nargs=2, metavar=("PEER_JSONL", "JAXLLM_JSONL"))
    args = ap.parse_args()
    if args.summarize:
        print(json.dumps(summarize(*args.summarize)))
        return
    hyps, refs = read_pairs(args.pairs)
    res = {"bench": "text_metrics_jaxllm", "n_pairs": len(hyps)}
    res.update(exactness(hyps, refs) if args.exactness else timing(hyps, refs, args.runs))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
