"""ViT and CLIP from the command line on the 8x8 digits fixture: train, resume, eval, zero-shot
with its pictures, and the bad inputs (one line, exit status 2)."""

import json

import numpy as np
import pytest

from jaxllm.cli.main import main
from helpers import SMALL, error_of

@pytest.mark.slow
def test_vit_trains_resumes_and_evaluates(tiny_run, tmp_path, capsys):
    out = tiny_run.copy("vit", tmp_path / "vit")  # mnist-vit, 2 steps on the digits
    assert main(["train", "--resume", "--out", str(out), "--steps", "4", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "step 4: validation loss" in printed and "accuracy" in printed
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "images_per_s" in r] == [2, 4]
    assert (out / "loss.png").stat().st_size > 1000 and not (out / "tokenizer.json").exists()
    assert main(["eval", "--run", str(out)]) == 0
    assert "digits test split (250 images): accuracy" in capsys.readouterr().out
    assert "is a vit run" in error_of(["zero-shot", "--run", str(out), "--labels", "a,b"],
                                      capsys)


@pytest.mark.slow
def test_clip_trains_evaluates_and_classifies_zero_shot(tiny_run, tmp_path, capsys):
    out = tiny_run("clip")  # mnist-clip, 2 steps on the digits
    assert main(["eval", "--run", str(out), "--retrieval", "50"]) == 0
    printed = capsys.readouterr().out
    assert "zero-shot accuracy" in printed and "text->image R@1" in printed
    labels = "zero,one,two,three,four,five,six,seven,eight,nine"
    assert main(["zero-shot", "--run", str(out), "--labels", labels, "--template",
                 "a photo of the digit {}", "--limit", "40", "--grid", str(tmp_path / "g.png"),
                 "--similarity", str(tmp_path / "s.png")]) == 0
    printed = capsys.readouterr().out
    assert "40 images; predicted:" in printed and "zero-shot accuracy" in printed
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    # bad input
    assert "label list is empty" in error_of(["zero-shot", "--run", str(out), "--labels", " "],
                                             capsys)
    assert "must contain one {}" in error_of(["zero-shot", "--run", str(out), "--labels",
                                              labels, "--template", "a digit"], capsys)
    np.save(tmp_path / "big.npy", np.zeros((2, 28, 28), np.uint8))
    assert "(batch, 8, 8, 1)" in error_of(["zero-shot", "--run", str(out), "--labels", labels,
                                           "--images", str(tmp_path / "big.npy")], capsys)
    np.save(tmp_path / "float.npy", np.zeros((2, 8, 8), np.float32))
    assert "expected uint8 images" in error_of(["zero-shot", "--run", str(out), "--labels",
                                                labels, "--images",
                                                str(tmp_path / "float.npy")], capsys)


@pytest.mark.parametrize("argv, expected", [
    (["--set", "model.patch_size=3"], "model.patch_size=3: must divide model.image_size=8"),
    (["--set", "model.image_size=12"], "do not fit this model; it takes (batch, 12, 12, 1)"),
    (["--set", "model.channels=3"], "(batch, 8, 8, 3)"),
    (["--set", "data.corpus=shakespeare"], "ViT and CLIP train on an image dataset"),
    (["--set", "model.pool=max"], "model.pool='max': expected one of cls, gap"),
])
def test_bad_vision_configs(argv, expected, tmp_path, capsys):
    assert expected in error_of(["train", "--preset", "mnist-vit", "--out", str(tmp_path / "r"),
                                 "--no-progress"] + SMALL + argv, capsys)
