#!/usr/bin/env python3
"""Are jaxllm's RoPE scalings (models/rope.py) transformers' ROPE_INIT_FUNCTIONS? For SmolLM2's
heads (64 wide, base 1e5) and a Llama-2-like head (128, base 1e4), each scaling and factor, the
inverse frequencies and the attention factor of jaxllm and of transformers (run in the peers'
venv) are compared.

transformers has no static NTK-aware scaling; its "dynamic" one at length s uses the base
theta * (f * s / L - (f - 1))^(d/(d-2)), which equals jaxllm's "ntk" base theta * f^(d/(d-2))
at s = L * (2f - 1) / f: that is the length the comparison asks it for.

Usage: python experiments/rope_scaling_transformers.py [--peer-python ~/.venv-peers/bin/python]
Prints a markdown table (max relative difference of the inverse frequencies per case).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess

import numpy as np

from jaxllm.config import ModelConfig
from jaxllm.models.rope import frequencies

HEADS = {"smollm2 (64, 1e5)": (64, 1e5, 2048), "llama-2 (128, 1e4)": (128, 1e4, 4096)}
CASES = [(s, f) for s in ("linear", "ntk", "yarn") for f in (2.0, 4.0, 8.0)]

PEER = r"""
import json, sys
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
out = []
for H, theta, L, scaling, f in json.loads(sys.argv[1]):
    kind = {"ntk": "dynamic"}.get(scaling, scaling)
    params = {"rope_type": kind, "factor": f, "rope_theta": theta}
    if kind == "yarn":
        params["original_max_position_embeddings"] = L
    c = LlamaConfig(hidden_size=H * 4, num_attention_heads=4, head_dim=H,
                    max_position_embeddings=L if kind == "dynamic" else int(L * f),
                    rope_parameters=params)
    kw = {"seq_len": L * (2 * f - 1) / f} if kind == "dynamic" else {}
    inv, att = ROPE_INIT_FUNCTIONS[kind](c, "cpu", **kw)
    out.append([inv.double().tolist(), float(att)])
print(json.dumps(out))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peer-python", default=os.path.expanduser("~/.venv-peers/bin/python"))
    args = ap.parse_args()
    rows = [(name, H, theta, L, s, f) for name, (H, theta, L) in HEADS.items() for s, f in CASES]
    peer = json.loads(subprocess.run(
        [args.peer_python, "-c", PEER, json.dumps([r[1:] for r in rows])],
        check=True, capture_output=True, text=True).stdout)
    print("| head (size, base) | trained context | scaling | factor | max rel. diff inv_freq | "
          "attention factor jaxllm / transformers |")
    print("|---|---|---|---|---|---|")
    for (name, H, theta, L, s, f), (hf_inv, hf_att) in zip(rows, peer):
        cfg = ModelConfig(max_len=int(L * f), n_heads=4, d_model=4 * H, head_dim=H,
                          positions="rope", rope_theta=theta)
        inv, att = frequencies(dataclasses.replace(cfg, rope_scaling=s, rope_factor=f,
                                                   rope_original_len=L))
        diff = np.max(np.abs(inv - np.asarray(hf_inv)) / np.asarray(hf_inv))
        print(f"| {name} | {L} | {s} | {f:g} | {diff:.1e} | {att:.6f} / {hf_att:.6f} |")


if __name__ == "__main__":
    main()
