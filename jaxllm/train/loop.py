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
import warnings
from dataclasses import replace
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxllm import config as config_lib
from jaxllm.data import BatchIterator, build_data, eval_batches
from jaxllm.errors import ConfigError
from jaxllm.platform import host_memory_bytes
from jaxllm.objectives.causal_lm import finalize_metrics
from jaxllm.train.checkpoint import Checkpoints
from jaxllm.optim import TrainState, learning_rate_schedule, make_optimizer
from jaxllm.train.objective import model_and_objective, model_vocab
from jaxllm.train.run import (RunDir, build_params, build_params_and_axes, load_run,
                              pretrained_name, trainable_fn, with_vocab)
from jaxllm.train.step import make_eval_step, make_train_step


def train(cfg: config_lib.Config, out_dir: str | Path, *, progress: bool = True) -> dict:
    """Start a new run in out_dir (which must not hold one) and train it to cfg.train.steps."""
    from jaxllm.parallel import plan as plan_lib  # (jaxllm.parallel imports jaxllm.train.step)

    plan_lib.check_config(config_lib.validate(cfg))  # mesh and pipeline shapes, before any file
    _warn(cfg)
    run = RunDir(out_dir)
    run.check_new()  # before the data and tokenizer are built
    return _run(cfg, run, resuming=False, progress=progress)


# What a resume may change in a run's config: its length and its device layout (checkpoints
# restore onto any mesh). Everything else would make it a different run.
RESUMABLE_CHANGES = ("train.steps", "parallel.")


def resume(out_dir: str | Path, *, steps: int | None = None, config: config_lib.Config | None = None,
           progress: bool = True) -> dict:
    """Continue the run in out_dir from its latest checkpoint, to its configured number of steps
    or to `steps` (which changes the learning-rate schedule's length).

    config, if given, is the config the caller would start this run with (the same command
    again): it must equal the run's config.json except for train.steps and the parallel section,
    which it changes (a model.vocab_size of 0 means the run's). A changed target or layout is
    written to config.json, so a later resume continues the same way. A run already at its
    last step trains nothing and says so (summary["finished"])."""
    from jaxllm.parallel import plan as plan_lib

    run = RunDir(out_dir)
    saved = run.load_config()
    cfg = saved
    if config is not None:
        if config.model.vocab_size == 0:  # "from the tokenizer": the run's
            config = replace(config, model=replace(config.model, vocab_size=saved.model.vocab_size))
        if steps is not None:
            config = replace(config, train=replace(config.train, steps=steps))
        differ = {k: v for k, v in config_lib.differences(config, saved).items()
                  if not k.startswith(RESUMABLE_CHANGES)}
        if differ:
            raise ConfigError(
                f"{run.path} was started with a different config: " + ", ".join(
                    f"{k}={a!r} (the run has {b!r})" for k, (a, b) in differ.items())
                + "; a resume may change only --steps and the device layout (--mesh ...)")
        cfg = replace(saved, parallel=config.parallel, train=replace(
            saved.train, steps=config.train.steps))
    if steps is not None:
        cfg = replace(cfg, train=replace(cfg.train, steps=steps))
    plan_lib.check_config(config_lib.validate(cfg))
    if cfg != saved:
        _warn(cfg)
    latest = None
    if run.checkpoints.is_dir():  # a run stopped before its first save has none
        ckpts = Checkpoints(run.checkpoints, read_only=True)
        latest = ckpts.latest_step()
        ckpts.close()
    if latest is not None and latest > cfg.train.steps:
        raise ConfigError(f"{run.path} is already at step {latest}, past train.steps="
                          f"{cfg.train.steps}; pass a larger --steps")
    if cfg != saved:
        run.write_config(cfg)  # the new target and layout, for this and any later resume
    if latest == cfg.train.steps:
        last = {k: v for r in run.read_metrics() for k, v in r.items() if k.startswith("val_")}
        return {"run_dir": str(run.path), "start_step": latest, "step": latest,
                "finished": True, **last}
    return _run(cfg, run, resuming=True, progress=progress)


def _warn(cfg: config_lib.Config) -> None:
    """Warn about settings that are valid but likely a mistake (config.sanity_warnings)."""
    for message in config_lib.sanity_warnings(cfg, host_memory_bytes()):
        warnings.warn(message, stacklevel=3)


def evaluate(eval_step, params, batches) -> dict:
    """Mean loss, perplexity and accuracy of params over a list of batches."""
    sums = None
    for batch in batches:
        out = eval_step(params, batch)
        sums = out if sums is None else jax.tree_util.tree_map(lambda a, b: a + b, sums, out)
    return finalize_metrics(jax.device_get(sums))


def _run(cfg: config_lib.Config, run: RunDir, *, resuming: bool, progress: bool) -> dict:
    from jaxllm.parallel import plan as plan_lib
    from jaxllm.parallel.pipeline import decoder_parts

    t = cfg.train
    vision = cfg.model.kind in ("vit", "clip")
    _check_transforms(cfg)
    # images (and captions) or text: the same (seed, step) -> batch contract
    cfg, tokenizer, train_iter, val_batches = (_image_data if vision else _text_data)(
        cfg, run, resuming)
    if t.lora or cfg.model.weights:  # rank, targets, group sizes: checked before any file
        jax.eval_shape(lambda: build_params(cfg, jax.random.PRNGKey(0)))
    if not resuming:
        run.create(cfg, tokenizer)
    m = cfg.model

    model, loss_fn = model_and_objective(cfg, tokenizer.vocab_size if tokenizer
                                                      else 0)
    tx = make_optimizer(cfg.optim, t.steps)
    trainable = trainable_fn(cfg)
    plan = None
    base = _base_params(cfg) if t.init_from and not resuming else None
    if plan_lib.uses_mesh(cfg.parallel):  # created already sharded over the mesh
        # the base model's weights (fine-tuning) enter the sharding jit as an argument
        init_args = () if base is None else (jax.device_get(base),)
        plan = plan_lib.plan_training(cfg, lambda rng, *b: build_params_and_axes(cfg, rng, *b),
                                      tx, jax.random.PRNGKey(t.seed), *init_args,
                                      parts=decoder_parts(model, t.z_loss)
                                      if m.kind == "decoder" else None, trainable=trainable)
        state = plan.state
    else:
        state = TrainState.create(build_params(cfg, jax.random.PRNGKey(t.seed), base), tx,
                                  trainable, loss_scaling=m.dtype == "float16")
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
                                 schedule=learning_rate_schedule(cfg.optim, t.steps),
                                 trainable=trainable, **(plan.step_kwargs if plan else {}))
    compiled = train_step.lower(state, train_iter.batch(train_iter.step)).compile()
    if plan is None:
        train_step = compiled
    else:  # host batches are placed split over the batch axes first
        train_step = lambda state, batch: compiled(state, plan_lib.place_batch(plan, batch))  # noqa: E731
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
                if "skipped_steps" in fetched[-1]:  # float16 loss scaling
                    row.update(skipped_steps=int(fetched[-1]["skipped_steps"]),
                               loss_scale=float(fetched[-1]["loss_scale"]))
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


def _check_transforms(cfg: config_lib.Config) -> None:
    """LoRA / quantized-weights settings that fail before anything is written."""
    from jaxllm.transforms import parse_spec

    t = cfg.train
    if t.lora:
        parse_spec(t.lora, "lora")
    if cfg.model.weights:
        parse_spec(cfg.model.weights, "quantize")
    if cfg.model.weights and not t.lora:
        raise ConfigError(f"model.weights={cfg.model.weights!r}: a quantized model trains only "
                          f"its LoRA factors (QLoRA); set train.lora too")
    if t.init_from and pretrained_name(t.init_from):
        from jaxllm import pretrained
        context = pretrained.load(t.init_from).config.max_len
        if cfg.model.max_len > context:
            raise ConfigError(f"model.max_len={cfg.model.max_len} exceeds {t.init_from}'s "
                              f"context of {context}; set it lower")


def _text_data(cfg: config_lib.Config, run: RunDir, resuming: bool):
    """(cfg with its vocabulary set, tokenizer, train batches, fixed validation batches)."""
    from jaxllm.parallel import plan as plan_lib

    dc, t = cfg.data, cfg.train
    tokenizer = run.load_tokenizer() if resuming else None
    if t.init_from and not resuming:  # fine-tuning keeps the base run's (model's) tokenizer
        if pretrained_name(t.init_from):
            from jaxllm import pretrained
            tokenizer = pretrained.load(t.init_from).tokenizer
        else:
            tokenizer = RunDir(t.init_from).load_tokenizer()
    data = build_data(dc.corpus, dc.tokenizer, dc.split, dc.val_fraction, dc.text_key, tokenizer,
                      vocab_size=dc.vocab_size)
    vocab = model_vocab(cfg, data.tokenizer.vocab_size)
    if not resuming:  # a mesh that splits the vocabulary may need a few padding rows
        cfg = with_vocab(cfg, plan_lib.padded_vocab(cfg, vocab))
    cfg = with_vocab(cfg, vocab)
    m = cfg.model
    micro_batch = t.batch_size // cfg.optim.grad_accum
    train_iter = BatchIterator(data.train, t.batch_size, m.max_len, t.seed, dc.sampling,
                               data.separator, "train")
    val_batches = eval_batches(data.validation, t.eval_batches, micro_batch, m.max_len,
                               t.seed + 1, dc.sampling, data.separator, "validation")
    return cfg, data.tokenizer, train_iter, val_batches


def _base_params(cfg: config_lib.Config):
    """The parameters of the run (or pretrained model) train.init_from names, checked to fit
    this run's model."""
    name = cfg.train.init_from
    if pretrained_name(name):
        from jaxllm import pretrained
        # a copy: the train step donates its state, and these arrays are the cached model's
        base = jax.tree_util.tree_map(lambda x: x.copy(), pretrained.load(name).params)
    else:
        base = load_run(name).params
    like = jax.eval_shape(lambda: build_params(replace(cfg, train=replace(
        cfg.train, lora=""), model=replace(cfg.model, weights="")), jax.random.PRNGKey(0)))
    if jax.tree_util.tree_structure(like) != jax.tree_util.tree_structure(base) or any(
            a.shape != b.shape for a, b in zip(jax.tree_util.tree_leaves(like),
                                               jax.tree_util.tree_leaves(base))):
        fix = (f"keep the model's architecture (drop --set model.* sizes; in Python, build the "
               f"config with jaxllm.train.with_pretrained_model(cfg, {name!r}))"
               if pretrained_name(name) else "use the same model.* settings")
        raise ConfigError(f"train.init_from={name!r}: its parameters do not fit this run's "
                          f"model config; {fix}")
    return base


def _image_data(cfg: config_lib.Config, run: RunDir, resuming: bool):
    """(cfg, caption tokenizer or None, train batches, fixed validation batches) of a ViT/CLIP
    run."""
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
    text = dict(tokenizer=tokenizer, text_len=m.max_len)
    train_iter = ImageBatches(data.train, t.batch_size, t.seed, augment_shift=dc.augment_shift,
                              **text)
    val = fixed_batches(data.validation, t.eval_batches, t.batch_size // cfg.optim.grad_accum,
                        t.seed + 1, **text)
    return cfg, tokenizer, train_iter, val
