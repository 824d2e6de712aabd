"""What a verb is doing while it works (loading a model, reading a corpus, training a
tokenizer, evaluating), shown only when stderr is a terminal: a pipe or a log file gets the
result lines alone, and an error stays one line."""

from __future__ import annotations

import sys


def on_terminal() -> bool:
    """Whether progress is shown: stderr is a terminal."""
    return sys.stderr.isatty()


def status(verb: str, message: str) -> None:
    """`jaxllm VERB: message...` on stderr, on a terminal only."""
    if on_terminal():
        print(f"jaxllm {verb}: {message}...", file=sys.stderr, flush=True)
