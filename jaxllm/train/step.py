"""Train and eval steps: pure functions, jitted once.

    state = TrainState.create(params, tx)
    train_step = make_train_step(loss_fn, tx, grad_accum=1, seed=0)   # jitted, donates state
    state, metrics = train_step(state, batch)

RNG is explicit: the dropout key of step s is fold_in(PRNGKey(seed), s), so a resumed run draws
the same keys as an uninterrupted one. Gradient accumulation splits the batch into micro-batches
along its first axis and weights each one by its number of loss tokens, so the update equals the
one a single large batch would give.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxllm.transforms.partition import combine, partition


@struct.dataclass
class TrainState:
    step: jax.Array  # () int32: optimizer updates done so far
    params: Any
    opt_state: Any

    @classmethod
    def create(cls, params, tx: optax.GradientTransformation,
               trainable: Callable | None = None) -> "TrainState":
        """trainable(params) -> bool tree (e.g. LoRA's): optimizer state for those leaves only."""
        opt_params = params if trainable is None else partition(params, trainable(params))[0]
        return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(opt_params))


def _sum_trees(a, b):
    return jax.tree_util.tree_map(jnp.add, a, b)


def make_train_step(loss_fn: Callable, tx: optax.GradientTransformation, *, grad_accum: int = 1,
                    seed: int = 0, schedule: Callable | None = None, donate: bool = True,
                    trainable: Callable | None = None):
    """A jitted (state, batch) -> (state, metrics). loss_fn(params, batch, rng) -> (loss, sums).

    metrics: the objective's sums (loss_sum, tokens, ...), `loss` (the mean objective, with
    z-loss), `grad_norm` (before clipping) and `lr` if a schedule is given. They stay on device;
    the caller decides when to fetch them. trainable(params) -> bool tree (LoRA): only those
    leaves are differentiated and updated; the state must come from TrainState.create with the
    same `trainable`.
    """
    if trainable is not None:
        inner = make_train_step(loss_fn, tx, grad_accum=grad_accum, seed=seed,
                                schedule=schedule, donate=False).__wrapped__

        def partial_step(state: TrainState, batch):
            train_p, frozen = partition(state.params, trainable(state.params))
            sub, metrics = inner(TrainState(state.step, train_p, state.opt_state), batch,
                                 lambda p: combine(p, frozen))
            return TrainState(sub.step, combine(sub.params, frozen), sub.opt_state), metrics

        return jax.jit(partial_step, donate_argnums=(0,) if donate else ())

    def step(state: TrainState, batch, full=lambda p: p):
        grad_fn = jax.value_and_grad(lambda p, b, r: loss_fn(full(p), b, r), has_aux=True)
        rng = jax.random.fold_in(jax.random.PRNGKey(seed), state.step)
        if grad_accum == 1:
            (loss, sums), grads = grad_fn(state.params, batch, rng)
        else:
            micro = jax.tree_util.tree_map(
                lambda x: x.reshape(grad_accum, x.shape[0] // grad_accum, *x.shape[1:]), batch)

            def weighted_grads(i, mb):  # grads and sums of one micro-batch, times its tokens
                (loss_i, sums_i), g = grad_fn(state.params, mb, jax.random.fold_in(rng, i))
                n = sums_i["tokens"]
                return jax.tree_util.tree_map(lambda x: x * n, g), dict(sums_i, objective=loss_i * n)

            shapes = jax.eval_shape(weighted_grads, 0, jax.tree_util.tree_map(lambda x: x[0], micro))
            zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
            (grads, sums), _ = jax.lax.scan(
                lambda acc, xs: (_sum_trees(acc, weighted_grads(*xs)), None), zeros,
                (jnp.arange(grad_accum), micro))
            total = jnp.maximum(sums["tokens"], 1.0)
            grads = jax.tree_util.tree_map(lambda g: g / total, grads)
            loss = sums.pop("objective") / total
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = dict(sums, loss=loss, grad_norm=optax.tree.norm(grads))
        if schedule is not None:
            metrics["lr"] = schedule(state.step)
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return jax.jit(step, donate_argnums=(0,) if donate else ())  # .__wrapped__ is `step`


def make_eval_step(loss_fn: Callable):
    """A jitted (params, batch) -> summed metrics, without dropout."""
    return jax.jit(lambda params, batch: loss_fn(params, batch, None)[1])
