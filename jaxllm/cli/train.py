"""Train a model (decoder, encoder, ViT, CLIP) from a preset, or resume a run.

  jaxllm train --preset shakespeare-char
  jaxllm train --preset shakespeare-char --set model.n_layers=6 --set optim.lr=3e-4 --steps 5000
  jaxllm train --preset shakespeare-char --data tfds:lm1b   (its own train/validation splits)
  jaxllm train --resume --out runs/shakespeare-char-20261130-101500
  jaxllm train --preset mnist-vit       (a ViT classifier; --preset mnist-clip: CLIP)

Without --out, the run goes to runs/<preset>-<date>-<time>. --resume continues the run in --out
from its latest checkpoint with its own config.json (only --steps may change it).
"""

from __future__ import annotations

import argparse
import time


def add_parser(p: argparse.ArgumentParser) -> None:
    from jaxllm.config import PRESETS

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--preset", default="shakespeare-char",
                   help=f"one of: {', '.join(sorted(PRESETS))} (default shakespeare-char)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. model.n_layers=6 (repeatable)")
    p.add_argument("--data", help="data.corpus: a registered corpus (shakespeare, pydoc) or "
                                  "tfds:NAME for a TFDS text dataset prepared in array_record")
    p.add_argument("--steps", type=int, help="train.steps: optimizer steps in total")
    p.add_argument("--save-every", type=int, help="train.save_every: steps between checkpoints")
    p.add_argument("--out", help="run directory (default runs/<preset>-<date>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from jaxllm import config as config_lib
    from jaxllm.errors import ConfigError

    if args.resume:
        if not args.out:
            raise ConfigError("--resume needs --out DIR, the run directory to continue")
        if args.overrides or args.save_every is not None or args.data is not None:
            raise ConfigError("--resume continues a run with its own config.json; --set, --data "
                              "and --save-every cannot change it (only --steps can)")
        from jaxllm.train import resume
        summary = resume(args.out, steps=args.steps, progress=not args.no_progress)
    else:
        cfg = config_lib.get_preset(args.preset)
        overrides = list(args.overrides)
        if args.data is not None:
            overrides.append(f"data.corpus={args.data}")
        if args.steps is not None:
            overrides.append(f"train.steps={args.steps}")
        if args.save_every is not None:
            overrides.append(f"train.save_every={args.save_every}")
        cfg = config_lib.validate(config_lib.apply_overrides(cfg, overrides))
        out = args.out or f"runs/{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
        from jaxllm.train import train
        summary = train(cfg, out, progress=not args.no_progress)
    if "images_per_s_median" in summary:  # ViT / CLIP
        speed = summary["images_per_s_median"]
        print(f"step {summary['step']}: validation loss {summary['val_loss']:.4f}, accuracy "
              f"{summary['val_accuracy']:.4f}" + (f", {speed:,.0f} images/s" if speed else ""))
        print(f"run directory: {summary['run_dir']}  (evaluate: jaxllm eval --run "
              f"{summary['run_dir']})")
        return 0
    speed = summary.get("tokens_per_s_median")
    print(f"step {summary['step']}: validation loss {summary['val_loss']:.4f}, perplexity "
          f"{summary['val_perplexity']:.3f}" + (f", {speed:,.0f} tokens/s" if speed else ""))
    print(f"run directory: {summary['run_dir']}  (sample: jaxllm generate --run "
          f"{summary['run_dir']} --prompt TEXT)")
    return 0
