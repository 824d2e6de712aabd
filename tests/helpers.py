"""Small models, data and checks shared by the tests."""

import functools

import jax
import numpy as np
from hypothesis import strategies as st

from jaxllm.cli.main import main
from jaxllm.config import ModelConfig, OptimConfig
from jaxllm import models
from jaxllm.data import BatchIterator
from jaxllm.optim import make_optimizer

GPT = ModelConfig(vocab_size=37, max_len=16, n_layers=2, n_heads=4, d_model=32)
LLAMA = ModelConfig(vocab_size=37, max_len=16, n_layers=2, n_heads=4, n_kv_heads=2, d_model=32,
                    positions="rope", rope_theta=100.0, norm="rmsnorm", mlp="swiglu",
                    use_bias=False, tie_embeddings=False)
# SmolLM2-135M's shape in miniature: 9 query heads over 3 kv heads, tied embeddings, RoPE 1e5
SMOL = ModelConfig(vocab_size=37, max_len=16, n_layers=2, n_heads=9, n_kv_heads=3, head_dim=8,
                   d_model=32, d_ff=64, positions="rope", rope_theta=1e5, norm="rmsnorm",
                   mlp="swiglu", use_bias=False, tie_embeddings=True)
CONFIGS = {"gpt": GPT, "llama": LLAMA, "smol": SMOL}


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


@functools.lru_cache(maxsize=None)
def text_pairs(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """n (hypothesis, reference) sentence pairs for the text-metric tests: references are
    sentences of CPython's pydoc topics (always installed), hypotheses a seeded perturbation
    (words dropped, neighbours swapped, words replaced), as the peer benchmark makes them."""
    import random
    import re

    from pydoc_data.topics import topics

    text = "".join(topics[k] for k in sorted(topics))
    sents = [" ".join(s.split()) for s in re.split(r"(?<=[.!?])\s+", text)]
    sents = [s for s in sents if len(s.split()) >= 5]
    vocab = sorted({w for s in sents for w in s.split()})
    rng = random.Random(seed)
    hyps, refs = [], []
    for i in range(n):
        ref = sents[(i * 7919) % len(sents)]
        w = [x for x in ref.split() if rng.random() > 0.15] or ref.split()[:1]
        for j in range(len(w) - 1):
            if rng.random() < 0.10:
                w[j], w[j + 1] = w[j + 1], w[j]
        hyps.append(" ".join(rng.choice(vocab) if rng.random() < 0.05 else x for x in w))
        refs.append(ref)
    return hyps, refs


# The text-metric tests' shared inputs. sacrebleu's README example: two reference sets.
SYS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
REFS = [["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
        ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]]

# Pieces of text that exercise every tokenizer rule: periods and commas next to digits or not,
# dashes after digits, HTML entities, mteval's <skipped> and hyphenated line breaks, Unicode
# punctuation and symbols, case pairs whose lowercase differs in length.
PIECES = ["the", "The", "dog", "a", " ", " ", " ", ".", ",", "-", "9", "1,000", "3.5", "x.y",
          "'", '"', "(", ")", "!", "?", "&quot;", "&amp;", "&lt;", "<skipped>", "\n", "-\n",
          "\t", "\u00a0", "é", "Σ", "İ", "€", "—", "«", "»", "。", "٣"]
metric_texts = st.lists(st.sampled_from(PIECES), max_size=12).map("".join)
