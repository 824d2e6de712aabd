"""Config: presets are valid, overrides are typed and checked, config.json round-trips."""

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxllm.config import (PRESETS, Config, ModelConfig, apply_overrides, from_dict, get_preset,
                           validate)
from jaxllm.errors import ConfigError


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_and_round_trip(name):
    cfg = validate(get_preset(name))
    assert from_dict(cfg.to_dict()) == cfg


def test_overrides_are_typed():
    cfg = apply_overrides(get_preset("shakespeare-char"),
                          ["model.n_layers=6", "optim.lr=3e-4", "model.use_bias=false",
                           "data.corpus=pydoc", "train.steps=1e3"])
    assert (cfg.model.n_layers, cfg.optim.lr, cfg.model.use_bias, cfg.data.corpus,
            cfg.train.steps) == (6, 3e-4, False, "pydoc", 1000)
    assert get_preset("shakespeare-char").model.n_layers == 4  # presets are never mutated


@pytest.mark.parametrize("override, message", [
    ("model.n_layers=2.5", "expected an integer"),
    ("model.attention_block=big", "model.attention_block='big': expected an integer"),
    ("model.use_bias=maybe", "expected a boolean"),
    ("optim.lr=fast", "expected a number"),
    ("model=3", "unknown override key"),
    ("nope.x=1", "unknown override key"),
    ("model.n_layer=3", "model has: "),
    ("n_layers", "not of the form"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Config(), [override])


@pytest.mark.parametrize("override, message", [
    ("model.positions=alibi", "expected one of learned, rope"),
    ("model.n_heads=3", "divisible by model.n_heads=3"),
    ("model.n_kv_heads=3", "must divide model.n_heads=4"),
    ("model.dropout=1.0", "must be in \\[0, 1\\)"),
    ("data.val_fraction=0", "must be in \\(0, 1\\)"),
    ("train.batch_size=10", "divisible by optim.grad_accum=4"),
    ("optim.min_lr=1", "must not exceed optim.lr"),
    ("model.positions=rope", "RoPE needs an even head size"),
    ("model.attention=cudnn", "model.dtype='float32': must be bfloat16 or float16"),
    ("model.attention=splash", "model.max_len=.*: must be a multiple of 128"),
    ("data.target_len=65", "data.target_len=65.*model.max_len=64"),
    ("model.attention_block=0", "model.attention_block=0: must be at least 1"),
    ("model.attention_block=-64", "model.attention_block=-64: must be at least 1"),
])
def test_validation_names_the_field(override, message):
    base = ["optim.grad_accum=4", "train.batch_size=12"] if "grad_accum" in message else []
    if "RoPE" in message:
        base = ["model.head_dim=7"]
    with pytest.raises(ConfigError, match=message):
        validate(apply_overrides(get_preset("shakespeare-char"), base + [override]))


@pytest.mark.parametrize("name", ["shakespeare-char", "shakespeare-mlm"])
def test_a_presets_model_without_its_vocabulary_is_refused(name):
    """issue 16: a preset's vocab_size=0 ("from the tokenizer") given to init_params failed in
    jnp.take with an IndexError; it is a one-line ConfigError naming the field."""
    import jax

    from jaxllm import models

    cfg = get_preset(name).model
    assert cfg.vocab_size == 0
    with pytest.raises(ConfigError, match="model.vocab_size=0: a model needs its vocabulary"):
        models.init_params(cfg, jax.random.PRNGKey(0))


@given(n_layers=st.integers(-5, 50), lr=st.floats(-1, 1, allow_nan=False))
def test_validate_accepts_exactly_the_sensible_values(n_layers, lr):
    cfg = dataclasses.replace(Config(), model=ModelConfig(n_layers=n_layers))
    cfg = apply_overrides(cfg, {"optim.lr": lr, "optim.min_lr": 0.0})
    if n_layers >= 1 and lr > 0:
        validate(cfg)
    else:
        with pytest.raises(ConfigError):
            validate(cfg)


def test_from_dict_rejects_unknown_sections_and_keys():
    with pytest.raises(ConfigError, match="unknown config section"):
        from_dict({"modle": {}})
    with pytest.raises(ConfigError, match="unknown override key 'model.layers'"):
        from_dict({"model": {"layers": 3}})
