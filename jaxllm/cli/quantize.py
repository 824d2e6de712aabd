"""Quantize a trained run's (or a pretrained model's) weights into a new run directory that eval
and generate read.

  jaxllm quantize --run DIR --method int8 --out DIR8               (per output channel)
  jaxllm quantize --run DIR --method int4 --group 64 --out DIR4
  jaxllm quantize --run DIR --method nf4 --group 64 --out DIRnf4
  jaxllm quantize --run DIR --method ternary --out DIRt             (absmean, per layer matrix)
  jaxllm quantize --run DIR --method int8 --calib 8 --out DIRw8a8   (static W8A8)
  jaxllm eval --run DIR4
  jaxllm quantize --model smollm2-135m-instruct --method int4 --group 64 --out DIR
  jaxllm eval --run DIR --data shakespeare --max-tokens 16385     (windows of 512 tokens)

Every linear-layer kernel is quantized; norms stay float, and so does the token embedding
unless --embed is given (then it is quantized per row, with the same method and group size
along the model dimension). --calib N runs N training batches through the model to calibrate
static int8 activations (W8A8, int8 x int8 -> int32 matmuls); --act dynamic computes
activation steps per token instead.
"""

from __future__ import annotations

import argparse

from jaxllm.cli.progress import status


def add_parser(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run directory (from jaxllm train)")
    src.add_argument("--model", help="pretrained decoder name (smollm2-135m-instruct)")
    p.add_argument("--method", required=True, help="int8, int4, nf4 or ternary")
    p.add_argument("--group", help="inputs per scale: an integer, channel (default) or tensor "
                                   "(default for ternary)")
    p.add_argument("--asymmetric", action="store_true", help="min-max with a zero point (int8/4)")
    p.add_argument("--act", choices=("none", "dynamic", "static"),
                   help="activations: none (weight-only, default), dynamic or static int8")
    p.add_argument("--calib", type=int, help="calibration batches for static W8A8 (implies "
                                            "--act static)")
    p.add_argument("--embed", action="store_true", help="also quantize the token embedding "
                                                       "(per row)")
    p.add_argument("--out", required=True, help="new run directory for the quantized model")
    p.add_argument("--step", type=int, help="checkpoint step to load (default: the latest)")


def run(args) -> int:
    from jaxllm import transforms
    from jaxllm.errors import ConfigError
    from jaxllm.train import RunDir, load_run
    from jaxllm.train.run import pretrained_as_run, quantize_run

    if args.method not in transforms.METHODS:
        raise ConfigError(f"--method {args.method!r}: choose one of "
                          f"{', '.join(transforms.METHODS)}")
    act = args.act or ("static" if args.calib else "none")
    if args.calib is not None and args.calib < 1:
        raise ConfigError(f"--calib={args.calib}: must be at least 1")
    if act == "static" and not args.calib:
        raise ConfigError("--act static needs --calib N calibration batches")
    if args.calib and act != "static":
        raise ConfigError(f"--calib calibrates static activations; drop --act {act} or --calib")
    group = args.group or ("tensor" if args.method == "ternary" else "channel")
    spec = f"method={args.method},group={group},act={act}"
    if args.asymmetric:
        spec += ",symmetric=false"
    if args.embed:
        spec += ",embed=true"
    RunDir(args.out).check_new()  # before a model is loaded
    if args.model and (act == "static" or args.step is not None):
        raise ConfigError("--model quantizes a pretrained model's weights; --calib/--act static "
                          "and --step need a run (--run DIR)")
    if args.model:
        status("quantize", f"loading {args.model}")
    loaded = pretrained_as_run(args.model) if args.model else load_run(args.run, step=args.step)
    q = quantize_run(loaded, args.out, spec, calib_batches=args.calib or 0)
    before, after = transforms.tree_bytes(loaded.params), transforms.tree_bytes(q.params)
    print(f"{args.out}: {args.method} ({spec}), weights {before:,} -> {after:,} bytes "
          f"({after / before:.3f}x); evaluate with: jaxllm eval --run {args.out}")
    return 0
