#!/usr/bin/env python3
"""Are jaxllm's Hugging Face exports what `transformers` reads? Each model is exported with
jaxllm (save_hf, or `jaxllm export --model` for the pretrained ones), loaded by `transformers`
from the directory alone (experiments/hf_export_peer.py in the peers' venv), run on the same
token ids, and its outputs compared with jaxllm's own forward on the same parameters.

Models: random tiny GPT-2, Llama (grouped-query attention, untied head) and BERT (with the
pretraining heads, exported as BertForPreTraining), each with every parameter perturbed so
that biases and norm scales matter; SmolLM2-135M-Instruct (Llama) and all-MiniLM-L6-v2
(BertModel) as `jaxllm export` writes them.

Usage: python experiments/hf_export_transformers.py [--peer-python ~/.venv-peers/bin/python]
Prints a markdown table (max |jaxllm - transformers| per output) and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

from jaxllm import models, pretrained
from jaxllm.config import ModelConfig
from jaxllm.io.hf import save_hf

HERE = Path(__file__).resolve().parent

TINY = {
    "gpt2-tiny": ModelConfig(vocab_size=101, max_len=32, n_layers=2, n_heads=4, d_model=64),
    "llama-tiny": ModelConfig(vocab_size=101, max_len=32, n_layers=2, n_heads=4, n_kv_heads=2,
                              d_model=64, positions="rope", rope_theta=10000.0, norm="rmsnorm",
                              mlp="swiglu", use_bias=False, tie_embeddings=False),
    "bert-tiny": ModelConfig(kind="encoder", norm_position="post", type_vocab_size=2,
                             vocab_size=101, max_len=32, n_layers=2, n_heads=4, d_model=64,
                             norm_eps=1e-12),
}
PRETRAINED = ("smollm2-135m-instruct", "all-minilm-l6-v2")
TEXT = "The capital of France is Paris, and the capital of Germany is"


def perturbed(cfg: ModelConfig, seed: int = 0) -> dict:
    """Initialised params with every leaf plus 0.05 * N(0, 1)."""
    params, _ = models.init_params(cfg, jax.random.PRNGKey(seed))
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(
        lambda x: np.asarray(x) + 0.05 * rng.normal(size=x.shape).astype(np.float32), params)


def jaxllm_outputs(cfg: ModelConfig, params, ids: np.ndarray, heads: bool) -> dict:
    model = models.build(cfg)
    if cfg.kind == "encoder":
        out = model.apply({"params": params}, ids, heads=("mlm", "nsp") if heads else ())
        return {k: np.asarray(v) for k, v in out.items()}
    return {"logits": np.asarray(model.apply({"params": params}, ids))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--peer-python", default=os.path.expanduser("~/.venv-peers/bin/python"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hf_export_") as tmp:
        compare(Path(tmp), args.peer_python)


def compare(work: Path, peer_python: str) -> None:
    """Export every model into work/, run them with transformers, print the comparison."""
    rng = np.random.default_rng(1)
    ours, manifest = {}, []
    for name, cfg in TINY.items():
        params = perturbed(cfg)
        heads = cfg.kind == "encoder"
        save_hf(work / name, cfg, params, heads=heads)
        ids = rng.integers(0, cfg.vocab_size, (2, 17))
        ours[name] = jaxllm_outputs(cfg, params, ids, heads)
        manifest.append({"name": name, "dir": str(work / name), "ids": ids.tolist()})
    for name in PRETRAINED:
        subprocess.run([sys.executable, "-m", "jaxllm.cli.main", "export", "--model", name,
                        "--out", str(work / name)], check=True, capture_output=True)
        m = pretrained.load(name)
        ids = np.asarray([m.tokenizer.encode(TEXT)[:14]])
        ours[name] = jaxllm_outputs(m.config, m.params, ids, heads=False)
        manifest.append({"name": name, "dir": str(work / name), "ids": ids.tolist()})
    (work / "manifest.json").write_text(json.dumps(manifest))
    peer = subprocess.run([peer_python, "-P", str(HERE / "hf_export_peer.py"),
                           str(work / "manifest.json")], check=True, capture_output=True,
                          text=True)
    info = json.loads(peer.stdout.strip().splitlines()[-1])

    rows, result = [], {}
    for entry in manifest:
        name = entry["name"]
        theirs = dict(np.load(Path(entry["dir"]) / "transformers.npz"))
        assert set(theirs) == set(ours[name]), (name, sorted(theirs), sorted(ours[name]))
        for key in sorted(theirs):
            diff = float(np.max(np.abs(ours[name][key] - theirs[key])))
            scale = float(np.max(np.abs(theirs[key])))
            rows.append(f"| {name} | {info['models'][name]['class']} | {key} "
                        f"{tuple(theirs[key].shape)} | {diff:.2e} | {scale:.2f} |")
            result[f"{name}/{key}"] = diff
    print("| model | read by transformers as | output (shape) | max abs diff | max abs value |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    print(json.dumps({"transformers": info["transformers"], "torch": info["torch"],
                      "jax": jax.__version__, "max_abs_diff": result}))


if __name__ == "__main__":
    main()
