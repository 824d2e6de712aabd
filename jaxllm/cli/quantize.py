"""Quantize a trained run's weights into a new run directory that eval and generate read.

  jaxllm quantize --run DIR --method int8 --out DIR8               (per output channel)
  jaxllm quantize --run DIR --method int4 --group 64 --out DIR4
  jaxllm quantize --run DIR --method nf4 --group 64 --out DIRnf4
  jaxllm quantize --run DIR --method ternary --out DIRt             (absmean, per layer matrix)
  jaxllm quantize --run DIR --method int8 --calib 8 --out DIRw8a8   (static W8A8)
  jaxllm eval --run DIR4

Every linear-layer kernel is quantized (embeddings and norms stay float). --calib N runs N
training batches through the model to calibrate static int8 activations (W8A8, int8 x int8 ->
int32 matmuls); --act dynamic computes activation steps per token instead.
"""

from __future__ import annotations

import argparse


def add_parser(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--run", required=True, help="run directory (from jaxllm train)")
    p.add_argument("--method", required=True, help="int8, int4, nf4 or ternary")
    p.add_argument("--group", help="inputs per scale: an integer, channel (default) or tensor "
                                   "(default for ternary)")
    p.add_argument("--asymmetric", action="store_true", help="min-max with a zero point (int8/4)")
    p.add_argument("--act", choices=("none", "dynamic", "static"),
                   help="activations: none (weight-only, default), dynamic or static int8")
    p.add_argument("--calib", type=int, help="calibration batches for static W8A8 (implies "
                                            "--act static)")
    p.add_argument("--out", required=True, help="new run directory for the quantized model")
    p.add_argument("--step", type=int, help="checkpoint step to load (default: the latest)")


def run(args) -> int:
    import dataclasses

    import jax

    from jaxllm import transforms
    from jaxllm.data import BatchIterator, build_data
    from jaxllm.errors import ConfigError
    from jaxllm.models.decoder import init_params
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
    out = RunDir(args.out)
    if out.exists():
        raise ConfigError(f"--out {args.out} already holds a run; choose another directory")
    loaded = load_run(args.run, step=args.step)
    cfg = loaded.config
    if cfg.model.weights or cfg.train.lora:
        raise ConfigError(f"{args.run} is already transformed (model.weights="
                          f"{cfg.model.weights!r}, train.lora={cfg.train.lora!r}); quantize a "
                          f"float run (merge LoRA first)")
    _, axes = init_params(cfg.model, jax.random.PRNGKey(0))
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
    ckpts.save(loaded.step, state, {"quantized_from": str(loaded.run.path)})
    ckpts.close()
    before, after = transforms.tree_bytes(loaded.params), transforms.tree_bytes(qparams)
    print(f"{args.out}: {args.method} ({stored_spec}), weights {before:,} -> {after:,} bytes "
          f"({after / before:.3f}x); evaluate with: jaxllm eval --run {args.out}")
    return 0
