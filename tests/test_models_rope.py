"""RoPE context scaling (linear, NTK-aware, YaRN) against a numpy of Hugging Face's definitions
(tests/reference.py), the scaled decoder against the numpy decoder, and the CLI's errors."""

import dataclasses

import jax
import numpy as np
import pytest
from helpers import LLAMA, error_of, main, random_params
from reference import decoder_logits, rope_inv_freq

from jaxllm.config import Config, ModelConfig, validate
from jaxllm.errors import ConfigError
from jaxllm.models.decoder import Decoder
from jaxllm.models.rope import extend_context, frequencies

# SmolLM2-135M's heads: 64 wide, base 1e5; trained context 2048 read at 8192
SMOL_HEADS = ModelConfig(max_len=8192, n_heads=9, d_model=576, head_dim=64, positions="rope",
                         rope_theta=1e5)


@pytest.mark.parametrize("scaling", ["none", "linear", "ntk", "yarn"])
@pytest.mark.parametrize("factor, original", [(4.0, 0), (2.0, 4096), (1.5, 100)])
def test_inverse_frequencies_follow_the_definitions(scaling, factor, original):
    cfg = dataclasses.replace(SMOL_HEADS, rope_scaling=scaling, rope_factor=factor,
                              rope_original_len=original)
    inv_freq, attention = frequencies(cfg)
    want, want_attention = rope_inv_freq(64, 1e5, scaling, factor,
                                         original or round(8192 / factor))
    np.testing.assert_allclose(inv_freq, want, rtol=1e-6)
    assert attention == pytest.approx(want_attention)


def test_yarn_keeps_the_fast_frequencies_and_interpolates_the_slow_ones():
    """The invariants of YaRN's ramp: the pairs that turn >= 32 times over the trained context
    are extrapolated (unchanged), those that turn < 1 time are interpolated (divided by the
    factor); the temperature is 0.1 ln(4) + 1."""
    plain, _ = frequencies(SMOL_HEADS)
    yarn, attention = frequencies(dataclasses.replace(SMOL_HEADS, rope_scaling="yarn",
                                                      rope_factor=4.0))
    turns = 2048 * plain / (2 * np.pi)
    np.testing.assert_allclose(yarn[turns >= 32], plain[turns >= 32], rtol=1e-6)
    np.testing.assert_allclose(yarn[turns < 1], plain[turns < 1] / 4, rtol=1e-6)
    assert attention == pytest.approx(0.1 * np.log(4) + 1)


def test_scaled_decoder_matches_numpy():
    """The decoder's scaled rotation and YaRN's attention factor (on q and k) equal the numpy
    decoder's. Head size 8, base 100, trained context 64: YaRN's ramp covers pairs 0..3."""
    cfg = dataclasses.replace(LLAMA, rope_scaling="yarn", rope_factor=3.0, rope_original_len=64,
                              attention="reference", n_layers=1)
    params = random_params(cfg)
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (1, 9))
    positions = np.arange(0, 90, 10)[None]  # far apart: the scaled angles differ a lot
    got = jax.jit(lambda p, t, pos: Decoder(cfg).apply({"params": p}, t, positions=pos))(
        params, tokens, positions)
    want = decoder_logits(cfg, jax.device_get(params), tokens, positions)
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-5, rtol=1e-4)


def test_extend_context_and_its_errors():
    cfg = extend_context(dataclasses.replace(SMOL_HEADS, max_len=2048), "yarn", 4.0)
    assert (cfg.max_len, cfg.rope_original_len, cfg.rope_factor) == (8192, 2048, 4.0)
    with pytest.raises(ConfigError, match="--rope-factor 0.0: must be positive"):
        extend_context(SMOL_HEADS, "yarn", 0.0)
    with pytest.raises(ConfigError, match="not RoPE"):
        extend_context(ModelConfig(), "linear", 2.0)
    with pytest.raises(ConfigError, match=r"model.rope_factor=-1.0: must be positive"):
        validate(dataclasses.replace(Config(), model=dataclasses.replace(
            SMOL_HEADS, rope_factor=-1.0)))


def test_generate_with_a_scaled_context(tiny_pretrained, capsys):
    """The tiny RoPE model (context 64) reads a 100-token prompt at factor 2; factor <= 0 is a
    one-line error, exit 2."""
    argv = ["generate", "--model", "tiny-llama", "--prompt", "a" * 100, "--max-new-tokens", "2",
            "--temperature", "0"]
    assert "context" in error_of(argv, capsys)
    assert main(argv + ["--rope-scaling", "yarn", "--rope-factor", "2"]) == 0
    assert capsys.readouterr().out.startswith("a" * 100)
    assert "--rope-factor -1.0: must be positive" in error_of(
        argv + ["--rope-scaling", "ntk", "--rope-factor", "-1"], capsys)
    # a factor without a scaling would be ignored: refused, whatever its sign
    assert "--rope-factor 0.0 scales RoPE only with --rope-scaling" in error_of(
        argv + ["--rope-factor", "0"], capsys)


@pytest.mark.parametrize("extra, expected", [
    (["--rope-scaling", "linear", "--rope-factor", "0"], "--rope-factor 0.0: must be positive"),
    (["--rope-factor", "4"], "--rope-factor 4.0 scales RoPE only with --rope-scaling"),
])
def test_generate_from_a_run_refuses_a_bad_scaling(extra, expected, tmp_path, capsys):
    """The --run path gives the same one-line errors as --model, before the run is read (this
    one does not exist)."""
    argv = ["generate", "--run", str(tmp_path / "no-run"), "--prompt", "ab",
            "--max-new-tokens", "1", *extra]
    assert expected in error_of(argv, capsys)


def test_train_refuses_a_factor_not_above_zero(capsys, tmp_path):
    line = error_of(["train", "--preset", "shakespeare-char-llama", "--steps", "1", "--out",
                     str(tmp_path / "r"), "--set", "model.rope_scaling=yarn", "--set",
                     "model.rope_factor=0"], capsys)
    assert line.endswith("model.rope_factor=0.0: must be positive (new context / trained "
                         "context, e.g. 4)")
    assert not (tmp_path / "r").exists()


def test_fine_tuning_a_pretrained_model_at_an_extended_context(monkeypatch):
    """--init-from a RoPE model with model.rope_scaling: its context (64 here) is extended by the
    factor first, so model.max_len may reach 64 x 2; without a scaling 128 is refused."""
    from helpers import register_tiny_llama

    from jaxllm.config import get_preset
    from jaxllm.train.params import with_pretrained_model

    register_tiny_llama(monkeypatch)  # context 64, RoPE
    cfg = get_preset("shakespeare-char-llama")
    long = dataclasses.replace(cfg.model, max_len=128, rope_scaling="yarn", rope_factor=2.0)
    got = with_pretrained_model(dataclasses.replace(cfg, model=long), "tiny-llama").model
    assert (got.max_len, got.rope_scaling, got.rope_factor, got.rope_original_len) == \
        (128, "yarn", 2.0, 64)
    assert (got.d_model, got.n_kv_heads) == (64, 2)  # the pretrained architecture
    plain = dataclasses.replace(cfg.model, max_len=128)
    with pytest.raises(ConfigError, match="model.max_len=128 exceeds tiny-llama's context of 64"):
        with_pretrained_model(dataclasses.replace(cfg, model=plain), "tiny-llama")
    # the same from the command line, training at less than the extended context: the trained
    # context stays the pretrained 64 (not max_len / factor = 48), as YaRN's ramp needs
    from jaxllm.cli import train as cli_train
    from jaxllm.cli.main import build_parser

    args = build_parser().parse_args(
        ["train", "--init-from", "tiny-llama", "--set", "model.rope_scaling=yarn", "--set",
         "model.rope_factor=2", "--set", "model.max_len=96"])
    got = cli_train._config(args).model
    assert (got.max_len, got.rope_scaling, got.rope_original_len) == (96, "yarn", 64)


def test_fine_tuning_a_run_at_an_extended_context(tiny_run):
    """--init-from DIR (a jaxllm RoPE run) with model.rope_scaling: the run's context is the
    trained one (rope_original_len), as for a pretrained model, not max_len / factor."""
    from jaxllm.cli import train as cli_train
    from jaxllm.cli.main import build_parser
    from jaxllm.train.params import base_context
    from jaxllm.train.run import RunDir

    run = tiny_run("llama")
    trained = RunDir(run).load_config().model.max_len
    args = build_parser().parse_args(
        ["train", "--init-from", str(run), "--set", "model.rope_scaling=yarn", "--set",
         "model.rope_factor=2", "--set", f"model.max_len={trained * 3 // 2}"])
    got = cli_train._config(args).model
    assert (got.max_len, got.rope_scaling, got.rope_factor, got.rope_original_len) == \
        (trained * 3 // 2, "yarn", 2.0, trained)
    # a base already scaled another way is refused in one line (base_context, as for a
    # pretrained base); a longer max_len than the run's is not (a RoPE run may train longer)
    longer = build_parser().parse_args(
        ["train", "--init-from", str(run), "--set", f"model.max_len={trained * 2}"])
    assert cli_train._config(longer).model.max_len == trained * 2
    scaled = cli_train._config(args)
    other = dataclasses.replace(scaled.model, rope_scaling="linear")
    with pytest.raises(ConfigError, match="already reads its context with yarn scaling"):
        base_context(scaled.model, other, "the base")
    assert base_context(scaled.model, scaled.model, "the base") == scaled.model
