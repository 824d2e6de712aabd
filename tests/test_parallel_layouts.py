"""Every parallel layout computes what one device computes.

A tiny decoder (4 layers, d=32, vocab 64, context 16, batch 8) trains 5 AdamW steps on one device
and on each layout of the 8 simulated CPU devices. Tolerance (float32): the loss of every step
within 2e-5 absolute (losses are ~4.2, so ~5e-6 relative) and every final parameter within 1e-4
absolute; observed differences are ~5e-7 and ~2e-5 (summation order of the all-reduces, and
Adam's division by sqrt(v) amplifying last-bit differences of near-zero gradients).
The sharding of every parameter and optimizer-state leaf is checked against hand-written specs
for the leaves that define each strategy and against the rule table for all others.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxllm.config import ModelConfig, OptimConfig
from jaxllm.models.decoder import Decoder, init_params
from jaxllm.objectives.causal_lm import causal_lm_loss
from jaxllm.parallel.mesh import make_mesh
from jaxllm.parallel.pipeline import decoder_parts, make_pipeline_grads
from jaxllm.parallel.layout import Layout, _is_spec
from jaxllm.parallel.sharded import shard_training
from jaxllm.optim import TrainState, make_optimizer
from jaxllm.train.step import make_train_step

CFG = ModelConfig(vocab_size=64, max_len=16, n_layers=4, n_heads=4, d_model=32,
                  attention="reference", scan_unroll=1)
TX = make_optimizer(OptimConfig(lr=1e-3, warmup_steps=0, schedule="constant"), 5)
LOSS_ATOL, PARAM_ATOL = 2e-5, 1e-4


def init(rng):
    return init_params(CFG, rng)


def batches():
    rs = np.random.RandomState(0)
    return [{"inputs": rs.randint(0, 64, (8, 16)).astype(np.int32),
             "targets": rs.randint(0, 64, (8, 16)).astype(np.int32)} for _ in range(5)]


@pytest.fixture(scope="module")
def single_device():
    loss_fn = causal_lm_loss(Decoder(CFG))
    state = TrainState.create(init(jax.random.PRNGKey(0))[0], TX)
    step = make_train_step(loss_fn, TX)
    losses = []
    for b in batches():
        state, m = step(state, b)
        losses.append(float(m["loss"]))
    return losses, jax.device_get(state.params)


def train_on(spec, zero=0, pipeline=None, microbatches=4):
    layout = Layout.build(make_mesh(spec), zero=zero)
    setup = shard_training(layout, init, TX, jax.random.PRNGKey(0))
    model = Decoder(CFG)
    grads_fn = (make_pipeline_grads(decoder_parts(model), layout.mesh, microbatches, pipeline)
                if pipeline else None)
    step = make_train_step(causal_lm_loss(model), TX, shardings=setup.shardings,
                           grads_fn=grads_fn)
    state, losses = setup.state, []
    for b in batches():
        state, m = step(state, b)
        losses.append(float(m["loss"]))
    return losses, state, setup


def check_shardings(state, setup):
    """Every param and optimizer-state leaf lies as the rule table says."""
    mesh = setup.shardings.state.params["embed"]["embedding"].mesh
    for arrays, specs in ((state.params, setup.specs["params"]),
                          (state.opt_state, setup.specs["opt"])):
        flat_specs = jax.tree_util.tree_leaves(specs, is_leaf=_is_spec)
        flat_arrays = jax.tree_util.tree_leaves(arrays)
        assert len(flat_specs) == len(flat_arrays)
        for x, spec in zip(flat_arrays, flat_specs):
            assert x.sharding.is_equivalent_to(NamedSharding(mesh, spec), x.ndim), (x.shape, spec)


def mu(state):  # Adam's first moment (same tree as params)
    return state.opt_state[1][0].mu


# (mesh, zero, pipeline) and hand-written specs of the leaves that define the strategy:
# query kernel (layers, embed, heads, kv), out kernel (layers, heads, kv, embed),
# up kernel (layers, embed, mlp), down kernel (layers, mlp, embed), embedding (vocab, embed).
LAYOUTS = {
    "dp=8": ("data=8", 0, None, {"query": P(), "mu_query": P()}),
    "fsdp=8": ("fsdp=8", 0, None, {"query": P(None, "fsdp"), "down": P(None, None, "fsdp"),
                                   "embedding": P(None, "fsdp"),
                                   "mu_query": P(None, "fsdp")}),
    "tensor=4,data=2": ("data=2,tensor=4", 0, None, {
        "query": P(None, None, "tensor"), "out": P(None, "tensor"),  # column / row parallel
        "up": P(None, None, "tensor"), "down": P(None, "tensor"),
        "embedding": P("tensor"), "mu_query": P(None, None, "tensor")}),
    "zero1": ("data=8", 1, None, {"query": P(), "mu_query": P(None, "data")}),
    "zero2": ("data=8", 2, None, {"query": P(), "mu_query": P(None, "data")}),
    "zero3": ("data=8", 3, None, {"query": P(None, "data"), "mu_query": P(None, "data")}),
    "stage=4,gpipe": ("stage=4,data=2", 0, "gpipe", {"query": P("stage"),
                                                     "embedding": P()}),
    "stage=4,1f1b": ("stage=4,data=2", 0, "1f1b", {"query": P("stage")}),
    "data=2,tensor=2,stage=2,gpipe": ("data=2,tensor=2,stage=2", 0, "gpipe", {
        "query": P("stage", None, "tensor"), "down": P("stage", "tensor")}),
    "data=2,tensor=2,stage=2,1f1b": ("data=2,tensor=2,stage=2", 0, "1f1b", {
        "query": P("stage", None, "tensor"), "embedding": P("tensor")}),
}


def _leaf(tree, name):
    blocks = tree["blocks"]
    return {"query": lambda: blocks["attn"]["query"]["kernel"],
            "out": lambda: blocks["attn"]["out"]["kernel"],
            "up": lambda: blocks["mlp"]["up"]["kernel"],
            "down": lambda: blocks["mlp"]["down"]["kernel"],
            "embedding": lambda: tree["embed"]["embedding"]}[name]()


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_layout_matches_single_device(name, single_device):
    spec, zero, pipeline, expected = LAYOUTS[name]
    ref_losses, ref_params = single_device
    losses, state, setup = train_on(spec, zero, pipeline)
    np.testing.assert_allclose(losses, ref_losses, rtol=0, atol=LOSS_ATOL)
    for path, a, b in zip(jax.tree_util.tree_leaves_with_path(ref_params),
                          jax.tree_util.tree_leaves(ref_params),
                          jax.tree_util.tree_leaves(jax.device_get(state.params))):
        np.testing.assert_allclose(b, a, rtol=0, atol=PARAM_ATOL, err_msg=str(path[0]))
    check_shardings(state, setup)
    mesh = setup.shardings.state.params["embed"]["embedding"].mesh
    for leaf, want in expected.items():
        x = _leaf(mu(state), leaf[3:]) if leaf.startswith("mu_") else _leaf(state.params, leaf)
        assert x.sharding.is_equivalent_to(NamedSharding(mesh, want), x.ndim), (leaf, x.sharding)
    if zero >= 2:  # gradients are constrained to the data-split layout (reduce-scatter)
        g = _leaf(setup.shardings.grads, "query")
        assert g.spec == P(None, "data", None, None)
