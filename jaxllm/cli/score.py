"""Score hypotheses against references: BLEU, chrF (chrF++) or ROUGE, one segment per line.

  jaxllm score bleu --hyp out.txt --ref ref.txt [--ref ref2.txt ...] [--tokenize intl]
  jaxllm score chrf --hyp out.txt --ref ref.txt [--word-order 2]      # chrF++
  jaxllm score rouge --hyp out.txt --ref ref.txt [--types rouge1,rouge2,rougeL] [--stemmer]

Files are UTF-8, one segment per line; every --ref file has as many lines as --hyp. BLEU and
chrF print the corpus score (the numbers sacrebleu prints); ROUGE prints each type's mean
precision, recall and F over the lines (rouge-score's per-pair scores, averaged). --sentence
prints one score per line instead; --json one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = p.add_subparsers(dest="metric", required=True, metavar="METRIC")
    parsers = {
        "bleu": sub.add_parser("bleu", help="BLEU as sacrebleu computes it"),
        "chrf": sub.add_parser("chrf", help="chrF / chrF++ as sacrebleu computes them"),
        "rouge": sub.add_parser("rouge", help="ROUGE-N / L / Lsum as rouge-score computes them"),
    }
    for q in parsers.values():
        q.add_argument("--hyp", required=True, metavar="FILE", help="hypotheses, one per line")
        q.add_argument("--ref", required=True, action="append", metavar="FILE",
                       help="references, one per line (repeat for several reference sets)")
        q.add_argument("--sentence", action="store_true", help="one score per line")
        q.add_argument("--json", action="store_true", help="print one JSON object")
    for name in ("bleu", "chrf"):
        parsers[name].add_argument("--lowercase", action="store_true")
    b = parsers["bleu"]
    b.add_argument("--tokenize", default="13a", choices=["13a", "intl", "char", "none"])
    b.add_argument("--smooth", default="exp", choices=["exp", "floor", "add-k", "none"])
    b.add_argument("--smooth-value", type=float, default=None,
                   help="floor / add-k value (default 0.1 / 1)")
    b.add_argument("--effective-order", action="store_true",
                   help="leave out orders without n-grams (always on with --sentence)")
    c = parsers["chrf"]
    c.add_argument("--char-order", type=int, default=6)
    c.add_argument("--word-order", type=int, default=0, help="2 for chrF++")
    c.add_argument("--beta", type=int, default=2)
    c.add_argument("--whitespace", action="store_true", help="keep spaces in character n-grams")
    c.add_argument("--eps-smoothing", action="store_true")
    r = parsers["rouge"]
    r.add_argument("--types", default="rouge1,rouge2,rougeL",
                   help="comma-separated: rouge1..rouge9, rougeL, rougeLsum")
    r.add_argument("--stemmer", action="store_true", help="Porter-stem tokens longer than 3")


def read_lines(path: str, flag: str) -> list[str]:
    """A file's lines (without their newline, or a CRLF's carriage return)."""
    from jaxllm.errors import DataError

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{flag} {path}: no such file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{flag} {path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if text.endswith("\n"):
        text = text[:-1]
    lines = [x[:-1] if x.endswith("\r") else x for x in text.split("\n")] if text else []
    if not lines:
        raise DataError(f"{flag} {path}: the file is empty")
    return lines


def run(args) -> int:
    from jaxllm.errors import DataError

    hyps = read_lines(args.hyp, "--hyp")
    refs = []
    for path in args.ref:
        lines = read_lines(path, "--ref")
        if len(lines) != len(hyps):
            raise DataError(f"--ref {path} has {len(lines)} lines but --hyp {args.hyp} has "
                            f"{len(hyps)}; give one reference line per hypothesis line")
        refs.append(lines)
    if args.metric == "bleu":
        return _bleu(args, hyps, refs)
    if args.metric == "chrf":
        return _chrf(args, hyps, refs)
    return _rouge(args, hyps, refs)


def _print_sentences(name: str, scores, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"name": name, "scores": [round(float(s), 6) for s in scores]}))
    else:
        for s in scores:
            print(f"{s:.4f}")


def _bleu(args, hyps, refs) -> int:
    from jaxllm.metrics import corpus_bleu, sentence_bleu_scores

    options = dict(tokenize=args.tokenize, lowercase=args.lowercase,
                   smooth_method=args.smooth, smooth_value=args.smooth_value)
    if args.sentence:
        _print_sentences("BLEU", sentence_bleu_scores(hyps, refs, **options), args.json)
        return 0
    score = corpus_bleu(hyps, refs, effective_order=args.effective_order, **options)
    if args.json:
        print(json.dumps({"name": "BLEU", "score": round(score.score, 6), "counts": score.counts,
                          "totals": score.totals, "precisions": score.precisions,
                          "bp": score.bp, "sys_len": score.sys_len, "ref_len": score.ref_len}))
    else:
        print(score)
    return 0


def _chrf(args, hyps, refs) -> int:
    from jaxllm.metrics import corpus_chrf, sentence_chrf_scores

    options = dict(char_order=args.char_order, word_order=args.word_order, beta=args.beta,
                   lowercase=args.lowercase, whitespace=args.whitespace,
                   eps_smoothing=args.eps_smoothing)
    if args.sentence:
        _print_sentences("chrF", sentence_chrf_scores(hyps, refs, **options), args.json)
        return 0
    score = corpus_chrf(hyps, refs, **options)
    print(json.dumps({"name": score.name, "score": round(score.score, 6)}) if args.json
          else score)
    return 0


def _rouge(args, hyps, refs) -> int:
    from jaxllm.metrics import rouge

    types = [t.strip() for t in args.types.split(",") if t.strip()]
    scores = rouge(hyps, refs, types, use_stemmer=args.stemmer)
    if args.sentence:
        if args.json:
            print(json.dumps({t: [round(float(f), 6) for f in s.fmeasure]
                              for t, s in scores.items()}))
        else:
            print("\t".join(types))
            for row in zip(*(s.fmeasure for s in scores.values())):
                print("\t".join(f"{f:.4f}" for f in row))
        return 0
    means = {t: s.mean() for t, s in scores.items()}
    if args.json:
        print(json.dumps(means))
    else:
        for t, m in means.items():
            print(f"{t}: P = {m['precision']:.4f} R = {m['recall']:.4f} F = {m['fmeasure']:.4f}")
    return 0
