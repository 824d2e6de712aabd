"""Train and eval steps: pure functions, jitted once.

    state = TrainState.create(params, tx)
    train_step = make_train_step(loss_fn, tx, grad_accum=1, seed=0)   # jitted, donates state
    state, metrics = train_step(state, batch)

RNG is explicit: the dropout key of step s is fold_in(PRNGKey(seed), s), so a resumed run draws
the same keys as an uninterrupted one. Gradient accumulation splits the batch into micro-batches
along its first axis and weights each one by its number of loss tokens, so the update equals the
one a single large batch would give.

On a mesh (jaxllm.parallel), `shardings` gives the jit explicit in/out shardings for the state
and the batch and the sharding gradients are constrained to (replicated along the data axes: an
all-reduce; split along them under ZeRO-2/3: a reduce-scatter). `grads_fn` replaces the plain
gradient computation, e.g. by a pipeline schedule. With `loss_scaling` (float16 compute) the loss
is multiplied by a dynamic scale before differentiation; a step whose gradients are not finite
is skipped (parameters and optimizer state unchanged, the scale halved and `skipped_steps`
counted), and the scale doubles after `growth_interval` finite steps in a row.

With `trainable` (a function params -> bool tree, e.g. LoRA's), only the selected leaves are
differentiated, get optimizer state and change; the rest is held frozen (jaxllm.transforms).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from jaxllm.models.layers import split_activations
from jaxllm.optim.state import StepShardings, TrainState
from jaxllm.transforms.partition import combine, partition


def _sum_trees(a, b):
    return jax.tree_util.tree_map(jnp.add, a, b)


def accumulated_grads(loss_fn: Callable, grad_accum: int = 1) -> Callable:
    """(params, batch, rng, scale) -> (loss, sums, grads of scale * loss): the plain gradient,
    over `grad_accum` micro-batches weighted by their tokens when grad_accum > 1."""

    def scaled(params, batch, rng, scale):
        loss, sums = loss_fn(params, batch, rng)
        return loss * scale, (loss, sums)

    grad_fn = jax.grad(scaled, has_aux=True)

    def compute(params, batch, rng, scale):
        if grad_accum == 1:
            grads, (loss, sums) = grad_fn(params, batch, rng, scale)
            return loss, sums, grads
        micro = jax.tree_util.tree_map(
            lambda x: x.reshape(grad_accum, x.shape[0] // grad_accum, *x.shape[1:]), batch)

        def weighted_grads(i, mb):  # grads and sums of one micro-batch, times its tokens
            g, (loss_i, sums_i) = grad_fn(params, mb, jax.random.fold_in(rng, i), scale)
            n = sums_i["tokens"]
            return jax.tree_util.tree_map(lambda x: x * n, g), dict(sums_i, objective=loss_i * n)

        shapes = jax.eval_shape(weighted_grads, 0, jax.tree_util.tree_map(lambda x: x[0], micro))
        zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        (grads, sums), _ = jax.lax.scan(
            lambda acc, xs: (_sum_trees(acc, weighted_grads(*xs)), None), zeros,
            (jnp.arange(grad_accum), micro))
        total = jnp.maximum(sums["tokens"], 1.0)
        grads = jax.tree_util.tree_map(lambda g: g / total, grads)
        return sums.pop("objective") / total, sums, grads

    return compute


def make_train_step(loss_fn: Callable, tx: optax.GradientTransformation, *, grad_accum: int = 1,
                    seed: int = 0, schedule: Callable | None = None, donate: bool = True,
                    shardings: StepShardings | None = None, grads_fn: Callable | None = None,
                    growth_interval: int = 2000, trainable: Callable | None = None):
    """A jitted (state, batch) -> (state, metrics). loss_fn(params, batch, rng) -> (loss, sums).

    metrics: the objective's sums (loss_sum, tokens, ...), `loss` (the mean objective, with
    z-loss), `grad_norm` (before clipping) and `lr` if a schedule is given; with loss scaling
    also `loss_scale` and `skipped_steps`. They stay on device; the caller decides when to fetch
    them. Loss scaling is on when the state carries a `loss_scale`. With `trainable`, the state
    must come from TrainState.create with the same `trainable`.
    """
    if trainable is not None and grads_fn is not None:
        raise ValueError("make_train_step: trainable (LoRA) does not combine with a grads_fn")

    def step(state: TrainState, batch):
        rng = jax.random.fold_in(jax.random.PRNGKey(seed), state.step)
        ls = state.loss_scale
        scale = ls["scale"] if ls is not None else jnp.float32(1.0)
        params, frozen = state.params, None
        if trainable is None:
            compute_grads = grads_fn or accumulated_grads(loss_fn, grad_accum)
        else:  # differentiate the trainable leaves only; the frozen ones enter as constants
            params, frozen = partition(state.params, trainable(state.params))
            compute_grads = accumulated_grads(
                lambda p, b, r: loss_fn(combine(p, frozen), b, r), grad_accum)
        # On a mesh the blocks' activations are split like the batch (models/layers.py); a
        # pipeline's grads_fn places them itself, inside its shard_map.
        split = shardings.batch if shardings is not None and grads_fn is None else None
        with split_activations(split):
            loss, sums, grads = compute_grads(params, batch, rng, scale)
        if ls is not None:
            grads = jax.tree_util.tree_map(lambda g: g / scale, grads)
        if shardings is not None:
            grads = jax.lax.with_sharding_constraint(grads, shardings.grads)
        opt_state = state.opt_state
        if shardings is not None and shardings.opt_compute is not None:  # host -> device
            opt_state = jax.device_put(opt_state, shardings.opt_compute)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        grad_norm = optax.tree.norm(grads)
        metrics = dict(sums, loss=loss, grad_norm=grad_norm)
        if ls is not None:
            finite = jnp.isfinite(grad_norm)
            keep = lambda new, old: jax.tree_util.tree_map(  # noqa: E731
                lambda n, o: jnp.where(finite, n, o), new, old)
            old = state.params if frozen is None else partition(
                state.params, trainable(state.params))[0]
            params, opt_state = keep(params, old), keep(opt_state, state.opt_state)
            good = jnp.where(finite, ls["good_steps"] + 1, 0)
            grow = good >= growth_interval
            ls = {"scale": jnp.where(finite, jnp.where(grow, scale * 2, scale),
                                     jnp.maximum(scale / 2, 1.0)),
                  "good_steps": jnp.where(grow, 0, good),
                  "skipped": ls["skipped"] + (~finite).astype(jnp.int32)}
            metrics.update(loss_scale=scale, skipped_steps=ls["skipped"])
        if schedule is not None:
            metrics["lr"] = schedule(state.step)
        if frozen is not None:
            params = combine(params, frozen)
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state,
                          loss_scale=ls), metrics

    donate_argnums = (0,) if donate else ()
    if shardings is None:
        return jax.jit(step, donate_argnums=donate_argnums)
    jitted = jax.jit(step, donate_argnums=donate_argnums, out_shardings=(shardings.state, None))

    def sharded_step(state, batch):
        # The batch arrives from the host as numpy: place each leaf split over the batch axes.
        batch = jax.tree_util.tree_map(lambda x: jax.device_put(x, shardings.batch(x)), batch)
        return jitted(state, batch)

    sharded_step.lower = lambda state, batch: jitted.lower(  # for .lower(...).compile()
        state, jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(
            x.shape, x.dtype, sharding=shardings.batch(x)), batch))
    return sharded_step


def make_eval_step(loss_fn: Callable):
    """A jitted (params, batch) -> summed metrics, without dropout."""
    return jax.jit(lambda params, batch: loss_fn(params, batch, None)[1])
