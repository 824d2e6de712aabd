"""What a run trains: its parameter tree, fresh or from a base, quantized and with LoRA factors.

    params, axes = build_params_and_axes(cfg, rng)           # a fresh model, as cfg says
    params = build_params(cfg, rng, base)   # fine-tuning: base = run.init_from_params(cfg)
    cfg = with_pretrained_model(cfg, "smollm2-135m-instruct") # fine-tune a pretrained model

`check_transforms` runs before a run directory is made.
"""

from __future__ import annotations

from dataclasses import replace

import jax

from jaxllm import config as config_lib
from jaxllm import models, pretrained, transforms
from jaxllm.errors import ConfigError
from jaxllm.models.rope import extend_context
from jaxllm.optim import TrainState
from jaxllm.parallel.plan import padded_vocab
from jaxllm.transforms import lora, parse_spec
from jaxllm.transforms.select import is_transformed

# Model fields that describe how a run uses a network, not the network itself: a run that starts
# from a pretrained model keeps these from its own config and takes every other model.* field
# (the architecture) from the pretrained model.
RUN_MODEL_FIELDS = ("max_len", "dropout", "attention", "attention_block", "remat", "scan_unroll",
                    "dtype", "quant", "quant_group", "weights", "value_head", "head",
                    "num_classes", "pool")


def new_heads(m: config_lib.ModelConfig) -> tuple[str, ...]:
    """Top-level params that a run adds to its base, new in every run that has them: never
    quantized, never given LoRA factors, always trained in full: the decoder's scalar head
    (model.value_head "value") and an encoder's task head (model.head, "head"; a ViT's "head"
    is its classifier, quantized and adapted like any layer)."""
    return (("value",) if m.value_head else ()) + (
        ("head",) if m.kind == "encoder" and m.head else ())


def pretrained_name(init_from: str) -> bool:
    """Whether train.init_from names a registered pretrained model (else it is a run directory)."""
    return init_from in pretrained.REGISTRY


def with_pretrained_model(cfg: config_lib.Config, name: str) -> config_lib.Config:
    """cfg set up to fine-tune the pretrained model `name` (jaxllm.pretrained): train.init_from =
    name, the model section is the pretrained architecture except RUN_MODEL_FIELDS, which stay
    cfg's (model.max_len is the training sequence length, at most the model's context), and
    data.tokenizer is the model's tokenizer kind. With model.rope_scaling (linear, ntk, yarn) the
    pretrained RoPE model's context is first extended by model.rope_factor (models/rope.py), so
    that model.max_len may go up to the extended context.

        cfg = with_pretrained_model(get_preset("shakespeare-char"), "smollm2-135m-instruct")
    """
    lm = pretrained.load(name)
    if lm.tokenizer is None or lm.config.kind not in ("decoder", "encoder"):
        raise ConfigError(f"train.init_from={name!r}: fine-tuning starts from a decoder or "
                          f"encoder with a tokenizer, such as smollm2-135m-instruct or "
                          f"all-minilm-l6-v2")
    if lm.config.kind == "encoder" and not cfg.model.head:
        raise ConfigError(f"model.head={cfg.model.head!r}: fine-tuning the encoder {name} "
                          f"trains a task head; set model.head=sequence, token or span")
    base = _pretrained_config(cfg.model, name)
    model = replace(base, **{f: getattr(cfg.model, f) for f in RUN_MODEL_FIELDS})
    return replace(cfg, model=model, data=replace(cfg.data, tokenizer=lm.tokenizer.kind),
                   train=replace(cfg.train, init_from=name))


def _pretrained_config(m: config_lib.ModelConfig, name: str) -> config_lib.ModelConfig:
    """The pretrained model's config, its context extended as m says (base_context); a
    ConfigError when m.max_len exceeds that context."""
    base = base_context(pretrained.load(name).config, m, name)
    if m.max_len > base.max_len:
        raise ConfigError(f"model.max_len={m.max_len} exceeds {name}'s context of "
                          f"{base.max_len}; set it lower, or extend the context with "
                          f"model.rope_scaling and model.rope_factor")
    return base


def base_context(base: config_lib.ModelConfig, m: config_lib.ModelConfig,
                 source: str) -> config_lib.ModelConfig:
    """The config of a fine-tuning base (a pretrained model or a run, named `source`) at the
    context this run asks for: with m.rope_scaling set on a base trained without one, the
    base's context extended by m.rope_factor (the base's trained context becomes
    rope_original_len); a ConfigError when the base already reads another scaling."""
    if m.rope_scaling == "none":
        return base
    if base.rope_scaling == "none":
        return extend_context(base, m.rope_scaling, m.rope_factor)
    if (base.rope_scaling, base.rope_factor) != (m.rope_scaling, m.rope_factor):
        raise ConfigError(
            f"model.rope_scaling={m.rope_scaling} (factor {m.rope_factor}): {source} already "
            f"reads its context with {base.rope_scaling} scaling (factor "
            f"{base.rope_factor}); drop the rope settings or set the base's")
    return base


def vocab_config(cfg: config_lib.Config, vocab: int, resuming: bool) -> config_lib.Config:
    """model.vocab_size for a vocabulary of `vocab` ids: a new run on a mesh that splits the
    vocabulary may need a few padding rows (a resumed run keeps its saved size)."""
    if not resuming:
        cfg = with_vocab(cfg, padded_vocab(cfg, vocab))
    return with_vocab(cfg, vocab)


def with_vocab(cfg: config_lib.Config, vocab_size: int) -> config_lib.Config:
    """The config with model.vocab_size set from the tokenizer (0 means automatic)."""
    if cfg.model.vocab_size and cfg.model.vocab_size < vocab_size:
        raise ConfigError(
            f"model.vocab_size={cfg.model.vocab_size} is smaller than the tokenizer's "
            f"{vocab_size} tokens; set it to 0 (automatic) or at least {vocab_size}")
    return replace(cfg, model=replace(cfg.model, vocab_size=cfg.model.vocab_size or vocab_size))


def build_params(cfg: config_lib.Config, rng, base_params=None):
    """The run's parameter tree: fresh (or base_params, when fine-tuning), quantized as
    model.weights says (jaxllm quantize, QLoRA), with LoRA factors as train.lora says."""
    return build_params_and_axes(cfg, rng, base_params)[0]


def build_params_and_axes(cfg: config_lib.Config, rng, base_params=None):
    """(build_params' tree, its logical axis names): a PartitionSpec of names per array, the
    arrays inside a quantized or LoRA leaf named after their base leaf (what a mesh shards)."""
    if base_params is None:
        params, axes = models.init_params(cfg.model, rng)
    else:  # fine-tuning: only the axis names of a fresh init are needed, not its arrays
        params, axes = base_params, models.abstract_params(cfg.model, rng)[1]
    # the new heads are left as they are (trainable_fn trains them in full)
    heads = {k: params[k] for k in new_heads(cfg.model) if k in params}
    head_axes = {k: axes[k] for k in heads}
    params = {k: v for k, v in params.items() if k not in heads}
    axes = {k: v for k, v in axes.items() if k not in heads}
    if cfg.model.weights:
        params = transforms.apply_weights_spec(params, cfg.model.weights, axes)
    if cfg.train.lora:
        params = transforms.apply_lora_spec(params, cfg.train.lora, jax.random.fold_in(rng, 1),
                                            axes)
    params, axes = {**params, **heads}, {**axes, **head_axes}
    leaves, treedef = jax.tree_util.tree_flatten(params, is_leaf=is_transformed)
    names = [x.logical_axes() if is_transformed(x) else a
             for x, a in zip(leaves, treedef.flatten_up_to(axes))]
    return params, jax.tree_util.tree_unflatten(treedef, names)


def trainable_fn(cfg: config_lib.Config):
    """What a run trains: None (every parameter) or LoRA's mask function (with the new heads,
    new_heads, trained in full)."""
    if not cfg.train.lora:
        return None
    if not new_heads(cfg.model):
        return lora.trainable

    def mask(tree):
        return {**lora.trainable(tree), **{k: jax.tree_util.tree_map(lambda _: True, tree[k])
                                           for k in new_heads(cfg.model) if k in tree}}

    return mask


def state_like(cfg: config_lib.Config, tx):
    """A TrainState of the run's structure (a quantized, non-LoRA run keeps no optimizer state)."""
    params = build_params(cfg, jax.random.PRNGKey(cfg.train.seed))
    if cfg.model.weights and not cfg.train.lora:
        return TrainState(step=jax.numpy.zeros((), jax.numpy.int32), params=params, opt_state={})
    return TrainState.create(params, tx, trainable_fn(cfg))


def check_transforms(cfg: config_lib.Config) -> None:
    """LoRA / quantized-weights settings that fail before anything is written."""
    t = cfg.train
    if t.lora:
        parse_spec(t.lora, "lora")
    if cfg.model.weights:
        parse_spec(cfg.model.weights, "quantize")
    if cfg.model.weights and not t.lora:
        raise ConfigError(f"model.weights={cfg.model.weights!r}: a quantized model trains only "
                          f"its LoRA factors (QLoRA); set train.lora too")
    if t.init_from and pretrained_name(t.init_from):
        _pretrained_config(cfg.model, t.init_from)  # model.max_len within its context
