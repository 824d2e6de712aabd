"""Small models, data and checks shared by the tests."""

import functools

import jax
import numpy as np

from jaxllm.cli.main import main
from jaxllm.config import ModelConfig, OptimConfig
from jaxllm import models
from jaxllm.data import BatchIterator
from jaxllm.optim import make_optimizer

GPT = ModelConfig(vocab_size=37, max_len=16, n_layers=2, n_heads=4, d_model=32)
LLAMA = ModelConfig(vocab_size=37, max_len=16, n_layers=2, n_heads=4, n_kv_heads=2, d_model=32,
                    positions="rope", rope_theta=100.0, norm="rmsnorm", mlp="swiglu",
                    use_bias=False, tie_embeddings=False)
CONFIGS = {"gpt": GPT, "llama": LLAMA}


@functools.lru_cache(maxsize=None)
def noisy_params(cfg, seed=0, scale=0.05):
    """Initialised params of any model kind (cfg.kind) with every leaf perturbed by
    scale * N(0, 1), so zero biases and unit scales matter."""
    params, _ = models.init_params(cfg, jax.random.PRNGKey(seed))
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
    leaves = [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
    return jax.tree_util.tree_unflatten(tree, leaves)


# --- the parallel tests' model and data ----------------------------------------------------

# 4 layers: a 4-stage pipeline holds one each. The reference attention keeps the comparisons
# to one implementation; a rolled layer loop compiles once per block.
MESH_CFG = ModelConfig(vocab_size=64, max_len=16, n_layers=4, n_heads=4, d_model=32,
                       attention="reference", scan_unroll=1)
ADAMW = make_optimizer(OptimConfig(lr=1e-3, warmup_steps=0, schedule="constant"), 5)
# Losses of 5 steps agree across layouts to ~5e-7 (the all-reduces' summation order).
LOSS_ATOL = 2e-5


def mesh_init(rng):
    return models.init_params(MESH_CFG, rng)


def mesh_batches(n=5, packed=False):
    """n batches of 8 rows x 16 tokens (vocabulary 64): random windows, or rows packed with
    several documents each (segment ids, positions, loss mask), as jaxllm.data makes them."""
    rs = np.random.RandomState(0)
    if not packed:
        return [{"inputs": rs.randint(0, 64, (8, 16)).astype(np.int32),
                 "targets": rs.randint(0, 64, (8, 16)).astype(np.int32)} for _ in range(n)]
    docs = [rs.randint(1, 64, rs.randint(3, 12)).astype(np.int32) for _ in range(60)]
    it = BatchIterator(docs, 8, 16, 0, "packed")
    return [it.batch(k) for k in range(n)]


def error_of(argv, capsys) -> str:
    """Run the CLI on argv; assert it failed as a user mistake (exit 2, one line, no traceback)
    and return that line."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]
