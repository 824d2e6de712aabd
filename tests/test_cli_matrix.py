"""Every verb against every kind of run it accepts or should refuse, and against the output
targets that must never be written over. Each case ends with exit 0 and a result the next verb
can load, or with one line and exit 2; either way every file that existed before is
byte-identical afterwards.

The runs are the session's tiny ones (conftest `tiny_run`): char, bpe, llama (decoders), mlm
(encoder), vit, clip, quantized (int4 of char), lora (of char), exported (char in the Hugging
Face layout, a `--model DIR`). What a success case runs is kept small (one token, one batch);
the verbs' own tests check their numbers.
"""

import pytest

from jaxllm.cli.main import main
from helpers import checksums

RUNS = ["char", "bpe", "llama", "mlm", "vit", "clip", "quantized", "lora", "exported"]
DECODERS = {"char", "bpe", "llama", "quantized", "lora"}
TEXT = DECODERS | {"mlm"}

# verb -> (argv with {run} and {out}, the kinds it accepts)
VERBS = {
    "generate": (["generate", "--run", "{run}", "--prompt", "A", "--max-new-tokens", "1"],
                 DECODERS),
    "eval": (["eval", "--run", "{run}", "--batches", "1", "--retrieval", "10"],
             TEXT | {"vit", "clip"}),
    "export": (["export", "--run", "{run}", "--out", "{out}"], TEXT),
    "export-run": (["export", "--run", "{run}", "--format", "run", "--out", "{out}"],
                   set(RUNS) - {"exported"}),
    "quantize": (["quantize", "--run", "{run}", "--method", "int8", "--out", "{out}"],
                 {"char", "bpe", "llama", "mlm", "vit", "clip"}),
    "zero-shot": (["zero-shot", "--run", "{run}", "--labels", "0,1,2,3,4,5,6,7,8,9",
                   "--limit", "4"], {"clip"}),
    "resume": (["train", "--resume", "--out", "{run}", "--no-progress"],  # finished: no steps
               set(RUNS) - {"exported"}),
    # fine-tuning from a run takes its architecture and tokenizer (tested on char: the lora
    # run); from an image run onto text, or from an export, it is refused
    "init-from": (["train", "--init-from", "{run}", "--lora", "rank=2,targets=attn",
                   "--steps", "1", "--out", "{out}"], set()),
    "generate-model": (["generate", "--model", "{run}", "--prompt", "A", "--max-new-tokens",
                        "1"], {"exported"}),
    "embed-model": (["embed", "--model", "{run}", "A"], set()),
}
# success cases checked elsewhere at length, and costly here (a compile each)
COVERED = {("eval", "char"), ("eval", "quantized"), ("eval", "lora"), ("eval", "vit"),
           ("eval", "clip"), ("generate", "char"), ("generate", "quantized"),
           ("export", "mlm"), ("export-run", "lora"), ("zero-shot", "clip"),
           ("quantize", "vit"), ("quantize", "clip"), ("eval", "bpe")}
# writing verbs whose result is loaded back (the next verb's first step)
LOADERS = {"export": "hf", "export-run": "run", "quantize": "run"}

CASES = [(verb, kind) for verb in VERBS for kind in RUNS
         if (verb, kind) not in COVERED and not (verb == "init-from" and kind not in
                                                 ("vit", "clip", "exported"))]


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
    runs = [tiny_run(k) for k in RUNS]
    template, accepts = VERBS[verb]
    run = tiny_run(kind)
    if verb == "resume":  # writes nothing when finished, but never in the shared run
        run = tiny_run.copy(kind, tmp_path / kind)
    out = tmp_path / "out"
    argv = [a.format(run=run, out=out) for a in template]
    code, err = _run_case(argv, capsys, *runs, run)
    if kind in accepts:
        assert code == 0, err
        if verb in LOADERS:
            _load(LOADERS[verb], out)
    else:
        assert code == 2 and len(err.strip().splitlines()) == 1 and "error:" in err, err
        assert not out.exists()


def _load(what, out):
    from jaxllm import pretrained
    from jaxllm.train import load_run

    if what == "run":
        load_run(out)
    else:
        pretrained.load(str(out), cache=False)


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
    code, err = _run_case(argv, capsys, tmp_path, *[tiny_run(k) for k in RUNS])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
