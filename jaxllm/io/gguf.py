"""GGUF (llama.cpp's format) in: metadata, dequantised tensors, and the Llama mapping.

    meta, tensors = read_gguf(path)          # tensors: name -> float32 array in HF layout (out, in)
    cfg, params = llama_from_gguf(path)      # a jaxllm Decoder's ModelConfig and params

Reading and dequantisation (Q4_0, Q4_1, Q8_0, K-quants, F16, ...) are the `gguf` package's
(numpy only). Two things differ from a Hugging Face Llama checkpoint:

  * llama.cpp's converter permutes the rows of attn_q and attn_k so that RoPE can rotate adjacent
    pairs (x[2i], x[2i+1]); jaxllm (like Hugging Face) rotates halves (x[i], x[i + H/2]).
    `unpermute_qk` undoes the permutation, after which the two RoPE layouts give equal outputs.
  * names: blk.N.attn_q.weight ... instead of model.layers.N.self_attn.q_proj.weight.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxllm.config import ModelConfig
from jaxllm.errors import CheckpointError


def read_gguf(path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(metadata {key: value}, tensors {name: float32 array}) of a GGUF file.

    Raises CheckpointError for a missing, truncated or corrupted file."""
    import gguf

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"GGUF file {path} does not exist")
    try:
        reader = gguf.GGUFReader(path)
        meta = {}
        for key, field in reader.fields.items():
            try:
                meta[key] = field.contents()
            except Exception:  # noqa: BLE001 - a field type the reader cannot decode: skip it
                continue
        tensors = {}
        for t in reader.tensors:
            tensors[t.name] = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type),
                                         dtype=np.float32)
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - gguf raises ValueError, IndexError, struct errors...
        raise CheckpointError(f"GGUF file {path} is truncated or corrupted ({type(e).__name__}: "
                              f"{str(e)[:120]}); reinstall the package that ships it") from None
    return meta, tensors


def unpermute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's row permutation of a Q or K weight (n_heads * H, D): within each head,
    rows (0, 1, 2, 3, ...) = pairs (2i, 2i+1) go back to the halves layout (i, i + H/2)."""
    rows = w.shape[0]
    half = rows // n_heads // 2
    return w.reshape(n_heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama_config(meta: dict) -> ModelConfig:
    """A jaxllm ModelConfig from the llama.* metadata of a GGUF file."""
    if meta.get("general.architecture") != "llama":
        raise CheckpointError(f"GGUF architecture {meta.get('general.architecture')!r} is not "
                              f"supported; jaxllm reads llama GGUF files")
    try:
        d = int(meta["llama.embedding_length"])
        n_heads = int(meta["llama.attention.head_count"])
        head_dim = int(meta.get("llama.rope.dimension_count", d // n_heads))
        return ModelConfig(
            vocab_size=int(meta.get("llama.vocab_size") or len(meta["tokenizer.ggml.tokens"])),
            max_len=int(meta["llama.context_length"]), n_layers=int(meta["llama.block_count"]),
            n_heads=n_heads, n_kv_heads=int(meta.get("llama.attention.head_count_kv", n_heads)),
            d_model=d, head_dim=head_dim if head_dim != d // n_heads else 0,
            d_ff=int(meta["llama.feed_forward_length"]), positions="rope",
            rope_theta=float(meta.get("llama.rope.freq_base", 10000.0)), norm="rmsnorm",
            norm_eps=float(meta.get("llama.attention.layer_norm_rms_epsilon", 1e-5)),
            mlp="swiglu", use_bias=False, tie_embeddings=True)
    except KeyError as e:
        raise CheckpointError(f"GGUF metadata lacks {e.args[0]!r}; the file is not a complete "
                              f"llama model") from None


def llama_from_gguf(path: str | Path) -> tuple[ModelConfig, dict, dict]:
    """(ModelConfig, HF-layout tensors, metadata) of a llama GGUF file: Q and K un-permuted and
    names mapped to Hugging Face's (model.layers.N.self_attn.q_proj.weight, ...), so that
    jaxllm.io.hf.params_from_hf builds the decoder's parameters from them."""
    meta, t = read_gguf(path)
    cfg = llama_config(meta)
    if "output.weight" in t:
        cfg = ModelConfig(**{**cfg.__dict__, "tie_embeddings": False})
    hf = {"model.embed_tokens.weight": t.get("token_embd.weight"),
          "model.norm.weight": t.get("output_norm.weight")}
    if not cfg.tie_embeddings:
        hf["lm_head.weight"] = t["output.weight"]
    names = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
             "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
             "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
             "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    for i in range(cfg.n_layers):
        for g, h in names.items():
            w = t.get(f"blk.{i}.{g}.weight")
            if w is not None and g == "attn_q":
                w = unpermute_qk(w, cfg.n_heads)
            elif w is not None and g == "attn_k":
                w = unpermute_qk(w, cfg.kv_heads)
            hf[f"model.layers.{i}.{h}.weight"] = w
    missing = [k for k, v in hf.items() if v is None]
    if missing:
        raise CheckpointError(f"GGUF file {path} lacks the tensor for {missing[0]} "
                              f"({len(missing)} missing); the file is not a complete llama model")
    return cfg, hf, meta
