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

from jaxllm.config import Config, ParallelConfig
from jaxllm.errors import ConfigError
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
    if not uses_mesh(cfg.parallel):
        return
    pc = cfg.parallel
    layout = layout_from_config(pc)
    layout.check_batch(cfg.train.batch_size // cfg.optim.grad_accum,
                       "train.batch_size / optim.grad_accum")
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


def place_batch(plan: Plan, batch):
    """Put a host batch on the mesh, split over the batch axes."""
    return jax.tree_util.tree_map(
        lambda x: jax.device_put(x, plan.setup.shardings.batch(x)), batch)
