"""Every verb against every kind of run it accepts or should refuse, and against the output
targets that must never be written over. Each case ends with exit 0 and a result the next verb
can load, or with one line and exit 2; either way every file that existed before is
byte-identical afterwards, and what a verb writes has the user's permissions (the umask's).

The runs are the session's tiny ones (conftest `tiny_run`): char, bpe, llama (byte-level),
mlm (encoder), vit, clip, quantized (int4 of char), lora (of llama), exported and exported-mlm
(char and mlm in the Hugging Face layout, a `--model DIR`); "file" is a plain file where a run
should be. What a success case runs is kept small (one token, one batch); the verbs' own tests
check their numbers.
"""

import os
import stat

import pytest

from jaxllm.cli.main import main
from helpers import checksums

RUNS = ["char", "bpe", "llama", "mlm", "vit", "clip", "quantized", "lora", "exported",
        "exported-mlm", "file"]
RUN_DIRS = RUNS[:-1]
DECODERS = {"char", "bpe", "llama", "quantized", "lora"}
TEXT = DECODERS | {"mlm"}
TOKENIZED = set(RUN_DIRS) - {"vit"}  # a tokenizer.json in the directory

# verb -> (argv with {run}, {out} and {corpus}, the kinds it accepts)
VERBS = {
    "generate": (["generate", "--run", "{run}", "--prompt", "A", "--max-new-tokens", "1"],
                 DECODERS),
    "eval": (["eval", "--run", "{run}", "--batches", "1", "--retrieval", "10"],
             TEXT | {"vit", "clip"}),
    "export": (["export", "--run", "{run}", "--out", "{out}"], TEXT),
    "export-run": (["export", "--run", "{run}", "--format", "run", "--out", "{out}"],
                   set(RUN_DIRS) - {"exported", "exported-mlm"}),
    "quantize": (["quantize", "--run", "{run}", "--method", "int8", "--out", "{out}"],
                 {"char", "bpe", "llama", "mlm", "vit", "clip"}),
    "zero-shot": (["zero-shot", "--run", "{run}", "--labels", "0,1,2,3,4,5,6,7,8,9",
                   "--limit", "4"], {"clip"}),
    "resume": (["train", "--resume", "--out", "{run}", "--no-progress"],  # finished: no steps
               set(RUN_DIRS) - {"exported", "exported-mlm"}),
    # fine-tuning from a run takes its architecture and tokenizer (tested on llama: the lora
    # run); from an image run onto text, or from an export, it is refused
    "init-from": (["train", "--init-from", "{run}", "--lora", "rank=2,targets=attn",
                   "--steps", "1", "--out", "{out}"], set()),
    "generate-model": (["generate", "--model", "{run}", "--prompt", "A", "--max-new-tokens",
                        "1"], {"exported"}),
    "chat-model": (["generate", "--model", "{run}", "--chat", "hi", "--max-new-tokens", "1"],
                   set()),  # a char tokenizer has no chat template
    "eval-model": (["eval", "--model", "{run}", "--max-tokens", "16", "--window", "8"],
                   {"exported"}),
    "embed-model": (["embed", "--model", "{run}", "A", "B"], {"exported-mlm"}),
    "tokenizer": (["tokenizer", "encode", "--tokenizer", "{run}", "A"], TOKENIZED),
    "index-dense": (["index", "build", "--corpus", "{corpus}", "--dense", "{run}", "--out",
                     "{out}", "--no-progress"], {"exported-mlm"}),
    "search": (["search", "{run}", "A"], set()),
    "index-eval": (["index", "eval", "{run}"], set()),
    "score": (["score", "bleu", "--hyp", "{run}", "--ref", "{run}"], {"file"}),
}
# success cases checked elsewhere at length, and costly here (a compile each)
COVERED = {("eval", "char"), ("eval", "quantized"), ("eval", "lora"), ("eval", "vit"),
           ("eval", "clip"), ("generate", "char"), ("generate", "quantized"),
           ("export", "mlm"), ("export-run", "lora"), ("zero-shot", "clip"),
           ("quantize", "vit"), ("quantize", "clip"), ("eval", "bpe"),
           ("quantize", "char"),  # the tiny quantized run is quantize --run CHAR
           ("quantize", "bpe"),  # char's architecture: the tokenizer plays no part
           ("eval", "mlm"), ("embed-model", "exported-mlm"),  # test_pretrained_io
           ("export", "lora"), ("export", "quantized")}  # test_transforms_cli
# writing verbs whose result is loaded back (the next verb's first step)
LOADERS = {"export": "hf", "export-run": "run", "quantize": "run", "index-dense": "index"}

CASES = [(verb, kind) for verb in VERBS for kind in RUNS
         if (verb, kind) not in COVERED and not (verb == "init-from" and kind not in
                                                 ("vit", "clip", "exported", "file"))]


def _run_case(argv, capsys, *protected):
    """main(argv): (exit status, stderr), asserting the protected files are unchanged."""
    before = checksums(*protected)
    code = main(argv)
    captured = capsys.readouterr()
    assert checksums(*protected) == before, f"{argv} changed files it was not asked to"
    assert "Traceback" not in captured.err
    # warnings (a warm-up longer than these 1-step runs) may come before the one error line
    return code, "".join(line + "\n" for line in captured.err.splitlines()
                         if ": warning: " not in line)


@pytest.mark.parametrize("verb, kind", CASES)
def test_verb_on_every_kind_of_run(verb, kind, tiny_run, tmp_path, capsys):
    runs = [tiny_run(k) for k in RUN_DIRS]
    template, accepts = VERBS[verb]
    if kind == "file":
        run = tmp_path / "notes.txt"
        run.write_text("mine\n")
    elif verb == "resume":  # writes nothing when finished, but never in the shared run
        run = tiny_run.copy(kind, tmp_path / kind)
    else:
        run = tiny_run(kind)
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text('{"id": "a", "text": "A cat sat."}\n{"id": "b", "text": "A dog ran."}\n')
    out = tmp_path / "out"
    argv = [a.format(run=run, out=out, corpus=corpus) for a in template]
    code, err = _run_case(argv, capsys, *runs, run, corpus)
    if kind in accepts:
        assert code == 0, err
        if verb in LOADERS:
            _load(LOADERS[verb], out)
            _assert_user_permissions(out)
    else:
        assert code == 2 and len(err.strip().splitlines()) == 1 and "error:" in err, err
        assert not out.exists()


def _load(what, out):
    from jaxllm import pretrained
    from jaxllm.retrieval import Index
    from jaxllm.train import load_run

    if what == "run":
        load_run(out)
    elif what == "index":
        Index.load(out)
    else:
        pretrained.load(str(out), cache=False)


def _assert_user_permissions(root):
    """Every file written has 0o666 less the umask (issue 16: mkstemp's 0o600 for run files)."""
    umask = os.umask(0)
    os.umask(umask)
    modes = {str(p.relative_to(root)): oct(stat.S_IMODE(p.stat().st_mode))
             for p in root.rglob("*") if p.is_file()}
    assert modes and set(modes.values()) == {oct(0o666 & ~umask)}, modes


def test_runs_have_the_users_permissions(tiny_run):
    """A run as jaxllm train writes it (config.json, metrics.jsonl, tokenizer.json, loss.png,
    checkpoints) and an export (model.safetensors)."""
    for kind in ("char", "exported"):
        _assert_user_permissions(tiny_run(kind))


# --- outputs that must never be written over --------------------------------------------------

WRITERS = {
    "train": ["train", "--steps", "1", "--no-progress", "--out", "{out}"],
    "export": ["export", "--run", "{char}", "--out", "{out}"],
    "quantize": ["quantize", "--run", "{char}", "--method", "int8", "--out", "{out}"],
    "tokenizer": ["tokenizer", "train", "--vocab-size", "300", "--data", "pydoc", "--out",
                  "{out}"],
    "zero-shot": ["zero-shot", "--run", "{clip}", "--labels", "a,b", "--grid", "{out}"],
    "index": ["index", "build", "--corpus", "bbc", "--no-progress", "--out", "{out}"],
}


def _targets(tiny_run, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "metrics.jsonl").write_text("mine\n")
    (tmp_path / "file.txt").write_text("mine\n")
    return {"an existing run": tiny_run("lora"), "a directory with files": notes,
            "an existing file": tmp_path / "file.txt",
            "a path under a file": tmp_path / "file.txt" / "out",
            "an unwritable place": "/proc/jaxllm-out"}


@pytest.mark.parametrize("target", ["an existing run", "a directory with files",
                                    "an existing file", "a path under a file",
                                    "an unwritable place"])
@pytest.mark.parametrize("verb", list(WRITERS))
def test_outputs_are_never_written_over(verb, target, tiny_run, tmp_path, capsys):
    if verb == "zero-shot" and target == "a directory with files":
        target = "an existing run"  # a directory --grid cannot be; the same refusal
    out = _targets(tiny_run, tmp_path)[target]
    argv = [a.format(out=out, char=tiny_run("char"), clip=tiny_run("clip"))
            for a in WRITERS[verb]]
    code, err = _run_case(argv, capsys, tmp_path, *[tiny_run(k) for k in RUN_DIRS])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
