"""The jaxllm command: a tiny train -> generate -> eval round trip, and every bad input a user
can give answered with one line on stderr and exit status 2, without a traceback."""

import subprocess
import sys

import pytest

from jaxllm.cli.main import main
from jaxllm.config import PRESETS
from jaxllm.data.corpora import Document, register_corpus
from helpers import TINY, checksums, error_of

@pytest.fixture
def run_dir(tiny_run):
    """The session's tiny char run (4 steps; shared: never changed in place)."""
    return tiny_run("char")


def test_resume_records_the_new_target_and_goes_back_to_a_step(tiny_run, tmp_path,
                                                              monkeypatch, capsys):
    """issue 16.4: `--resume --steps N` was not recorded, so after an interrupt the hinted
    `jaxllm train --resume --out DIR` crashed (KeyError 'val_loss' at the old step count) or
    went on with the old schedule; a finished run resumed now says it is finished."""
    import json

    import jax
    import numpy as np

    import jaxllm.train.loop as loop

    run = tiny_run.copy("char", tmp_path / "run")  # trained to its train.steps=4
    before = checksums(run)
    assert main(["train", "--resume", "--out", str(run), "--no-progress"]) == 0
    assert "is already finished at step 4" in capsys.readouterr().out
    assert checksums(run) == before

    def interrupted(*args, **kwargs):  # Ctrl-C before the first new checkpoint
        raise KeyboardInterrupt
    monkeypatch.setattr(loop, "_run", interrupted)
    assert main(["train", "--resume", "--out", str(run), "--steps", "8", "--no-progress"]) == 130
    monkeypatch.undo()
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == 8
    assert main(["train", "--resume", "--out", str(run), "--no-progress"]) == 0  # the hint
    out = capsys.readouterr().out
    assert "step 8: validation loss" in out and f"run directory: {run}" in out
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["4", "8"]

    # issue 16: --resume --step N goes back to checkpoint N; the later checkpoint and rows are
    # set aside (not replaced), and the steps trained again end bitwise where they ended before
    from jaxllm.train import load_run

    def steps_and_losses(text):  # the rows without their speeds
        return [{k: v for k, v in json.loads(r).items() if not k.endswith("_per_s")}
                for r in text.splitlines()]
    rows = steps_and_losses((run / "metrics.jsonl").read_text())
    first_8 = jax.device_get(load_run(run).params)
    assert "no checkpoint at step 5; it has [4, 8]" in error_of(
        ["train", "--resume", "--out", str(run), "--step", "5"], capsys)
    assert "--step 4 picks the checkpoint a resume starts from; add --resume" in error_of(
        ["train", "--step", "4", "--out", str(tmp_path / "new")], capsys)
    assert main(["train", "--resume", "--out", str(run), "--step", "4", "--no-progress"]) == 0
    assert f"the checkpoints after step 4 and their metrics rows are in {run / 'after-step-4'}" \
        in capsys.readouterr().out
    aside = run / "after-step-4"
    assert [p.name for p in (aside / "checkpoints").iterdir()] == ["8"]
    assert steps_and_losses((aside / "metrics.jsonl").read_text()) == [r for r in rows
                                                                       if r["step"] > 4]
    assert steps_and_losses((run / "metrics.jsonl").read_text()) == rows  # the same steps again
    jax.tree_util.tree_map(np.testing.assert_array_equal, jax.device_get(load_run(run).params),
                           first_8)


def test_resume_takes_the_command_that_started_the_run(tiny_run, tmp_path, capsys):
    """issue 15: the same flags again with --resume added are accepted; a value that differs
    from config.json is refused, naming it; the device layout may change (and is recorded)."""
    import json

    from helpers import RUN_COMMANDS

    run = tiny_run.copy("char", tmp_path / "run")
    before = checksums(run)
    started = ["train", "--preset", "shakespeare-char"] + RUN_COMMANDS["char"][1:]
    assert main(started + ["--out", str(run), "--resume"]) == 0
    assert "already finished at step 4" in capsys.readouterr().out
    line = error_of(started + ["--out", str(run), "--resume", "--set", "model.n_layers=2",
                               "--precision", "bf16"], capsys)
    assert line.endswith(
        f"{run} was started with a different config: model.n_layers=2 (the run has 1), "
        f"model.dtype='bfloat16' (the run has 'float32'); a resume may change only --steps and "
        f"the device layout (--mesh ...)")
    line = error_of(["train", "--preset", "shakespeare-char-llama", "--steps", "4", "--resume",
                     "--out", str(run)] + TINY, capsys)
    assert "model.positions='rope' (the run has 'learned')" in line
    assert checksums(run) == before
    assert main(["train", "--resume", "--out", str(run), "--mesh", "data=4,tensor=2"]) == 0
    assert json.loads((run / "config.json").read_text())["parallel"]["mesh"] == "data=4,tensor=2"


def test_generate_prints_samples(run_dir, capsys):
    assert main(["generate", "--run", str(run_dir), "--prompt", "ROMEO:", "--num-samples", "2",
                 "--max-new-tokens", "20", "--temperature", "0.8", "--top-k", "5"]) == 0
    samples = capsys.readouterr().out.split("-" * 40 + "\n")
    assert len(samples) == 2 and all(s.startswith("ROMEO:") for s in samples)


def test_eval_prints_loss_and_perplexity(run_dir, capsys):
    assert main(["eval", "--run", str(run_dir), "--batches", "2"]) == 0
    out = capsys.readouterr().out
    assert "loss" in out and "perplexity" in out


@pytest.mark.parametrize("argv, expected", [
    (["train", "--preset", "nope"], "unknown preset 'nope'; choose one of"),
    (["train", "--set", "model.nope=1"], "unknown override key 'model.nope'"),
    (["train", "--set", "nope"], "not of the form section.key=value"),
    (["train", "--set", "model.n_layers=two"], "model.n_layers='two': expected an integer"),
    (["train", "--set", "model.norm=batchnorm"], "expected one of layernorm, rmsnorm"),
    (["train", "--set", "model.n_kv_heads=3"], "must divide model.n_heads"),
    (["train", "--steps", "0"], "train.steps=0: must be at least 1"),
    (["train", "--set", "data.corpus=nope"], "unknown corpus 'nope'"),
    (["train", "--set", "data.corpus=tfds:no_such_dataset_xyz"], "unknown TFDS dataset"),
    (["train", "--data", "tfds:no_such_dataset_xyz"], "unknown TFDS dataset"),
    (["train", "--resume"], "--resume needs --out"),
    (["train", "--mesh", "data=16"], "XLA_FLAGS=--xla_force_host_platform_device_count=16 "
                                     "simulates 16 devices"),
])
def test_bad_training_input(argv, expected, capsys, tmp_path):
    assert expected in error_of(argv + ["--out", str(tmp_path / "r")] if "--resume" not in argv
                                else argv, capsys)
    assert not (tmp_path / "r" / "config.json").exists()


@pytest.mark.parametrize("argv, expected", [
    (["train", "--steps", "abc"], "jaxllm train: error: argument --steps: invalid int value: "
                                  "'abc' (see jaxllm train --help)"),
    (["train", "--nope", "1"], "jaxllm train: error: unrecognized arguments: --nope 1"),
    (["train", "--precision", "fp8"], "jaxllm train: error: argument --precision: invalid "
                                      "choice: 'fp8'"),
    (["nope"], "jaxllm: error: argument VERB: invalid choice: 'nope'"),
    ([], "jaxllm: error: the following arguments are required: VERB"),
    (["generate", "--prompt", "x"], "jaxllm generate: error: one of the arguments --run --model "
                                    "is required"),
    (["tokenizer", "encode", "--tokenizer", "gpt2", "a", "b"],
     "jaxllm tokenizer: error: unrecognized arguments: b"),
])
def test_argparse_mistakes_are_one_line(argv, expected, capsys):
    """issue 15: argparse's own errors printed a usage block; now one line and exit 2."""
    assert error_of(argv, capsys).startswith(expected)


def test_empty_corpus(capsys, tmp_path):
    register_corpus("empty_for_test", lambda: [Document("blank", "")], "nothing", replace=True)
    line = error_of(["train", "--set", "data.corpus=empty_for_test", "--out",
                     str(tmp_path / "r")], capsys)
    assert "empty" in line or "no text" in line or "no tokens" in line


def test_prompt_longer_than_context(run_dir, capsys):
    assert "context is 32" in error_of(["generate", "--run", str(run_dir), "--prompt", "a" * 40],
                                       capsys)


def test_prompt_with_unknown_characters(run_dir, capsys):
    assert "does not know" in error_of(["generate", "--run", str(run_dir), "--prompt", "☃"],
                                       capsys)


def test_missing_run_directory(capsys, tmp_path):
    assert "does not exist" in error_of(["generate", "--run", str(tmp_path / "x"), "--prompt",
                                         "a"], capsys)
    assert "does not exist" in error_of(["eval", "--run", str(tmp_path / "x")], capsys)


def test_corrupted_run_directory(run_dir, capsys, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{oops")
    assert "not valid JSON" in error_of(["eval", "--run", str(bad)], capsys)
    assert "not valid JSON" in error_of(["train", "--resume", "--out", str(bad)], capsys)


def test_a_run_given_as_a_model_says_so(run_dir, capsys):
    """A jaxllm run where a Hugging Face model directory belongs is named as a run, with the
    flag that takes it (it was "unknown model", though the directory holds a config.json)."""
    line = error_of(["generate", "--model", str(run_dir), "--prompt", "A"], capsys)
    assert f"{run_dir} is a jaxllm run" in line and f"--run {run_dir}" in line


def test_long_work_says_what_it_is_doing_on_a_terminal_only(run_dir, tmp_path, monkeypatch,
                                                            capsys):
    """issue 16: a model load, an evaluation and tokenizer training said nothing until they
    ended. On a terminal they say what they are doing (eval: a bar of its batches); to a pipe
    or a log, nothing but the result (and an error stays one line)."""
    evaluate = ["eval", "--run", str(run_dir), "--batches", "2"]
    load = ["generate", "--model", str(run_dir), "--prompt", "A"]  # refused once it is read
    assert main(evaluate) == 0 and capsys.readouterr().err == ""
    assert main(load) == 2 and len(capsys.readouterr().err.splitlines()) == 1
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(evaluate) == 0
    err = capsys.readouterr().err
    assert "evaluating:" in err and "0/2 [" in err, err  # the bar, cleared when done
    assert main(load) == 2
    assert capsys.readouterr().err.splitlines()[0] == f"jaxllm generate: loading {run_dir}..."
    tok = ["tokenizer", "train", "--kind", "bytebpe", "--vocab-size", "260", "--data", "pydoc",
           "--out", str(tmp_path / "tok.json")]
    assert main(tok) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "jaxllm tokenizer: reading pydoc..."
    assert lines[1].startswith("jaxllm tokenizer: training a bytebpe tokenizer of 260 tokens on ")


def test_existing_run_is_kept(run_dir, capsys):
    before = (run_dir / "config.json").read_bytes()
    assert "already holds a run" in error_of(["train", "--out", str(run_dir)] + TINY, capsys)
    assert (run_dir / "config.json").read_bytes() == before


def test_console_script_exit_status():
    """The installed entry point, as a user runs it: exit status 2 and one line."""
    proc = subprocess.run([sys.executable, "-m", "jaxllm.cli.main", "train", "--preset", "x"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("jaxllm train: error: unknown preset 'x'; choose one of: "
                                   + ", ".join(sorted(PRESETS)))


# --- nothing a user has is overwritten --------------------------------------------------------

def test_export_never_writes_into_a_run(tiny_run, tmp_path, capsys):
    """issue 16.1: export --out DIR where DIR is a run (or the --run itself) overwrote its
    config.json with the Hugging Face one; generate/eval/resume of that run then failed."""
    run = tiny_run("char")
    copy = tiny_run.copy("char", tmp_path / "copy")
    before = checksums(run, copy)
    for out in (copy, run):
        line = error_of(["export", "--run", str(run), "--out", str(out)], capsys)
        assert f"--out {out} is a directory that already holds files" in line
        assert "config.json" in line
    assert checksums(run, copy) == before
    assert main(["generate", "--run", str(copy), "--prompt", "A", "--max-new-tokens", "2"]) == 0


def test_train_never_writes_into_a_directory_of_the_users(tmp_path, capsys):
    """issue 16.2: train --out into a directory that is not a run replaced the user's
    tokenizer.json, metrics.jsonl and loss.png without a word."""
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "metrics.jsonl").write_text("mine\n")
    (notes / "tokenizer.json").write_text("{}")
    before = checksums(notes)
    line = error_of(["train", "--steps", "1", "--out", str(notes)] + TINY, capsys)
    assert line.endswith(f"--out {notes} is a directory that already holds files (metrics.jsonl, "
                         f"tokenizer.json); choose a new or empty directory")
    assert checksums(notes) == before and sorted(p.name for p in notes.iterdir()) == [
        "metrics.jsonl", "tokenizer.json"]


def test_chat_is_greedy_in_the_cli_as_in_python(tiny_pretrained, monkeypatch, capsys):
    """issue 16: `generate --chat` sampled at temperature 1.0 (gibberish) while lm.chat() is
    greedy; the CLI now passes chat() the same default the Python call has."""
    import inspect

    from jaxllm.pretrained import PretrainedDecoder

    seen = {}

    def chat(self, message, **kwargs):
        seen.update(kwargs)
        return "Paris"
    monkeypatch.setattr(PretrainedDecoder, "chat", chat)
    assert main(["generate", "--model", "tiny-llama", "--chat", "Capital of France?"]) == 0
    assert capsys.readouterr().out == "Paris\n"
    python_default = inspect.signature(PretrainedDecoder.generate).parameters["temperature"]
    assert seen["temperature"] == python_default.default == 0.0


def test_version_and_presets(capsys):
    """issue 16: `jaxllm --version`, jaxllm.__version__ and `jaxllm presets` (names with one
    line each; one preset's resolved config, overrides applied)."""
    import json
    import tomllib
    from pathlib import Path

    import jaxllm
    from jaxllm.config import get_preset

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert jaxllm.__version__ == project["project"]["version"]
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"jaxllm {jaxllm.__version__}\n"
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(PRESETS)
    assert all(len(line.split()) > 3 for line in lines)  # a description on each
    assert main(["presets", "mnist-vit", "--set", "model.n_layers=2", "--steps", "7"]) == 0
    printed = json.loads(capsys.readouterr().out)
    want = get_preset("mnist-vit").to_dict()
    want["model"]["n_layers"], want["train"]["steps"] = 2, 7
    assert printed == want
    assert "unknown preset 'nope'" in error_of(["presets", "nope"], capsys)


# --- Ctrl-C ------------------------------------------------------------------------------------

def test_ctrl_c_before_the_first_step_says_what_to_do(monkeypatch, tmp_path, capsys):
    """issue 16: Ctrl-C before the loop exited silently."""
    import jaxllm.train.loop as loop

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt
    out = tmp_path / "r"
    monkeypatch.setattr(loop, "run_inputs", interrupt)  # while the data is read
    assert main(["train", "--steps", "3", "--no-progress", "--out", str(out)] + TINY) == 130
    assert capsys.readouterr().err.splitlines() == [
        "interrupted before the first step; nothing was written"]
    assert not out.exists()
    monkeypatch.undo()
    monkeypatch.setattr(loop, "make_train_step", interrupt)  # as the step is built
    assert main(["train", "--steps", "3", "--no-progress", "--out", str(out)] + TINY) == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"interrupted before the first step; continue with: jaxllm train --resume --out {out}")
    assert main(["eval", "--run", "x"]) == 2 and capsys.readouterr()  # main still answers


def test_ctrl_c_in_the_loop_keeps_every_finished_step(monkeypatch, tmp_path, capsys):
    """issue 16: the rows of steps not logged yet at an interrupt were lost from metrics.jsonl;
    now they get a row, and the state a checkpoint."""
    import json

    import jaxllm.train.loop as loop

    real = loop.run_inputs

    class Interrupting:  # the batch iterator, interrupted as it is asked for the 4th batch
        def __init__(self, it):
            self.it, self.calls = it, 0

        def __next__(self):
            self.calls += 1
            if self.calls == 4:
                raise KeyboardInterrupt
            return next(self.it)

        def __getattr__(self, name):
            return getattr(self.it, name)

    def interrupting_inputs(*args):
        inputs = real(*args)
        return inputs._replace(train=Interrupting(inputs.train))
    monkeypatch.setattr(loop, "run_inputs", interrupting_inputs)
    out = tmp_path / "r"
    assert main(["train", "--steps", "6", "--no-progress", "--out", str(out)] + TINY) == 130
    assert "interrupted; the latest checkpoint is step 3" in capsys.readouterr().err
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "train_loss" in r] == [3]  # log_every is 10
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["3"]


def test_interruptible_wait():
    """The compile runs in a helper thread that Ctrl-C does not have to wait for."""
    import os
    import signal
    import threading
    import time

    from jaxllm.train.loop import _interruptible

    assert _interruptible(lambda: 7) == 7
    with pytest.raises(ZeroDivisionError):
        _interruptible(lambda: 1 / 0)
    never = threading.Event()
    # Python's own Ctrl-C handler, whatever this process inherited (a shell starts background
    # jobs with SIGINT ignored, and Python then leaves it ignored)
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        start = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            _interruptible(lambda: never.wait(10))  # bounded: a broken version fails, not hangs
        assert time.perf_counter() - start < 5
    finally:
        signal.signal(signal.SIGINT, inherited)
        never.set()  # the helper thread ends
