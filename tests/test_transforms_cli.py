"""jaxllm quantize and jaxllm train --lora: a tiny round trip (quantized and LoRA runs evaluate
and generate), and bad input answered with one line and exit status 2."""

import pytest

from jaxllm.cli.main import main

TINY = ["--set", "model.n_layers=1", "--set", "model.d_model=32", "--set", "model.n_heads=2",
        "--set", "model.max_len=32", "--set", "train.batch_size=4", "--set", "train.eval_every=5",
        "--set", "train.eval_batches=2", "--set", "optim.warmup_steps=2"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("qcli") / "run"
    assert main(["train", "--steps", "4", "--out", str(out), "--no-progress"] + TINY) == 0
    return out


@pytest.mark.slow
def test_quantize_then_eval_and_generate(run_dir, tmp_path, capsys):
    out = tmp_path / "q4"
    assert main(["quantize", "--run", str(run_dir), "--method", "int4", "--group", "16",
                 "--out", str(out)]) == 0
    assert "weights" in capsys.readouterr().out
    assert main(["eval", "--run", str(out), "--batches", "2"]) == 0
    assert "perplexity" in capsys.readouterr().out
    assert main(["generate", "--run", str(out), "--prompt", "A", "--max-new-tokens", "5"]) == 0
    w8 = tmp_path / "w8a8"
    assert main(["quantize", "--run", str(run_dir), "--method", "int8", "--calib", "2",
                 "--out", str(w8)]) == 0
    assert main(["eval", "--run", str(w8), "--batches", "2"]) == 0


@pytest.mark.slow
def test_lora_fine_tuning_from_a_run(run_dir, tmp_path, capsys):
    out = tmp_path / "lora"
    assert main(["train", "--init-from", str(run_dir), "--lora", "rank=2,alpha=4,targets=all",
                 "--steps", "2", "--out", str(out), "--no-progress"] + TINY) == 0
    assert main(["eval", "--run", str(out), "--batches", "2"]) == 0


@pytest.mark.parametrize("argv,expected", [
    (["--method", "int3"], "--method 'int3': choose one of int8, int4, nf4, ternary"),
    (["--method", "int4", "--group", "48"], "not divisible by group size 48"),
    (["--method", "int8", "--act", "static"], "--act static needs --calib N"),
])
def test_bad_quantize_input(run_dir, tmp_path, capsys, argv, expected):
    assert main(["quantize", "--run", str(run_dir), "--out", str(tmp_path / "x")] + argv) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1


@pytest.mark.parametrize("spec,expected", [
    ("rank=8,alpha=16,targets=attn,colour=red", "'colour=red' is not one of"),
    ("rank=64,targets=attn", "rank must be an integer from 1 to 32"),
    ("rank=2,targets=nomatch", "matched no leaf"),
])
def test_bad_lora_input(run_dir, tmp_path, capsys, spec, expected):
    argv = ["train", "--init-from", str(run_dir), "--lora", spec, "--steps", "1",
            "--out", str(tmp_path / "l"), "--no-progress"] + TINY
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1
    assert not (tmp_path / "l").exists()  # nothing written


def test_bad_quant_config(tmp_path, capsys):
    assert main(["train", "--set", "model.quant=int2", "--out", str(tmp_path / "r")]) == 2
    assert "model.quant='int2': expected one of none, ternary, int8, int4" in \
        capsys.readouterr().err
