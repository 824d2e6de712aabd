"""Generate text from a trained run.

  jaxllm generate --run DIR --prompt "ROMEO:" --max-new-tokens 300 --temperature 0.8 --top-k 40
  jaxllm generate --run DIR --prompt "To be" --temperature 0        (greedy)

Samples are printed one after another, separated by a line of dashes.
"""

from __future__ import annotations

import argparse


def add_parser(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--run", required=True, help="run directory (from jaxllm train)")
    p.add_argument("--prompt", required=True, help="text to continue")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=1.0, help="0 is greedy (default 1.0)")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest (0: off)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="stop a sample at this text, which must be one token (repeatable)")
    p.add_argument("--step", type=int, help="checkpoint step to load (default: the latest)")
    p.add_argument("--no-cache", action="store_true", help="recompute the context every token")


def run(args) -> int:
    from jaxllm.errors import DataError
    from jaxllm.infer import generate
    from jaxllm.train import load_run

    if args.num_samples < 1:
        raise DataError(f"--num-samples={args.num_samples}: must be at least 1")
    loaded = load_run(args.run, step=args.step)
    tok = loaded.tokenizer
    prompt = tok.encode(args.prompt)
    stops = []
    for text in args.stop:
        ids = tok.encode(text)
        if len(ids) != 1:
            raise DataError(f"--stop {text!r} is {len(ids)} tokens for this tokenizer; it must be "
                            f"exactly one")
        stops += ids
    outs = generate(loaded.model, loaded.params, [prompt] * args.num_samples,
                    max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                    top_k=args.top_k, top_p=args.top_p, stop_tokens=stops, seed=args.seed,
                    use_cache=not args.no_cache)
    for i, out in enumerate(outs):
        if i:
            print("-" * 40)
        print(args.prompt + tok.decode(out))
    return 0
