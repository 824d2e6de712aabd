"""`jaxllm vectors train|eval`: a tiny corpus end to end, and one-line errors."""

import json

import numpy as np
import pytest
from helpers import error_of

from jaxllm.cli.main import main
from jaxllm.text.vectors import KeyedVectors


@pytest.fixture
def corpus(tmp_path):
    rng = np.random.default_rng(0)
    groups = [["cat", "dog", "cow", "pig"], ["red", "blue", "green", "gray"]]
    lines = [" ".join(rng.choice(groups[k % 2], 5)) for k in range(200)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines).upper() + "\n")  # words are lower-cased on reading
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("# word pairs\ncat\tdog\t9\nred\tblue\t8\ncat\tred\t1\ndog\tgreen\t2\n"
                     "cow\tunicorn\t5\n")
    return path, pairs


@pytest.mark.parametrize("model", ["skipgram", "glove"])
def test_train_then_eval(tmp_path, corpus, capsys, model):
    text, pairs = corpus
    out = tmp_path / ("v.bin" if model == "skipgram" else "v.txt")
    extra = (["--set", "batch_size=16", "--set", "sample=0"] if model == "skipgram"
             else ["--set", "solver=dense", "--set", "eta=0.1", "--epochs", "60"])
    assert main(["vectors", "train", "--text", str(text), "--model", model, "--dim", "8",
                 "--min-count", "1", "--epochs", "3", "--out", str(out), *extra]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    kv = KeyedVectors.load(out)
    assert sorted(kv.words) == sorted(["cat", "dog", "cow", "pig", "red", "blue", "green",
                                       "gray"])
    assert main(["vectors", "eval", "--vectors", str(out), "--pairs", str(pairs),
                 "--neighbours", "cat", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    pearson, spearman, oov = kv.evaluate_word_pairs(pairs)
    assert result[str(pairs)] == {"spearman": spearman[0], "pearson": pearson[0],
                                  "oov_percent": oov}
    assert oov == pytest.approx(20.0)
    assert set(result["neighbours"]["cat"][:3]) <= {"dog", "cow", "pig"}


def test_errors_are_one_line(tmp_path, corpus, capsys):
    text, _ = corpus
    out = tmp_path / "v.bin"
    assert "--set 'bogus=1'" in error_of(["vectors", "train", "--text", str(text), "--out",
                                          str(out), "--set", "bogus=1"], capsys)
    assert "--set window='x': expected a int" in error_of(
        ["vectors", "train", "--text", str(text), "--out", str(out), "--set", "window=x"], capsys)
    assert "missing.txt" in error_of(["vectors", "train", "--text", str(tmp_path / "missing.txt"),
                                      "--out", str(out)], capsys)
    assert "word2vec options" in error_of(["vectors", "train", "--text", str(text), "--model",
                                           "glove", "--negative", "3", "--out", str(out)], capsys)
    assert "min_count=5" in error_of(["vectors", "train", "--text", str(text), "--out", str(out),
                                      "--min-count", "500"], capsys)
    assert not out.exists()
    out.write_text("mine")  # an existing file is refused before the training and kept
    assert f"--out {out} already exists" in error_of(["vectors", "train", "--text", str(text),
                                                      "--out", str(out)], capsys)
    assert out.read_text() == "mine"
    assert "word2vec file" in error_of(["vectors", "eval", "--vectors", str(text)], capsys)
    assert "known: questions-words" in error_of(["vectors", "eval", "--vectors", str(text),
                                                 "--pairs", "nope"], capsys)


def test_sharegpt_corpus_reads_the_complete_records(tmp_path, monkeypatch):
    """The package's JSON stops mid-record: the complete records are read, the cut one dropped."""
    from jaxllm.data import chat, corpora

    records = [{"id": "a", "conversations": [{"from": "human", "value": "Hi there\n"},
                                             {"from": "gpt", "value": "Hello, world."}]},
               {"id": "b", "conversations": [{"from": "human", "value": ""}]},
               {"id": "c", "conversations": [{"from": "gpt", "value": "x\ny"}]}]
    text = "[\n" + ",\n".join(json.dumps(r) for r in records) + ',\n  {"id": "d", "conv'
    (tmp_path / "data").mkdir()
    (tmp_path / "data/ShareGPT_V3_unfiltered_cleaned_split.json").write_text(text)
    monkeypatch.setattr(chat, "package_folder", lambda name: tmp_path)
    docs = corpora.load_sharegpt()
    assert [(d.title, d.text) for d in docs] == [("a", "Hi there\nHello, world.\n"),
                                                 ("c", "x\ny\n")]
