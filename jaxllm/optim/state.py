"""What a train step carries and how it is laid out on a mesh.

    state = TrainState.create(params, tx)              # step 0, optimizer state for params
    state = TrainState.create(params, tx, lora.trainable)  # optimizer state for LoRA factors only

`TrainState` is the step's whole input and output besides the batch: the update count, the
parameters, the optimizer state and (float16 only) the dynamic loss scale. `StepShardings` is
what jaxllm.parallel computes for a mesh and jaxllm.train.step's jit uses. Both sit below the
trainer and the parallel layouts so that each can build on them.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxllm.transforms.partition import partition


@struct.dataclass
class TrainState:
    step: jax.Array  # () int32: optimizer updates done so far
    params: Any
    opt_state: Any
    # float16 only: {"scale": f32, "good_steps": i32, "skipped": i32}; None (no leaves) otherwise
    loss_scale: Any = None

    @classmethod
    def create(cls, params, tx: optax.GradientTransformation, trainable: Callable | None = None,
               *, loss_scaling: bool = False) -> "TrainState":
        """trainable(params) -> bool tree (e.g. LoRA's): optimizer state for those leaves only."""
        opt_params = params if trainable is None else partition(params, trainable(params))[0]
        return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(opt_params),
                   loss_scale=initial_loss_scale() if loss_scaling else None)


def initial_loss_scale(scale: float = 2.0 ** 15) -> dict:
    return {"scale": jnp.asarray(scale, jnp.float32), "good_steps": jnp.zeros((), jnp.int32),
            "skipped": jnp.zeros((), jnp.int32)}


class StepShardings(NamedTuple):
    """Shardings of a step on a mesh: `state` a TrainState of NamedShardings, `batch` one
    sharding per batch leaf (a callable leaf -> sharding), `grads` the gradients' shardings."""
    state: Any
    batch: Callable
    grads: Any
    opt_compute: Any = None  # with optimizer offload: the device-memory shardings to update in
