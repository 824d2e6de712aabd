"""The training loop: data -> model -> jitted steps -> metrics, evaluations and checkpoints.

    from jaxllm.config import get_preset
    from jaxllm.train import train, resume
    summary = train(get_preset("shakespeare-char"), "runs/demo")
    summary = resume("runs/demo")            # after a crash, a kill or Ctrl-C

The loop syncs with the device only at log, evaluation and save steps, so the host prepares the
next batch while the previous step runs. A resumed run restores parameters, optimizer state and
the batch iterator from the latest checkpoint and ends bitwise equal to an uninterrupted one.

On several processes (jaxllm.parallel.distributed) every process runs this same loop: each loads
only the rows of each batch its devices hold, all of them evaluate and save their shards of each
checkpoint, and process 0 alone writes the run's files and shows the progress bar.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
import warnings
from dataclasses import replace
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxllm import config as config_lib
from jaxllm.errors import ConfigError
from jaxllm.platform import host_memory_bytes
from jaxllm.objectives.causal_lm import finalize_metrics
from jaxllm.optim import TrainState, learning_rate_schedule, make_optimizer
from jaxllm.parallel import distributed
from jaxllm.parallel import plan as plan_lib
from jaxllm.parallel.pipeline import decoder_parts
from jaxllm.train.checkpoint import Checkpoints
from jaxllm.train.inputs import Inputs, run_inputs
from jaxllm.train.objective import model_and_objective
from jaxllm.train.params import build_params, build_params_and_axes, check_transforms, trainable_fn
from jaxllm.train.run import RunDir, init_from_params
from jaxllm.train.step import make_eval_step, make_train_step


def train(cfg: config_lib.Config, out_dir: str | Path, *, progress: bool = True) -> dict:
    """Start a new run in out_dir (which must not hold one) and train it to cfg.train.steps."""
    plan_lib.check_config(config_lib.validate(cfg))  # mesh and pipeline shapes, before any file
    run = RunDir(out_dir)
    run.check_new()  # before the data and tokenizer are built
    return _run(cfg, run, resuming=False, progress=progress)


# What a resume may change in a run's config: its length and its device layout (checkpoints
# restore onto any mesh). Everything else would make it a different run.
RESUMABLE_CHANGES = ("train.steps", "parallel.")


def resume(out_dir: str | Path, *, steps: int | None = None, config: config_lib.Config | None = None,
           step: int | None = None, progress: bool = True) -> dict:
    """Continue the run in out_dir from its latest checkpoint (or from the checkpoint of `step`),
    to its configured number of steps or to `steps` (which changes the learning-rate schedule's
    length).

    step: go back to an earlier checkpoint; the later checkpoints and their metrics rows are
    moved into DIR/after-step-<step>/ (summary["set_aside"]), never deleted.

    config, if given, is the config the caller would start this run with (the same command
    again): it must equal the run's config.json except for train.steps and the parallel section,
    which it changes (a model.vocab_size of 0 means the run's). A changed target or layout is
    written to config.json, so a later resume continues the same way. A run already at its
    last step trains nothing and says so (summary["finished"])."""
    run = RunDir(out_dir)
    saved = run.load_config()
    cfg = saved
    if config is not None:
        if config.model.vocab_size == 0:  # "from the tokenizer": the run's
            config = replace(config, model=replace(config.model, vocab_size=saved.model.vocab_size))
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
    saved_steps = []
    if run.checkpoints.is_dir():  # a run stopped before its first save has none
        ckpts = Checkpoints(run.checkpoints, read_only=True)
        saved_steps = ckpts.steps()
        ckpts.close()
    if step is not None and step not in saved_steps:
        raise ConfigError(f"--step {step}: {run.path} has no checkpoint at step {step}; it has "
                          f"{saved_steps or 'none'}")
    latest = step if step is not None else (saved_steps[-1] if saved_steps else None)
    if latest is not None and latest > cfg.train.steps:
        now = "at" if step is not None else "already at"
        raise ConfigError(f"{run.path} is {now} step {latest}, past train.steps="
                          f"{cfg.train.steps}; pass a larger --steps")
    if cfg != saved and run.writer:
        run.write_config(cfg)  # the new target and layout, for this and any later resume
    later = [s for s in saved_steps if latest is not None and s > latest]
    aside = {}
    if later and run.writer:
        aside = {"set_aside": str(run.set_aside_after(latest, later))}
    distributed.barrier("jaxllm-resume")  # process 0 has moved aside what this resume replaces
    if latest == cfg.train.steps:
        last = {k: v for r in run.read_metrics() for k, v in r.items() if k.startswith("val_")}
        return {"run_dir": str(run.path), "start_step": latest, "step": latest,
                "finished": True, **last, **aside}
    return {**_run(cfg, run, resuming=True, progress=progress), **aside}


def _warn(cfg: config_lib.Config) -> None:
    """Warn about settings that are valid but likely a mistake (config.sanity_warnings)."""
    for message in config_lib.sanity_warnings(cfg, host_memory_bytes()):
        warnings.warn(message, stacklevel=2)


def evaluate(eval_step, params, batches, progress: bool = False, place=None) -> dict:
    """Mean loss, perplexity and accuracy of params over a list of batches (each put on the
    mesh by `place` if given; progress: a bar on stderr)."""
    sums = None
    for batch in tqdm(batches, disable=not progress, desc="evaluating", unit="batch",
                      file=sys.stderr, leave=False):
        out = eval_step(params, batch if place is None else place(batch))
        sums = out if sums is None else jax.tree_util.tree_map(lambda a, b: a + b, sums, out)
    return finalize_metrics(distributed.fetch(sums))


def evaluate_run(loaded) -> dict:
    """A trained run's validation metrics as its training logged them (jaxllm eval of chat and
    post-training runs): SFT's held-out answer loss, reward-model and DPO pair accuracy, RL's
    greedy reward on held-out prompts. loaded: train.run.load_run's result."""
    inputs = run_inputs(loaded.config, loaded.run, resuming=True)
    model, loss_fn = model_and_objective(inputs.cfg, inputs.tokenizer.vocab_size)
    if inputs.start is not None:
        inputs.start(model, loaded.params, True)
    if inputs.evaluate is not None:
        return inputs.evaluate(loaded.params)
    out = evaluate(make_eval_step(loss_fn), loaded.params, inputs.validation)
    if loaded.config.train.objective != "lm":  # pairs and rankings have no perplexity
        out.pop("perplexity")
    return out


def _run(cfg: config_lib.Config, run: RunDir, *, resuming: bool, progress: bool) -> dict:
    try:
        return _set_up_and_loop(cfg, run, resuming=resuming, progress=progress)
    except KeyboardInterrupt as e:
        if not getattr(e, "reported", False):  # Ctrl-C before the first step
            print("interrupted before the first step; " + (
                f"continue with: jaxllm train --resume --out {run.path}" if run.exists()
                else "nothing was written"), file=sys.stderr)
            e.reported = True
        raise


def _set_up_and_loop(cfg: config_lib.Config, run: RunDir, *, resuming: bool,
                     progress: bool) -> dict:
    check_transforms(cfg)
    inputs = run_inputs(cfg, run, resuming)
    cfg = inputs.cfg
    if cfg.train.lora or cfg.model.weights:  # rank, targets, group sizes: before any file
        jax.eval_shape(lambda: build_params(cfg, jax.random.PRNGKey(0)))
    # a fine-tuning base that does not fit is refused before any file too
    base = init_from_params(cfg) if cfg.train.init_from and not resuming else None
    if not resuming:
        run.create(cfg, inputs.tokenizer, inputs.classes)
    _warn(cfg)  # once every check has passed: a warning is never followed by an error line
    model, loss_fn = model_and_objective(
        cfg, inputs.tokenizer.vocab_size if inputs.tokenizer else 0)
    tx = make_optimizer(cfg.optim, cfg.train.steps)
    state, step_kwargs, plan = _initial_state(cfg, model, tx, base)
    if inputs.start is not None:  # a reference model's log-probabilities, from the base
        inputs.start(model, state.params, resuming)
    place_train = place_eval = None
    if plan is not None:
        if inputs.rollout is None:
            # on several processes, each loads only the rows its devices hold
            inputs.train.rows = plan_lib.process_rows(plan.layout, cfg.train.batch_size)
            place_train = functools.partial(plan_lib.place_batch, plan, rows=inputs.train.rows,
                                            batch_size=cfg.train.batch_size)
        else:  # PPO / GRPO: a rollout assembles the step's whole batch
            place_train = functools.partial(plan_lib.place_batch, plan)
        if jax.process_count() > 1:  # one process passes numpy, as it always has
            place_eval = functools.partial(plan_lib.place_batch, plan)
    # asynchronous: the loop waits only for the copy to host memory (RESULTS.md, multi-host)
    ckpts = Checkpoints(run.checkpoints, keep=cfg.train.keep, async_save=True)
    start = 0
    if resuming and ckpts.latest_step() is not None:
        start = ckpts.latest_step()  # resume() refused one past train.steps
        state, data_state = ckpts.restore(start, state)
        inputs.train.restore(data_state)
    run.truncate_metrics(start)
    # Compile before the clock starts, so that tokens/s measures training alone.
    train_step = make_train_step(loss_fn, tx, grad_accum=cfg.optim.grad_accum,
                                 seed=cfg.train.seed, trainable=trainable_fn(cfg),
                                 schedule=learning_rate_schedule(cfg.optim, cfg.train.steps),
                                 **step_kwargs)
    place = place_train or (lambda b: b)
    example = (inputs.rollout.example() if inputs.rollout is not None
               else inputs.train.batch(inputs.train.step, inputs.train.rows))
    compiled = _interruptible(lambda: train_step.lower(state, place(example)).compile())
    step_fn = lambda state, batch: compiled(state, place(batch))  # noqa: E731
    eval_step = make_eval_step(loss_fn)
    eval_fn = lambda params, batches: evaluate(eval_step, params, batches,  # noqa: E731
                                                place=place_eval)
    try:
        return _loop(cfg, run, inputs, state, step_fn, eval_fn, ckpts, start, progress)
    finally:
        ckpts.close()


def _interruptible(fn):
    """fn() in a helper thread, waited for in short slices: XLA's compile does not look at
    signals, so Ctrl-C would wait for it to finish; this way it interrupts at once (the daemon
    thread is left to finish unseen)."""
    box = {}

    def work():
        try:
            box["out"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller as it is
            box["error"] = e
    worker = threading.Thread(target=work, daemon=True, name="jaxllm-compile")
    worker.start()
    while worker.is_alive():
        worker.join(0.1)
    if "error" in box:
        raise box["error"]
    return box["out"]


def _initial_state(cfg: config_lib.Config, model, tx, base=None):
    """(TrainState, make_train_step's mesh arguments, the mesh Plan or None): on one device, or
    created already sharded over the mesh (never whole on one device). base: the fine-tuning
    run's parameters (init_from_params), or None."""
    t = cfg.train
    trainable = trainable_fn(cfg)
    if not plan_lib.uses_mesh(cfg.parallel):
        state = TrainState.create(build_params(cfg, jax.random.PRNGKey(t.seed), base), tx,
                                  trainable, loss_scaling=cfg.model.dtype == "float16")
        return state, {}, None
    # a fine-tuning base enters the sharding jit as an argument
    init_args = () if base is None else (jax.device_get(base),)
    plan = plan_lib.plan_training(
        cfg, lambda rng, *b: build_params_and_axes(cfg, rng, *b), tx,
        jax.random.PRNGKey(t.seed), *init_args, trainable=trainable,
        parts=decoder_parts(model, t.z_loss) if cfg.model.kind == "decoder" else None)
    return plan.state, plan.step_kwargs, plan


SPEED_NAMES = {"images": "img_s", "sequences": "seq_s"}  # the progress bar's speed, per unit


def _loop(cfg: config_lib.Config, run: RunDir, inputs: Inputs, state, train_step, eval_fn,
          ckpts: Checkpoints, start: int, progress: bool) -> dict:
    """Steps start..train.steps: log every log_every, evaluate every eval_every, save every
    save_every (and at the end); Ctrl-C saves the last finished step."""
    t = cfg.train
    classify = inputs.unit in ("images", "sequences")  # accuracy is what to watch

    def log_eval(step: int) -> dict:
        val = (inputs.evaluate(state.params) if inputs.evaluate is not None
               else eval_fn(state.params, inputs.validation))
        if cfg.train.objective != "lm" or cfg.model.head:  # no perplexity over pairs, labels
            val.pop("perplexity", None)
        row = {"step": step, **{f"val_{k}": round(v, 4 if k == "perplexity" else 5)
                                for k, v in val.items() if k != "tokens"}}
        run.append_metrics(row)
        run.plot(accuracy=classify)
        return row

    bar = tqdm(total=t.steps, initial=start, disable=not (progress and run.writer), unit="step",
               file=sys.stderr,
               dynamic_ncols=True, desc=run.path.name)
    summary = {"run_dir": str(run.path), "start_step": start}
    if start == 0:
        summary.update(log_eval(0))
    pending, window_start, speeds = [], time.perf_counter(), []
    completed = start  # steps whose metrics are in hand (logged or pending)
    try:
        for step in range(start, t.steps):
            batch = next(inputs.train)
            if inputs.rollout is not None:  # PPO / GRPO: sampled from the current policy
                batch = inputs.rollout(state.params, batch, step)
            state, metrics = train_step(state, batch)
            pending.append(metrics)
            done = completed = step + 1
            if done % t.log_every == 0 or done == t.steps:
                fetched, pending = distributed.fetch(pending), []
                speeds.append(len(fetched) * inputs.per_step
                              / (time.perf_counter() - window_start))
                row = _train_row(done, fetched, speeds[-1], inputs.unit)
                run.append_metrics(row)
                bar.set_postfix(loss=f"{row['train_loss']:.4f}", refresh=False,
                                **{SPEED_NAMES.get(inputs.unit, "tok_s"): f"{speeds[-1]:,.0f}"})
                bar.update(len(fetched))
            if done % t.eval_every == 0 or done == t.steps:
                summary.update(log_eval(done))
                if run.writer:
                    bar.write(f"step {done}: val_loss {summary['val_loss']:.4f} " + (
                        f"(perplexity {summary['val_perplexity']:.3f})" if "val_perplexity"
                        in summary and not classify else
                        f"(accuracy {summary['val_accuracy']:.4f})"))
            if done % t.save_every == 0 or done == t.steps:
                ckpts.save(done, state, inputs.train.state())
            if pending == []:
                window_start = time.perf_counter()  # time after the sync, eval and save
    except KeyboardInterrupt as e:
        # Ctrl-C: keep the work done: the steps not logged yet get their row, and a checkpoint.
        # If the interrupt landed inside a step, its input state was donated (deleted) and the
        # last checkpoint is what remains (a resume drops the rows after it).
        if pending:
            fetched = distributed.fetch(pending)
            run.append_metrics(_train_row(completed, fetched, len(fetched) * inputs.per_step
                                          / (time.perf_counter() - window_start), inputs.unit))
        if not any(x.is_deleted() for x in jax.tree_util.tree_leaves(state)):
            done = int(distributed.fetch(state.step))
            if done > (ckpts.latest_step() or 0):
                ckpts.save(done, state, {**inputs.train.state(), "step": done})
        bar.close()
        print(f"interrupted; the latest checkpoint is step {ckpts.latest_step()} in "
              f"{run.checkpoints}; continue with: jaxllm train --resume --out {run.path}",
              file=sys.stderr)
        e.reported = True
        raise
    finally:
        bar.close()
    summary.update(step=t.steps, **{f"{inputs.unit}_per_s_median": round(
        float(np.median(speeds)), 1) if speeds else None})
    return summary


def _train_row(step: int, fetched: list[dict], speed: float, unit: str) -> dict:
    """The metrics.jsonl row of the steps since the last log (their device metrics fetched)."""
    row = {"step": step,
           "train_loss": round(float(np.mean([f["loss"] for f in fetched])), 5),
           "train_accuracy": round(sum(float(f["correct"]) for f in fetched)
                                   / max(sum(float(f["tokens"]) for f in fetched), 1), 5),
           "lr": float(fetched[-1]["lr"]),
           "grad_norm": round(float(fetched[-1]["grad_norm"]), 4),
           f"{unit}_per_s": round(speed, 1)}
    tokens = max(sum(float(f["tokens"]) for f in fetched), 1.0)
    for key in fetched[-1]:  # an objective's own means (DPO rewards, RL reward and KL)
        if key.endswith("_total"):
            row[f"train_{key[:-6]}"] = round(sum(float(f[key]) for f in fetched) / tokens, 5)
    if "skipped_steps" in fetched[-1]:  # float16 loss scaling
        row.update(skipped_steps=int(fetched[-1]["skipped_steps"]),
                   loss_scale=float(fetched[-1]["loss_scale"]))
    return row
