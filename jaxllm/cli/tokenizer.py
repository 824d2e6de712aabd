"""Train a tokenizer on a corpus, or encode text with one.

  jaxllm tokenizer train --kind bytebpe --vocab-size 4096 --data shakespeare --out tok.json
  jaxllm tokenizer encode --tokenizer tok.json "To be, or not to be"
  jaxllm tokenizer encode --tokenizer gpt2 --tokens "Hello world"

--kind: bytebpe (GPT-2 style), bpe (SentencePiece-style), wordpiece, unigram, word.
--data: a corpus name (jaxllm.data: shakespeare, pydoc, ...) or tfds:NAME; the tokenizer is
trained on its train split. --out is a Hugging Face tokenizer.json. --tokenizer also takes a
vocab.txt, a .gguf or a name: gpt2, all-minilm-l6-v2, smollm2-135m-instruct.
"""

from __future__ import annotations

import argparse
import json
import time

from jaxllm.cli.progress import status


def add_parser(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    t = sub.add_parser("train", help="train a tokenizer on a corpus's train split")
    t.add_argument("--kind", default="bytebpe",
                   choices=["bytebpe", "bpe", "wordpiece", "unigram", "word"])
    t.add_argument("--vocab-size", type=int, required=True)
    t.add_argument("--data", default="shakespeare", help="corpus name or tfds:NAME")
    t.add_argument("--split", default="position", choices=["position", "document"])
    t.add_argument("--val-fraction", type=float, default=0.1)
    t.add_argument("--out", required=True, help="where to write tokenizer.json (a new file)")
    e = sub.add_parser("encode", help="print the ids (or tokens) of a text")
    e.add_argument("--tokenizer", required=True, help="tokenizer.json, vocab.txt, .gguf, a run "
                   "directory or a name")
    e.add_argument("--tokens", action="store_true", help="print tokens instead of ids")
    e.add_argument("--special", action="store_true", help="add the model's special tokens")
    e.add_argument("text")


def run(args) -> int:
    from jaxllm.text import load_tokenizer

    if args.action == "encode":
        tok = load_tokenizer(args.tokenizer)
        ids = tok.encode(args.text, add_special_tokens=args.special) if args.special \
            else tok.encode(args.text)
        out = [tok.id_to_token(i) for i in ids] if args.tokens else ids
        print(json.dumps(out, ensure_ascii=False))
        return 0

    from jaxllm.data.tfds_builder import load_split_texts
    from jaxllm.files import check_new_file
    from jaxllm.text import train

    check_new_file(args.out)  # before the training, not after it
    status("tokenizer", f"reading {args.data}")
    texts, _ = load_split_texts(args.data, args.split, args.val_fraction, "text")
    status("tokenizer", f"training a {args.kind} tokenizer of {args.vocab_size} tokens on "
           f"{sum(map(len, texts)):,} characters")
    start = time.perf_counter()
    tok = train(texts, args.vocab_size, kind=args.kind)
    seconds = time.perf_counter() - start
    tok.save(args.out)
    n_chars = sum(map(len, texts))
    n_tokens = sum(len(tok.encode(t)) for t in texts)
    print(f"{args.kind} tokenizer of {tok.vocab_size} tokens trained on {args.data} "
          f"({n_chars:,} characters) in {seconds:.1f} s: {n_chars / max(n_tokens, 1):.2f} "
          f"characters per token; wrote {args.out}")
    return 0
