"""Hugging Face layout in and out: config.json + model.safetensors <-> ModelConfig + params.

    save_hf(out_dir, cfg, params)              # writes config.json and model.safetensors
    cfg, params = load_hf(model_dir)           # reads them back (or a Hugging Face checkpoint)
    params = params_from_hf(cfg, tensors)      # {HF name: array} -> jaxllm params
    tensors = params_to_hf(cfg, params)        # and back

These architectures map onto jaxllm's models, each computing the same function:
    llama       LlamaForCausalLM   rope + rmsnorm + swiglu decoders (SmolLM2, shakespeare-char-llama)
    gpt2        GPT2LMHeadModel    learned positions + layernorm + gelu decoders (shakespeare-char)
    bert        BertModel / BertForPreTraining   post-norm encoders (all-MiniLM-L6-v2,
                shakespeare-mlm); with model.head=token BertForTokenClassification (bbc-tags),
                model.head=span BertForQuestionAnswering (bbc-planted)
    blenderbot  BlenderbotForConditionalGeneration   seq2seq, pre-norm, learned positions
                (dates-seq2seq, bbc-headlines): no embedding norm, a LayerNorm after each stack
    pegasus     PegasusForConditionalGeneration      seq2seq, pre-norm, sinusoidal positions
    marian      MarianMTModel                        seq2seq, post-norm, sinusoidal positions
The three seq2seq classes are BART's layers (LayerNorm, GELU, biases, tied embeddings, a zero
final_logits_bias) with Blenderbot's pre-norm and final norms, Pegasus' too, or Marian's BART
post-norm without BART's embedding LayerNorm. Pegasus and Marian lay the sinusoid out as
[sin | cos] halves where jaxllm interleaves sin, cos pairs; a model is unchanged by one
permutation of its residual dimensions (every "embed" axis; LayerNorm does not see the order),
so their export permutes the weights instead of the table (`_sinusoid_order`).
Refused, in one line naming the option (export them with --format run): model.head=sequence
(jaxllm pools h[CLS] or the mean of the tokens straight into the classifier; BERT's
BertForSequenceClassification passes h[CLS] through its tanh pooler first; io/sbert.py writes
it in sentence-transformers' layout instead, which load_hf reads back), a seq2seq model
with rope, with post-norm and learned positions (BART normalises the embeddings; jaxllm does
not), with RMSNorm, SwiGLU, grouped-query attention, no biases or separate token tables.

Hugging Face stores a linear layer's weight as (out, in); a jaxllm Dense kernel is (in..., out...)
(query: (D, heads, H)), so `_dense` flattens and transposes. GPT-2's Conv1D weights are (in, out)
and its query/key/value are one fused c_attn matrix. Every tensor's shape is checked against the
model's, and a missing or misshapen tensor raises CheckpointError naming it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from jaxllm.config import ModelConfig
from jaxllm.errors import CheckpointError
from jaxllm.files import atomic_write, write_json_atomic


def architecture(cfg: ModelConfig) -> str:
    """Which Hugging Face architecture a ModelConfig is, or a CheckpointError saying why none."""
    if cfg.kind == "seq2seq":
        return _seq2seq_architecture(cfg)
    if cfg.kind not in ("decoder", "encoder"):
        raise CheckpointError(f"a {cfg.kind} model has no Hugging Face layout here: export "
                              f"writes Llama and GPT-2 decoders, BERT encoders and "
                              f"encoder-decoders; use --format run for the run's own format")
    if cfg.kind == "encoder" and cfg.head == "sequence":
        raise CheckpointError(
            f"an encoder with model.head=sequence (model.pool={cfg.pool}) has no transformers "
            f"class: BertForSequenceClassification reads h[CLS] through BERT's tanh pooler, "
            f"jaxllm's head reads {'h[CLS]' if cfg.pool == 'cls' else 'the mean of the tokens'} "
            f"directly; io/sbert.py save_sbert writes it for sentence-transformers (jaxllm "
            f"export does), or export it as a run: --format run")
    if cfg.kind == "encoder":
        if cfg.norm_position == "post" and cfg.norm == "layernorm" and cfg.mlp == "gelu" \
                and cfg.positions == "learned" and cfg.use_bias and cfg.kv_heads == cfg.n_heads:
            return "bert"
    elif cfg.norm_position == "pre":
        if cfg.positions == "rope" and cfg.norm == "rmsnorm" and cfg.mlp == "swiglu":
            return "llama"
        if cfg.positions == "learned" and cfg.norm == "layernorm" and cfg.mlp == "gelu" \
                and cfg.use_bias and cfg.tie_embeddings and cfg.kv_heads == cfg.n_heads \
                and not cfg.head_dim:
            return "gpt2"
    raise CheckpointError(
        "this model has no Hugging Face layout: export supports Llama decoders (rope, rmsnorm, "
        "swiglu), GPT-2 decoders (learned positions, layernorm, gelu, biases, tied head) and "
        "BERT encoders (post-norm, layernorm, gelu, biases)")


# (model.norm_position, model.positions) of an encoder-decoder -> the architecture computing it
SEQ2SEQ = {("pre", "learned"): "blenderbot", ("pre", "sinusoidal"): "pegasus",
           ("post", "sinusoidal"): "marian"}
_SEQ2SEQ_CLASSES = {"blenderbot": "BlenderbotForConditionalGeneration",
                    "pegasus": "PegasusForConditionalGeneration", "marian": "MarianMTModel"}
_HF_LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default, which the three classes keep


def _seq2seq_architecture(cfg: ModelConfig) -> str:
    def refuse(option: str, why: str):
        raise CheckpointError(f"a seq2seq model with {option} has no Hugging Face layout "
                              f"({why}); export it as a run: --format run")

    if cfg.positions == "rope":
        refuse("model.positions=rope", "Blenderbot, Pegasus and Marian add learned or "
               "sinusoidal positions to the embeddings")
    if (cfg.norm_position, cfg.positions) == ("post", "learned"):
        refuse("model.norm_position=post and model.positions=learned", "BART, the post-norm "
               "model with learned positions, also normalises the embeddings")
    if cfg.norm != "layernorm" or cfg.mlp != "gelu":
        refuse(f"model.norm={cfg.norm} model.mlp={cfg.mlp}", "the BART family uses LayerNorm "
               "and a GELU MLP")
    if cfg.kv_heads != cfg.n_heads or cfg.head_size * cfg.n_heads != cfg.d_model:
        refuse(f"model.n_kv_heads={cfg.n_kv_heads} model.head_dim={cfg.head_dim}", "the BART "
               "family has n_heads key/value heads of d_model / n_heads")
    if not cfg.use_bias:
        refuse("model.use_bias=false", "the BART family's linear layers have biases")
    if not cfg.share_embeddings:
        refuse("model.share_embeddings=false", "Blenderbot and Pegasus share one token table")
    if cfg.norm_eps != _HF_LAYER_NORM_EPS:
        refuse(f"model.norm_eps={cfg.norm_eps:g}", f"the BART family's LayerNorm eps is "
               f"{_HF_LAYER_NORM_EPS:g}")
    return SEQ2SEQ[(cfg.norm_position, cfg.positions)]


# ---------------------------------------------------------------------------------------------
# config.json

def config_to_hf(cfg: ModelConfig, heads: bool = False, labels: tuple[str, ...] = ()) -> dict:
    """The config.json of cfg's architecture. heads: a BERT without a task head is
    BertForPreTraining (else BertModel); labels: the class names of a token head, in the order
    of its logits (id2label / label2id; default LABEL_0, ...)."""
    arch = architecture(cfg)
    if arch in _SEQ2SEQ_CLASSES:
        return _seq2seq_config(cfg, arch)
    if arch == "llama":
        return {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model,
                "intermediate_size": cfg.ff_size, "num_hidden_layers": cfg.n_layers,
                "num_attention_heads": cfg.n_heads, "num_key_value_heads": cfg.kv_heads,
                "head_dim": cfg.head_size, "hidden_act": "silu",
                "max_position_embeddings": cfg.max_len, "rms_norm_eps": cfg.norm_eps,
                "rope_theta": cfg.rope_theta, "tie_word_embeddings": cfg.tie_embeddings,
                "attention_bias": cfg.use_bias, "mlp_bias": cfg.use_bias,
                "torch_dtype": "float32"}
    if arch == "gpt2":
        return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
                "vocab_size": cfg.vocab_size, "n_embd": cfg.d_model, "n_layer": cfg.n_layers,
                "n_head": cfg.n_heads, "n_positions": cfg.max_len, "n_inner": cfg.ff_size,
                "activation_function": "gelu", "layer_norm_epsilon": cfg.norm_eps,
                "tie_word_embeddings": True, "torch_dtype": "float32"}
    bert = {"architectures": ["BertForPreTraining" if heads else "BertModel"],
            "model_type": "bert", "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model,
            "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
            "intermediate_size": cfg.ff_size, "hidden_act": "gelu",
            "max_position_embeddings": cfg.max_len, "type_vocab_size": cfg.type_vocab_size,
            "layer_norm_eps": cfg.norm_eps, "pad_token_id": 0, "torch_dtype": "float32"}
    if cfg.head == "span":  # start and end logits: two "labels" of qa_outputs
        return dict(bert, architectures=[BERT_HEAD_CLASSES["span"]], num_labels=2,
                    hidden_dropout_prob=cfg.dropout)
    if cfg.head == "token":
        names = list(labels) or [f"LABEL_{i}" for i in range(cfg.num_classes)]
        if len(names) != cfg.num_classes:
            raise CheckpointError(f"{len(names)} label names for model.num_classes="
                                  f"{cfg.num_classes}")
        return dict(bert, architectures=[BERT_HEAD_CLASSES["token"]],
                    num_labels=cfg.num_classes, hidden_dropout_prob=cfg.dropout,
                    id2label={str(i): n for i, n in enumerate(names)},
                    label2id={n: i for i, n in enumerate(names)})
    return bert


def _seq2seq_config(cfg: ModelConfig, arch: str) -> dict:
    """BART-family config.json of an encoder-decoder (the token ids of its start and end
    tokens are the run's: export adds them)."""
    out = {"architectures": [_SEQ2SEQ_CLASSES[arch]], "model_type": arch,
           "is_encoder_decoder": True, "vocab_size": cfg.vocab_size, "d_model": cfg.d_model,
           "encoder_layers": cfg.n_layers, "decoder_layers": cfg.n_layers,
           "encoder_attention_heads": cfg.n_heads, "decoder_attention_heads": cfg.n_heads,
           "encoder_ffn_dim": cfg.ff_size, "decoder_ffn_dim": cfg.ff_size,
           "activation_function": "gelu", "max_position_embeddings": cfg.max_len,
           "scale_embedding": cfg.positions == "sinusoidal",  # models/seq2seq.py: sqrt(D)
           "dropout": cfg.dropout, "attention_dropout": 0.0, "activation_dropout": 0.0,
           "encoder_layerdrop": 0.0, "decoder_layerdrop": 0.0,
           "tie_word_embeddings": cfg.tie_embeddings, "torch_dtype": "float32"}
    if arch == "marian":
        out.update(share_encoder_decoder_embeddings=True, decoder_vocab_size=cfg.vocab_size)
    return out


def config_from_hf(hf: dict) -> ModelConfig:
    """A ModelConfig from a Hugging Face config.json of a llama, gpt2 or bert model."""
    kind = hf.get("model_type")
    try:
        if kind == "llama":
            n_heads = hf["num_attention_heads"]
            head_dim = hf.get("head_dim") or hf["hidden_size"] // n_heads
            return ModelConfig(
                vocab_size=hf["vocab_size"], max_len=hf.get("max_position_embeddings", 2048),
                n_layers=hf["num_hidden_layers"], n_heads=n_heads,
                n_kv_heads=hf.get("num_key_value_heads", n_heads), d_model=hf["hidden_size"],
                head_dim=0 if head_dim == hf["hidden_size"] // n_heads else head_dim,
                d_ff=hf["intermediate_size"], positions="rope",
                rope_theta=float(hf.get("rope_theta", 10000.0)), norm="rmsnorm",
                norm_eps=float(hf.get("rms_norm_eps", 1e-6)), mlp="swiglu",
                use_bias=bool(hf.get("attention_bias", False)),
                tie_embeddings=bool(hf.get("tie_word_embeddings", False)))
        if kind == "gpt2":
            d = hf["n_embd"]
            return ModelConfig(
                vocab_size=hf["vocab_size"], max_len=hf["n_positions"], n_layers=hf["n_layer"],
                n_heads=hf["n_head"], d_model=d, d_ff=hf.get("n_inner") or 4 * d,
                norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)))
        if kind == "bert":
            head = _bert_head(hf)
            return ModelConfig(
                kind="encoder", norm_position="post", vocab_size=hf["vocab_size"],
                max_len=hf["max_position_embeddings"], n_layers=hf["num_hidden_layers"],
                n_heads=hf["num_attention_heads"], d_model=hf["hidden_size"],
                d_ff=hf["intermediate_size"], type_vocab_size=hf.get("type_vocab_size", 2),
                norm_eps=float(hf.get("layer_norm_eps", 1e-12)), head=head,
                **({"num_classes": int(hf.get("num_labels") or len(hf["id2label"]))}
                   if head == "token" else {}))
        if kind in _SEQ2SEQ_CLASSES:
            return _seq2seq_config_from_hf(hf, kind)
    except KeyError as e:
        raise CheckpointError(f"config.json lacks {e.args[0]!r} for a {kind} model") from None
    raise CheckpointError(f"config.json has model_type {kind!r}; jaxllm reads llama, gpt2, "
                          f"bert, blenderbot, pegasus and marian checkpoints")


# model.head -> the transformers class that computes it (and back, reading a config.json)
BERT_HEAD_CLASSES = {"token": "BertForTokenClassification", "span": "BertForQuestionAnswering"}


def _bert_head(hf: dict) -> str:
    """model.head of a BERT config.json: "" (BertModel, BertForPreTraining, ...), "token" or
    "span"; a CheckpointError for a head jaxllm does not compute."""
    arch = (hf.get("architectures") or [""])[0]
    if arch == "BertForSequenceClassification":
        raise CheckpointError("a BertForSequenceClassification checkpoint passes h[CLS] "
                              "through BERT's tanh pooler, which jaxllm's sequence head does "
                              "not; jaxllm reads BertModel, BertForPreTraining, "
                              "BertForTokenClassification and BertForQuestionAnswering")
    return {c: head for head, c in BERT_HEAD_CLASSES.items()}.get(arch, "")


def seq2seq_generation(start_id: int, end_id: int, vocab_size: int, max_new_tokens: int
                       ) -> tuple[dict, dict]:
    """(config.json entries, generation_config.json) of an encoder-decoder whose targets start
    with start_id and end with end_id: transformers' greedy `generate` then decodes as jaxllm's
    (infer/seq2seq.py): the start id and the ids above the end id (a padded vocabulary) are
    never emitted, at most max_new_tokens come after the start token, and no end token is
    forced at the length limit (the BART family's configs default to one)."""
    ids = {"decoder_start_token_id": start_id, "eos_token_id": end_id, "pad_token_id": end_id,
           "forced_eos_token_id": None}
    return ids, {**ids, "max_length": max_new_tokens + 1, "do_sample": False, "num_beams": 1,
                 "suppress_tokens": [start_id, *range(end_id + 1, vocab_size)]}


def _seq2seq_config_from_hf(hf: dict, kind: str) -> ModelConfig:
    """The encoder-decoder of a Blenderbot, Pegasus or Marian config.json, if it is one jaxllm
    computes: the sizes of both stacks equal, GELU, sqrt(D) embedding scale with sinusoidal
    positions only."""
    n_layers, n_heads = hf["encoder_layers"], hf["encoder_attention_heads"]
    sinusoidal = kind != "blenderbot"
    mismatch = [f"{k}={hf.get(k)!r} (jaxllm: {want!r})" for k, want in (
        ("decoder_layers", n_layers), ("decoder_attention_heads", n_heads),
        ("decoder_ffn_dim", hf["encoder_ffn_dim"]), ("activation_function", "gelu"),
        ("scale_embedding", sinusoidal)) if hf.get(k) != want]
    if kind == "marian" and not hf.get("share_encoder_decoder_embeddings", True):
        mismatch.append("share_encoder_decoder_embeddings=False (jaxllm: True)")
    if mismatch:
        raise CheckpointError(f"this {kind} config.json has no jaxllm model: {mismatch[0]}")
    return ModelConfig(
        kind="seq2seq", vocab_size=hf["vocab_size"], max_len=hf["max_position_embeddings"],
        n_layers=n_layers, n_heads=n_heads, d_model=hf["d_model"], d_ff=hf["encoder_ffn_dim"],
        positions="sinusoidal" if sinusoidal else "learned",
        norm_position="post" if kind == "marian" else "pre", norm_eps=_HF_LAYER_NORM_EPS,
        tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
        dropout=float(hf.get("dropout", 0.0)))


# ---------------------------------------------------------------------------------------------
# Tensor maps. Each entry: (HF name, jaxllm path, how to convert); "{i}" is a layer index and
# the path then starts at "blocks" (stacked on a leading layer axis).

def _entries(cfg: ModelConfig, arch: str, prefix: str = "") -> list[tuple[str, str, str]]:
    """(HF name, jaxllm path, conversion) triples; conversion is one of
    "copy", "dense_in1" (kernel (D, ...out)), "dense_in2" (kernel (N, H, D)), "conv1d"."""
    e = []
    if arch == "llama":
        e += [("model.embed_tokens.weight", "embed/embedding", "copy"),
              ("model.norm.weight", "final_norm/scale", "copy")]
        if not cfg.tie_embeddings:
            e.append(("lm_head.weight", "head/kernel", "dense_in1"))
        L = "model.layers.{i}."
        e += [(L + "input_layernorm.weight", "attn_norm/scale", "copy"),
              (L + "post_attention_layernorm.weight", "mlp_norm/scale", "copy")]
        for hf, ours in (("self_attn.q_proj", "attn/query"), ("self_attn.k_proj", "attn/key"),
                         ("self_attn.v_proj", "attn/value"), ("mlp.gate_proj", "mlp/gate"),
                         ("mlp.up_proj", "mlp/up"), ("mlp.down_proj", "mlp/down")):
            e.append((L + hf + ".weight", ours + "/kernel", "dense_in1"))
            if cfg.use_bias:
                e.append((L + hf + ".bias", ours + "/bias", "copy"))
        e.append((L + "self_attn.o_proj.weight", "attn/out/kernel", "dense_in2"))
        if cfg.use_bias:
            e.append((L + "self_attn.o_proj.bias", "attn/out/bias", "copy"))
    elif arch == "gpt2":
        e += [("transformer.wte.weight", "embed/embedding", "copy"),
              ("transformer.wpe.weight", "pos_embedding", "copy"),
              ("transformer.ln_f.weight", "final_norm/scale", "copy"),
              ("transformer.ln_f.bias", "final_norm/bias", "copy")]
        L = "transformer.h.{i}."
        e += [(L + "ln_1.weight", "attn_norm/scale", "copy"), (L + "ln_1.bias", "attn_norm/bias", "copy"),
              (L + "ln_2.weight", "mlp_norm/scale", "copy"), (L + "ln_2.bias", "mlp_norm/bias", "copy"),
              (L + "attn.c_attn.weight", "attn/qkv/kernel", "c_attn"),
              (L + "attn.c_attn.bias", "attn/qkv/bias", "c_attn"),
              (L + "attn.c_proj.weight", "attn/out/kernel", "conv1d"),
              (L + "attn.c_proj.bias", "attn/out/bias", "copy"),
              (L + "mlp.c_fc.weight", "mlp/up/kernel", "conv1d"),
              (L + "mlp.c_fc.bias", "mlp/up/bias", "copy"),
              (L + "mlp.c_proj.weight", "mlp/down/kernel", "conv1d"),
              (L + "mlp.c_proj.bias", "mlp/down/bias", "copy")]
    else:  # bert
        p = prefix
        e += [(p + "embeddings.word_embeddings.weight", "embed/embedding", "copy"),
              (p + "embeddings.position_embeddings.weight", "pos_embedding", "copy"),
              (p + "embeddings.LayerNorm.weight", "embed_norm/scale", "copy"),
              (p + "embeddings.LayerNorm.bias", "embed_norm/bias", "copy")]
        if cfg.type_vocab_size:
            e.append((p + "embeddings.token_type_embeddings.weight", "type_embedding", "copy"))
        L = p + "encoder.layer.{i}."
        for hf, ours, conv in (("attention.self.query", "attn/query", "dense_in1"),
                               ("attention.self.key", "attn/key", "dense_in1"),
                               ("attention.self.value", "attn/value", "dense_in1"),
                               ("attention.output.dense", "attn/out", "dense_in2"),
                               ("intermediate.dense", "mlp/up", "dense_in1"),
                               ("output.dense", "mlp/down", "dense_in1")):
            e += [(L + hf + ".weight", ours + "/kernel", conv), (L + hf + ".bias", ours + "/bias", "copy")]
        e += [(L + "attention.output.LayerNorm.weight", "attn_norm/scale", "copy"),
              (L + "attention.output.LayerNorm.bias", "attn_norm/bias", "copy"),
              (L + "output.LayerNorm.weight", "mlp_norm/scale", "copy"),
              (L + "output.LayerNorm.bias", "mlp_norm/bias", "copy")]
        if cfg.head:  # BertForTokenClassification's classifier, BertForQuestionAnswering's qa
            name = "qa_outputs" if cfg.head == "span" else "classifier"
            e += [(name + ".weight", "head/kernel", "dense_in1"),
                  (name + ".bias", "head/bias", "copy")]
    return e


# Written for readers that load each stack's table by its own name; read from model.shared
# (transformers ties them to it, and checkpoints may leave them out)
_SEQ2SEQ_TABLE_COPIES = ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight")


def _seq2seq_entries(cfg: ModelConfig, arch: str) -> list[tuple[str, str, str]]:
    """The BART family's names: one token table (model.shared, also each stack's embed_tokens
    and, tied, lm_head), per-layer attention (q/k/v/out_proj) and fc1/fc2 with a LayerNorm
    each; paths under encoder_blocks/ or blocks/ are per layer."""
    e = [(f"model.{t}.weight", "embed/embedding", "copy")
         for t in ("shared", "encoder.embed_tokens", "decoder.embed_tokens")]
    if not cfg.tie_embeddings:
        e.append(("lm_head.weight", "head/kernel", "dense_in1"))
    if arch == "blenderbot":  # learned; Pegasus and Marian compute their sinusoid tables
        e += [("model.encoder.embed_positions.weight", "source_pos_embedding", "copy"),
              ("model.decoder.embed_positions.weight", "pos_embedding", "copy")]
    if cfg.norm_position == "pre":
        for side, ours in (("encoder", "encoder_norm"), ("decoder", "final_norm")):
            e += [(f"model.{side}.layer_norm.weight", ours + "/scale", "copy"),
                  (f"model.{side}.layer_norm.bias", ours + "/bias", "copy")]
    branches = {"encoder": [("self_attn", "attn", "attn_norm")],
                "decoder": [("self_attn", "attn", "attn_norm"),
                            ("encoder_attn", "cross_attn", "cross_norm")]}
    for side, stack in (("encoder", "encoder_blocks/"), ("decoder", "blocks/")):
        L = f"model.{side}.layers.{{i}}."
        for hf, ours, norm in branches[side]:
            for proj, part in (("q_proj", "query"), ("k_proj", "key"), ("v_proj", "value"),
                               ("out_proj", "out")):
                conv = "dense_in2" if part == "out" else "dense_in1"
                e += [(f"{L}{hf}.{proj}.weight", f"{stack}{ours}/{part}/kernel", conv),
                      (f"{L}{hf}.{proj}.bias", f"{stack}{ours}/{part}/bias", "copy")]
            e += [(f"{L}{hf}_layer_norm.weight", f"{stack}{norm}/scale", "copy"),
                  (f"{L}{hf}_layer_norm.bias", f"{stack}{norm}/bias", "copy")]
        for hf, ours in (("fc1", "mlp/up"), ("fc2", "mlp/down")):
            e += [(f"{L}{hf}.weight", f"{stack}{ours}/kernel", "dense_in1"),
                  (f"{L}{hf}.bias", f"{stack}{ours}/bias", "copy")]
        e += [(L + "final_layer_norm.weight", stack + "mlp_norm/scale", "copy"),
              (L + "final_layer_norm.bias", stack + "mlp_norm/bias", "copy")]
    return e


def _sinusoid_order(cfg: ModelConfig, params: dict, to_hf: bool) -> dict:
    """params with every "embed" axis (the residual dimension) reordered from jaxllm's
    interleaved sinusoid (sin, cos, sin, cos, ...) to Pegasus' and Marian's halves
    (sin ... sin | cos ... cos), or back (to_hf False). The model computes the same function
    with all of them reordered: LayerNorm's mean and variance ignore the order, and every
    matmul contracts the embed axis of both operands."""
    import jax

    from jaxllm import models

    D = cfg.d_model
    order = np.concatenate([np.arange(0, D, 2), np.arange(1, D, 2)])  # HF column j <- ours
    if not to_hf:
        order = np.argsort(order)
    specs = models.abstract_params(cfg)[1]

    def one(x, spec):
        x = np.asarray(x)
        for axis, name in enumerate(spec):
            if name == "embed":
                x = np.take(x, order, axis=axis)
        return x

    return jax.tree_util.tree_map(one, params, specs,
                                  is_leaf=lambda v: isinstance(v, jax.sharding.PartitionSpec))


# Optional BERT parts: present in some checkpoints (pooler: BertModel; cls.*: BertForPreTraining).
_BERT_POOLER = [("pooler.dense.weight", "pooler/kernel", "dense_in1"),
                ("pooler.dense.bias", "pooler/bias", "copy")]
_BERT_HEADS = [("cls.predictions.transform.dense.weight", "mlm_dense/kernel", "dense_in1"),
               ("cls.predictions.transform.dense.bias", "mlm_dense/bias", "copy"),
               ("cls.predictions.transform.LayerNorm.weight", "mlm_norm/scale", "copy"),
               ("cls.predictions.transform.LayerNorm.bias", "mlm_norm/bias", "copy"),
               ("cls.predictions.bias", "mlm_bias", "copy"),
               ("cls.seq_relationship.weight", "nsp/kernel", "dense_in1"),
               ("cls.seq_relationship.bias", "nsp/bias", "copy")]


def _to_hf(x: np.ndarray, conv: str, n_out_axes: int) -> np.ndarray:
    if conv == "copy":
        return x.reshape(-1) if x.ndim > 1 and n_out_axes == 0 else x
    if conv == "dense_in1":  # (D, *out) -> (prod(out), D)
        return x.reshape(x.shape[0], -1).T
    if conv == "dense_in2":  # (N, H, D) -> (D, N*H)
        return x.reshape(-1, x.shape[-1]).T
    if conv == "conv1d":  # (in..., out...) -> (in, out) (Conv1D keeps in, out)
        return x.reshape(x.shape[0] if x.ndim == 2 else -1, x.shape[-1])
    raise ValueError(conv)


def _n_out(path: str) -> int:
    return 0 if path.endswith("bias") else 1


def _from_hf(w: np.ndarray, conv: str, shape: tuple[int, ...]) -> np.ndarray:
    if conv == "copy":
        return w.reshape(shape)
    if conv in ("dense_in1", "dense_in2"):
        return w.T.reshape(shape)
    if conv == "conv1d":
        return w.reshape(shape)
    raise ValueError(conv)


def _get(tree, path):
    for k in path.split("/"):
        tree = tree[k]
    return tree


def _set(tree, path, value):
    keys = path.split("/")
    for k in keys[:-1]:
        tree = tree.setdefault(k, {})
    tree[keys[-1]] = value


def _template(cfg: ModelConfig) -> dict:
    """Shapes of the model's parameters, without allocating them."""
    import jax

    from jaxllm import models

    shapes = models.abstract_params(cfg)[0]
    return jax.tree_util.tree_map(lambda s: tuple(s.shape), shapes)


def _layer_entries(cfg, arch, prefix=""):
    """(HF name, jaxllm path, conversion, layer index or None) of every tensor."""
    if arch in _SEQ2SEQ_CLASSES:
        entries = _seq2seq_entries(cfg, arch)
    else:  # one stack: the per-layer paths start at "blocks"
        entries = [(hf, "blocks/" + path if "{i}" in hf else path, conv)
                   for hf, path, conv in _entries(cfg, arch, prefix)]
    for hf, path, conv in entries:
        if "{i}" in hf:
            for i in range(cfg.n_layers):
                yield hf.format(i=i), path, conv, i
        else:
            yield hf, path, conv, None


def params_from_hf(cfg: ModelConfig, tensors: dict[str, np.ndarray], source: str = "") -> dict:
    """jaxllm params from {HF name: array}; CheckpointError names a missing/misshapen tensor."""
    arch = architecture(cfg)
    where = f" in {source}" if source else ""
    template = _template(cfg)
    prefix = "bert." if arch == "bert" and (cfg.head or any(k.startswith("bert.")
                                                          for k in tensors)) else ""
    params: dict = {}
    layers: dict[str, list] = {}
    D = cfg.d_model

    def fetch(name):
        if name not in tensors:
            raise CheckpointError(f"tensor {name} is missing{where}; the checkpoint does not match "
                                  f"a {arch} model of this config")
        return np.asarray(tensors[name], dtype=np.float32)

    for name, path, conv, i in _layer_entries(cfg, arch, prefix):
        if name in _SEQ2SEQ_TABLE_COPIES:
            continue
        if conv == "c_attn":  # GPT-2's fused q, k, v -> three kernels/biases
            w = fetch(name)
            want = (D, 3 * D) if name.endswith("weight") else (3 * D,)
            if w.shape != want:
                raise CheckpointError(f"tensor {name}{where} has shape {w.shape}, expected {want}")
            kind = path.rsplit("/", 1)[1]
            for part, piece in zip(("query", "key", "value"), np.split(w, 3, axis=-1)):
                p = path.replace("qkv", part)
                shape = _get(template, p)[1:]
                layers.setdefault(p, [None] * cfg.n_layers)[i] = piece.reshape(shape)
            del kind
            continue
        shape = _get(template, path)
        shape = shape[1:] if i is not None else shape
        w = fetch(name)
        want = _to_hf(np.zeros(shape, np.float32), conv, _n_out(path)).shape
        if w.shape != want:
            raise CheckpointError(f"tensor {name}{where} has shape {w.shape}, expected {want} "
                                  f"for this config")
        value = _from_hf(w, conv, shape)
        if i is None:
            _set(params, path, value)
        else:
            layers.setdefault(path, [None] * cfg.n_layers)[i] = value
    for path, per_layer in layers.items():
        _set(params, path, np.stack(per_layer))
    if arch in _SEQ2SEQ_CLASSES:
        bias = tensors.get("final_logits_bias")
        if bias is not None and np.any(np.asarray(bias) != 0):
            raise CheckpointError(f"final_logits_bias{where} is not zero; jaxllm's "
                                  f"encoder-decoder has no logits bias")
        return params if arch == "blenderbot" else _sinusoid_order(cfg, params, to_hf=False)
    if arch == "bert" and not cfg.head:  # optional: pooler, pretraining heads (zeros if absent)
        for name, path, conv in _BERT_POOLER + _BERT_HEADS:
            full = (prefix + name) if name.startswith("pooler") else name
            shape = _get(template, path)
            if full in tensors:
                w = np.asarray(tensors[full], np.float32)
                want = _to_hf(np.zeros(shape, np.float32), conv, _n_out(path)).shape
                if w.shape != want:
                    raise CheckpointError(f"tensor {full}{where} has shape {w.shape}, expected "
                                          f"{want} for this config")
                _set(params, path, _from_hf(w, conv, shape))
            else:
                _set(params, path, np.zeros(shape, np.float32))
    return params


def params_to_hf(cfg: ModelConfig, params: dict, heads: bool = True) -> dict[str, np.ndarray]:
    """{HF name: float32 array} of jaxllm params (BERT: with the pooler and, if heads, the
    pretraining heads, under BertForPreTraining's "bert." prefix; a task head's BERT under
    "bert." beside its classifier or qa_outputs; an encoder-decoder with a zero
    final_logits_bias and, for Pegasus and Marian, the residual dimension reordered)."""
    arch = architecture(cfg)
    prefix = "bert." if arch == "bert" and (heads or cfg.head) else ""
    if arch in ("pegasus", "marian"):
        params = _sinusoid_order(cfg, params, to_hf=True)
    out = {}
    get = lambda path: np.asarray(_get(params, path), np.float32)  # noqa: E731
    for name, path, conv, i in _layer_entries(cfg, arch, prefix):
        if conv == "c_attn":
            if name in out:
                continue
            kind = path.rsplit("/", 1)[1]
            parts = [get(path.replace("qkv", p))[i] for p in ("query", "key", "value")]
            if kind == "kernel":
                out[name] = np.concatenate([p.reshape(cfg.d_model, -1) for p in parts], axis=1)
            else:
                out[name] = np.concatenate([p.reshape(-1) for p in parts])
            continue
        x = get(path)
        x = x[i] if i is not None else x
        out[name] = np.ascontiguousarray(_to_hf(x, conv, _n_out(path)))
    if arch in _SEQ2SEQ_CLASSES:  # the BART family's logits bias: none in jaxllm
        out["final_logits_bias"] = np.zeros((1, cfg.vocab_size), np.float32)
    if arch == "bert" and not cfg.head:
        extra = _BERT_POOLER + (_BERT_HEADS if heads else [])
        for name, path, conv in extra:
            full = (prefix + name) if name.startswith("pooler") else name
            out[full] = np.ascontiguousarray(_to_hf(get(path), conv, _n_out(path)))
    return out


# ---------------------------------------------------------------------------------------------
# Files

def save_hf(out_dir: str | Path, cfg: ModelConfig, params: dict, *, heads: bool = True,
            extra_config: dict | None = None, labels: tuple[str, ...] = (),
            generation: dict | None = None) -> Path:
    """Write config.json and model.safetensors (atomically) into out_dir, and
    generation_config.json when `generation` is given (an encoder-decoder's start, end and
    suppressed token ids, for transformers' generate)."""
    from safetensors.numpy import save

    out = Path(out_dir)
    tensors = params_to_hf(cfg, params, heads=heads)  # refuses a model without an HF layout
    hf_cfg = dict(config_to_hf(cfg, heads=heads, labels=labels), **(extra_config or {}))
    out.mkdir(parents=True, exist_ok=True)  # only once there is something to write
    atomic_write(out / "model.safetensors", save(tensors, metadata={"format": "pt"}))
    write_json_atomic(out / "config.json", hf_cfg)
    if generation is not None:
        write_json_atomic(out / "generation_config.json", generation)
    return out


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weight file {path} does not exist")
    try:
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"weight file {path} is truncated or corrupted "
                              f"({type(e).__name__}: {str(e)[:120]})") from None


def read_json(path: Path, missing: str):
    """The JSON value of a model directory's file; a CheckpointError of one line when it is
    absent (the message `missing`) or not JSON."""
    if not path.is_file():
        raise CheckpointError(missing)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from None


def load_hf(model_dir: str | Path) -> tuple[ModelConfig, dict, dict]:
    """(ModelConfig, params, the HF config dict) of a directory with config.json and
    model.safetensors (each file read once)."""
    d = Path(model_dir)
    hf_cfg = read_json(d / "config.json", f"{d} has no config.json; expected a Hugging Face "
                                          f"model directory (config.json + model.safetensors)")
    if isinstance(hf_cfg, dict) and {"model", "train"} <= hf_cfg.keys():
        raise CheckpointError(f"{d} is a jaxllm run (jaxllm train), not a model in the Hugging "
                              f"Face layout: the verbs take it as --run {d}, and `jaxllm export "
                              f"--run {d} --out DIR` writes one")
    from jaxllm.io import sbert

    modules = sbert.read_modules(d)
    if sbert.has_head(modules):  # sentence-transformers with a Dense module: a sequence head
        return sbert.load_sbert(d, modules=modules, hf_cfg=hf_cfg)
    cfg = config_from_hf(hf_cfg)
    weights = d / "model.safetensors"
    tensors = read_safetensors(weights)
    return cfg, params_from_hf(cfg, tensors, source=str(weights)), hf_cfg


def n_params(params) -> int:
    import jax
    return sum(math.prod(np.shape(x)) for x in jax.tree_util.tree_leaves(params))
