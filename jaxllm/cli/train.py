"""Train a model (decoder, encoder, ViT, CLIP) from a preset, or resume a run.

  jaxllm train --preset shakespeare-char
  jaxllm train --preset shakespeare-char --set model.n_layers=6 --set optim.lr=3e-4 --steps 5000
  jaxllm train --preset shakespeare-char --data tfds:lm1b   (its own train/validation splits)
  jaxllm train --resume --out runs/shakespeare-char-20261130-101500
  jaxllm train --mesh data=2,fsdp=2,tensor=2 --zero 3 --remat dots --precision bf16
  jaxllm train --mesh stage=4,data=2 --pipeline 1f1b --microbatches 8
  jaxllm train --init-from runs/base --data pydoc --lora rank=8,alpha=16,targets=attn
      (the base run's architecture and tokenizer; a char base knows only its corpus's
      characters: train it with --set data.tokenizer=byte to fine-tune on other text)
  jaxllm train --init-from smollm2-135m-instruct --data shakespeare --lora targets=all \
      --set model.max_len=256 --set train.batch_size=4   (a pretrained model: its architecture
      and tokenizer; model.max_len, the training sequence length, stays the preset's unless set)
  jaxllm train --preset mnist-vit       (a ViT classifier; --preset mnist-clip: CLIP)
  jaxllm train --preset sft-smollm2 --data csv:data/sft.csv   (SmolLM2 chat fine-tuning, LoRA)
  jaxllm train --objective reward --init-from runs/sft --data jsonl:data/rankings.jsonl
  jaxllm train --objective dpo --init-from runs/sft --data jsonl:data/prefs.jsonl
  jaxllm train --objective grpo --init-from runs/sft --data jsonl:data/tasks.jsonl
      (--init-from a run directory: that run's architecture and tokenizer, its LoRA merged)

Without --out, the run goes to runs/<preset>-<date>-<time>. --resume continues the run in --out
from its latest checkpoint with its own config.json: the command that started the run, with
--resume added, continues it; only --steps (recorded) and the device layout (--mesh, --zero,
--pipeline, --microbatches) may differ from config.json. --resume --step N goes back to the
checkpoint of step N (the later ones and their metrics rows move to DIR/after-step-N/).
"""

from __future__ import annotations

import argparse
import time

from jaxllm.cli import cluster

DEFAULT_PRESET = "shakespeare-char"
PRECISIONS = {"fp32": "float32", "bf16": "bfloat16", "f16": "float16"}
# flag -> config key, for the flags that are plain overrides
FLAG_KEYS = {"mesh": "parallel.mesh", "zero": "parallel.zero", "pipeline": "parallel.pipeline",
             "microbatches": "parallel.microbatches", "remat": "model.remat"}


def add_parser(p: argparse.ArgumentParser) -> None:
    from jaxllm.config import PRESETS

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--preset", help=f"one of: {', '.join(sorted(PRESETS))} "
                                    f"(default {DEFAULT_PRESET})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. model.n_layers=6 (repeatable)")
    p.add_argument("--data", help="data.corpus: a registered corpus (shakespeare, pydoc), "
                                  "tfds:NAME for a TFDS text dataset prepared in array_record, "
                                  "or a file: csv:FILE (system,question,answer chats), "
                                  "jsonl:FILE (chats, pairs, rankings or prompts)")
    p.add_argument("--objective", help="train.objective: lm (default; SFT on chat files), "
                                       "reward, dpo, ppo or grpo")
    p.add_argument("--steps", type=int, help="train.steps: optimizer steps in total")
    p.add_argument("--lora", metavar="SPEC", help="train.lora: train LoRA factors only, e.g. "
                                                  "rank=8,alpha=16,targets=attn (or all, or a regex)")
    p.add_argument("--init-from", metavar="DIR|NAME", help="train.init_from: start from this "
                   "run's parameters and tokenizer (fine-tuning), or a pretrained model's "
                   "(smollm2-135m-instruct)")
    p.add_argument("--save-every", type=int, help="train.save_every: steps between checkpoints")
    p.add_argument("--mesh", help="parallel.mesh: device mesh, e.g. data=2,fsdp=2,tensor=2 "
                                  "(axes data, stage, fsdp, sequence, tensor; -1 fills the devices)")
    p.add_argument("--zero", type=int, help="parallel.zero: ZeRO stage 0-3 along the data axis")
    p.add_argument("--pipeline", help="parallel.pipeline: none, gpipe or 1f1b (over stage)")
    p.add_argument("--microbatches", type=int, help="parallel.microbatches: per pipeline step")
    p.add_argument("--remat", help="model.remat: none, full, dots, dots_no_batch, "
                                   "save_attention_out or offload")
    p.add_argument("--precision", choices=sorted(PRECISIONS),
                   help="compute dtype: fp32, bf16 (float32 master weights) or f16 (with "
                        "dynamic loss scaling that skips non-finite steps)")
    p.add_argument("--out", help="run directory (default runs/<preset>-<date>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--step", type=int, help="with --resume: continue from this checkpoint "
                   "(default the latest); later checkpoints move to DIR/after-step-STEP/")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    cluster.add_arguments(p)


def run(args) -> int:
    from jaxllm.errors import ConfigError

    if args.step is not None and not args.resume:
        raise ConfigError(f"--step {args.step} picks the checkpoint a resume starts from; add "
                          f"--resume (the run's length is --steps)")
    if args.resume:
        if not args.out:
            raise ConfigError("--resume needs --out DIR, the run directory to continue")
        from jaxllm.train import RunDir, resume
        config = None
        if args.preset is not None or _overrides(args, with_steps=False):
            # the same command again: its config must match the run's (resume checks)
            base = RunDir(args.out).load_config() if args.preset is None else None
            config = _config(args, base)
        summary = resume(args.out, steps=args.steps, config=config, step=args.step,
                         progress=not args.no_progress)
        if "set_aside" in summary:
            print(f"the checkpoints after step {args.step} and their metrics rows are in "
                  f"{summary['set_aside']}")
        if summary.get("finished"):
            print(f"{args.out} is already finished at step {summary['step']} (train.steps); "
                  f"pass a larger --steps to train it further")
            return 0
    else:
        cfg = _config(args)
        out = args.out if args.out is not None else (
            f"runs/{args.preset or DEFAULT_PRESET}-{time.strftime('%Y%m%d-%H%M%S')}")
        from jaxllm.train import train
        summary = train(cfg, out, progress=not args.no_progress)
    unit = next((u for u in ("images", "sequences") if f"{u}_per_s_median" in summary), None)
    if unit:  # ViT / CLIP, an encoder's task head: classifiers
        speed = summary[f"{unit}_per_s_median"]
        digits = 1 if unit == "sequences" else 0  # a few sequences/s, thousands of images/s
        print(f"step {summary['step']}: validation loss {summary['val_loss']:.4f}, accuracy "
              f"{summary['val_accuracy']:.4f}" + (f", {speed:,.{digits}f} {unit}/s" if speed
                                                  else ""))
        print(f"run directory: {summary['run_dir']}  (evaluate: jaxllm eval --run "
              f"{summary['run_dir']})")
        return 0
    if "tokens_per_s_median" not in summary:
        vals = ", ".join(f"{k[4:]} {v:.4f}" for k, v in summary.items() if k.startswith("val_"))
        print(f"step {summary['step']}: validation {vals}")  # reward / DPO / PPO / GRPO
        print(f"run directory: {summary['run_dir']}  (sample: jaxllm generate --run "
              f"{summary['run_dir']} --chat MESSAGE)")
        return 0
    speed = summary.get("tokens_per_s_median")
    print(f"step {summary['step']}: validation loss {summary['val_loss']:.4f}, perplexity "
          f"{summary['val_perplexity']:.3f}" + (f", {speed:,.0f} tokens/s" if speed else ""))
    print(f"run directory: {summary['run_dir']}  (sample: jaxllm generate --run "
          f"{summary['run_dir']} --prompt TEXT)")
    return 0


def _overrides(args, with_steps: bool = True) -> list[str]:
    """The "section.key=value" overrides the flags ask for, --set ones first."""
    overrides = list(args.overrides)
    flags = {"data.corpus": args.data, "train.objective": args.objective,
             "train.steps": args.steps if with_steps else None,
             "train.lora": args.lora, "train.init_from": args.init_from,
             "train.save_every": args.save_every,
             "model.dtype": PRECISIONS[args.precision] if args.precision else None}
    flags.update({key: getattr(args, flag) for flag, key in FLAG_KEYS.items()})
    return overrides + [f"{key}={value}" for key, value in flags.items() if value is not None]


def _config(args, base=None):
    """The validated config the flags ask for, on top of base (default: the --preset's)."""
    from dataclasses import replace

    from jaxllm import config as config_lib
    from jaxllm.train.params import pretrained_name, with_pretrained_model
    from jaxllm.train.run import with_base_run

    overrides = _overrides(args)
    # The flags first, so that the base model sees this run's fields (--set model.head=...,
    # model.max_len=...), then again on top of it: the architecture and tokenizer are the
    # base's (a preset may name a pretrained model, as sft-smollm2 does), what --set names wins
    cfg = config_lib.apply_overrides(base or config_lib.get_preset(args.preset or DEFAULT_PRESET),
                                     overrides)
    init_from = args.init_from or cfg.train.init_from
    if init_from and pretrained_name(init_from):
        # cfg holds the --set values: model.rope_scaling / rope_factor extend the pretrained
        # context (model.rope_original_len then is the pretrained one)
        cfg = with_pretrained_model(cfg, init_from)
    elif args.init_from:
        cfg = with_base_run(cfg, args.init_from)
    # the scalar head (the reward model's score, PPO's critic) is this run's objective's choice,
    # not the base's; an explicit --set model.value_head=... still wins
    objective = args.objective or cfg.train.objective
    cfg = replace(cfg, model=replace(cfg.model, value_head=objective in ("reward", "ppo")))
    return config_lib.validate(config_lib.apply_overrides(cfg, overrides))
