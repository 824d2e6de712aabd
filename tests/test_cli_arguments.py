"""`jaxllm train` argument parsing and validation under random flags and `--set` values: every
combination ends in exit 0 or in one line and exit 2, never a traceback. The loop itself
(data, compile, steps) is replaced by a stub, so nothing is compiled."""

import io
import contextlib

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import jaxllm.train.loop as loop
from jaxllm.cli.main import main
from jaxllm.config import Config, _CHOICES, flat_dict

DEFAULTS = flat_dict(Config())
KEYS = sorted(DEFAULTS)


def _plausible(key: str):
    """Values of the key's own type (mostly valid), so that examples get past the first field."""
    default = DEFAULTS[key]
    if key in _CHOICES:
        return st.sampled_from(_CHOICES[key])
    if isinstance(default, bool):
        return st.sampled_from(["true", "false"])
    if isinstance(default, int):
        return st.integers(-1, 300).map(str)
    if isinstance(default, float):
        return st.floats(-1, 2).map(lambda x: f"{x:.3g}")
    return st.sampled_from([default, "", "shakespeare", "rank=2,targets=attn", "data=2"])


junk = st.one_of(st.text(max_size=6), st.sampled_from(["nan", "inf", "-1", "1e30", "2.5",
                                                       "true", "", "none"]))
setting = st.one_of(
    st.sampled_from(KEYS).flatmap(lambda k: st.one_of(_plausible(k), _plausible(k), junk).map(
        lambda v: f"{k}={v}")),
    st.sampled_from(["model.nope=1", "nope", "train.=3", "=", "model.n_layers"]))
flag = st.sampled_from([
    ("--steps", st.integers(-2, 10**9).map(str) | st.text(max_size=4)),
    ("--mesh", st.sampled_from(["data=8", "data=2,tensor=4", "fsdp=-1", "stage=2,data=4",
                                "data=3", "x=2", "data=-1,fsdp=-1", ""]) | st.text(max_size=8)),
    ("--zero", st.integers(-1, 4).map(str)),
    ("--pipeline", st.sampled_from(["none", "gpipe", "1f1b", "zigzag"])),
    ("--microbatches", st.integers(-1, 64).map(str)),
    ("--remat", st.sampled_from(["none", "full", "dots", "nope"])),
    ("--precision", st.sampled_from(["fp32", "bf16", "f16", "fp8"])),
    ("--lora", st.sampled_from(["rank=2,alpha=4,targets=attn", "rank=0", "targets=nomatch",
                                "colour=red", ""]) | st.text(max_size=8)),
    ("--data", st.sampled_from(["shakespeare", "pydoc", "nope", "tfds:", "digits"])),
    ("--save-every", st.integers(-1, 100).map(str)),
    ("--preset", st.sampled_from(["shakespeare-char", "shakespeare-mlm", "mnist-vit", "x"])),
    ("--init-from", st.sampled_from(["/nonexistent/run", ""])),
    ("--step", st.integers(-1, 8).map(str)),  # the resumable run has a checkpoint at 4
])


def _stub_run(calls):
    def run(cfg, run_dir, *, resuming, progress):
        loop.check_transforms(cfg)  # the transform specs, checked before any compile
        calls.append(cfg)
        return {"run_dir": str(run_dir.path), "step": cfg.train.steps, "val_loss": 1.0,
                "val_perplexity": 2.7, "tokens_per_s_median": None}
    return run


@pytest.fixture
def stubbed_loop(monkeypatch):  # (after any tiny_run is built: those need the real loop)
    calls = []
    monkeypatch.setattr(loop, "_run", _stub_run(calls))
    return calls


@st.composite
def command(draw):
    argv = ["train", "--steps", "1", "--no-progress"]
    for s in draw(st.lists(setting, max_size=5)):
        argv += ["--set", s]
    for name, values in draw(st.lists(flag, max_size=3)):
        argv += [name, draw(values)]
    return argv + (["--resume"] if draw(st.booleans()) else [])


@pytest.fixture
def resumable(tiny_run, tmp_path):
    """A copy of the session's tiny char run (4 steps) for the --resume examples."""
    return tiny_run.copy("char", tmp_path / "resumable")


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=command())
def test_train_arguments_never_end_in_a_traceback(argv, resumable, stubbed_loop, tmp_path):
    out = resumable if "--resume" in argv else tmp_path / "run"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv + ["--out", str(out)])  # any exception fails the test
    lines = [x for x in err.getvalue().splitlines() if ": warning: " not in x]
    assert "Traceback" not in err.getvalue()
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("jaxllm"), err.getvalue()
    else:
        assert code == 0 and lines == [] and stubbed_loop, err.getvalue()
    if out != resumable:
        assert not out.exists() or not any(out.iterdir())  # the stub writes nothing


def _interrupt(*args, **kwargs):  # stands in for the model: the run stops before any compile
    raise KeyboardInterrupt


def test_warmup_longer_than_the_run_is_warned_about(tmp_path, monkeypatch, capsys):
    """issue 16: a warm-up longer than the run said nothing. The warning comes once the run is
    accepted (never before an error line); the model is not built here."""
    monkeypatch.setattr(loop, "model_and_objective", _interrupt)
    tiny = ["--no-progress", "--set", "model.n_layers=1", "--set", "model.d_model=32"]
    assert main(["train", "--steps", "30", "--out", str(tmp_path / "a")] + tiny) == 130
    assert capsys.readouterr().err.splitlines()[0] == (
        "jaxllm train: warning: optim.warmup_steps=100 is not shorter than train.steps=30: the "
        "learning rate never reaches optim.lr=0.001; set optim.warmup_steps lower")
    assert main(["train", "--steps", "101", "--out", str(tmp_path / "b")] + tiny) == 130
    assert "warning" not in capsys.readouterr().err


def test_a_context_that_cannot_fit_is_warned_about(tmp_path, monkeypatch, capsys):
    """issue 16: model.max_len=100000 on the char preset compiled for over 10 minutes at 6.8 GB
    without a word. Its 12 rows x 4 heads x 100000^2 float32 scores are 1,788 GiB, more than a
    64 GiB machine; its own max_len=64 is not warned about."""
    import numpy as np

    monkeypatch.setattr(loop, "host_memory_bytes", lambda: 64 * 2**30)
    monkeypatch.setattr(loop, "model_and_objective", _interrupt)
    scores = np.float32(0).nbytes * np.prod([12, 4, 100_000, 100_000], dtype=np.float64)
    argv = ["train", "--steps", "200", "--no-progress", "--set", "model.max_len=100000"]
    assert main(argv + ["--out", str(tmp_path / "a")]) == 130
    warning = capsys.readouterr().err.splitlines()[0]
    assert warning.startswith("jaxllm train: warning: model.max_len=100000: one layer's "
                              f"attention scores would take {scores / 2**30:,.0f} GiB"), warning
    assert "more than this machine's 64 GiB" in warning and "set model.max_len lower" in warning
    assert main(["train", "--steps", "200", "--no-progress", "--out", str(tmp_path / "b")]) == 130
    assert "warning" not in capsys.readouterr().err

