"""The `jaxllm` command: one subcommand (verb) per module in this package.

Every mistake of the user's (a preset, an override, a file, a prompt) is a JaxllmError: the
command prints it on one line and exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys

from jaxllm.cli import ask as ask_cmd
from jaxllm.cli import embed as embed_cmd
from jaxllm.cli import eval as eval_cmd
from jaxllm.cli import export as export_cmd
from jaxllm.cli import generate as generate_cmd
from jaxllm.cli import index as index_cmd
from jaxllm.cli import quantize as quantize_cmd
from jaxllm.cli import score as score_cmd
from jaxllm.cli import search as search_cmd
from jaxllm.cli import tokenizer as tokenizer_cmd
from jaxllm.cli import train as train_cmd
from jaxllm.cli import zero_shot as zero_shot_cmd
from jaxllm.errors import JaxllmError
from jaxllm.platform import configure_cpu

VERBS = {"train": train_cmd, "generate": generate_cmd, "eval": eval_cmd,
         "tokenizer": tokenizer_cmd, "export": export_cmd, "embed": embed_cmd,
         "quantize": quantize_cmd, "zero-shot": zero_shot_cmd, "score": score_cmd,
         "index": index_cmd, "search": search_cmd, "ask": ask_cmd}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxllm", description="Train, sample and evaluate language models with JAX/Flax.")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name, module in VERBS.items():
        module.add_parser(sub.add_parser(name, help=module.__doc__.strip().splitlines()[0],
                                         description=module.__doc__))
    return parser


def main(argv: list[str] | None = None) -> int:
    configure_cpu()  # before JAX starts: the verbs import it lazily
    args = build_parser().parse_args(argv)
    try:
        return VERBS[args.verb].run(args) or 0
    except JaxllmError as e:
        print(f"jaxllm {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
