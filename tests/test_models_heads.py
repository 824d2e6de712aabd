"""The encoder's task heads (model.head): outputs against the numpy BERT forward plus a numpy
head, with padding; the losses against hand-written numpy cross-entropies with their masks;
span decoding against a brute-force search over every valid span."""

import dataclasses
import functools
import json

import jax
import numpy as np
import pytest
from helpers import brute_force_span, random_params
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_pretrained import bert_hidden
from safetensors.numpy import load_file

from jaxllm import config as config_lib
from jaxllm.errors import ConfigError
from jaxllm.io.hf import config_to_hf, load_hf, params_to_hf, save_hf
from jaxllm.models import abstract_params
from jaxllm.models.encoder import Encoder
from jaxllm.objectives.classification import best_span, task_loss

BERT = config_lib.ModelConfig(kind="encoder", norm_position="post", type_vocab_size=2,
                              vocab_size=41, max_len=16, n_layers=2, n_heads=4, d_model=32,
                              norm_eps=1e-12, num_classes=5)
LENGTHS = (10, 6, 3)  # real tokens per row of the test batch; the rest is padding


def params_of(cfg):
    """Random params of cfg's shapes (N(0, 0.3); norm scales 1 + that: every leaf matters) and
    their logical axis names, traced only (nothing compiled)."""
    return random_params(cfg, scale=0.3), abstract_params(cfg)[1]


def batch_of(cfg, seed=0):
    rng = np.random.default_rng(seed)
    T = max(LENGTHS)
    tokens = rng.integers(0, cfg.vocab_size, (len(LENGTHS), T)).astype(np.int32)  # padding too
    mask = np.arange(T)[None] < np.asarray(LENGTHS)[:, None]
    types = (np.arange(T)[None] >= np.asarray(LENGTHS)[:, None] // 2).astype(np.int32)
    return tokens, types, mask


@functools.partial(jax.jit, static_argnums=0)
def run(cfg, params, tokens, types, mask):
    return Encoder(cfg).apply({"params": params}, tokens, types, mask)


def numpy_hidden(cfg, params, tokens, types):
    """bert_hidden (tests/reference_pretrained.py) of each row's real tokens, float64."""
    body = {k: v for k, v in params.items() if k != "head"}
    body["pooler"] = {"kernel": np.zeros((cfg.d_model, cfg.d_model)), "bias": np.zeros(cfg.d_model)}
    plain = dataclasses.replace(cfg, head="")
    hf, hf_cfg = params_to_hf(plain, jax.device_get(body), heads=False), config_to_hf(plain)
    return [bert_hidden(hf, hf_cfg, tokens[b, :n], types[b, :n]) for b, n in enumerate(LENGTHS)]


def np_ce(logits, labels):
    """Softmax cross-entropy per row, float64: log sum exp(z) - z[label]."""
    z = np.asarray(logits, np.float64)
    m = z.max(-1, keepdims=True)
    log_z = (m + np.log(np.exp(z - m).sum(-1, keepdims=True)))[..., 0]
    return log_z - np.take_along_axis(z, labels[..., None], -1)[..., 0]


@pytest.mark.parametrize("head,pool", [("sequence", "gap"), ("sequence", "cls"),
                                       ("token", "cls"), ("span", "cls")])
def test_heads_match_numpy_bert_and_head_with_padding(head, pool):
    cfg = dataclasses.replace(BERT, head=head, pool=pool)
    params, axes = params_of(cfg)
    assert set(params) == {"embed", "pos_embedding", "type_embedding", "embed_norm", "blocks",
                           "head"}  # no pretraining heads
    assert tuple(axes["head"]["kernel"]) == ("embed", None)
    tokens, types, mask = batch_of(cfg)
    out = jax.device_get(run(cfg, params, tokens, types, mask))
    w, b = (np.asarray(params["head"][k], np.float64) for k in ("kernel", "bias"))
    hidden = numpy_hidden(cfg, params, tokens, types)
    for r, (h, n) in enumerate(zip(hidden, LENGTHS)):
        if head == "sequence":
            pooled = h.mean(0) if pool == "gap" else h[0]
            np.testing.assert_allclose(out["logits"][r], pooled @ w + b, atol=1e-4, rtol=1e-4)
        elif head == "token":
            assert out["logits"].shape == (3, 10, 5)
            np.testing.assert_allclose(out["logits"][r, :n], h @ w + b, atol=1e-4, rtol=1e-4)
        else:
            assert out["start_logits"].shape == out["end_logits"].shape == (3, 10)
            np.testing.assert_allclose(out["start_logits"][r, :n], h @ w[:, 0] + b[0], atol=1e-4,
                                       rtol=1e-4)
            np.testing.assert_allclose(out["end_logits"][r, :n], h @ w[:, 1] + b[1], atol=1e-4,
                                       rtol=1e-4)


def test_sequence_and_token_losses_match_numpy_with_masks():
    for head in ("sequence", "token"):
        cfg = dataclasses.replace(BERT, head=head, pool="gap")
        params, _ = params_of(cfg)
        tokens, types, mask = batch_of(cfg)
        logits = np.asarray(run(cfg, params, tokens, types, mask)["logits"])
        rng = np.random.default_rng(2)
        if head == "sequence":
            labels = rng.integers(0, 5, 3).astype(np.int32)
            weights = np.ones(3)
        else:
            labels = rng.integers(-1, 5, (3, 10)).astype(np.int32)  # -1: not tagged
            weights = (mask & (labels >= 0)).astype(float)
        batch = {"tokens": tokens, "types": types, "mask": mask, "labels": labels}
        loss, sums = jax.jit(task_loss(Encoder(cfg), head))(params, batch)
        ce = np_ce(logits, np.maximum(labels, 0))
        want = (ce * weights).sum() / weights.sum()
        np.testing.assert_allclose(float(loss), want, rtol=1e-5)
        np.testing.assert_allclose(float(sums["loss_sum"]), (ce * weights).sum(), rtol=1e-5)
        assert float(sums["tokens"]) == weights.sum()
        assert float(sums["correct"]) == ((logits.argmax(-1) == labels) * weights).sum()


def test_span_loss_matches_numpy_and_counts_exact_spans():
    cfg = dataclasses.replace(BERT, head="span")
    params, _ = params_of(cfg)
    tokens, types, mask = batch_of(cfg)
    out = jax.device_get(run(cfg, params, tokens, types, mask))
    starts, ends = np.array([2, 1, 0], np.int32), np.array([5, 4, 2], np.int32)
    batch = {"tokens": tokens, "types": types, "mask": mask, "starts": starts, "ends": ends}
    loss, sums = jax.jit(task_loss(Encoder(cfg), "span", max_answer=4))(params, batch)
    ce = [(np_ce(out["start_logits"][r, :n], starts[r]) + np_ce(out["end_logits"][r, :n], ends[r]))
          / 2 for r, n in enumerate(LENGTHS)]  # padding is no candidate at all
    np.testing.assert_allclose(float(loss), np.mean(ce), rtol=1e-5)
    decoded = [brute_force_span(out["start_logits"][r, :n], out["end_logits"][r, :n], 4)[:2]
               for r, n in enumerate(LENGTHS)]
    want = sum(d == (s, e) for d, s, e in zip(decoded, starts, ends))
    assert float(sums["correct"]) == want and float(sums["tokens"]) == 3
    # the decoded answers, given as the labels, are all counted correct
    batch.update(starts=np.array([d[0] for d in decoded], np.int32),
                 ends=np.array([d[1] for d in decoded], np.int32))
    assert float(jax.jit(task_loss(Encoder(cfg), "span", max_answer=4))(params, batch)[1][
        "correct"]) == 3


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 6))
def test_best_span_equals_brute_force(seed, max_answer):
    rng = np.random.default_rng(seed)
    start, end = rng.normal(size=(2, 4, 9)).astype(np.float32)
    valid = rng.random((4, 9)) < 0.7
    valid[:, 0] = True  # every row has a valid span
    s, e, score = jax.device_get(jax.jit(best_span, static_argnums=3)(start, end, valid,
                                                                       max_answer))
    for r in range(4):
        i, j, want = brute_force_span(start[r], end[r], max_answer, valid[r])
        assert (s[r], e[r]) == (i, j)
        np.testing.assert_allclose(score[r], want, rtol=1e-6)


def test_head_config_is_validated():
    good = config_lib.Config(model=dataclasses.replace(BERT, head="sequence"))
    config_lib.validate(good)
    with pytest.raises(ConfigError, match="model.head='tags'"):
        config_lib.validate(config_lib.apply_overrides(good, ["model.head=tags"]))
    with pytest.raises(ConfigError, match="model.head='token'.*encoder"):
        config_lib.validate(config_lib.apply_overrides(good, ["model.head=token",
                                                              "model.kind=decoder"]))
    with pytest.raises(ConfigError, match="model.num_classes=0"):
        config_lib.validate(config_lib.apply_overrides(good, ["model.num_classes=0"]))


@pytest.mark.parametrize("head", ["token", "span"])
def test_token_and_span_heads_export_as_their_bert_classes(head, tmp_path):
    """The exported BertForTokenClassification / BertForQuestionAnswering read by their Hugging
    Face names alone (bert_hidden, then classifier or qa_outputs, whose two columns transformers
    splits into start and end) give the encoder's head outputs; load_hf reads them back."""
    cfg = dataclasses.replace(BERT, head=head, pool="cls")  # the program compiled above
    params, _ = params_of(cfg)
    params = jax.device_get(params)
    tokens, types, mask = batch_of(cfg)
    out = jax.device_get(run(cfg, params, tokens, types, mask))
    save_hf(tmp_path, cfg, params, labels=tuple("ABCDE") if head == "token" else ())
    hf_cfg = json.loads((tmp_path / "config.json").read_text())
    tensors = load_file(str(tmp_path / "model.safetensors"))
    name = {"token": "classifier", "span": "qa_outputs"}[head]
    assert not any(k.startswith("cls.") or ".pooler." in k for k in tensors)
    w, b = tensors[name + ".weight"].astype(np.float64), tensors[name + ".bias"]
    for r, n in enumerate(LENGTHS):
        theirs = bert_hidden(tensors, hf_cfg, tokens[r, :n], types[r, :n]) @ w.T + b
        ours = (out["logits"][r, :n] if head == "token" else
                np.stack([out["start_logits"][r, :n], out["end_logits"][r, :n]], -1))
        np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=1e-4)
    got_cfg, got, _ = load_hf(tmp_path)
    assert (got_cfg.head, got_cfg.num_classes) == (head, 5 if head == "token" else 10)
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, got)


@pytest.mark.parametrize("pool", ["gap", "cls"])
def test_sequence_head_exports_for_sentence_transformers(pool, tmp_path):
    """The sentence-transformers directory of a sequence head, read by its file names alone
    (modules.json's order; BertModel through bert_hidden; the pooling 1_Pooling/config.json
    names; 2_Dense's (classes, D) linear.weight, linear.bias, identity activation), gives the
    encoder's logits on a padded batch; load_hf reads it back to the same params."""
    from jaxllm.io.sbert import save_sbert

    cfg = dataclasses.replace(BERT, head="sequence", pool=pool)  # the program compiled above
    params = jax.device_get(params_of(cfg)[0])
    tokens, types, mask = batch_of(cfg)
    ours = jax.device_get(run(cfg, params, tokens, types, mask))["logits"]
    save_sbert(tmp_path, cfg, params, labels=tuple("ABCDE"))
    modules = json.loads((tmp_path / "modules.json").read_text())
    assert [(m["path"], m["type"].rsplit(".", 1)[1]) for m in modules] == [
        ("", "Transformer"), ("1_Pooling", "Pooling"), ("2_Dense", "Dense")]
    hf_cfg = json.loads((tmp_path / "config.json").read_text())
    assert hf_cfg["architectures"] == ["BertModel"] and hf_cfg["id2label"]["4"] == "E"
    assert json.loads((tmp_path / "sentence_bert_config.json").read_text())[
        "max_seq_length"] == cfg.max_len
    tensors = load_file(str(tmp_path / "model.safetensors"))
    pooling = json.loads((tmp_path / "1_Pooling" / "config.json").read_text())
    assert sum(v is True for v in pooling.values()) == 1 and pooling[
        "word_embedding_dimension"] == cfg.d_model
    dense = json.loads((tmp_path / "2_Dense" / "config.json").read_text())
    assert dense["activation_function"] == "torch.nn.modules.linear.Identity"
    linear = load_file(str(tmp_path / "2_Dense" / "model.safetensors"))
    assert linear["linear.weight"].shape == (dense["out_features"], dense["in_features"])
    for r, n in enumerate(LENGTHS):
        h = bert_hidden(tensors, hf_cfg, tokens[r, :n], types[r, :n])  # the real tokens only
        pooled = h.mean(0) if pooling["pooling_mode_mean_tokens"] else h[0]
        theirs = pooled @ linear["linear.weight"].T.astype(np.float64) + linear["linear.bias"]
        np.testing.assert_allclose(ours[r], theirs, atol=1e-4, rtol=1e-4)
    got_cfg, got, _ = load_hf(tmp_path)
    assert (got_cfg.head, got_cfg.pool, got_cfg.num_classes) == ("sequence", pool, 5)
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, got)


def test_load_hf_reads_each_json_file_once_and_refuses_a_bad_one_in_a_line(tmp_path,
                                                                          monkeypatch):
    """load_hf of a sentence-transformers directory reads config.json, modules.json and the
    modules' configs once each (config.json and modules.json were read twice); a missing or
    broken file is one line naming it."""
    from collections import Counter
    from pathlib import Path

    from jaxllm.errors import CheckpointError
    from jaxllm.io.sbert import save_sbert

    cfg = dataclasses.replace(BERT, head="sequence", pool="gap")
    st = tmp_path / "st"
    save_sbert(st, cfg, jax.device_get(params_of(cfg)[0]))
    reads, read_text = Counter(), Path.read_text

    def counted(self, *a, **k):
        reads[self.relative_to(st).as_posix()] += 1
        return read_text(self, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(Path, "read_text", counted)
        assert load_hf(st)[0].head == "sequence"
    assert reads == {"config.json": 1, "modules.json": 1, "1_Pooling/config.json": 1,
                     "2_Dense/config.json": 1}
    for name, broken, what in (("modules.json", "[", "modules.json is not valid JSON"),
                               ("2_Dense/config.json", None, "2_Dense/config.json is missing; "
                                "a sentence-transformers directory of a jaxllm sequence head "
                                "has modules.json, config.json"),
                               ("config.json", "{", "config.json is not valid JSON"),
                               ("config.json", None, "st has no config.json; expected a "
                                "Hugging Face model directory")):
        f, saved = st / name, (st / name).read_bytes()
        f.unlink() if broken is None else f.write_text(broken)
        with pytest.raises(CheckpointError) as e:
            load_hf(st)
        assert what in str(e.value) and "\n" not in str(e.value), str(e.value)
        f.write_bytes(saved)


def test_sequence_head_without_a_bert_body_or_with_another_dense_is_refused(tmp_path):
    from jaxllm.errors import CheckpointError
    from jaxllm.io.sbert import save_sbert

    cfg = dataclasses.replace(BERT, head="sequence", pool="gap", norm_position="pre")
    with pytest.raises(CheckpointError) as e:
        save_sbert(tmp_path / "out", cfg, {})  # refused before any parameter is read
    assert "BERT encoders (post-norm" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()
    # a sentence-transformers Dense that is not jaxllm's head (tanh) is refused on reading
    cfg = dataclasses.replace(BERT, head="sequence", pool="gap")
    save_sbert(tmp_path / "st", cfg, jax.device_get(params_of(cfg)[0]))
    dense = tmp_path / "st" / "2_Dense" / "config.json"
    dense.write_text(dense.read_text().replace("torch.nn.modules.linear.Identity",
                                               "torch.nn.modules.activation.Tanh"))
    with pytest.raises(CheckpointError, match=r"activation torch.nn.modules.activation.Tanh"):
        load_hf(tmp_path / "st")
