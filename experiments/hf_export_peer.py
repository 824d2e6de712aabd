#!/usr/bin/env python3
"""The peer side of hf_export_transformers.py: Hugging Face `transformers` reads directories that
jaxllm exported and runs them. Runs in the peers' venv (torch, transformers), never imports jaxllm.

Usage: ~/.venv-peers/bin/python -P experiments/hf_export_peer.py MANIFEST.json
The manifest lists {"name", "dir", "ids"}; for each entry this writes <dir>/transformers.npz with
the model's outputs on the ids (float32): "logits" for a causal LM; "hidden", and for
BertForPreTraining also "mlm_logits" and "nsp_logits", for BERT. Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import transformers


def run_one(directory: Path, ids: np.ndarray) -> dict:
    config = json.loads((directory / "config.json").read_text())
    arch = config["architectures"][0]
    cls = getattr(transformers, arch)  # LlamaForCausalLM, GPT2LMHeadModel, BertModel, ...
    model = cls.from_pretrained(directory, torch_dtype=torch.float32,
                                attn_implementation="eager").eval()
    tokens = torch.as_tensor(ids, dtype=torch.long)
    with torch.no_grad():
        if arch == "BertForPreTraining":
            out = model(tokens, output_hidden_states=True)
            arrays = {"hidden": out.hidden_states[-1], "mlm_logits": out.prediction_logits,
                      "nsp_logits": out.seq_relationship_logits}
        elif arch == "BertModel":
            arrays = {"hidden": model(tokens).last_hidden_state}
        else:
            arrays = {"logits": model(tokens).logits}
    np.savez(directory / "transformers.npz", **{k: v.float().numpy() for k, v in arrays.items()})
    return {"class": arch, "outputs": sorted(arrays)}


def main() -> None:
    manifest = json.loads(Path(sys.argv[1]).read_text())
    torch.set_num_threads(2)
    result = {e["name"]: run_one(Path(e["dir"]), np.asarray(e["ids"])) for e in manifest}
    print(json.dumps({"transformers": transformers.__version__, "torch": torch.__version__,
                      "models": result}))


if __name__ == "__main__":
    main()
