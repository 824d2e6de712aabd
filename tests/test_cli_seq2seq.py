"""The CLI on an encoder-decoder run (the tiny seq2seq run of helpers.RUN_COMMANDS; the README's
commands run on it in test_readme.py): what it refuses, with one line and exit 2."""

import json

import jax
import numpy as np
from helpers import error_of

from jaxllm.cli.main import main
from jaxllm.io.hf import load_hf
from jaxllm.train import load_run


def test_export_writes_blenderbot_with_the_runs_token_ids(tiny_run, tmp_path, capsys):
    """The dates preset (pre-norm, learned positions) exports as Blenderbot: every parameter
    read back by load_hf, the run's start and end ids (the two above the tokenizer's) in
    config.json and generation_config.json; pretrained.load and --model refuse it in one line."""
    run = tiny_run("seq2seq")
    out = tmp_path / "hf"
    assert main(["export", "--run", str(run), "--out", str(out)]) == 0
    assert "generation_config.json" in capsys.readouterr().out
    loaded = load_run(run)
    _, params, hf = load_hf(out)
    assert hf["architectures"] == ["BlenderbotForConditionalGeneration"]
    jax.tree_util.tree_map(np.testing.assert_array_equal, jax.device_get(loaded.params), params)
    chars = json.loads((run / "tokenizer.json").read_text())  # the run's own file
    start = loaded.tokenizer.vocab_size
    generation = json.loads((out / "generation_config.json").read_text())
    assert (hf["decoder_start_token_id"], hf["eos_token_id"]) == (start, start + 1) == (
        generation["decoder_start_token_id"], generation["eos_token_id"])
    assert generation["suppress_tokens"] == [start] and generation["max_length"] == 17
    assert json.loads((out / "tokenizer.json").read_text()) == chars
    assert "encoder-decoder" in error_of(["generate", "--model", str(out), "--prompt", "x"],
                                         capsys)


def test_refusals(tiny_run, tmp_path, capsys):
    run = str(tiny_run("seq2seq"))
    err = error_of(["generate", "--run", run, "--chat", "hello"], capsys)
    assert "encoder-decoder" in err and "--prompt" in err
    err = error_of(["generate", "--run", run, "--prompt", "Mar 3 1997", "--num-beams", "2",
                    "--num-samples", "2"], capsys)
    assert "--num-samples=2" in err
    err = error_of(["generate", "--run", run, "--prompt", "Mar 3 1997", "--max-new-tokens",
                    "999"], capsys)
    assert "max_new_tokens=999" in err and "model.max_len" in err
    assert main(["generate", "--run", run, "--prompt", "Mar 3 1997", "--num-beams", "2",
                 "--max-new-tokens", "6"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    # the split named is decoded (500 validation pairs; the test split has 1,000)
    assert main(["eval", "--run", run, "--split", "validation", "--examples", "600"]) == 0
    assert "\n500 validation pairs (greedy): exact match" in capsys.readouterr().out


def test_eval_split_and_beams_are_refused_for_a_language_model_run(tiny_run, capsys):
    run = str(tiny_run("char"))
    line = error_of(["eval", "--run", run, "--split", "test"], capsys)
    assert "--split test" in line and "task-head and encoder-decoder" in line
    for flag in (["--num-beams", "4"], ["--examples", "10"]):  # not silently ignored
        line = error_of(["eval", "--run", run, *flag], capsys)
        assert "--num-beams/--examples" in line and "holds a decoder" in line
    line = error_of(["generate", "--run", run, "--prompt", "x", "--num-beams", "0"], capsys)
    assert "--num-beams 0: must be at least 1" in line
