"""Training an encoder's task head: fine-tuning from a pretrained encoder (the body kept, a new
head), LoRA training only its factors and the head, the labelled-text split and rows, and the
bbc-topics preset through the CLI (train, eval, generate, export) on a tiny registered encoder."""

import dataclasses
import re

import jax
import numpy as np
import pytest
from helpers import (TINY_BERT, brute_force_span, error_of, random_params,
                     register_tiny_bert)
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import f1_score

from jaxllm import config as config_lib
from jaxllm.cli.main import main
from jaxllm.data.labeled import encode_texts, stratified_split
from jaxllm.data.tagging import planted_rows, tag_rows, word_tags
from jaxllm.errors import ConfigError
from jaxllm.models import build
from jaxllm.objectives.classification import task_loss
from jaxllm.optim import TrainState, make_optimizer
from jaxllm.train import task_inputs
from jaxllm.train.params import build_params, trainable_fn, with_pretrained_model
from jaxllm.train.run import init_from_params, load_run
from jaxllm.train.step import make_train_step
from jaxllm.train.task_inputs import task_splits
from jaxllm.transforms.lora import LoraArray
from jaxllm.transforms.quantize import QArray


def bbc_config(**train):
    """bbc-topics on TINY_BERT's scale (a context of 32 tokens)."""
    cfg = config_lib.get_preset("bbc-topics")
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, max_len=32),
                               train=dataclasses.replace(cfg.train, init_from="tiny-bert",
                                                         **train))


def test_fine_tuning_keeps_the_body_and_starts_a_new_head(monkeypatch):
    enc = register_tiny_bert(monkeypatch)
    cfg = with_pretrained_model(bbc_config(), "tiny-bert")
    assert cfg.model.d_model == 16 and cfg.model.head == "sequence" and cfg.model.max_len == 32
    base = init_from_params(cfg)
    assert "head" in base and not {"mlm_dense", "mlm_bias", "pooler", "nsp"} & set(base)
    assert base["head"]["kernel"].shape == (16, 5) and not np.any(base["head"]["bias"])
    np.testing.assert_array_equal(base["pos_embedding"], enc.params["pos_embedding"][:32])
    for a, b in zip(jax.tree_util.tree_leaves(base["blocks"]),
                    jax.tree_util.tree_leaves(enc.params["blocks"])):
        np.testing.assert_array_equal(a, b)
    no_head = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, head=""))
    with pytest.raises(ConfigError, match="model.head=''.*task head"):
        with_pretrained_model(no_head, "tiny-bert")


def test_a_fresh_task_head_is_drawn_as_the_models_own_head():
    """init_task_head (a pretrained body's new head) has the tree, shapes and dtypes of the
    Encoder's own head, a kernel of std model.init_std and a zero bias."""
    from jaxllm.models import abstract_params
    from jaxllm.models.encoder import init_task_head

    for head, classes in (("token", 200), ("span", 3)):
        cfg = dataclasses.replace(TINY_BERT, head=head, num_classes=classes)
        fresh = init_task_head(cfg, jax.random.PRNGKey(1))
        own = abstract_params(cfg)[0]["head"]
        assert jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), fresh) == \
            jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), own)
        assert not np.any(fresh["bias"])
        if head == "token":  # 3,200 draws
            assert abs(np.std(fresh["kernel"]) / cfg.init_std - 1) < 0.1
    assert fresh["kernel"].shape == (16, 2)  # span: start and end


def test_lora_on_the_encoder_trains_only_the_factors_and_the_head():
    model = dataclasses.replace(TINY_BERT, head="sequence", num_classes=3, pool="gap",
                                vocab_size=50, max_len=8)
    cfg = config_lib.Config(model=model, train=config_lib.TrainConfig(
        lora="rank=2,alpha=4,targets=all"))  # "all": every kernel, yet not the head's
    params = build_params(cfg, jax.random.PRNGKey(0), random_params(model))  # no init compiled
    assert isinstance(params["blocks"]["attn"]["query"]["kernel"], LoraArray)
    assert not isinstance(params["head"]["kernel"], LoraArray)
    tx = make_optimizer(config_lib.OptimConfig(lr=1e-2, warmup_steps=0, schedule="constant"), 3)
    state = TrainState.create(params, tx, trainable_fn(cfg))
    before = jax.device_get(state.params)
    step = make_train_step(task_loss(build(model), "sequence"), tx, trainable=trainable_fn(cfg),
                           donate=False)
    rng = np.random.default_rng(0)
    batch = {"tokens": rng.integers(0, 50, (4, 8)).astype(np.int32),
             "mask": np.arange(8)[None] < np.array([[8], [5], [3], [8]]),
             "labels": np.array([0, 1, 2, 1], np.int32)}
    for _ in range(3):
        state, _ = step(state, batch)
    after = jax.device_get(state.params)
    changed = {}
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(before),
                            jax.tree_util.tree_leaves(after)):
        changed[jax.tree_util.keystr(path)] = not np.array_equal(a, b)
    trained = {k for k, v in changed.items() if v}
    assert trained and all(".lora_" in k or k.startswith("['head']") for k in trained), trained
    assert "['head']['kernel']" in trained and any(".lora_b" in k for k in trained)
    assert not any(v for k, v in changed.items() if ".base" in k or "embed" in k)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=60), st.integers(0, 5))
def test_stratified_split_keeps_class_proportions(labels, seed):
    labels = np.asarray(labels)
    train, val, test = stratified_split(labels, (0.2, 0.1), seed)
    everything = np.concatenate([train, val, test])
    assert sorted(everything.tolist()) == list(range(len(labels)))  # disjoint, covering
    for c in np.unique(labels):
        n = int(np.sum(labels == c))
        assert np.sum(labels[val] == c) == round(0.2 * n)
        assert np.sum(labels[test] == c) == round(0.1 * n)
    assert [p.tolist() for p in stratified_split(labels, (0.2, 0.1), seed)] == \
        [p.tolist() for p in (train, val, test)]


def test_encode_texts_cuts_long_texts_and_keeps_the_final_sep():
    from jaxllm.text import load_tokenizer

    tok = load_tokenizer("all-minilm-l6-v2")
    texts = ["Short one.", "a much longer text " * 20]
    rows = encode_texts(tok, texts, 12)
    short = tok.encode(texts[0], add_special_tokens=True)
    long = tok.encode(texts[1], add_special_tokens=True)
    assert rows["tokens"][0, :len(short)].tolist() == short and rows["mask"][0].sum() == len(short)
    assert rows["tokens"][1].tolist() == long[:11] + [long[-1]] and rows["mask"][1].all()
    assert long[-1] == tok.token_to_id("[SEP]") and not rows["tokens"][0, len(short):].any()


@pytest.mark.slow
def test_bbc_topics_trains_evaluates_classifies_and_exports(monkeypatch, tmp_path, capsys):
    register_tiny_bert(monkeypatch)
    # the validation split cut to 50 texts: eval scoring it instead of the test split (which
    # has as many texts as the uncut one, and the same class shares) prints another count
    split = task_inputs.stratified_split
    monkeypatch.setattr(task_inputs, "stratified_split",
                        lambda *a: [p[:50] if k == 1 else p for k, p in enumerate(split(*a))])
    run = tmp_path / "run"
    argv = ["train", "--preset", "bbc-topics", "--init-from", "tiny-bert", "--steps", "2",
            "--set", "model.max_len=32", "--set", "train.batch_size=8", "--set",
            "train.eval_batches=1", "--set", "optim.warmup_steps=1", "--no-progress", "--out",
            str(run)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "jaxllm eval --run" in out and "sequences/s" in out
    assert main(["eval", "--run", str(run)]) == 0
    line = capsys.readouterr().out
    m = re.search(r"\((\d+) texts, 5 classes\): accuracy ([\d.]+), macro-F1 ([\d.]+)", line)
    assert m and int(m[1]) == 223, line  # 10% of each class, rounded: the test split
    loaded = load_run(run)  # the test split's accuracy and macro-F1 (scikit-learn's), here
    test = task_splits(loaded.config, loaded.tokenizer).test
    pred = np.argmax(loaded.model.apply({"params": loaded.params}, test["tokens"], None,
                                        test["mask"])["logits"], -1)
    assert float(m[2]) == round(float(np.mean(pred == test["labels"])), 4)
    assert float(m[3]) == round(f1_score(test["labels"], pred, labels=range(5),
                                         average="macro", zero_division=0), 4)
    assert "bbc test split (223 texts" in line
    assert main(["eval", "--run", str(run), "--split", "validation"]) == 0  # the 50 patched in
    assert "bbc validation split (50 texts, 5 classes)" in capsys.readouterr().out
    text = "Shares in the bank rose after its profits beat forecasts."
    assert main(["generate", "--run", str(run), "--prompt", text]) == 0
    printed = [c.rsplit(" ", 1) for c in capsys.readouterr().out.strip().split(", ")]
    row = encode_texts(loaded.tokenizer, [text], 32)  # the run's rows: [CLS] ... [SEP]
    logits = np.asarray(loaded.model.apply({"params": loaded.params}, row["tokens"], None,
                                           row["mask"])["logits"][0], np.float64)
    p = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    classes = ["business", "entertainment", "politics", "sport", "tech"]
    assert [name for name, _ in printed] == [classes[i] for i in np.argsort(-p)]
    np.testing.assert_allclose([float(v) for _, v in printed], np.sort(p)[::-1], atol=1e-4)
    assert "--num-beams" in error_of(["generate", "--run", str(run), "--prompt", "x",
                                      "--num-beams", "2"], capsys)
    _sentence_transformers_export_matches_the_run(run, test, tmp_path, capsys)
    assert main(["export", "--run", str(run), "--format", "run", "--out",
                 str(tmp_path / "copy")]) == 0
    capsys.readouterr()
    assert main(["eval", "--run", str(tmp_path / "copy")]) == 0
    assert capsys.readouterr().out.split(": ", 1)[1] == line.split(": ", 1)[1]
    # quantized: the body's kernels int8, the head float (as load_run rebuilds it)
    assert main(["quantize", "--run", str(run), "--method", "int8", "--out",
                 str(tmp_path / "q8")]) == 0
    assert main(["eval", "--run", str(tmp_path / "q8")]) == 0
    assert "macro-F1" in capsys.readouterr().out
    q8 = load_run(tmp_path / "q8").params
    assert isinstance(q8["blocks"]["attn"]["query"]["kernel"], QArray)
    assert not isinstance(q8["head"]["kernel"], QArray)


def test_the_cli_gives_the_base_model_this_runs_fields(monkeypatch):
    """--set model.head / model.max_len reach the pretrained base before it is checked: an
    encoder fine-tune named on the command line alone is accepted with its head, and a context
    longer than the base model's is refused (both were checked against the preset's fields)."""
    import argparse

    from jaxllm.cli.train import _config, add_parser

    register_tiny_bert(monkeypatch)
    parser = argparse.ArgumentParser()
    add_parser(parser)
    argv = ["--init-from", "tiny-bert", "--set", "model.head=sequence", "--set",
            "model.num_classes=5", "--set", "data.corpus=bbc"]
    cfg = _config(parser.parse_args(argv))
    assert (cfg.model.kind, cfg.model.head, cfg.model.num_classes) == ("encoder", "sequence", 5)
    assert cfg.model.d_model == 16  # the base's architecture
    with pytest.raises(ConfigError, match="model.max_len=256 exceeds tiny-bert's context of 128"):
        _config(parser.parse_args(argv + ["--set", "model.max_len=256"]))


def test_word_tags_follow_the_casing_rule():
    text = "The BBC said 3 firms left. Apple rose 5% on Monday! Why? Sony fell in Q4"
    assert word_tags(text) == [
        ("The", 0), ("BBC", 1), ("said", 0), ("3", 2), ("firms", 0), ("left", 0), (".", 0),
        ("Apple", 0), ("rose", 0), ("5", 2), ("%", 0), ("on", 0), ("Monday", 1), ("!", 0),
        ("Why", 0), ("?", 0), ("Sony", 0), ("fell", 0), ("in", 0), ("Q4", 2)]


def test_tag_and_planted_rows_by_hand():
    from jaxllm.text import load_tokenizer

    tok = load_tokenizer("all-minilm-l6-v2")
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    rows = tag_rows(tok, ["Tony Blair met 12 voters."], 8)  # cut: [CLS] + 6 pieces + [SEP]
    pieces = [tok.encode(w) for w in ("Tony", "Blair", "met", "12", "voters", ".")]
    ids = [cls] + [i for p in pieces for i in p][:6] + [sep]
    assert rows["tokens"][0].tolist() == ids and rows["mask"][0].all()
    tags = [-1] + [t for p, t in zip(pieces, (0, 1, 0, 2, 0, 0)) for t in [t] + [-1] *
                   (len(p) - 1)][:6] + [-1]
    assert rows["labels"][0].tolist() == tags
    texts = ["Oil rose. Shares fell sharply in London. Gold was flat.", "One sentence only"]
    rows = planted_rows(tok, texts, 48, seed=3)
    for r in range(2):
        n = int(rows["mask"][r].sum())
        text = tok.decode(rows["tokens"][r, :n].tolist())
        kind = re.search(r"what is the (\w+) code ?\?", text)[1]
        code = re.search(rf"the {kind} code is (\w+) ?\.", text)[1]  # the fact asked about
        s, e = rows["starts"][r], rows["ends"][r]
        assert tok.decode(rows["tokens"][r, s:e + 1].tolist()) == code
        assert rows["context"][r, s:e + 1].all() and rows["types"][r, s:e + 1].all()
        q = rows["tokens"][r].tolist().index(sep) + 1  # the context starts after the first [SEP]
        assert not rows["context"][r, :q].any() and rows["context"][r, q:n - 1].all()
        assert not rows["context"][r, n - 1:].any() and not rows["types"][r, :q].any()


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["bbc-tags", "bbc-planted"])
def test_token_and_span_presets_train_and_evaluate(preset, monkeypatch, tmp_path, capsys):
    register_tiny_bert(monkeypatch)
    run = tmp_path / "run"
    assert main(["train", "--preset", preset, "--init-from", "tiny-bert", "--steps", "2",
                 "--set", "model.max_len=48", "--set", "train.batch_size=8", "--set",
                 "train.eval_batches=1", "--set", "optim.warmup_steps=1", "--no-progress",
                 "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["eval", "--run", str(run)]) == 0
    line = capsys.readouterr().out
    loaded = load_run(run)  # the test split's scores, computed here in one batch
    test = task_splits(loaded.config, loaded.tokenizer).test
    out = loaded.model.apply({"params": loaded.params}, test["tokens"], test.get("types"),
                             test["mask"])
    _export_matches_the_run(run, test, out, tmp_path, capsys)
    if preset == "bbc-tags":
        m = re.search(r"\((\d+) texts, ([\d,]+) tagged tokens, 3 classes\): accuracy ([\d.]+), "
                      r"macro-F1 ([\d.]+)", line)
        keep = test["labels"] >= 0
        pred, labels = np.argmax(out["logits"], -1)[keep], test["labels"][keep]
        assert m and int(m[1]) == 222 and int(m[2].replace(",", "")) == keep.sum(), line
        assert float(m[3]) == round(float(np.mean(pred == labels)), 4)
        assert float(m[4]) == round(f1_score(labels, pred, labels=range(3), average="macro",
                                             zero_division=0), 4)
        return
    m = re.search(r"\((\d+) questions\): exact match ([\d.]+), F1 ([\d.]+)", line)
    assert m and int(m[1]) == 222, line  # round(0.1 * 2225) articles: the test split
    start = np.where(test["mask"], out["start_logits"], -1e9)
    end = np.where(test["mask"], out["end_logits"], -1e9)
    hits, f1 = [], []
    for r in range(len(start)):  # brute force over the valid spans of the context
        i, j, _ = brute_force_span(start[r], end[r], 30, test["context"][r])
        gold = set(range(test["starts"][r], test["ends"][r] + 1))
        both = len(gold & set(range(i, j + 1)))
        hits.append(gold == set(range(i, j + 1)))
        f1.append(0.0 if not both else 2 * both / (len(gold) + j - i + 1))
    assert float(m[2]) == round(float(np.mean(hits)), 4)
    assert float(m[3]) == round(float(np.mean(f1)), 4)


def _sentence_transformers_export_matches_the_run(run, test, tmp_path, capsys):
    """`jaxllm export` of a sequence-head run writes the sentence-transformers directory
    (io/sbert.py): read by its file names (numpy BERT, the pooling its config names, 2_Dense's
    linear layer) it gives the run's logits on two test rows, and names the topics in order."""
    import json

    from reference_pretrained import bert_hidden
    from safetensors.numpy import load_file

    out = tmp_path / "st"
    assert main(["export", "--run", str(run), "--out", str(out)]) == 0
    assert "sentence-transformers" in capsys.readouterr().out
    loaded = load_run(run)
    ours = loaded.model.apply({"params": loaded.params}, test["tokens"][:2], None,
                              test["mask"][:2])["logits"]
    hf = json.loads((out / "config.json").read_text())
    assert list(hf["id2label"].values()) == ["business", "entertainment", "politics", "sport",
                                             "tech"]
    assert json.loads((out / "1_Pooling" / "config.json").read_text())["pooling_mode_mean_tokens"]
    tensors = load_file(str(out / "model.safetensors"))
    linear = load_file(str(out / "2_Dense" / "model.safetensors"))
    for r in range(2):
        n = int(test["mask"][r].sum())
        h = bert_hidden(tensors, hf, test["tokens"][r, :n]).mean(0)
        theirs = h @ linear["linear.weight"].T.astype(np.float64) + linear["linear.bias"]
        np.testing.assert_allclose(ours[r], theirs, atol=2e-4, rtol=1e-4)


def _export_matches_the_run(run, test, outputs, tmp_path, capsys):
    """`jaxllm export` of a token- or span-head run: the files read by their Hugging Face names
    (numpy BERT + classifier / qa_outputs) give the run's head outputs (`outputs`, on the test
    rows) on two test rows; the token head's id2label is data/tagging.py's order. (The export
    of a quantized or LoRA run dequantizes or merges first, the same code for every kind:
    test_transforms_cli.py.)"""
    import json

    from reference_pretrained import bert_hidden
    from safetensors.numpy import load_file

    out = tmp_path / "hf"
    assert main(["export", "--run", str(run), "--out", str(out)]) == 0
    capsys.readouterr()
    hf = json.loads((out / "config.json").read_text())
    tensors = load_file(str(out / "model.safetensors"))
    types = test.get("types")
    if "logits" in outputs:  # the token head
        assert hf["id2label"] == {"0": "O", "1": "NAME", "2": "NUMBER"}
        name, ours = "classifier", np.asarray(outputs["logits"])
    else:
        name = "qa_outputs"
        ours = np.stack([outputs["start_logits"], outputs["end_logits"]], -1)
    for r in range(2):
        n = int(test["mask"][r].sum())
        h = bert_hidden(tensors, hf, test["tokens"][r, :n], None if types is None else types[r, :n])
        theirs = h @ tensors[name + ".weight"].T.astype(np.float64) + tensors[name + ".bias"]
        np.testing.assert_allclose(ours[r, :n], theirs, atol=2e-4, rtol=1e-4)


# A from-scratch BERT-layout encoder (post-norm, mean pooling: exportable as sentence-transformers)
# with a sequence head, on a char tokenizer: seconds to train.
OWN_LABELS = ["--steps", "2", "--set", "model.kind=encoder", "--set", "model.head=sequence",
              "--set", "model.num_classes=3", "--set", "model.n_layers=1", "--set",
              "model.d_model=16", "--set", "model.n_heads=2", "--set", "model.max_len=16",
              "--set", "model.norm_position=post", "--set", "model.pool=gap", "--set",
              "data.val_fraction=0.2", "--set", "train.batch_size=4", "--set",
              "train.eval_batches=1", "--set", "optim.warmup_steps=1", "--no-progress"]


@pytest.mark.slow
def test_a_run_on_its_own_labels_names_them_everywhere(tmp_path, capsys):
    """A sequence head trained on a user's labelled texts (data.corpus=jsonl:FILE, made-up
    labels) saves their names with the run: generate prints them (in the order of the logits'
    probabilities), eval counts them, the sentence-transformers export's id2label and a copied
    run (export --format run) keep them; a changed label set is refused on resume. Without the
    saved names a run prints LABEL_0, ... and never BBC's topics, unless it read bbc."""
    import json
    from types import SimpleNamespace

    words = {"wug": "sunny happy bright", "zorp": "dark cold storm", "blick": "plain grey flat"}
    data = tmp_path / "moods.jsonl"
    data.write_text("".join(json.dumps({"text": f"{words[k]} day {i}", "label": k}) + "\n"
                            for i in range(10) for k in words))
    run = tmp_path / "run"
    argv = ["train", "--set", f"data.corpus=jsonl:{data}", "--out", str(run)] + OWN_LABELS
    assert main(argv) == 0
    capsys.readouterr()
    classes = ["blick", "wug", "zorp"]  # sorted
    text = "sunny day"
    assert main(["generate", "--run", str(run), "--prompt", text]) == 0
    printed = [c.rsplit(" ", 1) for c in capsys.readouterr().out.strip().split(", ")]
    loaded = load_run(run)
    row = encode_texts(loaded.tokenizer, [text], 16)
    logits = np.asarray(loaded.model.apply({"params": loaded.params}, row["tokens"], None,
                                           row["mask"])["logits"][0], np.float64)
    p = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert [name for name, _ in printed] == [classes[i] for i in np.argsort(-p, kind="stable")]
    np.testing.assert_allclose([float(v) for _, v in printed], np.sort(p)[::-1], atol=1e-4)
    assert main(["eval", "--run", str(run)]) == 0
    assert "test split (6 texts, 3 classes)" in capsys.readouterr().out
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "st")]) == 0
    assert list(json.loads((tmp_path / "st" / "config.json").read_text())["id2label"].values()
                ) == classes
    assert main(["export", "--run", str(run), "--format", "run", "--out",
                 str(tmp_path / "copy")]) == 0
    assert load_run(tmp_path / "copy").classes == tuple(classes)
    capsys.readouterr()
    # the file's labels renamed: resuming (or scoring) on it would name other classes
    data.write_text(data.read_text().replace('"wug"', '"glad"'))
    assert "was trained on blick, wug, zorp" in error_of(
        ["train", "--resume", "--out", str(run), "--steps", "3"], capsys)
    assert "was trained on blick, wug, zorp" in error_of(["eval", "--run", str(run)], capsys)
    # without saved names: LABEL_i, or the BBC topics of a run that read bbc (an older run)
    cfg = loaded.config
    bbc = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, corpus="bbc"),
                              model=dataclasses.replace(cfg.model, num_classes=5))
    assert task_inputs.run_classes(SimpleNamespace(config=cfg, classes=())) == \
        ("LABEL_0", "LABEL_1", "LABEL_2")
    assert task_inputs.run_classes(SimpleNamespace(config=bbc, classes=())) == \
        ("business", "entertainment", "politics", "sport", "tech")


def test_labelled_jsonl_lines_are_checked(tmp_path):
    from jaxllm.errors import DataError

    bad = tmp_path / "bad.jsonl"
    for line, what in (('{"text": "a", "label": ["x"]}', '"label" must be'),
                       ('{"text": " ", "label": "x"}', '"text" must be'),
                       ('{"label": "x"}', '"text" must be')):
        bad.write_text('{"text": "fine", "label": 3}\n' + line + "\n")
        with pytest.raises(DataError, match=f"line 2: {what}"):
            task_inputs.labelled_texts(f"jsonl:{bad}")
    bad.write_text('{"text": "b", "label": "y"}\n{"text": "a", "label": 3}\n')
    texts, labels, classes = task_inputs.labelled_texts(f"jsonl:{bad}")
    assert (texts, labels.tolist(), classes) == (["b", "a"], [1, 0], ("3", "y"))
    cfg = config_lib.apply_overrides(config_lib.Config(), [
        "model.kind=encoder", "model.head=sequence", "data.corpus=shakespeare"])
    with pytest.raises(DataError, match="data.corpus='shakespeare': .*your own as "
                                        "data.corpus=jsonl:FILE"):
        task_splits(cfg)
