"""Small models, data and checks shared by the tests."""

import contextlib
import fcntl
import functools
import hashlib
import io
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
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


@functools.lru_cache(maxsize=None)
def random_params(cfg, seed=0, scale=0.05):
    """Params of cfg's shapes drawn as scale * N(0, 1) in numpy (norm scales 1 + that): no
    initialiser is compiled, only traced."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda: models.init_params(cfg, jax.random.PRNGKey(0))[0])
    return jax.tree_util.tree_map_with_path(lambda path, s: jnp.asarray(
        ("scale" in jax.tree_util.keystr(path)) + scale * rng.standard_normal(s.shape),
        jnp.float32), shapes)


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


def tiny_decoder(max_len: int = 64, n_layers: int = 2, name: str = "tiny-llama", tokenizer=None,
                 scale: float = 0.05):
    """A small Llama-style PretrainedDecoder over bytes (or `tokenizer`'s vocabulary) with random
    weights (of the model's shapes, standard deviation `scale`): RoPE positions, so the weights
    are the same whatever its context (max_len)."""
    from jaxllm import pretrained
    from jaxllm.text import ByteTokenizer

    tokenizer = ByteTokenizer() if tokenizer is None else tokenizer
    cfg = ModelConfig(vocab_size=tokenizer.vocab_size, max_len=max_len, n_layers=n_layers, n_heads=4,
                      n_kv_heads=2, d_model=64, positions="rope", norm="rmsnorm", mlp="swiglu",
                      use_bias=False, scan_unroll=1)
    rng = np.random.default_rng(5)  # random weights of the model's shapes (traced, not run)
    params = jax.tree_util.tree_map(
        lambda s: jnp.asarray(scale * rng.standard_normal(s.shape), jnp.float32),
        jax.eval_shape(lambda: models.init_params(cfg, jax.random.PRNGKey(0))[0]))
    return pretrained.PretrainedDecoder(cfg, params, tokenizer, name)


def register_tiny_llama(monkeypatch, name="tiny-llama", max_len=64, n_layers=2):
    """Register `name` as tiny_decoder(max_len, n_layers), so that --model / --init-from paths
    run in seconds; the registered smollm2-135m-instruct takes the same code path."""
    from jaxllm import pretrained

    lm = tiny_decoder(max_len, n_layers, name)
    monkeypatch.setitem(pretrained.REGISTRY, name,
                        pretrained.Entry("none", "none", "none", "gguf", "none"))
    monkeypatch.setitem(pretrained._CACHE, name, lm)
    return lm


# all-minilm-l6-v2's architecture in miniature, with its vocabulary (WordPiece, 30522 ids)
TINY_BERT = ModelConfig(kind="encoder", norm_position="post", type_vocab_size=2,
                        vocab_size=30522, max_len=128, n_layers=1, n_heads=2, d_model=16,
                        norm_eps=1e-12, scan_unroll=1)


def register_tiny_bert(monkeypatch, name="tiny-bert"):
    """Register `name` as a PretrainedEncoder of TINY_BERT's shapes (random weights, the
    pretraining heads included) with all-minilm-l6-v2's tokenizer, so that fine-tuning it
    (--init-from) takes all-minilm-l6-v2's code path in seconds."""
    from jaxllm import pretrained
    from jaxllm.text import load_tokenizer

    params = random_params(TINY_BERT, seed=7)  # norm scales near 1: a live body
    enc = pretrained.PretrainedEncoder(TINY_BERT, params, load_tokenizer("all-minilm-l6-v2"),
                                       name, TINY_BERT.max_len)
    monkeypatch.setitem(pretrained.REGISTRY, name,
                        pretrained.Entry("none", "none", "none", "hf", "none"))
    monkeypatch.setitem(pretrained._CACHE, name, enc)
    return enc


# --- tiny runs of every kind, built once per test session (conftest.py's `tiny_run`) -----------

# A one-layer char decoder that trains in a few seconds (the CLI tests' model size).
TINY = ["--set", "model.n_layers=1", "--set", "model.d_model=32", "--set", "model.n_heads=2",
        "--set", "model.max_len=32", "--set", "train.batch_size=4", "--set", "train.eval_every=5",
        "--set", "train.eval_batches=2", "--set", "optim.warmup_steps=2"]
# ViT/CLIP on the 8x8 digits fixture (scikit-learn), one layer of width 16.
SMALL = ["--set", "data.corpus=digits", "--set", "model.image_size=8", "--set",
         "model.patch_size=4", "--set", "model.n_layers=1", "--set", "model.d_model=16",
         "--set", "model.n_heads=2", "--set", "model.d_ff=32", "--set", "train.batch_size=16",
         "--set", "train.eval_every=2", "--set", "train.eval_batches=1", "--set",
         "optim.warmup_steps=1"]

# kind -> the command that makes it ({char}: the char run's directory; --out is added). llama
# reads bytes, so that the LoRA run fine-tunes it on another corpus (README).
RUN_COMMANDS = {
    "char": ["train", "--steps", "4", "--no-progress"] + TINY,
    "bpe": ["train", "--preset", "shakespeare-bpe", "--set", "data.corpus=pydoc", "--set",
            "data.vocab_size=512", "--steps", "2", "--no-progress"] + TINY,
    "llama": ["train", "--preset", "shakespeare-char-llama", "--steps", "2", "--no-progress",
              "--set", "data.tokenizer=byte"] + TINY + ["--set", "model.n_kv_heads=1"],
    "mlm": ["train", "--preset", "shakespeare-mlm", "--steps", "2", "--no-progress"] + TINY,
    "seq2seq": ["train", "--preset", "dates-seq2seq", "--steps", "2", "--no-progress", "--set",
                "data.target_len=16"] + TINY,  # ISO dates: 10 characters and the end token
    "vit": ["train", "--preset", "mnist-vit", "--steps", "2", "--no-progress"] + SMALL,
    "clip": ["train", "--preset", "mnist-clip", "--steps", "2", "--no-progress", "--set",
             "model.text_layers=1", "--set", "model.embed_dim=8"] + SMALL,
    "quantized": ["quantize", "--run", "{char}", "--method", "int4", "--group", "16"],
    # the README's fine-tuning example: a byte-level base onto another corpus
    "lora": ["train", "--init-from", "{llama}", "--data", "pydoc", "--lora",
             "rank=2,alpha=4,targets=all", "--steps", "2", "--no-progress"] + TINY,
    "exported": ["export", "--run", "{char}"],
    "exported-mlm": ["export", "--run", "{mlm}"],
}


class TinyRuns:
    """Run directories of every kind, each made on first use by the jaxllm command itself and
    then shared (read-only: copy one with `copy` before changing it). Several test processes
    (pytest-xdist's workers) may share one root: a file lock per kind lets the first build it
    and the others wait for it and read it."""

    def __init__(self, root: Path):
        self.root = root
        self._built: dict[str, Path] = {}

    def __call__(self, kind: str) -> Path:
        if kind not in self._built:
            out, done = self.root / kind, self.root / f"{kind}.built"
            with open(self.root / f"{kind}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
                if not done.exists():
                    shutil.rmtree(out, ignore_errors=True)  # a build that failed elsewhere
                    argv = [self(a[1:-1]) if a.startswith("{") else a for a in RUN_COMMANDS[kind]]
                    with contextlib.redirect_stdout(io.StringIO()), \
                            contextlib.redirect_stderr(io.StringIO()) as err:
                        code = main([str(a) for a in argv] + ["--out", str(out)])
                    assert code == 0 and (out / "config.json").exists(), \
                        f"building the tiny {kind} run failed: {err.getvalue()}"
                    done.touch()
            self._built[kind] = out
        return self._built[kind]

    def copy(self, kind: str, dest: Path) -> Path:
        """A private copy of a run, to resume or otherwise change."""
        shutil.copytree(self(kind), dest)
        return dest


def checksums(*roots: Path) -> dict[str, str]:
    """{path: sha256} of every file under roots (a file root counts as itself): compare before
    and after a command to prove it changed nothing a user had."""
    out = {}
    for root in map(Path, roots):
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


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


# --- encoder-decoder (kind="seq2seq") --------------------------------------------------------

# The original Transformer's layout in miniature (post-norm, sinusoidal positions, one shared
# table) and a modern one (pre-norm, RoPE, RMSNorm, SwiGLU, grouped-query attention, separate
# source and target tables, an untied head). Reference attention: one implementation compared.
SEQ2SEQ = {
    "vaswani": ModelConfig(kind="seq2seq", vocab_size=13, max_len=8, n_layers=2, n_heads=2,
                           d_model=16, positions="sinusoidal", norm_position="post",
                           attention="reference"),
    "learned": ModelConfig(kind="seq2seq", vocab_size=13, max_len=8, n_layers=2, n_heads=2,
                           d_model=16, attention="reference"),
    "modern": ModelConfig(kind="seq2seq", vocab_size=13, max_len=8, n_layers=2, n_heads=4,
                          n_kv_heads=2, d_model=16, positions="rope", rope_theta=100.0,
                          norm="rmsnorm", mlp="swiglu", use_bias=False, tie_embeddings=False,
                          share_embeddings=False, attention="reference"),
}


def seq2seq_batch(seed: int = 0, batch: int = 3, src_len: int = 7, tgt_len: int = 6):
    """Random source and target ids (1..12) right-padded with 0 to per-row lengths, row 0
    unpadded: (source, source_mask, target, target_mask) as numpy arrays."""
    rng = np.random.default_rng(seed)
    out = []
    for length in (src_len, tgt_len):
        ids = rng.integers(1, 13, (batch, length))
        lengths = np.concatenate([[length], rng.integers(2, length, batch - 1)])
        mask = np.arange(length)[None, :] < lengths[:, None]
        out += [np.where(mask, ids, 0).astype(np.int32), mask]
    return tuple(out)


def brute_force_span(start, end, max_answer, valid=None):
    """(i, j, score) maximising start[i] + end[j] over every i <= j < i + max_answer with both
    valid, the first in row-major order on ties."""
    best = None
    for i in range(len(start)):
        for j in range(i, min(len(start), i + max_answer)):
            if valid is not None and not (valid[i] and valid[j]):
                continue
            score = start[i] + end[j]
            if best is None or score > best[2]:
                best = (i, j, score)
    return best
