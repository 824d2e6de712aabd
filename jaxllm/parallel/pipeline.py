"""Pipeline parallelism over the `stage` mesh axis: GPipe and 1F1B, with shard_map + ppermute.

The scanned layers (a leading `layers` axis on every block parameter) are split into S contiguous
groups by the rule `layers -> stage`: stage s holds layers [s L/S, (s+1) L/S). The batch is cut
into M micro-batches (strided: micro-batch m is rows m, m+M, ..., so each keeps its split over
the data axes). Time runs in ticks; at each tick every stage works on one micro-batch and hands
its result to a neighbour with `lax.ppermute`. `stage` is a manual axis of the shard_map;
`data`, `fsdp` and `tensor` stay automatic, so pipelining composes with them (1F1B with stage,
data and tensor all split makes `data` manual too, to avoid an XLA partitioner abort).

GPipe (`gpipe`): M + S - 1 forward ticks (stage s runs micro-batch t - s at tick t); the
backward is JAX's transpose of that loop, i.e. all backwards after all forwards, in reverse.
Every stage keeps the activations of all M micro-batches until the backward.

1F1B (`1f1b`): forward and backward interleaved by hand. At tick t stage s runs the forward of
micro-batch t - s and the backward of micro-batch t - 2(S-1) + s, so the last stage turns each
micro-batch around at once and each stage holds at most 2(S-s)-1 micro-batch inputs (a ring of
2S-1 slots) instead of M: activation memory bounded by the pipeline depth, not the batch. The
backward of a stage recomputes its forward from the stashed input (jax.vjp), which is what
bounds the memory. Loss gradients start at the last stage, which also runs the head.

Both schedules keep each stage idle for S - 1 of the M + S - 1 tick-slots of each direction: the
bubble fraction is (S - 1) / (M + S - 1) (`bubble_fraction`). Idle slots here are computed and
masked (SPMD: every stage runs the same program), so a simulated step costs the full ticks.

A model plugs in through `PipelineParts`: embed (before the stages), stage (a group of layers)
and head (after the last stage, returning the objective's (loss, sums)). `decoder_parts` gives
them for the decoder with the causal-LM objective.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from jaxllm.errors import ConfigError
from jaxllm.models.attention import attention_mask
from jaxllm.objectives.causal_lm import lm_loss_and_metrics

SCHEDULES = ("gpipe", "1f1b")


class PipelineParts(NamedTuple):
    """How a model splits around its scanned layers (params[layers_key] has a leading L axis)."""
    embed: Callable  # (params, batch, rng) -> x (B, T, D)
    stage: Callable  # (layer params with L/S leading rows, x, batch, rng) -> x
    head: Callable  # (params, x, batch) -> (loss, sums)  (sums["tokens"]: the loss's weight)
    layers_key: str = "blocks"


def decoder_parts(model, z_loss: float = 0.0) -> PipelineParts:
    """PipelineParts of a jaxllm Decoder trained with the causal-LM objective."""
    from jaxllm.models.decoder import Decoder
    from jaxllm.models.layers import DecoderBlock, scanned

    cfg = model.cfg

    def positions_of(batch):
        B, T = batch["inputs"].shape
        pos = batch.get("positions")
        return pos if pos is not None else jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))

    def embed(params, batch, rng):
        return model.apply({"params": params}, batch["inputs"], positions_of(batch),
                           rng is not None, method=Decoder._embed,
                           rngs={"dropout": rng} if rng is not None else None)

    def stage(layer_params, x, batch, rng):
        n = jax.tree_util.tree_leaves(layer_params)[0].shape[0]
        mask = None
        if batch.get("segment_ids") is not None:
            idx = jnp.arange(x.shape[1])
            seg = batch["segment_ids"]
            mask = attention_mask(idx, idx, q_segments=seg, kv_segments=seg)
        train = rng is not None
        blocks = scanned(DecoderBlock, replace(cfg, n_layers=n), n_broadcast=4, name=None)
        y, _ = blocks.apply({"params": layer_params}, x, None, positions_of(batch), mask, None,
                            train, rngs={"dropout": rng} if train else None)
        return y

    def head(params, x, batch):
        logits = model.apply({"params": params}, x, method=Decoder._logits)
        return lm_loss_and_metrics(logits, batch["targets"], batch.get("loss_mask"), z_loss)

    return PipelineParts(embed, stage, head, "blocks")


def bubble_fraction(stages: int, microbatches: int) -> float:
    """Idle fraction of each stage's tick-slots: (S - 1) / (M + S - 1)."""
    return (stages - 1) / (microbatches + stages - 1)


def check_pipeline(stages: int, microbatches: int, n_layers: int, batch_size: int,
                   batch_shards: int = 1, schedule: str = "gpipe") -> None:
    """The pipeline's configuration errors, raised before anything is traced."""
    if schedule not in SCHEDULES:
        raise ConfigError(f"parallel.pipeline={schedule!r}: expected none, gpipe or 1f1b")
    if microbatches < 1 or microbatches % stages:
        raise ConfigError(f"parallel.microbatches={microbatches} is not a multiple of the "
                          f"{stages} pipeline stages; use a multiple of {stages}")
    if n_layers % stages:
        raise ConfigError(f"model.n_layers={n_layers} is not divisible by the {stages} pipeline "
                          f"stages (mesh axis stage); change one of them")
    if batch_size % (microbatches * batch_shards):
        k = microbatches * batch_shards
        raise ConfigError(f"train.batch_size={batch_size} is not divisible by "
                          f"parallel.microbatches={microbatches} x {batch_shards} batch shards; "
                          f"use a multiple of {k} (--set train.batch_size={k})")


def _split(batch, m):
    """(B, ...) -> (M, B/M, ...): micro-batch i is rows i, i+M, ... (keeps the data split)."""
    return jax.tree_util.tree_map(
        lambda x: jnp.swapaxes(x.reshape(x.shape[0] // m, m, *x.shape[1:]), 0, 1), batch)


def _merge(x):
    """Inverse of _split for one array: (M, B/M, ...) -> (B, ...)."""
    return jnp.swapaxes(x, 0, 1).reshape(-1, *x.shape[2:])


def _take(tree, i):
    return jax.tree_util.tree_map(lambda x: jax.lax.dynamic_index_in_dim(x, i, keepdims=False),
                                  tree)


def _rng(rng, *ids):
    if rng is None:
        return None
    for i in ids:
        rng = jax.random.fold_in(rng, i)
    return rng


def _shift(x, stages: int, direction: int):
    """Send each stage's x to stage s + direction (a ring; the wrapped value is ignored)."""
    return jax.lax.ppermute(x, "stage", [(j, (j + direction) % stages) for j in range(stages)])


def make_pipeline_grads(parts: PipelineParts, mesh, microbatches: int, schedule: str = "gpipe"):
    """A grads_fn for make_train_step: (params, batch, rng, scale) -> (loss, sums, grads of
    scale * loss), computed through the pipeline schedule over the mesh's `stage` axis."""
    S, M = mesh.shape["stage"], microbatches
    key = parts.layers_key

    def stage_map(fn, in_specs, out_specs, axes=("stage",)):
        return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs,
                             axis_names=set(axes), check_vma=False)

    def gpipe_forward(layers, xs, mbs, rng):
        """xs (M, b, T, D) embedded micro-batches -> last-stage outputs (M, b, T, D)."""

        def run(layers, xs, mbs, rng):
            s = jax.lax.axis_index("stage")

            def tick(carry, t):
                state, outs = carry
                i = jnp.clip(t - s, 0, M - 1)  # the micro-batch this stage works on
                inp = jnp.where(s == 0, xs[jnp.clip(t, 0, M - 1)], state)
                y = parts.stage(layers, inp, _take(mbs, i), _rng(rng, s, i))
                done = (s == S - 1) & (t - s >= 0) & (t - s < M)
                outs = jnp.where(done, jax.lax.dynamic_update_index_in_dim(outs, y, i, 0), outs)
                return (_shift(y, S, +1), outs), None

            init = (jnp.zeros_like(xs[0]), jnp.zeros_like(xs))
            (_, outs), _ = jax.lax.scan(tick, init, jnp.arange(M + S - 1))
            return _per_stage(outs)  # only the last stage's are non-zero

        return _sum_stages(stage_map(run, (P("stage"), P(), P(), P()), P("stage"))(
            layers, xs, mbs, rng))

    def gpipe(params, batch, rng, scale):
        def loss_of(params):
            rest = {k: v for k, v in params.items() if k != key}
            x = parts.embed(rest, batch, _rng(rng, 0))
            xs, mbs = _split(x, M), _split(batch, M)
            out = _merge(gpipe_forward(params[key], xs, mbs, _rng(rng, 1)))
            loss, sums = parts.head(rest, out, batch)
            return loss * scale, (loss, sums)

        grads, (loss, sums) = jax.grad(loss_of, has_aux=True)(params)
        return loss, sums, grads

    def one_f_one_b(params, batch, rng, scale):
        rest = {k: v for k, v in params.items() if k != key}
        x, embed_vjp = jax.vjp(lambda r: parts.embed(r, batch, _rng(rng, 0)), rest)
        xs, mbs = _split(x, M), _split(batch, M)
        slots = 2 * S - 1  # the most micro-batches a stage holds between forward and backward

        def run(layers, rest, xs, mbs, rng, scale):
            s = jax.lax.axis_index("stage")
            zeros = lambda t: jax.tree_util.tree_map(jnp.zeros_like, t)  # noqa: E731
            head_loss = lambda r, y, mb: (lambda l, sm: (l * sm["tokens"], sm))(  # noqa: E731
                *parts.head(r, y, mb))
            sums0 = jax.eval_shape(lambda: head_loss(rest, xs[0], _take(mbs, 0))[1])

            def tick(carry, t):
                fwd_in, bwd_in, stash, g_layers, g_rest, dxs, obj, sums = carry
                # forward of micro-batch f
                f = t - s
                fi = jnp.clip(f, 0, M - 1)
                f_ok = (f >= 0) & (f < M)
                inp = jnp.where(s == 0, xs[fi], fwd_in)
                y = parts.stage(layers, inp, _take(mbs, fi), _rng(rng, s, fi))
                stash = jnp.where(f_ok, jax.lax.dynamic_update_index_in_dim(
                    stash, inp, fi % slots, 0), stash)
                # the last stage's loss and its gradient for micro-batch f
                (obj_f, sums_f), head_vjp = _head_vjp(head_loss, rest, y, _take(mbs, fi))
                last = (s == S - 1) & f_ok
                g_r, dy_head = head_vjp(jnp.where(last, scale, 0.0).astype(obj_f.dtype))
                g_rest = jax.tree_util.tree_map(jnp.add, g_rest, g_r)
                obj = obj + jnp.where(last, obj_f, 0.0)
                sums = jax.tree_util.tree_map(lambda a, b: a + jnp.where(last, b, 0), sums,
                                              sums_f)
                # backward of micro-batch b (for the last stage b == f)
                b = t - 2 * (S - 1) + s
                bi = jnp.clip(b, 0, M - 1)
                b_ok = (b >= 0) & (b < M)
                dy = jnp.where(s == S - 1, dy_head, bwd_in)
                dy = jnp.where(b_ok, dy, jnp.zeros_like(dy))
                _, stage_vjp = jax.vjp(
                    lambda lp, xin: parts.stage(lp, xin, _take(mbs, bi), _rng(rng, s, bi)),
                    layers, jax.lax.dynamic_index_in_dim(stash, bi % slots, keepdims=False))
                g_l, dx = stage_vjp(dy)
                g_layers = jax.tree_util.tree_map(jnp.add, g_layers, g_l)
                dxs = jnp.where((s == 0) & b_ok,
                                jax.lax.dynamic_update_index_in_dim(dxs, dx, bi, 0), dxs)
                return (_shift(y, S, +1), _shift(dx, S, -1), stash, g_layers, g_rest, dxs,
                        obj, sums), None

            init = (jnp.zeros_like(xs[0]), jnp.zeros_like(xs[0]),
                    jnp.zeros((slots, *xs.shape[1:]), xs.dtype), zeros(layers), zeros(rest),
                    jnp.zeros_like(xs), jnp.zeros((), jnp.float32),
                    jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), sums0))
            carry, _ = jax.lax.scan(tick, init, jnp.arange(M + 2 * S - 2))
            _, _, _, g_layers, g_rest, dxs, obj, sums = carry
            return g_layers, _per_stage((g_rest, dxs, obj, sums))

        # With stage, data and tensor all > 1, `data` is made manual too (each data shard runs
        # its rows; the per-shard sums are added outside): XLA:CPU's SPMD partitioner aborts on
        # the head's reductions when `data` and `tensor` are both automatic there. Elsewhere
        # `data` stays automatic: a manual `data` aborts it with fsdp x tensor at stage=1.
        # (Workarounds for XLA check failures, found by trying the tested layouts.)
        if mesh.shape["data"] > 1 and mesh.shape["tensor"] > 1 and S > 1:
            def run_data(*args):
                g_layers, (g_rest, dxs, obj, sums) = run(*args)
                add = lambda t: jax.tree_util.tree_map(lambda x: x[:, None], t)  # noqa: E731
                return _per_stage(g_layers), (add(g_rest), dxs, add(obj), add(sums))

            rows = P(None, "data")  # (M, b, ...) micro-batches: rows split over data
            g_layers, (g_rest, dxs, obj, sums) = stage_map(
                run_data, (P("stage"), P(), rows, rows, P(), P()),
                (P("data", "stage"), (P("stage", "data"), P("stage", None, "data"),
                                      P("stage", "data"), P("stage", "data"))),
                axes=("stage", "data"))(params[key], rest, xs, mbs, _rng(rng, 1), scale)
            g_layers = jax.tree_util.tree_map(lambda x: x.sum(0), g_layers)
            g_rest, obj, sums = jax.tree_util.tree_map(lambda x: x.sum((0, 1)),
                                                       (g_rest, obj, sums))
            dxs = dxs.sum(0)
        else:
            g_layers, (g_rest, dxs, obj, sums) = stage_map(
                run, (P("stage"), P(), P(), P(), P(), P()), (P("stage"), P("stage")))(
                params[key], rest, xs, mbs, _rng(rng, 1), scale)
            g_rest, dxs, obj, sums = _sum_stages((g_rest, dxs, obj, sums))
        (g_embed,) = embed_vjp(_merge(dxs))
        n = jnp.maximum(sums["tokens"], 1.0)
        grads = jax.tree_util.tree_map(lambda a, b: (a + b) / n, g_rest, g_embed)
        grads[key] = jax.tree_util.tree_map(lambda g: g / n, g_layers)
        return obj / n, sums, grads

    return gpipe if schedule == "gpipe" else one_f_one_b


def _per_stage(tree):
    """Give each stage's values a leading axis of 1, so out_specs P("stage") stacks them."""
    return jax.tree_util.tree_map(lambda x: x[None], tree)


def _sum_stages(tree):
    """Sum the stacked per-stage values outside the shard_map (a psum inside a partially manual
    shard_map trips XLA's SPMD partitioner when other axes shard the operands)."""
    return jax.tree_util.tree_map(lambda x: x.sum(0), tree)


def _head_vjp(head_loss, rest, y, mb):
    """((objective, sums), vjp) of the head's weighted loss w.r.t. (head params, y)."""
    obj, vjp, sums = jax.vjp(lambda r, y: head_loss(r, y, mb), rest, y, has_aux=True)
    return (obj, sums), vjp
