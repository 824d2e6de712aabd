"""Small models and checks shared by the tests."""

import functools

import jax

from jaxllm.cli.main import main
from jaxllm.config import ModelConfig
from jaxllm import models

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


def error_of(argv, capsys) -> str:
    """Run the CLI on argv; assert it failed as a user mistake (exit 2, one line, no traceback)
    and return that line."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]
