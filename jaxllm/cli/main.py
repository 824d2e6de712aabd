"""The `jaxllm` command: one subcommand (verb) per module in this package.

Every mistake of the user's (a preset, an override, a file, a prompt, a flag argparse cannot
read) is a JaxllmError or a UsageError: the command prints it on one line and exits with status
2, without a traceback. So does an OSError (a full disk, a path that cannot be written). train,
eval and generate take `--distributed` to run on several hosts (cluster.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from jaxllm.cli import ask as ask_cmd
from jaxllm.cli import cluster
from jaxllm.cli import data as data_cmd
from jaxllm.cli import embed as embed_cmd
from jaxllm.cli import eval as eval_cmd
from jaxllm.cli import export as export_cmd
from jaxllm.cli import generate as generate_cmd
from jaxllm.cli import index as index_cmd
from jaxllm.cli import presets as presets_cmd
from jaxllm.cli import quantize as quantize_cmd
from jaxllm.cli import score as score_cmd
from jaxllm.cli import search as search_cmd
from jaxllm.cli import tokenizer as tokenizer_cmd
from jaxllm.cli import train as train_cmd
from jaxllm.cli import vectors as vectors_cmd
from jaxllm.cli import zero_shot as zero_shot_cmd
from jaxllm import __version__
from jaxllm.errors import JaxllmError
from jaxllm.platform import configure_cpu

VERBS = {"train": train_cmd, "generate": generate_cmd, "eval": eval_cmd,
         "tokenizer": tokenizer_cmd, "export": export_cmd, "embed": embed_cmd,
         "quantize": quantize_cmd, "zero-shot": zero_shot_cmd, "presets": presets_cmd,
         "score": score_cmd, "index": index_cmd, "search": search_cmd,
         "vectors": vectors_cmd, "data": data_cmd, "ask": ask_cmd}


class UsageError(Exception):
    """A command line argparse cannot read (an unknown flag, `--steps abc`, a bad choice)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line like every other error (no usage block)."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="jaxllm", description="Train, sample and evaluate language models with JAX/Flax.")
    parser.add_argument("--version", action="version", version=f"jaxllm {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name, module in VERBS.items():
        module.add_parser(sub.add_parser(name, help=module.__doc__.strip().splitlines()[0],
                                         description=module.__doc__))
    return parser


def main(argv: list[str] | None = None) -> int:
    configure_cpu()  # before JAX starts: the verbs import it lazily
    try:
        args, unknown = build_parser().parse_known_args(argv)
        if unknown:  # said by the verb's parser, whose --help lists the flags
            raise UsageError(f"jaxllm {args.verb}: error: unrecognized arguments: "
                             f"{' '.join(unknown)} (see jaxllm {args.verb} --help)")
    except UsageError as e:
        print(e, file=sys.stderr)
        return 2
    label = f"jaxllm {args.verb}"
    try:
        label = cluster.join(args, label)  # --distributed: before anything touches a device
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning(label)
            code = VERBS[args.verb].run(args) or 0
    except JaxllmError as e:
        print(f"{label}: error: {e}", file=sys.stderr)
        code = 2
    except BrokenPipeError:  # `jaxllm ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    except OSError as e:  # the machine's, not jaxllm's: a full disk, a lost mount, permissions
        print(f"{label}: error: {e}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt as e:
        if not getattr(e, "reported", False):  # (the training loop says where it stopped)
            print(f"{label}: interrupted", file=sys.stderr)
        code = 130
    cluster.leave(args, code)
    return code


def _one_line_warning(label: str):
    """warnings.showwarning that prints `jaxllm VERB: warning: message` (no file and line)."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{label}: warning: {message}", file=file or sys.stderr)
    return show


if __name__ == "__main__":
    sys.exit(main())
