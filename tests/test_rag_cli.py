"""`jaxllm ask`: a streamed answer and its numbered sources from a saved index with a tiny chat
model; the issue's bad inputs as one-line errors with exit 2."""

import pytest

from helpers import error_of
from jaxllm.cli.main import main
from jaxllm.retrieval import Index
from retrieval_helpers import DOCS


@pytest.fixture
def idx(tmp_path, tiny_chat_lm, tiny_pretrained, monkeypatch):
    from jaxllm import pretrained

    monkeypatch.setitem(pretrained.REGISTRY, "tiny-chat",
                        pretrained.Entry("none", "none", "none", "gguf", "none"))
    monkeypatch.setitem(pretrained._CACHE, "tiny-chat", tiny_chat_lm)
    Index.build(DOCS).save(tmp_path / "i.idx")
    return str(tmp_path / "i.idx")


def test_ask_prints_the_answer_then_the_sources(idx, capsys):
    assert main(["ask", idx, "Who scored twice in the cup final?", "--model", "tiny-chat",
                 "--max-new-tokens", "12", "-k", "2", "--verbose"]) == 0
    out = capsys.readouterr().out
    head, sources = out.split("\n\nSources:\n")
    assert len(head) > 0  # the streamed answer (random bytes from a random model)
    lines = sources.splitlines()
    assert lines[0] == " [1] s1#0  Cup final" and lines[1] == ""  # the one BM25 match
    assert lines[2].startswith("top_score ") and "mean_nll" in lines[2]
    assert lines[3].startswith("retrieve ") and "prefill" in lines[3]


@pytest.mark.parametrize("argv, match", [
    (["--model", "tiny-llama"], "shorten the question"),  # a context of 64 tokens
    (["--model", "tiny-chat", "--mode", "hybrid"], "no vectors"),
    (["--model", "tiny-chat", "--compress", "1.5"], "ratio=1.5"),
    (["--model", "no-such-model"], "unknown model 'no-such-model'"),
])
def test_ask_bad_input(idx, capsys, argv, match):
    assert match in error_of(["ask", idx, "Who scored?"] + argv, capsys)


def test_ask_missing_index(tmp_path, capsys):
    assert "is not an index" in error_of(["ask", str(tmp_path / "none"), "q"], capsys)
