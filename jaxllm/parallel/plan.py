"""From a run's config to a sharded training state and step: what the training loop calls.

    plan = plan_training(cfg, init_fn, loss_fn, tx, parts=decoder_parts(model, z_loss))
    state, step_kwargs = plan.state, plan.step_kwargs     # make_train_step(..., **step_kwargs)

Every check that concerns the layout (mesh spec, divisibility of parameters and batch,
pipeline shape) runs here, before anything is compiled, and raises a ConfigError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jax
import numpy as np

from jaxllm.config import Config, ParallelConfig
from jaxllm.errors import ConfigError
from jaxllm.models.attention import SEQUENCE_PARALLEL
from jaxllm.models.attention import resolve as resolve_attention
from jaxllm.parallel.mesh import make_mesh
from jaxllm.parallel.pipeline import (PipelineParts, bubble_fraction, check_pipeline,
                                      make_pipeline_grads)
from jaxllm.parallel.layout import Layout, parse_rules
from jaxllm.parallel.sharded import ShardedSetup, shard_training


def uses_mesh(pc: ParallelConfig) -> bool:
    return bool(pc.mesh) or pc.pipeline != "none"


def layout_from_config(pc: ParallelConfig, devices=None) -> Layout:
    return Layout.build(make_mesh(pc.mesh, devices), parse_rules(pc.rules), zero=pc.zero,
                        offload_optimizer=pc.offload_optimizer)


def microbatches(pc: ParallelConfig, stages: int) -> int:
    return pc.microbatches or 2 * stages


def padded_vocab(cfg: Config, vocab_size: int) -> int:
    """The tokenizer's vocabulary rounded up to what the mesh's vocabulary split divides (the
    extra rows are never targets; their logits are trained down). Unchanged off a mesh."""
    if not uses_mesh(cfg.parallel) or cfg.model.vocab_size:
        return cfg.model.vocab_size or vocab_size
    layout = layout_from_config(cfg.parallel)
    k = layout.size(a for a in layout.rules.get("vocab", ()) if layout.mesh.shape[a] > 1)
    return -(-vocab_size // k) * k


@dataclass
class Plan:
    layout: Layout
    setup: ShardedSetup
    step_kwargs: dict  # shardings (and grads_fn under a pipeline) for make_train_step
    bubble: float  # pipeline bubble fraction (0 without a pipeline)

    @property
    def state(self):
        return self.setup.state


def check_config(cfg: Config) -> None:
    """The layout's configuration errors (mesh, batch and pipeline shapes), raised before a run
    directory is made or anything is traced. Parameter divisibility is checked at planning."""
    processes = jax.process_count()
    resolve_attention(cfg.model.attention, cfg.model.dtype)  # cudnn off a GPU: ConfigError
    if not uses_mesh(cfg.parallel):
        if cfg.model.attention in SEQUENCE_PARALLEL:
            raise ConfigError(f"model.attention={cfg.model.attention} needs a mesh with a "
                              f"sequence axis; pass --mesh sequence=8 (or data=2,sequence=4), "
                              f"or choose another model.attention")
        if processes > 1:
            raise ConfigError(f"a run on {processes} processes needs a mesh over all their "
                              f"{jax.device_count()} devices: pass --mesh (for example --mesh "
                              f"data=-1) or set parallel.mesh")
        return
    pc = cfg.parallel
    layout = layout_from_config(pc)
    check_sequence(cfg, layout.mesh.shape["sequence"])
    micro_batch = cfg.train.batch_size // cfg.optim.grad_accum
    layout.check_batch(micro_batch, "train.batch_size / optim.grad_accum")
    if micro_batch % processes:
        raise ConfigError(f"train.batch_size / optim.grad_accum = {micro_batch} is not divisible "
                          f"by the {processes} processes (each loads an equal share of the "
                          f"rows); use a multiple of {processes}")
    stages = layout.mesh.shape["stage"]
    if stages > 1 and pc.pipeline == "none":
        raise ConfigError(f"the mesh has stage={stages} but parallel.pipeline=none; pass "
                          f"--pipeline gpipe or --pipeline 1f1b")
    if pc.pipeline != "none":
        if cfg.optim.grad_accum != 1:
            raise ConfigError("optim.grad_accum must be 1 with a pipeline; its micro-batches "
                              "are parallel.microbatches")
        if cfg.train.lora or cfg.model.weights:
            raise ConfigError("train.lora and model.weights do not combine with a pipeline yet; "
                              "use data, fsdp and tensor mesh axes (parallel.pipeline=none)")
        check_pipeline(stages, microbatches(pc, stages), cfg.model.n_layers,
                       cfg.train.batch_size, layout.size(
                           a for a in layout.rules.get("batch", ()) if layout.mesh.shape[a] > 1),
                       pc.pipeline)


def check_sequence(cfg: Config, n: int) -> None:
    """The sequence axis's errors: ring attention without one; with one, a model or objective
    it does not serve, or a context the zig-zag split does not divide."""
    m = cfg.model
    if n == 1:
        if m.attention in SEQUENCE_PARALLEL:
            raise ConfigError(f"model.attention={m.attention} needs a mesh with a sequence axis; "
                              f"--mesh {cfg.parallel.mesh!r} has none (add sequence=N)")
        return
    if m.kind != "decoder" or cfg.train.objective != "lm" or cfg.parallel.pipeline != "none":
        raise ConfigError(f"the mesh's sequence axis (sequence={n}) serves decoder language "
                          f"modelling without a pipeline (model.kind=decoder, "
                          f"train.objective=lm, parallel.pipeline=none)")
    if m.attention != "auto" and m.attention not in SEQUENCE_PARALLEL:
        raise ConfigError(f"model.attention={m.attention} with the mesh's sequence axis: use "
                          f"ring (or auto) or allgather, which attend across the split sequence")
    if m.max_len % (2 * n):
        raise ConfigError(f"model.max_len={m.max_len} is not divisible by 2 x sequence={n} "
                          f"(ring attention's zig-zag chunks); use a multiple of {2 * n}")


def plan_training(cfg: Config, init_fn: Callable, tx, rng, *init_args,
                  parts: PipelineParts | None = None, trainable: Callable | None = None) -> Plan:
    check_config(cfg)
    pc = cfg.parallel
    layout = layout_from_config(pc)
    stages = layout.mesh.shape["stage"]
    step_kwargs: dict[str, Any] = {}
    bubble = 0.0
    if pc.pipeline != "none":
        if parts is None:
            raise ConfigError("this model does not provide pipeline parts; use "
                              "parallel.pipeline=none")
        m = microbatches(pc, stages)
        step_kwargs["grads_fn"] = make_pipeline_grads(parts, layout.mesh, m, pc.pipeline)
        bubble = bubble_fraction(stages, m)
    setup = shard_training(layout, init_fn, tx, rng, *init_args,
                           loss_scaling=cfg.model.dtype == "float16", trainable=trainable)
    step_kwargs["shardings"] = setup.shardings
    return Plan(layout, setup, step_kwargs, bubble)


def process_rows(layout: Layout, batch_size: int) -> np.ndarray | None:
    """The rows of a global batch of batch_size that this process's devices hold (increasing;
    a row held by several devices, e.g. along `tensor`, counts once); None with one process,
    which holds them all. Each process loads only these rows (BatchIterator.batch(step, rows))."""
    if jax.process_count() == 1:
        return None
    sharding = layout.sharding(layout.batch_spec(1))
    blocks = sharding.addressable_devices_indices_map((batch_size,)).values()
    return np.unique(np.concatenate([np.arange(batch_size)[index[0]] for index in blocks]))


def place_batch(plan: Plan, batch, rows: np.ndarray | None = None, batch_size: int = 0):
    """Put a host batch on the mesh, split over the batch axes.

    On several processes the global array is assembled from every process's part: `batch` holds
    the `rows` (process_rows) of a global batch of batch_size, or the whole batch (rows=None)."""
    if jax.process_count() == 1:
        return jax.tree_util.tree_map(
            lambda x: jax.device_put(x, plan.setup.shardings.batch(x)), batch)

    def assemble(x):
        n = batch_size if rows is not None else x.shape[0]
        local = np.arange(n) if rows is None else rows

        def block(index):  # the rows (and columns) one device holds, from this process's rows
            wanted = np.arange(n)[index[0]]
            return x[np.searchsorted(local, wanted)][(slice(None), *index[1:])]

        return jax.make_array_from_callback((n, *x.shape[1:]), plan.setup.shardings.batch(x),
                                            block)

    return jax.tree_util.tree_map(assemble, batch)
