"""What the encoder-decoder experiments share: a preset trained with overrides, or a run read
back, through the library's train and load_run.

    p = argparse.ArgumentParser()
    add_run_args(p, "runs/seq2seq-dates")
    args = p.parse_args()
    loaded, seconds = preset_run("dates-seq2seq", args)  # seconds None when --run names a run
"""

from __future__ import annotations

import argparse
import time

from jaxllm import config as config_lib


def add_run_args(p: argparse.ArgumentParser, out: str) -> None:
    p.add_argument("--steps", type=int, help="train.steps (default: the preset's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override of the preset, as jaxllm train --set")
    p.add_argument("--out", default=out, help="where the preset's run is trained")
    p.add_argument("--run", help="evaluate this trained run (jaxllm train --out DIR) instead of "
                                 "training one")


def preset_run(preset: str, args: argparse.Namespace):
    """(train.run.load_run's result, training wall seconds or None): the run in args.run, else
    the preset with args.set and args.steps trained into args.out (a preset that fine-tunes a
    pretrained model takes its architecture, as `jaxllm train --preset` does)."""
    from jaxllm.train import load_run, train
    from jaxllm.train.params import pretrained_name, with_pretrained_model

    if args.run:
        return load_run(args.run), None
    overrides = args.set + ([f"train.steps={args.steps}"] if args.steps else [])
    cfg = config_lib.apply_overrides(config_lib.get_preset(preset), overrides)
    if pretrained_name(cfg.train.init_from):  # the base's architecture, as `jaxllm train` does
        cfg = config_lib.apply_overrides(with_pretrained_model(cfg, cfg.train.init_from),
                                         overrides)
    start = time.perf_counter()
    train(cfg, args.out, progress=False)
    seconds = time.perf_counter() - start
    return load_run(args.out), seconds
