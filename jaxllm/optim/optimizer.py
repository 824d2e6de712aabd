"""AdamW with warm-up + cosine decay, global-norm clipping and a weight-decay mask.

Weight decay applies to matmul kernels only: not to norm scales, biases or (unless
optim.decay_embeddings) the token and position embeddings, following GPT-3/nanoGPT practice of
not shrinking parameters whose scale carries meaning.
"""

from __future__ import annotations

import jax
import optax

from jaxllm.config import OptimConfig

EMBEDDING_NAMES = ("embedding", "pos_embedding")


def learning_rate_schedule(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    """Linear warm-up from 0 to cfg.lr, then cosine decay to cfg.min_lr at total_steps."""
    if cfg.schedule == "constant":
        if cfg.warmup_steps:
            return optax.linear_schedule(0.0, cfg.lr, cfg.warmup_steps)
        return optax.constant_schedule(cfg.lr)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=cfg.lr, warmup_steps=cfg.warmup_steps,
        decay_steps=max(total_steps, cfg.warmup_steps + 1), end_value=cfg.min_lr)


def decay_mask(params, decay_embeddings: bool = False):
    """A tree of bools, True where weight decay applies (kernels, optionally embeddings)."""

    def decays(path, _):
        name = getattr(path[-1], "key", str(path[-1]))
        return name == "kernel" or (decay_embeddings and name in EMBEDDING_NAMES)

    return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(cfg: OptimConfig, total_steps: int) -> optax.GradientTransformation:
    """The optax transformation a run trains with (without gradient accumulation, which the train
    step does itself so that micro-batches are weighted by their token counts)."""
    parts = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm else []
    parts.append(optax.adamw(
        learning_rate_schedule(cfg, total_steps), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        mask=lambda params: decay_mask(params, cfg.decay_embeddings)))
    return optax.chain(*parts)
