"""Every parallel layout computes what one device computes.

A tiny decoder (vocab 64, context 16, batch 8; 2 layers, or 4 for the pipelines' stages) trains
5 steps of SGD with momentum on one device and on each layout of the 8 simulated CPU devices.
SGD's update is proportional to the gradient, so a gradient off by any factor moves the
parameters (Adam's normalised update would hide it); the gradient norm of every step is
compared as well. Tolerance (float32): the loss of every step within 2e-5 absolute (losses are
~4.2), the gradient norm within 1e-5 relative, every final parameter within 1e-5 absolute.
Layouts also vary what rides along: remat policies, packed rows (segment ids, positions, loss
mask), bfloat16 compute, and dropout through the pipelines (against the pipeline's sequential
definition with the same dropout keys).
The sharding of every parameter and optimizer-state leaf is checked against hand-written specs
for the leaves that define each strategy and against the rule table for all others.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from helpers import LOSS_ATOL, MESH_CFG, mesh_batches, seq2seq_batch
from jaxllm import models
from jaxllm.models.decoder import Decoder
from jaxllm.objectives.causal_lm import causal_lm_loss
from jaxllm.objectives.classification import task_loss
from jaxllm.objectives.seq2seq import seq2seq_loss
from jaxllm.optim import TrainState
from jaxllm.parallel.layout import Layout, _is_spec
from jaxllm.parallel.mesh import make_mesh
from jaxllm.parallel.pipeline import decoder_parts, make_pipeline_grads
from jaxllm.parallel.sharded import shard_training
from jaxllm.train.step import make_train_step

SGD = optax.sgd(0.5, momentum=0.9)
GRAD_NORM_RTOL, PARAM_ATOL = 1e-5, 1e-5
BF16 = {"loss": 2e-2, "grad_norm": 2e-2, "param": 1e-2}  # bfloat16 compute on both sides


class Case(NamedTuple):
    mesh: str
    zero: int = 0
    pipeline: str | None = None
    model: dict = {}  # ModelConfig overrides (remat, dtype, dropout)  # noqa: RUF012
    specs: dict = {}  # leaf -> PartitionSpec (opt_X: the optimizer state of leaf X)  # noqa: RUF012
    packed: bool = False  # packed rows (as the pipelines always have)


# The leaves that define each strategy: query kernel (layers, embed, heads, kv), out kernel
# (layers, heads, kv, embed), up kernel (layers, embed, mlp), down kernel (layers, mlp, embed),
# embedding (vocab, embed).
LAYOUTS = {
    "dp=8": Case("data=8", specs={"query": P(), "opt_query": P()}),
    "fsdp=8,remat=full": Case("fsdp=8", model={"remat": "full"}, specs={
        "query": P(None, "fsdp"), "down": P(None, None, "fsdp"), "embedding": P(None, "fsdp"),
        "opt_query": P(None, "fsdp")}),
    "tensor=4,data=2,bf16,remat=dots": Case("data=2,tensor=4", model={
        "remat": "dots", "dtype": "bfloat16"}, specs={
        "query": P(None, None, "tensor"), "out": P(None, "tensor"),  # column / row parallel
        "up": P(None, None, "tensor"), "down": P(None, "tensor"),
        "embedding": P("tensor"), "opt_query": P(None, None, "tensor")}),
    "zero1": Case("data=8", 1, specs={"query": P(), "opt_query": P(None, "data")}),
    "zero2,remat=dots_no_batch": Case("data=8", 2, model={"remat": "dots_no_batch"},
                                      specs={"query": P(), "opt_query": P(None, "data")}),
    "zero3,remat=save_attention_out": Case("data=8", 3, model={"remat": "save_attention_out"},
                                           specs={"query": P(None, "data"),
                                                  "opt_query": P(None, "data")}),
    # pipelines: 4 layers, packed rows
    "stage=4,gpipe,dropout": Case("stage=4,data=2", 0, "gpipe", {"dropout": 0.1},
                                  specs={"query": P("stage"), "embedding": P()}),
    "stage=4,1f1b,dropout,remat=full": Case("stage=4,data=2", 0, "1f1b",
                                            {"dropout": 0.1, "remat": "full"},
                                            specs={"query": P("stage")}),
    "data=2,tensor=2,stage=2,gpipe": Case("data=2,tensor=2,stage=2", 0, "gpipe", specs={
        "query": P("stage", None, "tensor"), "down": P("stage", "tensor")}),
    # (data is a manual axis of this 1f1b: each data shard draws the same dropout masks for its
    # rows, which no single-device run reproduces, so this one runs without dropout)
    "data=2,tensor=2,stage=2,1f1b": Case("data=2,tensor=2,stage=2", 0, "1f1b", specs={
        "query": P("stage", None, "tensor"), "embedding": P("tensor")}),
    # sequence parallel: ring attention over the zig-zag split (2 chunks of 1 token a device)
    "sequence=8,ring": Case("sequence=8", model={"attention": "ring"}, specs={"query": P()}),
    "data=2,sequence=4,ring,packed": Case("data=2,sequence=4", model={"attention": "ring"},
                                          packed=True, specs={"query": P()}),
    # the sequence axis composed with the others: tensor-split heads inside each ring hop,
    # FSDP-gathered weights around a ring of 4
    "data=2,sequence=2,tensor=2,ring": Case("data=2,sequence=2,tensor=2",
                                            model={"attention": "ring"},
                                            specs={"query": P(None, None, "tensor"),
                                                   "down": P(None, "tensor")}),
    "fsdp=2,sequence=4,ring": Case("fsdp=2,sequence=4", model={"attention": "ring"},
                                   specs={"query": P(None, "fsdp"),
                                          "opt_query": P(None, "fsdp")}),
}


def model_cfg(case: Case):
    """The pipelines keep 4 layers (one per stage of 4); the other layouts use 2."""
    cfg = MESH_CFG if case.pipeline else replace(MESH_CFG, n_layers=2)
    return replace(cfg, **case.model)


def run_steps(step, state, batches):
    """(losses, grad norms, final state) of one step per batch."""
    losses, norms = [], []
    for b in batches:
        state, m = step(state, b)
        losses.append(float(m["loss"]))
        norms.append(float(m["grad_norm"]))
    return losses, norms, state


def sequential_pipeline_grads(model, stages: int, microbatches: int):
    """A grads_fn computing on one device what a pipeline of `stages` computes: the embedding,
    then each micro-batch (rows m, m + M, ...) through the stages in order, then the head, with
    the pipeline's dropout keys (fold_in(rng, 0) for the embedding, fold_in(fold_in(fold_in(
    rng, 1), stage), micro-batch) for a stage). The micro-batches and the stages are two
    lax.scan loops, so one stage is compiled, not one per (micro-batch, stage) pair."""
    parts = decoder_parts(model)
    n = model.cfg.n_layers // stages
    fold = jax.random.fold_in

    def by_micro_batch(a):  # (B, ...) -> (M, B / M, ...): [m] holds rows m, m + M, ...
        return jnp.swapaxes(a.reshape(a.shape[0] // microbatches, microbatches, *a.shape[1:]),
                            0, 1)

    def loss_of(params, batch, rng):
        rest = {k: v for k, v in params.items() if k != "blocks"}
        x = parts.embed(rest, batch, fold(rng, 0))
        # (n_layers, ...) -> (stages, n, ...): [s] holds stage s's layers
        layers = jax.tree_util.tree_map(lambda a: a.reshape(stages, n, *a.shape[1:]),
                                        params["blocks"])

        def micro_batch(_, inputs):
            m, xm, mb = inputs

            def stage(xm, inputs):
                s, stage_layers = inputs
                return parts.stage(stage_layers, xm, mb, fold(fold(fold(rng, 1), s), m)), None

            xm, _ = jax.lax.scan(stage, xm, (jnp.arange(stages), layers))
            return None, xm

        _, out = jax.lax.scan(micro_batch, None, (jnp.arange(microbatches), by_micro_batch(x),
                                                  jax.tree_util.tree_map(by_micro_batch, batch)))
        out = jnp.swapaxes(out, 0, 1).reshape(x.shape)  # back to the rows' order
        return parts.head(rest, out, batch)

    def grads_fn(params, batch, rng, scale):
        def scaled(p):
            loss, sums = loss_of(p, batch, rng)
            return loss * scale, (loss, sums)

        grads, (loss, sums) = jax.grad(scaled, has_aux=True)(params)
        return loss, sums, grads

    return grads_fn


_REFERENCES: dict = {}


def reference(key, build):
    """(losses, grad norms, params) of one device, computed once per key: build() gives the
    (step, state, batches) to run."""
    if key not in _REFERENCES:
        step, state, batches = build()
        losses, norms, state = run_steps(step, state, batches)
        _REFERENCES[key] = losses, norms, jax.device_get(state.params)
    return _REFERENCES[key]


def assert_matches(ref, losses, norms, state, tol=None):
    """Losses, gradient norms and final parameters of a run equal the reference's (losses within
    tol["loss"] absolute, norms within tol["grad_norm"] relative, parameters within tol["param"]
    absolute; float32's tolerances by default)."""
    tol = tol or {"loss": LOSS_ATOL, "grad_norm": GRAD_NORM_RTOL, "param": PARAM_ATOL}
    ref_losses, ref_norms, ref_params = ref
    np.testing.assert_allclose(losses, ref_losses, rtol=0, atol=tol["loss"])
    np.testing.assert_allclose(norms, ref_norms, rtol=tol["grad_norm"])
    for path, a, b in zip(jax.tree_util.tree_leaves_with_path(ref_params),
                          jax.tree_util.tree_leaves(ref_params),
                          jax.tree_util.tree_leaves(jax.device_get(state.params))):
        np.testing.assert_allclose(b, a, rtol=0, atol=tol["param"], err_msg=str(path[0]))


def single_device(case: Case):
    """The one-device reference for the model and data of a case (the pipelines with dropout
    follow the pipeline's definition)."""
    cfg = replace(model_cfg(case), remat="none")  # a remat policy changes no value
    if cfg.attention == "ring":  # on one device: the definition
        cfg = replace(cfg, attention="reference")
    dropout = cfg.dropout > 0
    packed = bool(case.pipeline) or case.packed
    stages = make_mesh(case.mesh).shape["stage"]

    def build():
        model = Decoder(cfg)
        grads_fn = sequential_pipeline_grads(model, stages, 4) if dropout else None
        step = make_train_step(causal_lm_loss(model), SGD, grads_fn=grads_fn)
        state = TrainState.create(models.init_params(cfg, jax.random.PRNGKey(0))[0], SGD)
        return step, state, mesh_batches(packed=packed)

    return reference((cfg, dropout and stages, packed), build)


def train_on(case: Case, microbatches=4):
    cfg = model_cfg(case)
    layout = Layout.build(make_mesh(case.mesh), zero=case.zero)
    setup = shard_training(layout, lambda r: models.init_params(cfg, r), SGD,
                           jax.random.PRNGKey(0))
    model = Decoder(cfg)
    grads_fn = (make_pipeline_grads(decoder_parts(model), layout.mesh, microbatches,
                                    case.pipeline) if case.pipeline else None)
    step = make_train_step(causal_lm_loss(model), SGD, shardings=setup.shardings,
                           grads_fn=grads_fn)
    packed = bool(case.pipeline) or case.packed
    losses, norms, state = run_steps(step, setup.state, mesh_batches(packed=packed))
    return losses, norms, state, setup


def mesh_of(setup):
    return setup.shardings.state.params["embed"]["embedding"].mesh


def check_shardings(state, setup):
    """Every param and optimizer-state leaf lies as the rule table says."""
    mesh = mesh_of(setup)
    for arrays, specs in ((state.params, setup.specs["params"]),
                          (state.opt_state, setup.specs["opt"])):
        flat_specs = jax.tree_util.tree_leaves(specs, is_leaf=_is_spec)
        flat_arrays = jax.tree_util.tree_leaves(arrays)
        assert len(flat_specs) == len(flat_arrays)
        for x, spec in zip(flat_arrays, flat_specs):
            assert x.sharding.is_equivalent_to(NamedSharding(mesh, spec), x.ndim), (x.shape, spec)


def momentum(state):  # SGD's momentum trace (same tree as params)
    return state.opt_state[0].trace


def _leaf(tree, name):
    blocks = tree["blocks"]
    return {"query": lambda: blocks["attn"]["query"]["kernel"],
            "out": lambda: blocks["attn"]["out"]["kernel"],
            "up": lambda: blocks["mlp"]["up"]["kernel"],
            "down": lambda: blocks["mlp"]["down"]["kernel"],
            "embedding": lambda: tree["embed"]["embedding"]}[name]()


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_layout_matches_single_device(name):
    case = LAYOUTS[name]
    tol = BF16 if case.model.get("dtype") == "bfloat16" else {
        "loss": LOSS_ATOL, "grad_norm": GRAD_NORM_RTOL, "param": PARAM_ATOL}
    losses, norms, state, setup = train_on(case)
    assert_matches(single_device(case), losses, norms, state, tol)
    check_shardings(state, setup)
    mesh = mesh_of(setup)
    for leaf, want in case.specs.items():
        x = (_leaf(momentum(state), leaf[4:]) if leaf.startswith("opt_")
             else _leaf(state.params, leaf))
        assert x.sharding.is_equivalent_to(NamedSharding(mesh, want), x.ndim), (leaf, x.sharding)
    if case.zero >= 2:  # gradients are constrained to the data-split layout (reduce-scatter)
        g = _leaf(setup.shardings.grads, "query")
        assert g.spec == P(None, "data", None, None)


def test_dropout_under_ring_attention():
    """Dropout with ring attention: no one-device run draws the same masks, because the decoder
    puts the tokens in zig-zag order (attention.zigzag_order) before the embedding, so every
    dropout mask (embedding, attention and MLP outputs, elementwise on (B, T, D)) is drawn for
    the zig-zag order of the sequence axis's size. The invariant instead: the masks are the
    step's key's for that order whatever the other axes split (batch rows over data or over
    fsdp, weights gathered or not), so data=2,sequence=4 and fsdp=2,sequence=4 take the same
    five steps; and dropout is on (the losses differ from the no-dropout run's)."""
    drop = {"attention": "ring", "dropout": 0.1}
    data = train_on(Case("data=2,sequence=4", model=drop))
    fsdp = train_on(Case("fsdp=2,sequence=4", model=drop))
    np.testing.assert_allclose(fsdp[0], data[0], rtol=0, atol=LOSS_ATOL)
    for a, b in zip(jax.tree_util.tree_leaves(jax.device_get(data[2].params)),
                    jax.tree_util.tree_leaves(jax.device_get(fsdp[2].params))):
        np.testing.assert_allclose(b, a, rtol=0, atol=PARAM_ATOL)
    plain = single_device(LAYOUTS["fsdp=2,sequence=4,ring"])[0]
    assert np.all(np.isfinite(data[0]))
    assert np.min(np.abs(np.asarray(data[0]) - plain)) > 1e-3


# --- the encoder-decoder ------------------------------------------------------------------

S2S_CFG = replace(MESH_CFG, kind="seq2seq", n_layers=1)  # one encoder and one decoder block
# One mesh with all three axes runs by default (one compile); each axis alone is slow-marked.
# mesh -> the cross-attention's query kernel (layers, embed, heads, kv) in that layout
S2S_LAYOUTS = {"data=2,fsdp=2,tensor=2": P(None, "fsdp", "tensor"), "data=8": P(),
               "fsdp=8": P(None, "fsdp"), "data=2,tensor=4": P(None, None, "tensor")}


def s2s_batches(n=3):
    """n batches of 8 pairs, both sides padded (helpers.seq2seq_batch)."""
    out = []
    for k in range(n):
        src, src_mask, tgt, tgt_mask = seq2seq_batch(seed=k, batch=8, src_len=12, tgt_len=10)
        out.append({"source": src, "source_mask": src_mask, "target": tgt,
                    "target_mask": tgt_mask})
    return out


def train_task_on(mesh: str, cfg, loss_fn, batches):
    """(losses, grad norms, final state, setup) of SGD on a layout of the 8 devices."""
    layout = Layout.build(make_mesh(mesh))
    setup = shard_training(layout, lambda r: models.init_params(cfg, r), SGD,
                           jax.random.PRNGKey(0))
    step = make_train_step(loss_fn, SGD, shardings=setup.shardings)
    return *run_steps(step, setup.state, batches), setup


def one_device(cfg, loss_fn, batches):
    """build() of the one-device reference of SGD on a model config."""
    return lambda: (make_train_step(loss_fn, SGD),
                    TrainState.create(models.init_params(cfg, jax.random.PRNGKey(0))[0], SGD),
                    batches)


@pytest.mark.parametrize("mesh", [m if m.count("=") == 3 else pytest.param(
    m, marks=pytest.mark.slow) for m in S2S_LAYOUTS])
def test_seq2seq_layout_matches_single_device(mesh):
    loss_fn = seq2seq_loss(models.build(S2S_CFG), start_id=63)
    ref = reference("seq2seq", one_device(S2S_CFG, loss_fn, s2s_batches()))
    losses, norms, state, setup = train_task_on(mesh, S2S_CFG, loss_fn, s2s_batches())
    assert_matches(ref, losses, norms, state)
    check_shardings(state, setup)
    query = state.params["blocks"]["cross_attn"]["query"]["kernel"]
    assert query.sharding.is_equivalent_to(NamedSharding(mesh_of(setup), S2S_LAYOUTS[mesh]), 4)


# --- an encoder with a sequence-classification head -----------------------------------------

HEAD_CFG = replace(MESH_CFG, kind="encoder", n_layers=1, head="sequence", num_classes=3,
                   pool="gap")  # mean-pooled over the padding mask, as bbc-topics


def head_batches(n=3):
    """n batches of 8 right-padded texts (lengths 3..16) with a class each."""
    rng = np.random.default_rng(5)
    return [{"tokens": rng.integers(0, 64, (8, 16)).astype(np.int32),
             "mask": np.arange(16)[None] < rng.integers(3, 17, (8, 1)),
             "labels": rng.integers(0, 3, 8).astype(np.int32)} for _ in range(n)]


def test_sequence_head_on_data_fsdp_tensor_matches_single_device():
    loss_fn = task_loss(models.build(HEAD_CFG), "sequence")
    ref = reference("sequence head", one_device(HEAD_CFG, loss_fn, head_batches()))
    losses, norms, state, setup = train_task_on("data=2,fsdp=2,tensor=2", HEAD_CFG, loss_fn,
                                                head_batches())
    assert_matches(ref, losses, norms, state)
    check_shardings(state, setup)
    head = state.params["head"]["kernel"]  # (embed, classes)
    assert head.sharding.is_equivalent_to(NamedSharding(mesh_of(setup), P("fsdp")), 2)
