"""The training loop: data -> model -> jitted steps -> metrics, evaluations and checkpoints.

    from jaxllm.config import get_preset
    from jaxllm.train import train, resume
    summary = train(get_preset("shakespeare-char"), "runs/demo")
    summary = resume("runs/demo")            # after a crash, a kill or Ctrl-C

The loop syncs with the device only at log, evaluation and save steps, so the host prepares the
next batch while the previous step runs. A resumed run restores parameters, optimizer state and
the batch iterator from the latest checkpoint and ends bitwise equal to an uninterrupted one.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxllm import config as config_lib
from jaxllm.data import BatchIterator, build_data, eval_batches
from jaxllm.errors import ConfigError
from jaxllm.objectives.causal_lm import finalize_metrics
from jaxllm.train.checkpoint import Checkpoints
from jaxllm.train.optimizer import learning_rate_schedule, make_optimizer
from jaxllm.train.run import RunDir, with_vocab
from jaxllm.train.objective import model_and_objective, model_vocab
from jaxllm.train.step import TrainState, make_eval_step, make_train_step


def train(cfg: config_lib.Config, out_dir: str | Path, *, progress: bool = True) -> dict:
    """Start a new run in out_dir (which must not hold one) and train it to cfg.train.steps."""
    return _run(config_lib.validate(cfg), RunDir(out_dir), resuming=False, progress=progress)


def resume(out_dir: str | Path, *, steps: int | None = None, progress: bool = True) -> dict:
    """Continue the run in out_dir from its latest checkpoint, to its configured number of steps
    (or to `steps`, which changes the learning-rate schedule's length)."""
    run = RunDir(out_dir)
    cfg = run.load_config()
    if steps is not None:
        cfg = config_lib.validate(replace(cfg, train=replace(cfg.train, steps=steps)))
    return _run(cfg, run, resuming=True, progress=progress)


def evaluate(eval_step, params, batches) -> dict:
    """Mean loss, perplexity and accuracy of params over a list of batches."""
    sums = None
    for batch in batches:
        out = eval_step(params, batch)
        sums = out if sums is None else jax.tree_util.tree_map(lambda a, b: a + b, sums, out)
    return finalize_metrics(jax.device_get(sums))


def _run(cfg: config_lib.Config, run: RunDir, *, resuming: bool, progress: bool) -> dict:
    dc, t = cfg.data, cfg.train
    micro_batch = t.batch_size // cfg.optim.grad_accum
    vision = cfg.model.kind in ("vit", "clip")
    if vision:  # images (and captions): same (seed, step) -> batch contract as the text batches
        cfg, tokenizer, train_iter, val_batches = _image_data(cfg, run, resuming)
    else:
        tokenizer = run.load_tokenizer() if resuming else None
        data = build_data(dc.corpus, dc.tokenizer, dc.split, dc.val_fraction, dc.text_key,
                          tokenizer)
        tokenizer = data.tokenizer
        cfg = with_vocab(cfg, model_vocab(cfg, tokenizer.vocab_size))
        if not resuming:
            run.create(cfg, tokenizer)
        train_iter = BatchIterator(data.train, t.batch_size, cfg.model.max_len, t.seed,
                                   dc.sampling, data.separator, "train")
        val_batches = eval_batches(data.validation, t.eval_batches, micro_batch,
                                   cfg.model.max_len, t.seed + 1, dc.sampling, data.separator,
                                   "validation")
    m = cfg.model

    model, init_params, loss_fn = model_and_objective(cfg, tokenizer.vocab_size if tokenizer
                                                      else 0)
    tx = make_optimizer(cfg.optim, t.steps)
    state = TrainState.create(init_params(m, jax.random.PRNGKey(t.seed))[0], tx)
    ckpts = Checkpoints(run.checkpoints, keep=t.keep)
    start = 0
    if resuming and ckpts.latest_step() is not None:
        start = ckpts.latest_step()
        if start > t.steps:
            raise ConfigError(f"the run is already at step {start}, past train.steps={t.steps}; "
                              f"pass a larger --steps")
        state, data_state = ckpts.restore(start, state)
        train_iter.restore(data_state)
    run.truncate_metrics(start)

    # Compile before the clock starts, so that tokens/s measures training alone.
    train_step = make_train_step(loss_fn, tx, grad_accum=cfg.optim.grad_accum, seed=t.seed,
                                 schedule=learning_rate_schedule(cfg.optim, t.steps))
    train_step = train_step.lower(state, train_iter.batch(train_iter.step)).compile()
    eval_step = make_eval_step(loss_fn)
    tokens_per_step = t.batch_size * (1 if vision else m.max_len)  # images or tokens per step
    unit = "images" if vision else "tokens"

    def log_eval(step: int) -> dict:
        val = evaluate(eval_step, state.params, val_batches)
        row = {"step": step, "val_loss": round(val["loss"], 5),
               "val_perplexity": round(val["perplexity"], 4),
               "val_accuracy": round(val["accuracy"], 5)}
        run.append_metrics(row)
        run.plot(accuracy=vision)
        return row

    bar = tqdm(total=t.steps, initial=start, disable=not progress, unit="step", file=sys.stderr,
               dynamic_ncols=True, desc=run.path.name)
    summary = {"run_dir": str(run.path), "start_step": start}
    if start == 0:
        summary.update(log_eval(0))
    pending, window_start, speeds = [], time.perf_counter(), []
    step = start
    try:
        for step in range(start, t.steps):
            state, metrics = train_step(state, next(train_iter))
            pending.append(metrics)
            done = step + 1
            if done % t.log_every == 0 or done == t.steps:
                fetched = jax.device_get(pending)
                elapsed = time.perf_counter() - window_start
                speeds.append(len(fetched) * tokens_per_step / elapsed)
                row = {"step": done,
                       "train_loss": round(float(np.mean([f["loss"] for f in fetched])), 5),
                       "train_accuracy": round(sum(float(f["correct"]) for f in fetched)
                                               / max(sum(float(f["tokens"]) for f in fetched), 1), 5),
                       "lr": float(fetched[-1]["lr"]),
                       "grad_norm": round(float(fetched[-1]["grad_norm"]), 4),
                       f"{unit}_per_s": round(speeds[-1], 1)}
                run.append_metrics(row)
                bar.set_postfix(loss=f"{row['train_loss']:.4f}", refresh=False,
                                **{"img_s" if vision else "tok_s": f"{speeds[-1]:,.0f}"})
                bar.update(len(fetched))
                pending = []
            if done % t.eval_every == 0 or done == t.steps:
                summary.update(log_eval(done))
                bar.write(f"step {done}: val_loss {summary['val_loss']:.4f} " + (
                    f"(accuracy {summary['val_accuracy']:.4f})" if vision else
                    f"(perplexity {summary['val_perplexity']:.3f})"))
            if done % t.save_every == 0 or done == t.steps:
                ckpts.save(done, state, train_iter.state())
            if pending == []:
                window_start = time.perf_counter()  # time after the sync, eval and save
    except KeyboardInterrupt:
        # Ctrl-C: keep the work done. If the interrupt landed inside a step, its input state was
        # donated (deleted) and the last checkpoint is what remains.
        if not any(x.is_deleted() for x in jax.tree_util.tree_leaves(state)):
            done = int(jax.device_get(state.step))
            if done > (ckpts.latest_step() or 0):
                ckpts.save(done, state, {**train_iter.state(), "step": done})
        bar.close()
        print(f"interrupted; the latest checkpoint is step {ckpts.latest_step()} in "
              f"{run.checkpoints}; continue with: jaxllm train --resume --out {run.path}",
              file=sys.stderr)
        raise
    finally:
        bar.close()
        ckpts.close()
    summary.update(step=t.steps, **{f"{unit}_per_s_median": round(float(np.median(speeds)), 1)
                                    if speeds else None})
    return summary


def _image_data(cfg: config_lib.Config, run: RunDir, resuming: bool):
    """(cfg, caption tokenizer or None, train batches, fixed validation batches) of a ViT/CLIP
    run; creates the run directory when starting."""
    from jaxllm.data.captions import caption_tokenizer
    from jaxllm.data.images import ImageBatches, fixed_batches, load_images
    from jaxllm.models.vit import check_images

    dc, t, m = cfg.data, cfg.train, cfg.model
    data = load_images(dc.corpus)
    check_images(m, (1, *data.image_shape))
    tokenizer = None
    if m.kind == "clip":
        tokenizer = run.load_tokenizer() if resuming else caption_tokenizer()
        cfg = with_vocab(cfg, tokenizer.vocab_size)
    if not resuming:
        run.create(cfg, tokenizer)
    text = dict(tokenizer=tokenizer, text_len=m.max_len)
    train_iter = ImageBatches(data.train, t.batch_size, t.seed, augment_shift=dc.augment_shift,
                              **text)
    val = fixed_batches(data.validation, t.eval_batches, t.batch_size // cfg.optim.grad_accum,
                        t.seed + 1, **text)
    return cfg, tokenizer, train_iter, val
