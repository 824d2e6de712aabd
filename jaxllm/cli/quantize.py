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
    import dataclasses

    import jax

    from jaxllm import transforms
    from jaxllm.data import BatchIterator, build_data
    from jaxllm.errors import ConfigError
    from jaxllm.models.decoder import init_params
    from jaxllm.models.layers import abstract_init
    from jaxllm.train import Checkpoints, RunDir, TrainState, load_run

    if args.method not in transforms.METHODS:
        raise ConfigError(f"--method {args.method!r}: choose one of "
                          f"{', '.join(transforms.METHODS)}")
    act = args.act or ("static" if args.calib else "none")
    if args.calib is not None and args.calib < 1:
        raise ConfigError(f"--calib={args.calib}: must be at least 1")
    if act == "static" and not args.calib:
        raise ConfigError("--act static needs --calib N calibration batches")
    group = args.group or ("tensor" if args.method == "ternary" else "channel")
    spec = f"method={args.method},group={group},act={'dynamic' if act == 'static' else act}"
    if args.asymmetric:
        spec += ",symmetric=false"
    if args.embed:
        spec += ",embed=true"
    out = RunDir(args.out)
    if out.exists():
        raise ConfigError(f"--out {args.out} already holds a run; choose another directory")
    if args.model and (act == "static" or args.step is not None):
        raise ConfigError("--model quantizes a pretrained model's weights; --calib/--act static "
                          "and --step need a run (--run DIR)")
    loaded = _pretrained_as_run(args.model) if args.model else load_run(args.run, step=args.step)
    cfg = loaded.config
    if cfg.model.weights or cfg.train.lora:
        raise ConfigError(f"{args.run} is already transformed (model.weights="
                          f"{cfg.model.weights!r}, train.lora={cfg.train.lora!r}); quantize a "
                          f"float run (merge LoRA first)")
    # the axis names of the model's parameters (traced only: no random arrays are made)
    axes = abstract_init(lambda r: init_params(cfg.model, r), jax.random.PRNGKey(0))[1]
    qparams = transforms.apply_weights_spec(loaded.params, spec, axes)
    if act == "static":
        dc, t = cfg.data, cfg.train
        data = build_data(dc.corpus, dc.tokenizer, dc.split, dc.val_fraction, dc.text_key,
                          loaded.tokenizer)
        it = BatchIterator(data.train, t.batch_size, cfg.model.max_len, t.seed + 7, dc.sampling,
                           data.separator, "calibration")
        ranges = transforms.calibrate(loaded.model, qparams, [next(it) for _ in range(args.calib)])
        qparams = transforms.apply_calibration(qparams, ranges)
    # The stored structure must be rebuildable from the config: static steps are data in the
    # QArrays, so record act=static by the spec and keep the arrays in the checkpoint.
    stored_spec = spec.replace("act=dynamic", "act=static") if act == "static" else spec
    new_cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, weights=stored_spec))
    out.create(new_cfg, loaded.tokenizer)
    ckpts = Checkpoints(out.checkpoints, keep=1)
    state = TrainState(step=jax.numpy.asarray(loaded.step, jax.numpy.int32), params=qparams,
                       opt_state={})
    ckpts.save(loaded.step, state, {"quantized_from": str(args.model or loaded.run.path)})
    ckpts.close()
    before, after = transforms.tree_bytes(loaded.params), transforms.tree_bytes(qparams)
    print(f"{args.out}: {args.method} ({stored_spec}), weights {before:,} -> {after:,} bytes "
          f"({after / before:.3f}x); evaluate with: jaxllm eval --run {args.out}")
    return 0


def _pretrained_as_run(name: str):
    """A pretrained decoder as a LoadedRun at step 0, with a run config (train.init_from = name,
    the model's architecture and full context, a rolled layer loop as jaxllm.pretrained uses)
    so that eval, generate and train read the quantized directory like any run."""
    import dataclasses

    from jaxllm import config as config_lib, pretrained
    from jaxllm.train import LoadedRun, RunDir
    from jaxllm.train.params import with_pretrained_model

    lm = pretrained.load(name)
    cfg = with_pretrained_model(config_lib.get_preset("shakespeare-char"), name)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(
        cfg.model, max_len=lm.config.max_len, scan_unroll=1))
    return LoadedRun(run=RunDir(name), config=config_lib.validate(cfg), tokenizer=lm.tokenizer,
                     model=lm.model, params=lm.params, step=0)
