"""jaxllm quantize and jaxllm train --lora: a tiny round trip (quantized and LoRA runs evaluate
and generate), and bad input answered with one line and exit status 2."""

import pytest

from jaxllm.cli.main import main

from helpers import TINY


@pytest.fixture
def run_dir(tiny_run):
    return tiny_run("char")


@pytest.mark.slow
def test_quantize_then_eval_and_generate(run_dir, tiny_run, tmp_path, capsys):
    out = tiny_run("quantized")  # jaxllm quantize --run CHAR --method int4 --group 16
    assert main(["eval", "--run", str(out), "--batches", "2"]) == 0
    assert "perplexity" in capsys.readouterr().out
    assert main(["generate", "--run", str(out), "--prompt", "A", "--max-new-tokens", "5"]) == 0
    w8 = tmp_path / "w8a8"
    assert main(["quantize", "--run", str(run_dir), "--method", "int8", "--calib", "2",
                 "--out", str(w8)]) == 0
    assert main(["eval", "--run", str(w8), "--batches", "2"]) == 0


@pytest.mark.slow
def test_lora_fine_tuning_from_a_run(tiny_run, capsys):
    out = tiny_run("lora")  # jaxllm train --init-from LLAMA --data pydoc --lora ...
    assert main(["eval", "--run", str(out), "--batches", "2"]) == 0


@pytest.mark.parametrize("argv,expected", [
    (["--method", "int3"], "--method 'int3': choose one of int8, int4, nf4, ternary"),
    (["--method", "int4", "--group", "48"], "not divisible by group size 48"),
    (["--method", "int8", "--act", "static"], "--act static needs --calib N"),
    (["--method", "int8", "--act", "dynamic", "--calib", "2"], "--calib calibrates static"),
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


@pytest.mark.slow
@pytest.mark.parametrize("kind, eval_args", [("vit", []), ("clip", ["--retrieval", "20"])])
def test_quantize_image_runs(kind, eval_args, tiny_run, tmp_path, capsys):
    """issue 16.3: quantizing a CLIP run wrote a run eval could not restore (axis names from the
    decoder's init); on a ViT run it crashed. Every kernel is int8 within half a step of its
    float weight (a step of at most the tensor's absmax / 127), and eval reads the new run."""
    import jax
    import numpy as np

    from jaxllm.transforms import QArray
    from jaxllm.train import load_run

    out = tmp_path / "q8"
    assert main(["quantize", "--run", str(tiny_run(kind)), "--method", "int8", "--out",
                 str(out)]) == 0
    base = jax.tree_util.tree_flatten_with_path(load_run(tiny_run(kind)).params)[0]
    quant = jax.tree_util.tree_leaves(load_run(out).params,
                                      is_leaf=lambda x: isinstance(x, QArray))
    kernels = 0
    for (path, w), q in zip(base, quant):
        if jax.tree_util.keystr(path).endswith("['kernel']"):
            kernels += 1
            w = np.asarray(w)
            assert isinstance(q, QArray)
            err = np.abs(np.asarray(q.dequantize()) - w).max()
            assert err <= np.abs(w).max() / 127 / 2 * 1.001 + 1e-7
    assert kernels >= 4
    capsys.readouterr()
    assert main(["eval", "--run", str(out)] + eval_args) == 0
    assert "accuracy" in capsys.readouterr().out


def test_export_merges_lora_and_dequantizes(tiny_run, tmp_path, capsys):
    """issue 16: export of a LoRA or quantized run crashed (float() of a LoraArray/QArray). It
    now merges (W + alpha/r A B, checked in numpy) and dequantizes, and says so; --format run
    writes the merged parameters as a plain run."""
    import jax
    import numpy as np

    from jaxllm.io.hf import load_hf
    from jaxllm.transforms import QArray
    from jaxllm.transforms.lora import LoraArray
    from jaxllm.train import load_run

    merged = tmp_path / "merged"
    assert main(["export", "--run", str(tiny_run("lora")), "--format", "run", "--out",
                 str(merged)]) == 0
    assert "as a plain run (LoRA factors merged into the weights)" in capsys.readouterr().out
    plain = load_run(merged)
    assert not plain.config.train.lora
    is_lora = lambda x: isinstance(x, LoraArray)  # noqa: E731
    lora_leaves = jax.tree_util.tree_leaves(load_run(tiny_run("lora")).params, is_leaf=is_lora)
    n = 0
    for x, w in zip(lora_leaves, jax.tree_util.tree_leaves(plain.params)):
        if is_lora(x):
            n += 1
            a, b = np.asarray(x.lora_a, np.float64), np.asarray(x.lora_b, np.float64)
            want = np.asarray(x.base, np.float64) + x.scale * np.einsum(
                "...kr,...rn->...kn", a, b).reshape(x.shape)
            np.testing.assert_allclose(w, want, rtol=1e-5, atol=1e-6)
    assert n >= 4
    hf = tmp_path / "hf"
    assert main(["export", "--run", str(tiny_run("lora")), "--out", str(hf)]) == 0
    assert "(LoRA factors merged into the weights)" in capsys.readouterr().out
    for a, b in zip(jax.tree_util.tree_leaves(load_hf(hf)[1]),
                    jax.tree_util.tree_leaves(plain.params)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # int4 weights: each within half a step (at most absmax / 7) of the float run's weight
    hfq = tmp_path / "hfq"
    assert main(["export", "--run", str(tiny_run("quantized")), "--out", str(hfq)]) == 0
    assert "(int4 weights dequantized to float32)" in capsys.readouterr().out
    is_q = lambda x: isinstance(x, QArray)  # noqa: E731
    kinds = jax.tree_util.tree_leaves(load_run(tiny_run("quantized")).params, is_leaf=is_q)
    for q, w, d in zip(kinds, jax.tree_util.tree_leaves(load_run(tiny_run("char")).params),
                       jax.tree_util.tree_leaves(load_hf(hfq)[1])):
        w, d = np.asarray(w), np.asarray(d)
        bound = np.abs(w).max() / 7 / 2 * 1.001 + 1e-7 if is_q(q) else 0
        assert np.abs(d - w).max() <= bound
