"""Training: optimizer pieces, gradient accumulation, the run directory, and exact resumption
(after deleted checkpoints, a half-written save, and a SIGKILL)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from reference import decoder_logits

from jaxllm.config import ModelConfig, OptimConfig, apply_overrides, get_preset
from jaxllm.data import build_data, eval_batches
from jaxllm.errors import CheckpointError, ConfigError
from jaxllm.models.decoder import Decoder, init_params
from jaxllm.objectives.causal_lm import causal_lm_loss
from jaxllm.train import (
    RunDir,
    TrainState,
    decay_mask,
    learning_rate_schedule,
    load_run,
    make_train_step,
    resume,
    train,
)

TINY = ["model.n_layers=2", "model.d_model=32", "model.n_heads=2", "model.max_len=32",
        "train.batch_size=4", "train.steps=12", "train.save_every=4", "train.eval_every=6",
        "train.log_every=2", "train.eval_batches=2", "optim.warmup_steps=3", "model.dropout=0.1"]


def tiny_config(*extra):
    return apply_overrides(get_preset("shakespeare-char"), TINY + list(extra))


def params_of(run_dir):
    return jax.device_get(load_run(run_dir).params)


def assert_trees_equal(a, b):
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves(b)):
        assert np.array_equal(x, y), f"{jax.tree_util.keystr(path)} differs"


# --- optimizer --------------------------------------------------------------------------------

def test_decay_mask_selects_kernels_only():
    params, _ = init_params(ModelConfig(vocab_size=11, max_len=8, n_layers=1, d_model=8,
                                        n_heads=2), jax.random.PRNGKey(0))
    mask = decay_mask(params)
    assert mask["blocks"]["mlp"]["up"]["kernel"] and mask["blocks"]["attn"]["query"]["kernel"]
    assert not mask["blocks"]["mlp"]["up"]["bias"] and not mask["blocks"]["attn_norm"]["scale"]
    assert not mask["embed"]["embedding"] and not mask["pos_embedding"]
    with_emb = decay_mask(params, decay_embeddings=True)
    assert with_emb["embed"]["embedding"] and with_emb["pos_embedding"]


def test_schedule_warms_up_then_decays_to_min_lr():
    sched = learning_rate_schedule(OptimConfig(lr=1e-3, warmup_steps=10, min_lr=1e-4), 100)
    np.testing.assert_allclose([sched(0), sched(5), sched(10), sched(100)],
                               [0.0, 5e-4, 1e-3, 1e-4], rtol=1e-5, atol=1e-9)
    assert sched(50) < sched(20)


@pytest.mark.parametrize("packed", [False, True])
def test_gradient_accumulation_equals_one_big_batch(packed):
    """Micro-batches weighted by their tokens give the update of the whole batch, also when the
    loss masks give the micro-batches different token counts."""
    cfg = ModelConfig(vocab_size=13, max_len=8, n_layers=1, d_model=16, n_heads=2)
    model = Decoder(cfg)
    params, _ = init_params(cfg, jax.random.PRNGKey(0))
    tx = optax.sgd(1.0)  # the update is the gradient itself (Adam would amplify rounding)
    rng = np.random.default_rng(0)
    batch = {"inputs": rng.integers(0, 13, (4, 8)), "targets": rng.integers(0, 13, (4, 8))}
    if packed:
        batch["loss_mask"] = (rng.random((4, 8)) > np.array([[0.1], [0.1], [0.7], [0.7]])
                              ).astype(np.float32)
    batch = jax.tree_util.tree_map(jnp.asarray, batch)
    out = {}
    for accum in (1, 2, 4):
        step = make_train_step(causal_lm_loss(model), tx, grad_accum=accum, donate=False)
        out[accum] = step(TrainState.create(params, tx), batch)
    for accum in (2, 4):
        np.testing.assert_allclose(out[accum][1]["loss"], out[1][1]["loss"], rtol=1e-5)
        for a, b in zip(jax.tree_util.tree_leaves(out[accum][0].params),
                        jax.tree_util.tree_leaves(out[1][0].params)):
            np.testing.assert_allclose(a, b, atol=2e-7, rtol=1e-5)


# --- a run and its directory -------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny run trained once to the end: the reference for the resume tests."""
    out = tmp_path_factory.mktemp("runs") / "full"
    summary = train(tiny_config(), out, progress=False)
    return out, summary


def test_run_directory_contents(finished_run):
    out, summary = finished_run
    run = RunDir(out)
    cfg = run.load_config()
    assert cfg.model.vocab_size == run.load_tokenizer().vocab_size
    assert sorted(int(p.name) for p in run.checkpoints.iterdir()) == [4, 8, 12]
    rows = run.read_metrics()
    assert [r["step"] for r in rows if "train_loss" in r] == [2, 4, 6, 8, 10, 12]
    assert [r["step"] for r in rows if "val_loss" in r] == [0, 6, 12]
    assert all(r["tokens_per_s"] > 0 for r in rows if "train_loss" in r)
    assert rows[-1]["val_loss"] == summary["val_loss"] < rows[0]["val_loss"]
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_validation_loss_is_the_token_mean_over_all_batches(finished_run):
    """The val_loss of the last step is the cross-entropy of the final parameters averaged over
    every token of all train.eval_batches validation batches, by the numpy reference forward."""
    out, summary = finished_run
    loaded = load_run(out)
    cfg, dc, t = loaded.config, loaded.config.data, loaded.config.train
    data = build_data(dc.corpus, dc.tokenizer, dc.split, dc.val_fraction, dc.text_key,
                      loaded.tokenizer)
    batches = eval_batches(data.validation, t.eval_batches, t.batch_size, cfg.model.max_len,
                           t.seed + 1, dc.sampling, data.separator)
    params = jax.device_get(loaded.params)
    losses = []  # per batch: (cross-entropy of each target token, its weight)
    for b in batches:
        logits = decoder_logits(cfg.model, params, b["inputs"])  # (B, T, V) float64
        top = logits.max(-1, keepdims=True)
        log_z = np.log(np.exp(logits - top).sum(-1)) + top[..., 0]
        nll = log_z - np.take_along_axis(logits, b["targets"][..., None], -1)[..., 0]
        losses.append((nll, b.get("loss_mask", np.ones_like(nll))))
    mean = sum((n * w).sum() for n, w in losses) / sum(w.sum() for _, w in losses)
    first = (losses[0][0] * losses[0][1]).sum() / losses[0][1].sum()
    assert len(batches) == 2 and abs(first - mean) > 1e-3  # batches that tell them apart
    assert summary["val_loss"] == pytest.approx(mean, abs=2e-5)  # logged to 5 decimals


def test_resume_after_losing_checkpoints_is_bitwise_exact(finished_run, tmp_path):
    out, _ = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    for step in ("8", "12"):  # as if the run had died just after saving step 4
        shutil.rmtree(copy / "checkpoints" / step)
    summary = resume(copy, progress=False)
    assert summary["start_step"] == 4
    assert_trees_equal(params_of(copy), params_of(out))
    # metrics logged after step 4 by the "dead" run were dropped, then logged again once
    steps = [r["step"] for r in RunDir(copy).read_metrics() if "train_loss" in r]
    assert steps == [2, 4, 6, 8, 10, 12]


def test_half_written_checkpoint_is_never_the_latest(finished_run, tmp_path):
    """A kill during a save leaves orbax's temporary directory, never a final one."""
    out, _ = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "checkpoints" / "12")
    partial = copy / "checkpoints" / "12.orbax-checkpoint-tmp-1234567890"
    (partial / "state").mkdir(parents=True)
    (partial / "state" / "junk").write_bytes(b"\0" * 100)
    summary = resume(copy, progress=False)
    assert summary["start_step"] == 8
    assert not partial.exists()
    assert_trees_equal(params_of(copy), params_of(out))


def test_damaged_checkpoint_is_a_clear_error(finished_run, tmp_path):
    out, _ = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    for f in (copy / "checkpoints" / "12" / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot be restored"):
        load_run(copy)


def test_existing_run_is_never_overwritten(finished_run):
    out, _ = finished_run
    before = (out / "config.json").read_bytes()
    with pytest.raises(CheckpointError, match="already holds a run"):
        train(tiny_config(), out, progress=False)
    assert (out / "config.json").read_bytes() == before


def test_damaged_or_missing_run_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        resume(tmp_path / "nope", progress=False)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        resume(tmp_path / "bad", progress=False)
    (tmp_path / "bad" / "config.json").write_text(json.dumps({"model": {"n_layers": -1}}))
    with pytest.raises(CheckpointError, match="model.n_layers"):
        resume(tmp_path / "bad", progress=False)


def test_resume_past_the_end_needs_more_steps(finished_run):
    out, _ = finished_run
    with pytest.raises(ConfigError, match="already at step 12"):
        resume(out, steps=8, progress=False)


@pytest.mark.slow
def test_sigkill_then_resume_is_bitwise_exact(finished_run, tmp_path):
    """A run killed with SIGKILL (saving every step, so the kill often lands inside a save) and
    resumed ends with the parameters of the uninterrupted run."""
    out, _ = finished_run
    killed = tmp_path / "killed"
    args = [sys.executable, "-m", "jaxllm.cli.main", "train", "--no-progress", "--out",
            str(killed), "--save-every", "1"] + [a for o in TINY if not o.startswith(
                "train.save_every") for a in ("--set", o)]
    proc = subprocess.Popen(args, env=dict(os.environ), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    metrics, ckpts = killed / "metrics.jsonl", killed / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        rows = RunDir(killed).read_metrics() if metrics.exists() else []
        # saves are asynchronous: a logged step may be ahead of the last finished checkpoint
        saved = ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir())
        if saved and any(r.get("step", 0) >= 2 and "train_loss" in r for r in rows):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    latest = max(int(p.name) for p in (killed / "checkpoints").iterdir() if p.name.isdigit())
    assert latest < 12
    code = subprocess.run([sys.executable, "-m", "jaxllm.cli.main", "train", "--resume",
                           "--no-progress", "--out", str(killed)], capture_output=True, text=True,
                          check=False)
    assert code.returncode == 0, code.stderr
    assert_trees_equal(params_of(killed), params_of(out))


def test_encoder_decoder_tokens_per_step_count_source_and_target_positions(tmp_path):
    """tokens/s of an encoder-decoder run counts every position a step runs over: the
    source rows (model.max_len) and the target rows (data.target_len), not the source alone."""
    from jaxllm.train.inputs import pair_inputs

    cfg = apply_overrides(get_preset("dates-seq2seq"), ["data.target_len=16"])
    inputs = pair_inputs(cfg, RunDir(tmp_path), resuming=False)
    batch = inputs.train.batch(0)
    assert batch["source"].shape == (64, 64) and batch["target"].shape == (64, 16)
    assert inputs.unit == "tokens" and inputs.per_step == 64 * (64 + 16)
