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


# --- a pretrained model (a tiny registered stand-in for smollm2-135m-instruct) ----------------

@pytest.mark.slow
def test_pretrained_model_quantized_evaluated_and_fine_tuned(tiny_pretrained, tmp_path, capsys):
    import jax
    import numpy as np

    from jaxllm import transforms
    from jaxllm.models.decoder import init_params
    from jaxllm.pretrained import PretrainedDecoder
    from jaxllm.train import load_run

    lm = tiny_pretrained
    q = tmp_path / "q"
    assert main(["quantize", "--model", "tiny-llama", "--method", "int4", "--group", "32",
                 "--embed", "--out", str(q)]) == 0
    assert "int4" in capsys.readouterr().out
    # eval --run DIR --max-tokens scores the first tokens of the validation text in windows:
    # the same number as the library on the same quantized weights
    assert main(["eval", "--run", str(q), "--data", "shakespeare", "--max-tokens", "97",
                 "--window", "32"]) == 0
    printed = capsys.readouterr().out
    assert "(96 tokens, windows of 32)" in printed
    _, axes = init_params(lm.config, jax.random.PRNGKey(0))
    qp = transforms.apply_weights_spec(lm.params, "method=int4,group=32,embed=true", axes)
    from jaxllm.data.tfds_builder import load_split_texts
    ids = lm.tokenizer.encode("\n".join(load_split_texts("shakespeare")[1])[:97 * 8])[:97]
    want = PretrainedDecoder(lm.config, qp, lm.tokenizer, "x").perplexity(ids, window=32)
    assert f"perplexity {want['perplexity']:.3f}" in printed
    assert isinstance(load_run(q).params["embed"]["embedding"], transforms.QArray)
    # LoRA fine-tuning from the registered name: the pretrained architecture and tokenizer, its
    # weights as the frozen base, model.max_len the training length
    out = tmp_path / "lora"
    assert main(["train", "--init-from", "tiny-llama", "--data", "shakespeare", "--lora",
                 "rank=2,alpha=4,targets=all", "--steps", "1", "--out", str(out), "--no-progress",
                 "--set", "model.max_len=32", "--set", "train.batch_size=2", "--set",
                 "train.eval_batches=1", "--set", "optim.warmup_steps=1"]) == 0
    run = load_run(out)
    assert run.config.model.n_kv_heads == 2 and run.config.model.max_len == 32
    assert run.config.data.tokenizer == "byte"
    base = run.params["blocks"]["mlp"]["down"]["kernel"].base
    np.testing.assert_array_equal(base, lm.params["blocks"]["mlp"]["down"]["kernel"])


def test_pretrained_bad_input(tiny_pretrained, tmp_path, capsys):
    argv = ["train", "--init-from", "tiny-llama", "--set", "model.max_len=128", "--steps", "1",
            "--out", str(tmp_path / "l"), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "model.max_len=128 exceeds tiny-llama's context of 64" in err and err.count("\n") == 1
    assert not (tmp_path / "l").exists()  # nothing written
    assert main(["quantize", "--model", "tiny-llama", "--method", "int8", "--calib", "2",
                 "--out", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err
    assert "--calib/--act static and --step need a run" in err and err.count("\n") == 1
