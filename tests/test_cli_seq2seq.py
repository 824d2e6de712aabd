"""The CLI on an encoder-decoder run (the tiny seq2seq run of helpers.RUN_COMMANDS; the README's
commands run on it in test_readme.py): what it refuses, with one line and exit 2."""

from helpers import error_of

from jaxllm.cli.main import main


def test_refusals(tiny_run, tmp_path, capsys):
    run = str(tiny_run("seq2seq"))
    out = tmp_path / "hf"
    err = error_of(["export", "--run", run, "--format", "safetensors", "--out", str(out)],
                   capsys)
    assert "seq2seq model has no Hugging Face layout" in err and "--format run" in err
    assert not out.exists() or not any(out.iterdir())
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


def test_eval_split_is_refused_for_a_language_model_run(tiny_run, capsys):
    line = error_of(["eval", "--run", str(tiny_run("char")), "--split", "test"], capsys)
    assert "--split test" in line and "task-head and encoder-decoder" in line
