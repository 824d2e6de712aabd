#!/usr/bin/env python3
"""The peer side of hf_export_transformers.py: Hugging Face `transformers` reads directories that
jaxllm exported and runs them. Runs in the peers' venv (torch, transformers), never imports jaxllm.

Usage: ~/.venv-peers/bin/python -P experiments/hf_export_peer.py MANIFEST.json
The manifest lists {"name", "dir", "ids"} and optionally "mask" (the padding mask of the ids),
"types" (token types), "decoder_ids" / "decoder_mask" (an encoder-decoder's target side) and
"generate" ({"max_new_tokens", optional "ids" and "mask"}: greedy decoding of those ids, or
the entry's, by `generate` with the directory's generation_config.json) and "texts" (raw
texts for a sentence-transformers directory's `encode`). A directory with modules.json is read
by sentence-transformers' `SentenceTransformer` (jaxllm's sequence head: BertModel, pooling,
Dense), the others by the transformers class config.json names. For each entry this writes
<dir>/transformers.npz with the model's outputs (float32): "logits" for a causal LM, an
encoder-decoder, a token classifier or a sentence-transformers model (its forward on the
ids: "sentence_embedding"), and "encode_logits" (`encode(texts)`) for the latter;
"start_logits" and "end_logits" for BertForQuestionAnswering; "hidden", and for
BertForPreTraining also "mlm_logits" and "nsp_logits", for BERT; "generated" (the token ids
after the decoder's start token, -1 from the end token on). Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import transformers


def run_one(entry: dict) -> dict:
    directory = Path(entry["dir"])
    if (directory / "modules.json").is_file():
        return run_sentence_transformers(entry)
    config = json.loads((directory / "config.json").read_text())
    arch = config["architectures"][0]
    cls = getattr(transformers, arch)  # LlamaForCausalLM, GPT2LMHeadModel, BertModel, ...
    model = cls.from_pretrained(directory, torch_dtype=torch.float32,
                                attn_implementation="eager").eval()

    def tensor(key):
        return None if key not in entry else torch.as_tensor(np.asarray(entry[key]))

    tokens = tensor("ids").long()
    mask, types = tensor("mask"), tensor("types")
    with torch.no_grad():
        if arch == "BertForPreTraining":
            out = model(tokens, output_hidden_states=True)
            arrays = {"hidden": out.hidden_states[-1], "mlm_logits": out.prediction_logits,
                      "nsp_logits": out.seq_relationship_logits}
        elif arch == "BertModel":
            arrays = {"hidden": model(tokens).last_hidden_state}
        elif arch == "BertForQuestionAnswering":
            out = model(tokens, attention_mask=mask, token_type_ids=types)
            arrays = {"start_logits": out.start_logits, "end_logits": out.end_logits}
        elif arch == "BertForTokenClassification":
            arrays = {"logits": model(tokens, attention_mask=mask, token_type_ids=types).logits}
        elif config.get("is_encoder_decoder"):
            arrays = {"logits": model(tokens, attention_mask=mask,
                                      decoder_input_ids=tensor("decoder_ids").long(),
                                      decoder_attention_mask=tensor("decoder_mask")).logits}
            if "generate" in entry:  # greedy, by the directory's generation_config.json
                g = entry["generate"]
                ids = torch.as_tensor(np.asarray(g["ids"])).long() if "ids" in g else tokens
                seqs = model.generate(ids, attention_mask=torch.as_tensor(
                    np.asarray(g["mask"])) if "mask" in g else mask,
                    max_new_tokens=g["max_new_tokens"])
                arrays["generated"] = _after_end(seqs[:, 1:], config["eos_token_id"])
        else:
            arrays = {"logits": model(tokens).logits}
    np.savez(directory / "transformers.npz", **{k: v.float().numpy() for k, v in arrays.items()})
    return {"class": arch, "outputs": sorted(arrays)}


def run_sentence_transformers(entry: dict) -> dict:
    """A sentence-transformers directory: its modules' forward on the entry's ids and mask
    (token types 0), and `encode` of its texts (tokenized and truncated by the directory's own
    tokenizer and max_seq_length)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(entry["dir"], device="cpu").eval()
    tokens = torch.as_tensor(np.asarray(entry["ids"])).long()
    features = {"input_ids": tokens, "attention_mask": torch.as_tensor(np.asarray(entry["mask"])),
                "token_type_ids": torch.zeros_like(tokens)}
    with torch.no_grad():
        arrays = {"logits": model(features)["sentence_embedding"]}
    if "texts" in entry:
        arrays["encode_logits"] = model.encode(entry["texts"], batch_size=8,
                                               convert_to_tensor=True)
    np.savez(Path(entry["dir"]) / "transformers.npz",
             **{k: v.float().numpy() for k, v in arrays.items()})
    names = " + ".join(type(m).__name__ for m in model)
    return {"class": f"SentenceTransformer ({names})", "outputs": sorted(arrays)}


def _after_end(seqs, end_id: int):
    """seqs (B, T) with each row's first end token and everything after it set to -1 (generate
    pads finished rows with its pad id; jaxllm returns a target without its end token)."""
    ended = torch.cumsum((seqs == end_id).long(), dim=1) > 0
    return torch.where(ended, torch.full_like(seqs, -1), seqs)


def main() -> None:
    manifest = json.loads(Path(sys.argv[1]).read_text())
    torch.set_num_threads(2)
    result = {e["name"]: run_one(e) for e in manifest}
    versions = {"transformers": transformers.__version__, "torch": torch.__version__}
    try:
        import sentence_transformers

        versions["sentence_transformers"] = sentence_transformers.__version__
    except ImportError:  # only a sentence-transformers directory needs it
        pass
    print(json.dumps({**versions, "models": result}))


if __name__ == "__main__":
    main()
