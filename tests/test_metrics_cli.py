"""jaxllm score bleu|chrf|rouge: the numbers of sacrebleu / rouge-score, one-line errors."""

import json

import numpy as np
import pytest
import sacrebleu
from rouge_score import rouge_scorer

from jaxllm.cli.main import main
from helpers import REFS, SYS, error_of


@pytest.fixture
def files(tmp_path):
    def write(name, lines):
        path = tmp_path / name
        path.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
        return str(path)

    return write("hyp.txt", SYS), write("ref1.txt", REFS[0]), write("ref2.txt", REFS[1])


def _run(argv, capsys):
    assert main(argv) == 0
    return capsys.readouterr().out


def test_bleu_and_chrf(files, capsys):
    hyp, r1, r2 = files
    out = _run(["score", "bleu", "--hyp", hyp, "--ref", r1, "--ref", r2], capsys)
    assert out.strip() == str(sacrebleu.corpus_bleu(SYS, REFS))  # BLEU = 48.53 82.4/...
    out = _run(["score", "chrf", "--hyp", hyp, "--ref", r1, "--word-order", "2", "--json"],
               capsys)
    expected = sacrebleu.corpus_chrf(SYS, [REFS[0]], word_order=2).score
    assert json.loads(out) == {"name": "chrF2++", "score": pytest.approx(expected, abs=1e-6)}
    out = _run(["score", "bleu", "--hyp", hyp, "--ref", r1, "--sentence"], capsys)
    expected = [sacrebleu.sentence_bleu(h, [r]).score for h, r in zip(SYS, REFS[0])]
    np.testing.assert_allclose([float(x) for x in out.split()], expected, atol=5e-5)


def test_rouge(files, capsys):
    hyp, r1, _ = files
    out = _run(["score", "rouge", "--hyp", hyp, "--ref", r1, "--types", "rouge2,rougeL",
                "--stemmer", "--json"], capsys)
    scorer = rouge_scorer.RougeScorer(["rouge2", "rougeL"], use_stemmer=True)
    scores = [scorer.score(r, h) for h, r in zip(SYS, REFS[0])]
    for t in ("rouge2", "rougeL"):
        assert json.loads(out)[t]["fmeasure"] == pytest.approx(
            np.mean([s[t].fmeasure for s in scores]), abs=1e-12)


def test_errors_are_one_line(files, tmp_path, capsys):
    hyp, r1, _ = files
    short = tmp_path / "short.txt"
    short.write_text("one line\n", encoding="utf-8")
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    assert "no such file" in error_of(["score", "bleu", "--hyp", hyp, "--ref",
                                       str(tmp_path / "missing.txt")], capsys)
    assert "has 1 lines but --hyp" in error_of(["score", "chrf", "--hyp", hyp, "--ref",
                                                str(short)], capsys)
    assert "the file is empty" in error_of(["score", "rouge", "--hyp", str(empty), "--ref", r1],
                                           capsys)
    assert "rouge type 'rouge0'" in error_of(["score", "rouge", "--hyp", hyp, "--ref", r1,
                                              "--types", "rouge0"], capsys)
