"""The README's code blocks, run as written, so that the README cannot drift from the code.

Shell blocks: every `jaxllm ...` command runs in-process in a scratch directory whose runs/
holds the session's tiny runs under the README's placeholder names (runs/... is a run). Two
kinds of command are not run in full, to keep this test small:
- `jaxllm train`: parsed and validated down to the layout and transform checks (mesh shapes,
  LoRA/quantization specs, output directories; a fine-tuning run's corpus read with its base's
  tokenizer), then, instead of training, the run directory is filled with a tiny run of the
  same model kind (a byte-level base: the tiny llama run), for the next commands.
  Training itself (every preset, layout and transform) is tested in tests/test_train.py,
  test_parallel_layouts.py, test_cli*.py.
- commands and Python naming the real pretrained models (SmolLM2-135M, MiniLM), and searches
  that need MiniLM vectors or a trained reranker: parsed only; tests/test_pretrained*.py and
  tests/test_retrieval_*.py run them.
- `jaxllm vectors train --corpus sharegpt`: runs as written on a 34k-word stand-in of the corpus
  (tests/test_text_vectors*.py test the training itself).
- `jaxllm ask` (SmolLM2-135M answering): parsed only; tests/test_rag_*.py run it on a tiny
  stand-in model.
- the multi-host commands (`--distributed`, and the `export XLA_FLAGS=...` before them): parsed
  only; tests/test_multihost.py runs them as two processes.
`make demo` / `make test` are the quickstart itself. Python blocks run with exec(), the same
way (train() is the tiny stand-in; blocks loading the real pretrained models are skipped).
"""

import contextlib
import io
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest

import jaxllm.cli.train as cli_train
import jaxllm.train.loop as loop
from jaxllm.cli.main import build_parser, main

README = Path(__file__).parents[1] / "README.md"
PRETRAINED = ("smollm2-135m-instruct", "all-minilm-l6-v2", "pretrained.load", "jaxllm.embed")
# dense and hybrid search need an index with MiniLM vectors, rerankers a trained cross-encoder
# (minutes on a CPU): tests/test_retrieval_*.py run them
SLOW_RETRIEVAL = ("--mode", "train-reranker", "--rerank")
# the alignment chain fine-tunes SmolLM2 (sft-smollm2) and passes its runs on: parsed only here;
# tests/test_align_cli.py runs the same chain of commands on a tiny registered model
ALIGNMENT = ("sft-smollm2", "runs/sft", "runs/rm", "runs/dpo", "runs/grpo", "runs/ppo")
# the BBC task-head chains fine-tune MiniLM (bbc-topics, -tags, -planted): parsed only here; tests/test_train_heads.py
# runs the same commands on a tiny registered encoder
TASK_HEADS = ("bbc-topics", "runs/bbc-topics", "runs/bbc-lora", "bbc-tags", "runs/bbc-tags",
              "bbc-planted", "runs/bbc-planted", "runs/tickets")
PLACEHOLDERS = {"runs/...": "char", "runs/shakespeare-char-...": "char",
                "runs/mnist-vit-...": "vit", "runs/mnist-clip-...": "clip",
                "runs/dates-seq2seq-...": "seq2seq"}


def blocks():
    """[(language, text)] of the README's fenced code blocks ("" for shell)."""
    return re.findall(r"^```(\w*)\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def commands(text: str) -> list[list[str]]:
    joined = text.replace("\\\n", " ")
    lines = [shlex.split(line, comments=True) for line in joined.splitlines()]
    # `cmd &` (a second process started in the background) is the command itself
    return [argv[:-1] if argv[-1] == "&" else argv for argv in lines if argv]


def _kind_of(cfg) -> str:
    if cfg.model.kind != "decoder":
        return {"encoder": "mlm"}.get(cfg.model.kind, cfg.model.kind)
    if cfg.train.lora:
        return "lora"
    return "llama" if cfg.data.tokenizer == "byte" else "char"  # the byte-level tiny run


@pytest.fixture
def scratch(tiny_run, tmp_path, monkeypatch):
    """A working directory with runs/ as the README names them, score files, and train() as
    validation followed by a copy of a tiny run of the configured kind."""
    for name, kind in PLACEHOLDERS.items():
        tiny_run.copy(kind, tmp_path / name)
    for name, text in (("out.txt", "the cat sat on the mat\n"),
                       ("ref.txt", "the cat sat on a mat\n"), ("ref2.txt", "a cat sat\n")):
        (tmp_path / name).write_text(text)
    kinds = {k: tiny_run(k) for k in ("char", "llama", "mlm", "vit", "clip", "lora", "seq2seq")}
    # word vectors: the README trains on ShareGPT (17M words: an hour here); every fourth
    # document of the pydoc corpus and The Tempest stand in for it (34k words: the vocabulary
    # still holds at least two pairs of every benchmark the README evaluates on, and "python"
    # and "king"; the training's time grows with the words), and are the Python block's
    # corpus.txt
    from jaxllm.data import corpora

    real = corpora.load_documents
    small = real("pydoc")[::4] + [d for d in real("shakespeare") if d.title == "The Tempest"]
    monkeypatch.setattr(corpora, "load_documents",
                        lambda name: small if name == "sharegpt" else real(name))
    (tmp_path / "corpus.txt").write_text(corpora.corpus_text(small))

    def validated_run(cfg, run, *, resuming, progress):
        loop.check_transforms(cfg)
        if cfg.train.init_from and not resuming:  # the base's tokenizer reads this corpus
            loop.run_inputs(cfg, run, resuming)  # (the data is built; nothing is compiled)
        shutil.copytree(kinds[_kind_of(cfg)], run.path, dirs_exist_ok=True)
        return {"run_dir": str(run.path), "step": cfg.train.steps, "val_loss": 1.0,
                "val_perplexity": 2.7, "tokens_per_s_median": None}
    monkeypatch.setattr(loop, "_run", validated_run)
    # runs/<preset>-<date>-<time>: one name per command, though these take less than a second
    stamps = iter(range(10**6))
    monkeypatch.setattr(cli_train.time, "strftime", lambda fmt: f"20260101-{next(stamps):06d}")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_shell_commands_run_as_written(scratch, capsys):
    ran = 0
    for lang, text in blocks():
        if lang:
            continue
        for argv in commands(text):
            if argv[0] == "export":  # the environment of the multi-host commands
                assert all(re.fullmatch(r"\w+=\S+", a) for a in argv[1:]), argv
                continue
            assert argv[0] in ("jaxllm", "make"), f"README shell line {argv}: not a command"
            if argv[0] == "make":
                continue
            if argv[1] == "ask" or any(name in argv for name in PRETRAINED + SLOW_RETRIEVAL
                                             + ALIGNMENT + TASK_HEADS + ("--distributed",)):
                build_parser().parse_args(argv[1:])  # the flags exist (SystemExit otherwise)
                continue
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                code = main(argv[1:])
            assert code == 0, f"{shlex.join(argv)}: {err.getvalue()}"
            ran += 1
    assert ran >= 25
    assert (scratch / "grid.png").exists() and (scratch / "runs" / "merged").is_dir()


def test_readme_python_runs_as_written(scratch, capsys):
    ran = 0
    for lang, text in blocks():
        if lang != "python" or any(name in text for name in PRETRAINED[2:]):
            continue
        exec(compile(text, f"README.md python block {ran}", "exec"), {})  # noqa: S102
        ran += 1
    assert ran == 6
    assert os.path.exists("tokenizer.json") and os.path.isdir("runs/quick")
