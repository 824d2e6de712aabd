"""The sentence-transformers layout of an encoder with a sequence head (model.head=sequence):
a directory from which `SentenceTransformer(DIR).encode(texts)` returns the head's logits.

    save_sbert(out_dir, cfg, params, labels=classes)   # the files below (jaxllm export does)
    cfg, params, hf_cfg = load_sbert(DIR)              # back (load_hf: when has_head(modules.json))

jaxllm's sequence head (models/encoder.py) pools the encoder's last hidden states, model.pool
"gap" the mean over the real tokens or "cls" h[:, 0], into one linear layer (its dropout acts
in training only). BertForSequenceClassification passes h[CLS] through BERT's tanh pooler
first, so no transformers class computes it; sentence-transformers (the library that
publishes all-MiniLM-L6-v2, bbc-topics' base) composes exactly these steps as modules:

    modules.json                     0: Transformer, 1: Pooling, 2: Dense, in that order
    config.json, model.safetensors   0  BertModel: the encoder's tensors as io/hf.py writes
                                        them (its pooler, which the modules never read, zeros;
                                        id2label names the head's classes)
    sentence_bert_config.json        0  max_seq_length = model.max_len, no lower-casing of its
                                        own (the tokenizer's normalizer does what it does)
    tokenizer.json                      the run's tokenizer (jaxllm export writes it; the
                                        BertModel config.json makes it a BertTokenizer)
    1_Pooling/config.json            1  mean over attention_mask, sum / max(count, 1e-9) as
                                        jaxllm's mean_pool; or the first token
    2_Dense/config.json              2  in_features D, out_features classes, bias, activation
    2_Dense/model.safetensors           torch.nn.Identity; linear.weight (classes, D) = the
                                        head's kernel transposed, linear.bias

The pooling keys are the four pooling_mode_* flags all-MiniLM-L6-v2's own directory has, which
every sentence-transformers version reads. load_hf reads a directory through load_sbert when
its modules.json has a Dense module (all-MiniLM-L6-v2's Transformer + Pooling + Normalize is
read as its BertModel, as before). Refused in one line: an encoder whose body has no
BertModel layout (io/hf.py `architecture` says why), a head that is not model.head=sequence.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxllm.config import ModelConfig
from jaxllm.errors import CheckpointError
from jaxllm.files import atomic_write, write_json_atomic

MODULES = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
           {"idx": 1, "name": "1", "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling"},
           {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]
# the pooling_mode_* flags of all-MiniLM-L6-v2's 1_Pooling/config.json (written: what every
# sentence-transformers version accepts), then those later versions added (read)
_POOLING_MODES = ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")
_LATER_MODES = ("weightedmean_tokens", "lasttoken")
_POOL_MODE = {"gap": "mean_tokens", "cls": "cls_token"}  # model.pool -> the pooling flag
IDENTITY = "torch.nn.modules.linear.Identity"


def body_config(cfg: ModelConfig) -> ModelConfig:
    """The encoder under cfg's sequence head (what config.json describes), or a CheckpointError
    saying why this model has no sentence-transformers layout."""
    from jaxllm.io.hf import architecture

    if cfg.kind != "encoder" or cfg.head != "sequence":
        raise CheckpointError(f"the sentence-transformers layout holds an encoder with "
                              f"model.head=sequence, not a {cfg.kind} with model.head="
                              f"{cfg.head or 'none'}")
    if cfg.pool not in _POOL_MODE:
        raise CheckpointError(f"model.pool={cfg.pool} has no sentence-transformers pooling; "
                              f"export it as a run: --format run")
    body = dataclasses.replace(cfg, head="")
    architecture(body)  # a BERT body, or the one-line reason it is none
    return body


def save_sbert(out_dir: str | Path, cfg: ModelConfig, params: dict, *,
               labels: tuple[str, ...] = (), extra_config: dict | None = None) -> Path:
    """Write the sentence-transformers directory of a sequence-head encoder into out_dir
    (atomically, file by file; nothing is written when the model is refused). labels: the
    class names in the order of the logits (config.json's id2label; default LABEL_0, ...)."""
    from safetensors.numpy import save

    from jaxllm.io.hf import config_to_hf, params_to_hf

    body = body_config(cfg)
    names = list(labels) or [f"LABEL_{i}" for i in range(cfg.num_classes)]
    if len(names) != cfg.num_classes:
        raise CheckpointError(f"{len(names)} label names for model.num_classes={cfg.num_classes}")
    D = cfg.d_model
    tree = {k: v for k, v in params.items() if k != "head"}
    tree["pooler"] = {"kernel": np.zeros((D, D), np.float32), "bias": np.zeros(D, np.float32)}
    tensors = params_to_hf(body, tree, heads=False)
    kernel = np.asarray(params["head"]["kernel"], np.float32)  # (D, classes)
    dense = {"linear.weight": np.ascontiguousarray(kernel.T),
             "linear.bias": np.asarray(params["head"]["bias"], np.float32)}
    hf_cfg = dict(config_to_hf(body), id2label={str(i): n for i, n in enumerate(names)},
                  label2id={n: i for i, n in enumerate(names)}, **(extra_config or {}))
    out = Path(out_dir)
    (out / "1_Pooling").mkdir(parents=True, exist_ok=True)
    (out / "2_Dense").mkdir(exist_ok=True)
    atomic_write(out / "model.safetensors", save(tensors, metadata={"format": "pt"}))
    write_json_atomic(out / "config.json", hf_cfg)
    write_json_atomic(out / "sentence_bert_config.json",
                      {"max_seq_length": cfg.max_len, "do_lower_case": False})
    write_json_atomic(out / "1_Pooling" / "config.json", {
        "word_embedding_dimension": D,
        **{f"pooling_mode_{m}": m == _POOL_MODE[cfg.pool] for m in _POOLING_MODES}})
    atomic_write(out / "2_Dense" / "model.safetensors", save(dense, metadata={"format": "pt"}))
    write_json_atomic(out / "2_Dense" / "config.json", {
        "in_features": D, "out_features": cfg.num_classes, "bias": True,
        "activation_function": IDENTITY})
    write_json_atomic(out / "modules.json", MODULES)
    return out


_FILES = ("modules.json", "config.json", "model.safetensors", "1_Pooling/config.json",
          "2_Dense/config.json", "2_Dense/model.safetensors")


def _read(path: Path):
    """A file of the directory as JSON (io/hf.py's reader; one line when missing or bad)."""
    from jaxllm.io.hf import read_json

    return read_json(path, f"{path} is missing; a sentence-transformers directory of a jaxllm "
                           f"sequence head has {', '.join(_FILES)}")


def read_modules(model_dir: str | Path):
    """modules.json of model_dir as JSON, None when it has none (a plain Hugging Face
    directory)."""
    f = Path(model_dir) / "modules.json"
    return _read(f) if f.is_file() else None


def has_head(modules) -> bool:
    """Whether a modules.json value (read_modules) composes a Dense module (what save_sbert
    writes): load_hf then reads the directory with load_sbert."""
    return isinstance(modules, list) and any(
        isinstance(m, dict) and str(m.get("type", "")).endswith(".Dense") for m in modules)


def load_sbert(model_dir: str | Path, *, modules=None, hf_cfg: dict | None = None
               ) -> tuple[ModelConfig, dict, dict]:
    """(ModelConfig with model.head=sequence, params, config.json) of a directory save_sbert
    wrote: Transformer (BertModel), Pooling (mean or first token), Dense (identity). Another
    composition is refused in one line: jaxllm computes no other. modules, hf_cfg: modules.json
    and config.json when the caller has read them already (load_hf has)."""
    from jaxllm.io.hf import config_from_hf, params_from_hf, read_safetensors

    d = Path(model_dir)
    if modules is None:
        modules = _read(d / "modules.json")
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    if kinds != ["Transformer", "Pooling", "Dense"]:
        raise CheckpointError(f"{d}/modules.json composes {' + '.join(kinds)}; jaxllm reads "
                              f"Transformer + Pooling + Dense (a sequence head)")
    pooling = _read(d / MODULES[1]["path"] / "config.json")
    modes = [m for m in _POOLING_MODES + _LATER_MODES if pooling.get(f"pooling_mode_{m}")]
    if "pooling_mode" in pooling:  # sentence-transformers 6's spelling of the same choice
        mode = pooling["pooling_mode"]
        modes = [{"cls": "cls_token", "mean": "mean_tokens"}.get(mode, mode)
                 for mode in ([mode] if isinstance(mode, str) else mode)]
    pool = {v: k for k, v in _POOL_MODE.items()}.get(modes[0] if len(modes) == 1 else "")
    dense = _read(d / MODULES[2]["path"] / "config.json")
    if pool is None or dense.get("activation_function") != IDENTITY or not dense.get("bias"):
        raise CheckpointError(f"{d} pools by {modes} into a Dense with activation "
                              f"{dense.get('activation_function')}; jaxllm's sequence head is "
                              f"mean or first-token pooling into a linear layer with a bias")
    if hf_cfg is None:
        hf_cfg = _read(d / "config.json")
    body = config_from_hf(hf_cfg)
    if body.kind != "encoder" or body.head:
        raise CheckpointError(f"{d}/config.json is a {hf_cfg.get('architectures')}; the "
                              f"Transformer module of a sequence head is a BertModel")
    weights = d / "model.safetensors"
    params = params_from_hf(body, read_safetensors(weights), source=str(weights))
    for k in ("pooler", "mlm_dense", "mlm_norm", "mlm_bias", "nsp"):  # a head model has none
        params.pop(k, None)
    linear = read_safetensors(d / MODULES[2]["path"] / "model.safetensors")
    classes, D = dense.get("out_features"), body.d_model
    w, b = linear.get("linear.weight"), linear.get("linear.bias")
    if w is None or b is None or w.shape != (classes, D) or b.shape != (classes,):
        raise CheckpointError(f"{d}/2_Dense/model.safetensors lacks linear.weight ({classes}, "
                              f"{D}) and linear.bias ({classes},)")
    params["head"] = {"kernel": np.ascontiguousarray(np.asarray(w, np.float32).T),
                      "bias": np.asarray(b, np.float32)}
    cfg = dataclasses.replace(body, head="sequence", pool=pool, num_classes=int(classes))
    return cfg, params, hf_cfg
