"""Evaluate a trained run on its validation split: loss, perplexity, token accuracy.

  jaxllm eval --run DIR               every validation token once (exact)
  jaxllm eval --run DIR --batches 20  the run's fixed sampled batches (the training-time estimate)
"""

from __future__ import annotations

import argparse


def add_parser(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--run", required=True, help="run directory (from jaxllm train)")
    p.add_argument("--batches", type=int, help="sampled batches instead of the whole split")
    p.add_argument("--step", type=int, help="checkpoint step to load (default: the latest)")


def run(args) -> int:
    from jaxllm.data import build_data, eval_batches, sequential_batches
    from jaxllm.errors import DataError
    from jaxllm.train.objective import model_and_objective
    from jaxllm.train import evaluate, load_run, make_eval_step

    loaded = load_run(args.run, step=args.step)
    cfg = loaded.config
    dc, t = cfg.data, cfg.train
    data = build_data(dc.corpus, dc.tokenizer, dc.split, dc.val_fraction, dc.text_key,
                      loaded.tokenizer)
    batch = t.batch_size // cfg.optim.grad_accum
    if args.batches is not None:
        if args.batches < 1:
            raise DataError(f"--batches={args.batches}: must be at least 1")
        batches = eval_batches(data.validation, args.batches, batch, cfg.model.max_len,
                               t.seed + 1, dc.sampling, data.separator)
        what = f"{args.batches} sampled batches"
    else:
        batches = sequential_batches(data.validation, max(batch, 32), cfg.model.max_len,
                                     data.separator)
        what = "the whole validation split"
    loss_fn = model_and_objective(cfg, loaded.tokenizer.vocab_size)[2]
    eval_step = make_eval_step(loss_fn)
    m = evaluate(eval_step, loaded.params, batches)
    print(f"{loaded.run.path} step {loaded.step}, {what} ({m['tokens']:,.0f} tokens): "
          f"loss {m['loss']:.4f}, perplexity {m['perplexity']:.3f}, accuracy {m['accuracy']:.4f}")
    return 0
