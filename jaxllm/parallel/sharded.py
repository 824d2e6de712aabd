"""Sharded training state: created already split over the mesh, never whole on one device.

    layout = Layout.build(make_mesh("fsdp=8"), zero=0)
    setup = shard_training(layout, lambda rng: init_params(cfg, rng), tx, rng)
    step = make_train_step(loss_fn, tx, shardings=setup.shardings)
    state, metrics = step(setup.state, batch)

Generic over the model: `init_fn(rng, *init_args) -> (params, logical specs)` is all it needs
(the decoder's `init_params`, an encoder's, or a transform applied after one, as long as new
leaves carry logical names; init_args, e.g. a base model's weights to fine-tune, enter the jit
as arguments). The parameters and optimizer state are produced by one jit whose out_shardings
are the layout's, so each device materialises only its own shards. With `trainable` (LoRA's
mask), gradients and optimizer state exist for the trainable leaves only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jax
from jax.sharding import PartitionSpec as P

from jaxllm.errors import ConfigError
from jaxllm.parallel.layout import Layout, _is_spec, state_specs
from jaxllm.models.layers import abstract_init
from jaxllm.optim.state import StepShardings, TrainState, initial_loss_scale


@dataclass
class ShardedSetup:
    state: TrainState  # on the mesh
    shardings: StepShardings
    specs: dict  # {"params", "grads", "opt"}: PartitionSpec trees (what the rules said)
    logical: Any  # the logical spec tree of the params


def _memory_kind_supported(layout: Layout, kind: str) -> bool:
    dev = layout.mesh.devices.flat[0]
    try:
        return any(m.kind == kind for m in dev.addressable_memories())
    except Exception:  # a backend without the memories API
        return False


def state_shardings(layout: Layout, specs: dict, loss_scaling: bool):
    opt_kind = None
    if layout.offload_optimizer:
        if not _memory_kind_supported(layout, "pinned_host"):
            platform = layout.mesh.devices.flat[0].platform
            raise ConfigError(f"parallel.offload_optimizer: the {platform} backend has no "
                              f"'pinned_host' memory; run without optimizer offload")
        opt_kind = "pinned_host"
    to_sh = lambda tree, kind=None: jax.tree_util.tree_map(  # noqa: E731
        lambda s: layout.sharding(s, kind), tree, is_leaf=_is_spec)
    replicated = layout.sharding(P())
    return TrainState(step=replicated, params=to_sh(specs["params"]),
                      opt_state=to_sh(specs["opt"], opt_kind),
                      loss_scale=jax.tree_util.tree_map(lambda _: replicated,
                                                        initial_loss_scale())
                      if loss_scaling else None)


def shard_training(layout: Layout, init_fn: Callable, tx, rng, *init_args,
                   loss_scaling: bool = False, trainable: Callable | None = None) -> ShardedSetup:
    """Create the TrainState directly in its shards, with the step's shardings."""
    abstract, logical = abstract_init(init_fn, rng, *init_args)
    # raises on indivisible dimensions
    specs = state_specs(layout, tx, abstract, logical,
                        None if trainable is None else trainable(abstract))
    shardings = state_shardings(layout, specs, loss_scaling)

    def create(r, *args):
        return TrainState.create(init_fn(r, *args)[0], tx, trainable, loss_scaling=loss_scaling)

    state = jax.jit(create, out_shardings=shardings)(rng, *init_args)
    grads = jax.tree_util.tree_map(layout.sharding, specs["grads"], is_leaf=_is_spec)
    batch = lambda x: layout.sharding(layout.batch_spec(x.ndim))  # noqa: E731
    opt_compute = None
    if layout.offload_optimizer:  # updated in device memory, kept in pinned host memory
        opt_compute = jax.tree_util.tree_map(lambda s: layout.sharding(s, "device"),
                                             specs["opt"], is_leaf=_is_spec)
    return ShardedSetup(state, StepShardings(shardings, batch, grads, opt_compute), specs,
                        logical)
