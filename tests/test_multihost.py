"""Two processes x 4 CPU devices, joined by jax.distributed, train like one process x 8.

The processes are real: started on 127.0.0.1 with a free port, bounded by a timeout and always
killed at the end. One pair (tests/multihost_worker.py) runs four layouts in sequence in one
cluster session while this process trains the data=8 run on its own 8 devices; a second pair,
started with the `jaxllm train --distributed` command of README/BUILD.md, is killed mid-run and
resumed. Every layout is compared with the one-process data=8 run: test_parallel_layouts.py
already holds each layout on one process equal to one device, and experiments/multihost.py
compares each of 13 layouts and model kinds with its own one-process run (RESULTS.md); one
reference here keeps the test's compile time down. Tolerances as in test_parallel_layouts.py
(float32): per-step losses within 2e-5 (the logged losses are rounded to 5 decimals), final
parameters within 1e-4. The subprocesses share a persistent compilation cache, so the killed and
resumed runs reuse the programs the first pair compiled for the same config.

The cluster tests (marked `cluster`: minutes of compiling on a 2-core machine) run in `make test`
(this module on one pytest-xdist worker, while the other goes on with the rest of the suite) and alone in `make test-cluster`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxllm.cli.main import main
from jaxllm.config import apply_overrides, get_preset
from jaxllm.data.batches import BatchIterator
from jaxllm.errors import ConfigError
from jaxllm.parallel.distributed import check_arguments
from jaxllm.train import RunDir, load_run, train

from helpers import error_of

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "multihost_worker.py"
# model.vocab_size fixed (pydoc's characters are 103): a tensor split would otherwise pad it to
# 104 and make another model than data=8's
TINY = ["data.corpus=pydoc", "model.vocab_size=104", "model.n_layers=2", "model.d_model=32",
        "model.n_heads=4",
        "model.max_len=32", "model.dropout=0.0", "train.batch_size=8", "train.steps=12",
        "train.save_every=4", "train.eval_every=6", "train.log_every=1", "train.eval_batches=2",
        "optim.warmup_steps=2"]
LAYOUTS = {
    "data=8": ["parallel.mesh=data=8"],
    "fsdp=8": ["parallel.mesh=fsdp=8"],
    "data=2,tensor=4,zero=3": ["parallel.mesh=data=2,tensor=4", "parallel.zero=3"],
    "stage=2,data=4,1f1b": ["parallel.mesh=stage=2,data=4", "parallel.pipeline=1f1b",
                            "parallel.microbatches=2"],
}
LOSS_ATOL, PARAM_ATOL = 2e-5, 1e-4
GENERATE = ["generate", "--prompt", "The ", "--max-new-tokens", "12", "--temperature", "0.8",
            "--seed", "3"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(data_dir) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "JAXLLM_DATA_DIR": str(data_dir),
            # 4 devices per process; the other flags (tests/conftest.py) kept
            "XLA_FLAGS": " ".join([f for f in os.environ.get("XLA_FLAGS", "").split()
                                   if not f.startswith("--xla_force_host_platform_device_count")]
                                  + ["--xla_force_host_platform_device_count=4"]),
            "JAX_COMPILATION_CACHE_DIR": str(Path(data_dir) / "jax_cache"),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}


def start(commands: list[list[str]], data_dir, logs: Path) -> list[subprocess.Popen]:
    """One process per command, stdout and stderr to logs/<i>.out / .err."""
    logs.mkdir(parents=True, exist_ok=True)
    return [subprocess.Popen(cmd, env=env(data_dir), cwd=ROOT,
                             stdout=open(logs / f"{i}.out", "w"),
                             stderr=open(logs / f"{i}.err", "w")) for i, cmd in enumerate(commands)]


def wait(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    for p in procs:
        p.wait(max(deadline - time.monotonic(), 1))
    return [p.returncode for p in procs]


def kill(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def cli(process_id: int, port: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "jaxllm.cli.main", "train", "--no-progress", *args,
            "--distributed", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
            "--process-id", str(process_id), "--failure-timeout", "10"]


def config(*overrides):
    return apply_overrides(get_preset("shakespeare-char"), TINY + list(overrides))


def losses(run_dir) -> list[tuple[int, float]]:
    return [(r["step"], r.get("train_loss", r.get("val_loss")))
            for r in RunDir(run_dir).read_metrics()]


def flat_params(run_dir) -> dict:
    params = jax.device_get(load_run(run_dir).params)
    return {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(params)}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, session_data_dir):
    """Every layout trained by 2 processes x 4 devices, and data=8 by this process on 8."""
    base = tmp_path_factory.mktemp("multihost")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAXLLM_DATA_DIR", str(session_data_dir))
        # first: it prepares the corpus the workers read, and they restore its checkpoint onto
        # another layout
        train(config(*LAYOUTS["data=8"]), base / "one", progress=False)
        tasks = [{"audit": str(base / "audit{}.json")}]
        tasks += [{"train": str(base / "two" / name), "overrides": TINY + extra}
                  for name, extra in LAYOUTS.items()]
        two = str(base / "two" / "data=8")
        tasks += [{"cli": ["eval", "--run", two], "out": str(base / "eval.txt")},
                  {"cli": GENERATE + ["--run", two], "out": str(base / "generate.txt")},
                  {"restore": str(base / "one"), "mesh": "fsdp=8",
                   "out": str(base / "restored.npz")},
                  {"error": str(base / "mesh.json"), "overrides": TINY + ["parallel.mesh=data=4"]},
                  {"error": str(base / "batch.json"),
                   "overrides": TINY + ["parallel.mesh=tensor=8", "train.batch_size=3"]},
                  {"error": str(base / "no_mesh.json"), "overrides": TINY}]
        port = free_port()
        procs = start([[sys.executable, str(WORKER), str(i), str(port),
                        json.dumps(tasks).replace("audit{}", f"audit{i}")] for i in (0, 1)],
                      session_data_dir, base / "logs")
        try:
            codes = wait(procs, timeout=1800)  # minutes on a quiet machine; bounded anyway
        finally:
            kill(procs)
    logs = [(base / "logs" / f"{i}.err").read_text() for i in (0, 1)]
    assert codes == [0, 0], logs
    return base


@pytest.mark.cluster
@pytest.mark.parametrize("name", list(LAYOUTS))
def test_two_processes_train_like_one(cluster, name):
    one, two = losses(cluster / "one"), losses(cluster / "two" / name)
    assert [s for s, _ in two] == [s for s, _ in one] and len(one) == 12 + 3
    np.testing.assert_allclose([v for _, v in two], [v for _, v in one], rtol=0, atol=LOSS_ATOL)
    # the checkpoint written by two processes restores in this one (on one device)
    a, b = flat_params(cluster / "one"), flat_params(cluster / "two" / name)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=0, atol=PARAM_ATOL, err_msg=k)


@pytest.mark.cluster
def test_only_process_0_writes_the_run_files(cluster):
    written = [json.loads((cluster / f"audit{i}.json").read_text()) for i in (0, 1)]
    run = str(cluster / "two" / "data=8")
    mine = [[Path(p).relative_to(run).parts for p in w if p.startswith(run + "/")]
            for w in written]
    outside_checkpoints = [[parts for parts in m if parts[0] != "checkpoints"] for m in mine]
    assert outside_checkpoints[1] == []
    names = {parts[-1] for parts in outside_checkpoints[0]}
    for f in ("config.json", "tokenizer.json", "metrics.jsonl", "loss.png"):
        assert any(n == f or n.startswith(f".{f}.") for n in names), (f, names)
    # both processes wrote their shards of the checkpoints
    assert all(any(parts[0] == "checkpoints" for parts in m) for m in mine)


@pytest.mark.cluster
def test_eval_and_generate_on_two_processes_print_what_one_prints(cluster, capsys):
    """`jaxllm eval` and `generate` as process 0 of two ran them on the two-process run, and
    as this process runs them on the same run."""
    two = str(cluster / "two" / "data=8")
    for argv, name in ((["eval", "--run", two], "eval.txt"),
                       (GENERATE + ["--run", two], "generate.txt")):
        assert main(argv) == 0
        printed = capsys.readouterr().out
        assert printed and (cluster / name).read_text() == printed


@pytest.mark.cluster
def test_checkpoint_from_one_process_restores_on_two_in_another_layout(cluster):
    """Saved on 1 process x 8 devices (data=8), restored on 2 x 4 as fsdp=8."""
    saved = flat_params(cluster / "one")
    with np.load(cluster / "restored.npz") as restored:
        assert sorted(restored.files) == sorted(saved)
        for k in saved:
            np.testing.assert_array_equal(restored[k], saved[k], err_msg=k)


@pytest.mark.cluster
def test_layout_errors_on_two_processes(cluster):
    read = lambda name: json.loads((cluster / name).read_text())  # noqa: E731
    assert "multiply to 4 but there are 8 devices (2 processes together)" in read("mesh.json")
    assert "= 3 is not divisible by the 2 processes" in read("batch.json")
    assert "a run on 2 processes needs a mesh" in read("no_mesh.json")


@pytest.mark.cluster
def test_killed_process_stops_the_other_and_both_resume(cluster, tmp_path, session_data_dir):
    """Process 1 is killed mid-run: process 0 stops within 60 s with one line; both resume and
    end bitwise equal to the uninterrupted two-process run (the cluster's data=8 run)."""
    out = tmp_path / "run"
    args = ["--mesh", "data=8", "--out", str(out)] + [a for o in TINY for a in ("--set", o)]
    port = free_port()
    procs = start([cli(i, port, *args) for i in (0, 1)], session_data_dir, tmp_path / "killed")
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and procs[0].poll() is None:
            if any(s >= 5 for s, _ in (losses(out) if (out / "metrics.jsonl").exists() else [])):
                break
            time.sleep(0.02)
        assert procs[1].poll() is None, "the run ended before it could be killed"
        procs[1].kill()
        killed_at = time.monotonic()
        code = wait(procs[:1], timeout=120)[0]
        stopped_after = time.monotonic() - killed_at
    finally:
        kill(procs)
    err = (tmp_path / "killed" / "0.err").read_text().strip().splitlines()
    assert code == 1 and stopped_after < 60, (code, stopped_after, err)
    assert len(err) == 1 and "process 1 stopped responding" in err[0], err
    assert err[0].startswith("jaxllm train [process 0 of 2]: error:")
    assert max(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit()) < 12

    port = free_port()
    procs = start([cli(i, port, "--resume", "--out", str(out)) for i in (0, 1)],
                  session_data_dir, tmp_path / "resumed")
    try:
        codes = wait(procs, timeout=600)
    finally:
        kill(procs)
    assert codes == [0, 0], [(tmp_path / "resumed" / f"{i}.err").read_text() for i in (0, 1)]
    a, b = flat_params(out), flat_params(cluster / "two" / "data=8")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_two_processes_assemble_the_single_process_batch(tmp_path, session_data_dir):
    """The fast two-process check (no model): on data=2,tensor=4 each process loads only the rows
    its devices hold, half the batch; the global array place_batch assembles from both is
    bitwise the batch one process makes whole, and a sum over it on the mesh (a reduction across
    the processes over gloo) equals numpy's."""
    tokens = np.random.default_rng(0).integers(0, 1000, size=300).tolist()
    n, seq_len, seed, step = 8, 6, 5, 3
    task = {"batch": str(tmp_path / "batch{}.json"), "mesh": "data=2,tensor=4", "tokens": tokens,
            "batch_size": n, "seq_len": seq_len, "seed": seed, "step": step}
    port = free_port()
    procs = start([[sys.executable, str(WORKER), str(i), str(port), json.dumps([task])]
                   for i in (0, 1)], session_data_dir, tmp_path / "logs")
    try:
        codes = wait(procs, timeout=120)
    finally:
        kill(procs)
    assert codes == [0, 0], [(tmp_path / "logs" / f"{i}.err").read_text() for i in (0, 1)]
    seen = [json.loads((tmp_path / f"batch{i}.json").read_text()) for i in (0, 1)]
    assert [s["rows"] for s in seen] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    expected = BatchIterator([np.asarray(tokens, np.int32)], n, seq_len, seed).batch(step)
    whole_bytes = sum(v.nbytes for v in expected.values())
    assert [s["loaded_bytes"] for s in seen] == [whole_bytes // 2] * 2
    weighted = int((expected["inputs"] * np.arange(1, n + 1)[:, None]).sum()
                   - expected["targets"].sum())
    for s in seen:
        assert s["batch"].keys() == expected.keys()
        for k, v in expected.items():
            np.testing.assert_array_equal(np.asarray(s["batch"][k]), v, err_msg=k)
        assert s["total"] == weighted


@pytest.mark.parametrize("argv, match", [
    (["--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "2"],
     "--process-id 2 is out of range for --num-processes 2; use 0 to 1"),
    (["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"],
     "is not HOST:PORT"),
    (["--coordinator", "127.0.0.1:1234", "--process-id", "0"], "--num-processes missing"),
])
def test_bad_cluster_arguments(argv, match, capsys):
    assert match in error_of(["train", "--distributed", *argv], capsys)


def test_cluster_flags_need_distributed(capsys):
    assert "--coordinator needs --distributed" in error_of(
        ["train", "--coordinator", "127.0.0.1:1234"], capsys)
    with pytest.raises(ConfigError, match="--num-processes 0"):
        check_arguments("127.0.0.1:1", 0, 0)


@pytest.mark.slow
def test_unreachable_coordinator_is_one_line_within_the_join_timeout(tmp_path, session_data_dir):
    port = free_port()  # nobody listens there
    start_time = time.monotonic()
    procs = start([cli(1, port, "--out", str(tmp_path / "run"), "--join-timeout", "3")],
                  session_data_dir, tmp_path)
    try:
        code = wait(procs, timeout=120)[0]
    finally:
        kill(procs)
    err = (tmp_path / "0.err").read_text().strip().splitlines()
    assert code == 1 and time.monotonic() - start_time < 60
    assert err == [(f"jaxllm train [process 1 of 2]: error: not every process joined the "
                    f"coordinator at 127.0.0.1:{port} within 3 s; start all of them with the "
                    f"same --coordinator and --num-processes (process 0 serves the coordinator), "
                    f"and check the address")]


@pytest.mark.slow
def test_distributed_outside_a_cluster_needs_the_flags(tmp_path, session_data_dir):
    procs = start([[sys.executable, "-m", "jaxllm.cli.main", "train", "--distributed", "--out",
                    str(tmp_path / "run")]], session_data_dir, tmp_path)
    try:
        code = wait(procs, timeout=120)[0]
    finally:
        kill(procs)
    err = (tmp_path / "0.err").read_text().strip().splitlines()
    assert code == 2 and len(err) == 1 and "needs a cluster JAX detects" in err[0], err
    assert not (tmp_path / "run").exists()
