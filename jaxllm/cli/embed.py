"""Sentence embeddings of texts with a pretrained encoder.

  jaxllm embed --model all-minilm-l6-v2 "A man is eating food." "A man eats."
  jaxllm embed --model all-minilm-l6-v2 --similarity "first text" "second text" "third"

Prints one vector per line (space-separated, L2-normalised), or with --similarity the matrix of
cosine similarities. Texts longer than the model's max_seq_length (256 tokens) are truncated.
"""

from __future__ import annotations

import argparse

from jaxllm.cli.progress import status


def add_parser(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("texts", nargs="+", metavar="TEXT")
    p.add_argument("--model", default="all-minilm-l6-v2", help="encoder name or directory")
    p.add_argument("--similarity", action="store_true", help="print cosine similarities")


def run(args) -> int:
    import numpy as np

    from jaxllm import pretrained
    from jaxllm.errors import DataError

    status("embed", f"loading {args.model}")
    m = pretrained.load(args.model)
    if m.config.kind != "encoder":
        raise DataError(f"--model {args.model} is a decoder; embed needs an encoder such as "
                        f"all-minilm-l6-v2")
    vectors = m.embed(args.texts)
    if args.similarity:
        sims = vectors @ vectors.T
        for row in sims:
            print(" ".join(f"{x:7.4f}" for x in row))
    else:
        np.set_printoptions(precision=6)
        for v in vectors:
            print(" ".join(f"{x:.6f}" for x in v))
    return 0
