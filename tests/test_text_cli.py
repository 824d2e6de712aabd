"""`jaxllm tokenizer train|encode` and the subword preset through train -> generate -> eval."""

import json

import pytest

from jaxllm.cli.main import main
from jaxllm.text import load_tokenizer


@pytest.mark.parametrize("kind", ["bytebpe", "bpe"])
def test_tokenizer_train_and_encode(kind, tmp_path, capsys):
    out = tmp_path / "tok.json"
    assert main(["tokenizer", "train", "--kind", kind, "--vocab-size", "400", "--data", "pydoc",
                 "--out", str(out)]) == 0
    assert "characters per token" in capsys.readouterr().out
    tok = load_tokenizer(out)
    assert tok.kind == kind and tok.vocab_size <= 400
    assert main(["tokenizer", "encode", "--tokenizer", str(out), "def f(x): return x"]) == 0
    ids = json.loads(capsys.readouterr().out)
    assert ids == tok.encode("def f(x): return x")
    assert tok.decode(ids) == "def f(x): return x"


def test_tokenizer_bad_input(tmp_path, capsys):
    assert main(["tokenizer", "train", "--kind", "bytebpe", "--vocab-size", "100", "--data",
                 "pydoc", "--out", str(tmp_path / "t.json")]) == 2
    assert "smaller than the base alphabet" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert main(["tokenizer", "encode", "--tokenizer", str(tmp_path / "bad.json"), "x"]) == 2
    assert "error:" in capsys.readouterr().err


def test_subword_preset_train_then_eval(tiny_run, capsys):
    """The run directory keeps the trained tokenizer; eval (like generate and --resume, through
    RunDir.load_tokenizer) reads it back instead of training a new one. (The session's tiny
    bpe run: `train --preset shakespeare-bpe --set data.corpus=pydoc --set data.vocab_size=512`.)"""
    run = tiny_run("bpe")
    tok = load_tokenizer(run / "tokenizer.json")  # a HF tokenizer.json in the run directory
    assert tok.kind == "bytebpe" and tok.vocab_size == 512
    assert json.loads((run / "config.json").read_text())["model"]["vocab_size"] == 512
    assert main(["eval", "--run", str(run), "--batches", "2"]) == 0
    assert "perplexity" in capsys.readouterr().out
