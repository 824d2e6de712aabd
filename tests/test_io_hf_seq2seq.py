"""Hugging Face export of encoder-decoders and task heads (jaxllm.io.hf): the exported
directory read without jaxllm, by the Hugging Face names and config.json alone, in numpy
forwards of Blenderbot, Pegasus and Marian (reference_pretrained.py) against the numpy forward
of jaxllm's own parameter tree (reference.py, itself held equal to Seq2Seq in
test_models_seq2seq.py), with padding on both sides; read back by load_hf; refusals. Pure numpy
in float64: nothing is compiled. (transformers itself runs them in
experiments/hf_export_transformers.py.)"""

import dataclasses
import json

import jax
import numpy as np
import pytest
from helpers import SEQ2SEQ, random_params, seq2seq_batch
from reference import seq2seq_logits
from reference_pretrained import hf_seq2seq_logits
from safetensors.numpy import load_file

from jaxllm.config import ModelConfig
from jaxllm.data.tagging import word_tags
from jaxllm.errors import CheckpointError
from jaxllm.io.hf import config_to_hf, load_hf, save_hf
from jaxllm.train.task_inputs import head_classes

# jaxllm's options each class computes: pre-norm + learned positions, pre-norm + sinusoid (an
# untied head here), post-norm + sinusoid (the paper's layout)
SEQ = {"blenderbot": SEQ2SEQ["learned"],
       "pegasus": dataclasses.replace(SEQ2SEQ["learned"], positions="sinusoidal",
                                      tie_embeddings=False),
       "marian": SEQ2SEQ["vaswani"]}


@pytest.mark.parametrize("arch", sorted(SEQ))
def test_exported_seq2seq_read_by_hugging_face_names_gives_the_same_logits(arch, tmp_path):
    cfg = SEQ[arch]
    params = jax.device_get(random_params(cfg, scale=0.3))
    save_hf(tmp_path, cfg, params)
    hf_cfg = json.loads((tmp_path / "config.json").read_text())
    tensors = load_file(str(tmp_path / "model.safetensors"))
    source, source_mask, target, target_mask = seq2seq_batch()
    ours = seq2seq_logits(cfg, params, source, target, source_mask, target_mask)
    for b in range(len(source)):  # the forward config.json's model_type names, real tokens
        S, T = source_mask[b].sum(), target_mask[b].sum()
        theirs = hf_seq2seq_logits(tensors, hf_cfg, source[b, :S], target[b, :T])
        np.testing.assert_allclose(ours[b, :T], theirs, atol=1e-9)
    assert hf_cfg["model_type"] == arch and hf_cfg["tie_word_embeddings"] == cfg.tie_embeddings
    got_cfg, got, _ = load_hf(tmp_path)  # and back: the same model, every parameter
    assert got_cfg == dataclasses.replace(cfg, d_ff=cfg.ff_size, attention="auto")
    for (path, x), (_, y) in zip(jax.tree_util.tree_flatten_with_path(params)[0],
                                 jax.tree_util.tree_flatten_with_path(got)[0], strict=True):
        np.testing.assert_allclose(np.asarray(x), y, rtol=0, atol=0, err_msg=str(path))


@pytest.mark.parametrize("change,names", [
    ({"positions": "rope"}, "model.positions=rope"),
    ({"norm_position": "post"}, "model.norm_position=post and model.positions=learned"),
    ({"norm": "rmsnorm"}, "model.norm=rmsnorm"),
    ({"n_kv_heads": 1}, "model.n_kv_heads=1"),
    ({"share_embeddings": False}, "model.share_embeddings=false"),
])
def test_seq2seq_without_a_matching_class_is_refused_in_one_line(change, names, tmp_path):
    cfg = dataclasses.replace(SEQ2SEQ["learned"], **change)
    with pytest.raises(CheckpointError) as e:
        save_hf(tmp_path / "out", cfg, {})  # refused before any parameter is read
    line = str(e.value)
    assert names in line and "--format run" in line and "\n" not in line
    assert not (tmp_path / "out").exists()  # nothing written


def test_sequence_head_is_refused_and_token_labels_follow_the_tagging_rule():
    bert = ModelConfig(kind="encoder", norm_position="post", vocab_size=41, max_len=16,
                       n_layers=1, n_heads=2, d_model=8, norm_eps=1e-12)
    for pool in ("gap", "cls"):
        with pytest.raises(CheckpointError, match=r"model.head=sequence .*tanh pooler.*"
                                                  r"--format run"):
            config_to_hf(dataclasses.replace(bert, head="sequence", num_classes=5, pool=pool))
    token = dataclasses.replace(bert, head="token", num_classes=3)
    hf = config_to_hf(token, labels=head_classes("token"))
    assert hf["architectures"] == ["BertForTokenClassification"] and hf["num_labels"] == 3
    # a worked example: the tag ids data/tagging.py trains on name these words' classes
    want = {"London": "NAME", "3": "NUMBER", "cats": "O"}
    for word, tag in word_tags("In London, 3 cats sat."):
        if word in want:
            assert hf["id2label"][str(tag)] == want[word] and hf["label2id"][want[word]] == tag
    span = config_to_hf(dataclasses.replace(bert, head="span"))
    assert span["architectures"] == ["BertForQuestionAnswering"] and span["num_labels"] == 2
