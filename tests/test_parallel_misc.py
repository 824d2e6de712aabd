"""Mesh specs, rule errors, checkpoints across meshes, float16 loss scaling and the CLI flags."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxllm.cli.main import main
from jaxllm.config import ModelConfig, OptimConfig
from jaxllm.errors import ConfigError
from jaxllm.models.decoder import Decoder, init_params
from jaxllm.objectives.causal_lm import causal_lm_loss
from jaxllm.parallel.mesh import AXES, make_mesh, parse_mesh_spec
from jaxllm.parallel.pipeline import bubble_fraction, check_pipeline
from jaxllm.parallel.layout import Layout, parse_rules
from jaxllm.parallel.sharded import shard_training
from jaxllm.train.checkpoint import Checkpoints
from jaxllm.optim import TrainState, initial_loss_scale, make_optimizer
from jaxllm.train.step import make_train_step

from helpers import ADAMW, LOSS_ATOL, MESH_CFG, error_of, mesh_batches, mesh_init



def test_mesh_spec_fills_and_orders_axes():
    assert parse_mesh_spec("data=2,tensor=-1", 8) == {"data": 2, "stage": 1, "fsdp": 1,
                                                       "sequence": 1, "tensor": 4}
    mesh = make_mesh("tensor=2,fsdp=2,data=2")
    assert mesh.axis_names == AXES and dict(mesh.shape) == {"data": 2, "stage": 1, "fsdp": 2,
                                                             "sequence": 1, "tensor": 2}
    assert dict(make_mesh("").shape)["data"] == 8


@pytest.mark.parametrize("spec, message", [
    ("data=3", "multiply to 3 but there are 8 devices"),
    ("data=2,tensor=2", "multiply to 4 but there are 8 devices"),
    ("model=8", "AXIS one of data, stage, fsdp, sequence, tensor"),
    ("data=-1,tensor=-1", "only one axis may be -1"),
    ("data=3,tensor=-1", "not divisible"),
    ("data=two", "is not an integer"),
    ("data=2,data=4", "given twice"),
])
def test_bad_mesh_specs(spec, message):
    with pytest.raises(ConfigError, match=message):
        make_mesh(spec)


def test_indivisible_parameter_names_parameter_dimension_and_axis():
    layout = Layout.build(make_mesh("tensor=8"))  # 4 heads cannot split 8 ways
    with pytest.raises(ConfigError, match=r"parameter blocks/attn/\w+/\w+: dimension \d "
                                          r"\(\w*heads, size 4\) is not divisible by mesh "
                                          r"axes tensor \(size 8\)"):
        shard_training(layout, mesh_init, ADAMW, jax.random.PRNGKey(0))


def test_rule_overrides_and_errors():
    assert parse_rules("embed=fsdp+data,vocab=") == {"embed": ("fsdp", "data"), "vocab": ()}
    layout = Layout.build(make_mesh("fsdp=8"), {"embed": ()})  # FSDP switched off
    assert layout.spec(P("layers", "embed", "heads", "kv"), (4, 32, 4, 8)) == P(None, None,
                                                                                 None, None)
    with pytest.raises(ConfigError, match="LOGICAL=AXIS"):
        parse_rules("embed=model")
    with pytest.raises(ConfigError, match="expected 0, 1, 2 or 3"):
        Layout.build(make_mesh("data=8"), zero=4)


def test_pipeline_checks_and_bubble():
    assert bubble_fraction(4, 8) == pytest.approx(3 / 11)
    with pytest.raises(ConfigError, match="microbatches=6 is not a multiple of the 4"):
        check_pipeline(4, 6, 4, 24)
    with pytest.raises(ConfigError, match="n_layers=6 is not divisible by the 4"):
        check_pipeline(4, 8, 6, 32)
    with pytest.raises(ConfigError, match="use a multiple of 16"):
        check_pipeline(4, 8, 4, 24, batch_shards=2)


def test_checkpoint_saved_under_fsdp_restores_under_data_tensor(tmp_path):
    loss_fn = causal_lm_loss(Decoder(MESH_CFG))
    data = mesh_batches()
    first = shard_training(Layout.build(make_mesh("fsdp=8")), mesh_init, ADAMW,
                           jax.random.PRNGKey(0))
    step = make_train_step(loss_fn, ADAMW, shardings=first.shardings, donate=False)
    state = first.state
    for b in data[:2]:
        state, _ = step(state, b)
    ckpts = Checkpoints(tmp_path / "ckpt")
    ckpts.save(2, state, {"step": 2})
    _, expected = step(state, data[2])

    second = shard_training(Layout.build(make_mesh("data=2,tensor=4")), mesh_init, ADAMW,
                            jax.random.PRNGKey(1))
    restored, data_state = Checkpoints(tmp_path / "ckpt").restore(2, second.state)
    assert data_state == {"step": 2} and int(restored.step) == 2
    # every array of the saved state comes back: parameters and Adam's moments and count
    # (the new layout's own state, from another seed and before any step, differs in each)
    saved, fresh = jax.device_get(state), jax.device_get(second.state)
    for (path, want), got, other in zip(jax.tree_util.tree_leaves_with_path(saved),
                                        jax.tree_util.tree_leaves(jax.device_get(restored)),
                                        jax.tree_util.tree_leaves(fresh)):
        np.testing.assert_array_equal(got, want, err_msg=jax.tree_util.keystr(path))
        assert not np.array_equal(other, want), jax.tree_util.keystr(path)
    q = restored.params["blocks"]["attn"]["query"]["kernel"]
    assert q.sharding.is_equivalent_to(
        NamedSharding(second.shardings.state.params["embed"]["embedding"].mesh,
                      P(None, None, "tensor")), 4)
    step2 = make_train_step(loss_fn, ADAMW, shardings=second.shardings)
    _, got = step2(restored, data[2])
    assert abs(float(got["loss"]) - float(expected["loss"])) < LOSS_ATOL
    ckpts.close()


def test_a_small_replicated_array_is_saved_whole_without_compiling(tmp_path):
    """A replicated array under REPLICA_PARALLEL_MIN_BYTES is written by one replica: orbax's
    replica-parallel save would compile one slice program per device (8 here) for its shape."""
    from jax import monitoring

    compiles = []
    monitoring.register_event_duration_secs_listener(
        lambda event, secs, **_: compiles.append(event)
        if event == "/jax/core/compile/backend_compile_duration" else None)
    # a shape no other test saves, so no slice program of it is in this process's caches
    w = np.arange(8 * 37, dtype=np.float32).reshape(8, 37)
    replicated = jax.device_put(w, NamedSharding(make_mesh("data=8"), P()))
    ckpts = Checkpoints(tmp_path / "ckpt")
    before = len(compiles)
    ckpts.save(1, {"w": replicated}, {"step": 1})
    assert len(compiles) == before
    state, _ = ckpts.restore(1, {"w": replicated})
    ckpts.close()
    np.testing.assert_array_equal(jax.device_get(state["w"]), w)


def test_float16_loss_scaling_skips_non_finite_steps():
    cfg = ModelConfig(vocab_size=64, max_len=16, n_layers=2, n_heads=4, d_model=32,
                      dtype="float16", attention="reference")
    tx = make_optimizer(OptimConfig(lr=1e-3, warmup_steps=0, schedule="constant"), 5)
    params = init_params(cfg, jax.random.PRNGKey(0))[0]
    state = TrainState.create(params, tx, loss_scaling=True)
    # A scale of 2^40 overflows float16 gradients: the step must change nothing but the scale.
    state = state.replace(loss_scale=dict(initial_loss_scale(2.0 ** 40)))
    step = make_train_step(causal_lm_loss(Decoder(cfg)), tx, donate=False, growth_interval=2)
    data = mesh_batches()
    after, m = step(state, data[0])
    assert int(m["skipped_steps"]) == 1 and float(after.loss_scale["scale"]) == 2.0 ** 39
    for a, b in zip(jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(after.params)):
        np.testing.assert_array_equal(a, b)
    # At a sane scale the steps go through, the loss falls and the scale grows every 2 steps.
    state = state.replace(loss_scale=dict(initial_loss_scale(2.0 ** 8)))
    losses = []
    for b in data[:1] * 4:
        state, m = step(state, b)
        losses.append(float(m["loss"]))
    assert int(m["skipped_steps"]) == 0 and float(state.loss_scale["scale"]) == 2.0 ** 10
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


@pytest.mark.slow
def test_cli_parallel_flags_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--mesh", "data=2,fsdp=2,tensor=2", "--zero", "3", "--pipeline", "1f1b",
            "--microbatches", "2", "--remat", "dots", "--precision", "bf16", "--steps", "3",
            "--set", "model.n_layers=2", "--set", "model.d_model=32", "--set", "model.n_heads=2",
            "--set", "model.max_len=16", "--set", "train.batch_size=8",
            "--set", "train.eval_batches=1", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    assert "step 3: validation loss" in capsys.readouterr().out
    cfg = (out / "config.json").read_text()
    assert '"zero": 3' in cfg and '"pipeline": "1f1b"' in cfg and '"bfloat16"' in cfg
    assert main(["train", "--mesh", "stage=4,data=2", "--pipeline", "gpipe",
                 "--microbatches", "6", "--out", str(tmp_path / "bad")]) == 2
    assert "not a multiple of the 4 pipeline stages" in capsys.readouterr().err


def test_optimizer_offload_to_pinned_host_trains_the_same():
    cfg = ModelConfig(vocab_size=64, max_len=16, n_layers=2, n_heads=4, d_model=32,
                      scan_unroll=1)
    tx = make_optimizer(OptimConfig(lr=1e-3, warmup_steps=0, schedule="constant"), 5)
    model_init = lambda r: init_params(cfg, r)  # noqa: E731
    losses = {}
    for offload in (False, True):
        layout = Layout.build(make_mesh("data=8"), zero=1, offload_optimizer=offload)
        setup = shard_training(layout, model_init, tx, jax.random.PRNGKey(0))
        step = make_train_step(causal_lm_loss(Decoder(cfg)), tx, shardings=setup.shardings)
        state = setup.state
        for b in mesh_batches()[:2]:
            state, m = step(state, b)
        losses[offload] = float(m["loss"])
        kinds = {x.sharding.memory_kind for x in jax.tree_util.tree_leaves(state.opt_state)}
        assert kinds == ({"pinned_host"} if offload else {"device"})
    assert losses[True] == pytest.approx(losses[False], abs=1e-6)


def test_fsdp_splits_the_activations_along_the_batch():
    """Under fsdp=8 each device holds 1/8 of the batch's activations, as under data=8: without
    the blocks' batch constraint XLA followed the embed-split parameters and kept the whole
    batch per device (temporaries 12x data parallelism's on this model)."""
    cfg = ModelConfig(vocab_size=64, max_len=32, n_layers=1, n_heads=2, d_model=64,
                      attention="reference", scan_unroll=1)
    b = {"inputs": np.zeros((32, 32), np.int32), "targets": np.zeros((32, 32), np.int32)}
    temp = {}
    for spec in ("data=8", "fsdp=8"):
        setup = shard_training(Layout.build(make_mesh(spec)), lambda r: init_params(cfg, r),
                               ADAMW, jax.random.PRNGKey(0))
        step = make_train_step(causal_lm_loss(Decoder(cfg)), ADAMW, shardings=setup.shardings,
                               donate=False)
        temp[spec] = step.lower(setup.state, b).compile().memory_analysis().temp_size_in_bytes
    assert temp["fsdp=8"] < 3 * temp["data=8"], temp


def test_qlora_on_a_mesh_trains_as_on_one_device():
    """QLoRA (NF4 base + LoRA factors) on data x fsdp x tensor: the same losses and parameters as
    on one device; only the factors have gradients and optimizer state, sharded like their base
    (plain LoRA is the same path without the quantized base)."""
    from dataclasses import replace

    from jaxllm.config import Config, TrainConfig
    from jaxllm.transforms import lora
    from jaxllm.train.params import build_params_and_axes

    cfg = Config(model=replace(MESH_CFG, weights="method=nf4,group=8"),
                 train=TrainConfig(lora="rank=4,alpha=8,targets=all"))
    build = lambda r: build_params_and_axes(cfg, r)  # noqa: E731
    loss_fn = causal_lm_loss(Decoder(cfg.model))
    single = TrainState.create(build(jax.random.PRNGKey(0))[0], ADAMW, lora.trainable)
    single_step = make_train_step(loss_fn, ADAMW, trainable=lora.trainable)
    setup = shard_training(Layout.build(make_mesh("data=2,fsdp=2,tensor=2")), build, ADAMW,
                           jax.random.PRNGKey(0), trainable=lora.trainable)
    step = make_train_step(loss_fn, ADAMW, shardings=setup.shardings, trainable=lora.trainable)
    state = setup.state
    for b in mesh_batches()[:2]:
        single, m1 = single_step(single, b)
        state, m2 = step(state, b)
        assert abs(float(m1["loss"]) - float(m2["loss"])) < LOSS_ATOL
    n_factors = sum(jax.tree_util.tree_leaves(lora.trainable(state.params)))
    moments = [x for x in jax.tree_util.tree_leaves(state.opt_state) if x.ndim]
    assert len(moments) == 2 * n_factors  # Adam's mu and nu of the factors only
    for x, y in zip(jax.tree_util.tree_leaves(single.params), jax.tree_util.tree_leaves(state.params)):
        np.testing.assert_allclose(np.asarray(x, np.float32), np.asarray(y, np.float32), atol=1e-4)
    up = state.params["blocks"]["mlp"]["up"]["kernel"]
    assert up.lora_b.sharding.spec[-1] == "tensor" and up.lora_a.sharding.spec[1] == "fsdp"


def test_lora_with_a_pipeline_is_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "run"
    line = error_of(["train", "--preset", "shakespeare-char", "--lora", "rank=4", "--mesh",
                     "stage=2,data=4", "--pipeline", "gpipe", "--out", str(out)], capsys)
    assert "do not combine with a pipeline" in line and not out.exists()
