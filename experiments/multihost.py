"""Two processes x 4 CPU devices (jax.distributed over gloo) against one process x 8 devices.

    .venv/bin/python experiments/multihost.py PART [--append]     (timed parts under
    flock /tmp/jaxllm-bench.lock, so that two timings never overlap)

PART is one of:

  layouts     every mesh layout and model kind trained for 8 steps by `jaxllm train` on one
              process x 8 devices and on two processes x 4 (`--distributed`, 127.0.0.1): the
              largest difference of a logged loss and of a final parameter
  speed       tokens/s of the shakespeare-char model (batch 16), 1x8 and 2x4 alternated three
              times (median of the logged windows after the first), and the bytes of each
              training batch a process loads (the rows its devices hold) against the whole batch
  checkpoint  Checkpoints.save of an fsdp=8 training state (~24M parameters + Adam moments):
              how long the training loop waits, synchronous and asynchronous saves, on 1x8 and
              2x4 (median of 3 saves each), and how long until the asynchronous one is on disk
  kill        kill process 1 (then, separately, process 0) of a two-process run mid-run: what
              the other prints and how long it takes to stop

Runs happen in fresh processes (`jaxllm train` or this script with --worker) with their own
data directory; every process on this machine shares its 2 cores, so 2x4 pays gloo's TCP
collectives between two processes on top of the 1x8 run's in-process ones. The numbers
compare the two set-ups on this CPU; they say nothing about real multi-host hardware.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY = ["model.n_layers=2", "model.d_model=32", "model.n_heads=4", "model.max_len=32",
        "model.dropout=0.0", "train.batch_size=8", "train.steps=8", "train.save_every=8",
        "train.eval_every=8", "train.log_every=1", "train.eval_batches=2",
        "optim.warmup_steps=2"]
TEXT = ["--preset", "shakespeare-char", "--data", "pydoc"]
VISION = ["--data", "digits", "--set", "model.image_size=8", "--set", "model.patch_size=4",
          "--set", "model.n_layers=2", "--set", "model.d_model=32",
          "--set", "model.d_ff=64", "--set", "model.text_layers=1", "--set", "model.embed_dim=32",
          "--set", "data.augment_shift=1"]
LORA = ["--init-from", "{base}", "--data", "pydoc", "--lora", "rank=4,alpha=8,targets=all"]
LAYOUTS = [  # name, train arguments, mesh, extra
    ("data=8", TEXT, "data=8", []),
    ("fsdp=8", TEXT, "fsdp=8", []),
    ("data=8 zero=1", TEXT, "data=8", ["--zero", "1"]),
    ("data=8 zero=2", TEXT, "data=8", ["--zero", "2"]),
    ("data=8 zero=3", TEXT, "data=8", ["--zero", "3"]),
    ("data=2,tensor=4", TEXT, "data=2,tensor=4", []),
    ("data=2,tensor=4 zero=3", TEXT, "data=2,tensor=4", ["--zero", "3"]),
    ("stage=2,data=4 gpipe", TEXT, "stage=2,data=4", ["--pipeline", "gpipe",
                                                      "--microbatches", "2"]),
    ("stage=2,data=4 1f1b", TEXT, "stage=2,data=4", ["--pipeline", "1f1b",
                                                     "--microbatches", "2"]),
    ("LoRA fsdp=4,tensor=2", LORA, "fsdp=4,tensor=2", []),
    ("QLoRA nf4 fsdp=4,tensor=2", LORA, "fsdp=4,tensor=2",
     ["--set", "model.weights=method=nf4,group=32"]),
    ("ViT data=8", ["--preset", "mnist-vit"] + VISION, "data=8", []),
    ("CLIP data=8", ["--preset", "mnist-clip"] + VISION, "data=8", []),
]
SPEED = ["--preset", "shakespeare-char", "--data", "pydoc", "--mesh", "data=8", "--steps", "40",
         "--set", "train.batch_size=16", "--set", "train.log_every=10",
         "--set", "train.eval_every=1000", "--set", "train.save_every=1000",
         "--set", "train.eval_batches=1"]
CKPT_MODEL = ["model.n_layers=8", "model.d_model=512", "model.n_heads=8", "model.max_len=64",
              "train.batch_size=16",
              "parallel.mesh=fsdp=8", "data.corpus=pydoc"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(devices: int, data_dir: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "JAXLLM_DATA_DIR": str(data_dir),
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def run_procs(commands: list[list[str]], devices: int, data_dir: Path, timeout: float = 3600):
    """Start the commands together; wait for all; raise with their stderr if one failed."""
    procs = [subprocess.Popen(c, env=env(devices, data_dir), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for c in commands]
    try:
        outs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, outs):
        if p.returncode:
            raise SystemExit(f"failed ({p.returncode}): {' '.join(p.args)}\n{err[-3000:]}")
    return [out for out, _ in outs]


def cluster_flags(i: int, port: int) -> list[str]:
    return ["--distributed", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
            "--process-id", str(i)]


def train_cmd(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "jaxllm.cli.main", "train", "--no-progress", *args]


def train_both(args: list[str], work: Path, data_dir: Path) -> tuple[Path, Path]:
    """The same `jaxllm train` on 1 process x 8 devices and on 2 processes x 4."""
    one, two = work / "one", work / "two"
    run_procs([train_cmd(args + ["--out", str(one)])], 8, data_dir)
    port = free_port()
    run_procs([train_cmd(args + ["--out", str(two)] + cluster_flags(i, port)) for i in (0, 1)],
              4, data_dir)
    return one, two


def compare(one: Path, two: Path) -> tuple[float, float]:
    """Largest |difference| of the logged losses and of the final parameters (restored here,
    on one device)."""
    import jax
    import numpy as np

    from jaxllm.train import RunDir, load_run

    def losses(d):
        return {(r["step"], k): r[k] for r in RunDir(d).read_metrics()
                for k in ("train_loss", "val_loss") if k in r}

    a, b = losses(one), losses(two)
    assert a.keys() == b.keys(), (sorted(a), sorted(b))
    dl = max(abs(a[k] - b[k]) for k in a)
    pa, pb = (jax.tree_util.tree_leaves(jax.device_get(load_run(d).params)) for d in (one, two))
    dp = max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
             for x, y in zip(pa, pb))
    return dl, dp


def part_layouts(work: Path, data_dir: Path, only: list[str]) -> str:
    # the LoRA runs' base: on their mesh, so that its vocabulary is padded as theirs
    base = work / "base"
    run_procs([train_cmd(TEXT + ["--out", str(base), "--mesh", "fsdp=4,tensor=2"]
                         + [a for o in TINY for a in ("--set", o)])], 8, data_dir)
    lines = [("| layout | max abs loss difference (logged, 5 decimals) | max abs parameter "
              "difference |"), "|---|---|---|"]
    for name, args, mesh, extra in LAYOUTS:
        if only and name not in only:
            continue
        args = [a.replace("{base}", str(base)) for a in args]
        overrides = [a for o in TINY for a in ("--set", o)]
        one, two = train_both(args + overrides + ["--mesh", mesh] + extra,
                              work / name.replace(" ", "_"), data_dir)
        dl, dp = compare(one, two)
        lines.append(f"| {name} | {dl:.1e} | {dp:.1e} |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


def median_speed(run_dir: Path) -> float:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return statistics.median([r["tokens_per_s"] for r in rows if "tokens_per_s" in r][1:])


def part_speed(work: Path, data_dir: Path) -> str:
    speeds: dict[str, list[float]] = {"1x8": [], "2x4": []}
    for k in range(3):
        one, two = train_both(SPEED, work / f"round{k}", data_dir)
        speeds["1x8"].append(median_speed(one))
        speeds["2x4"].append(median_speed(two))
        print(k, speeds, flush=True)
    ratios = [b / a for a, b in zip(speeds["1x8"], speeds["2x4"])]
    lines = [("| set-up | tokens/s (median of 3 runs; each the median of its logged windows) "
              "| runs |"), "|---|---|---|"]
    for name, v in speeds.items():
        lines.append(f"| {name} | {statistics.median(v):,.0f} | "
                     f"{', '.join(f'{x:,.0f}' for x in v)} |")
    lines.append(f"\n2x4 / 1x8 per round: {', '.join(f'{r:.2f}' for r in ratios)} "
                 f"(median {statistics.median(ratios):.2f}).")
    port = free_port()
    outs = [json.loads(out.strip().splitlines()[-1]) for out in run_procs(
        [[sys.executable, __file__, "--worker", str(i), str(port), "bytes"] for i in (0, 1)],
        4, data_dir)]
    lines += ["", ("Bytes of one training batch (train.batch_size=16, model.max_len=64, "
                   "windows) that each process loads, against the whole batch:"), "",
              "| mesh | process 0 | process 1 | whole batch | share per process |",
              "|---|---|---|---|---|"]
    for p0, p1 in zip(*outs):
        lines.append(f"| {p0['mesh']} | {p0['bytes']:,} | {p1['bytes']:,} | {p0['whole']:,} | "
                     f"{p0['bytes'] / p0['whole']:.2f} |")
    return "\n".join(lines)


def part_checkpoint(work: Path, data_dir: Path) -> str:
    port = free_port()
    two = run_procs([[sys.executable, __file__, "--worker", str(i), str(port), "checkpoint",
                      str(work / "two")] for i in (0, 1)], 4, data_dir)
    one = run_procs([[sys.executable, __file__, "--worker", "0", "0", "checkpoint",
                      str(work / "one")]], 8, data_dir)
    lines = [("| set-up | state MB | sync save: loop waits s | async save: loop waits s | "
              "async: on disk after s |"), "|---|---|---|---|---|"]
    for name, out in (("1x8", one[0]), ("2x4", two[0])):
        r = json.loads(out.strip().splitlines()[-1])
        lines.append(f"| {name} | {r['mb']:.0f} | {r['sync']:.2f} | {r['async_wait']:.2f} | "
                     f"{r['async_total']:.2f} |")
    return "\n".join(lines)


def part_kill(work: Path, data_dir: Path) -> str:
    lines = ["| killed | the other's exit status | stopped after s | its stderr |",
             "|---|---|---|---|"]
    args = ["--preset", "shakespeare-char", "--data", "pydoc", "--mesh", "data=8", "--steps",
            "400", "--set", "train.batch_size=16", "--set", "train.log_every=1",
            "--save-every", "2", "--failure-timeout", "30"]
    for victim in (1, 0):
        out = work / f"killed{victim}"
        port = free_port()
        procs = [subprocess.Popen(train_cmd(args + ["--out", str(out)] + cluster_flags(i, port)),
                                  env=env(4, data_dir), cwd=ROOT, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for i in (0, 1)]
        try:
            metrics = out / "metrics.jsonl"
            while not (metrics.exists() and metrics.read_text().count("train_loss") >= 5):
                if any(p.poll() is not None for p in procs):
                    raise SystemExit("a process ended early: "
                                     + " ".join(p.stderr.read() for p in procs))
                time.sleep(0.05)
            procs[victim].send_signal(signal.SIGKILL)
            t0 = time.monotonic()
            other = procs[1 - victim]
            _, err = other.communicate(timeout=300)
            took = time.monotonic() - t0
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        shown = " / ".join(err.strip().splitlines()) or "(nothing)"
        lines.append(f"| process {victim} | {other.returncode} | {took:.1f} | `{shown}` |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


# --- worker mode: one process of a cluster (or the single process of 1x8) -----------------------

def worker(process_id: int, port: int, part: str, *rest: str) -> None:
    from jaxllm.platform import configure_cpu

    configure_cpu()
    from jaxllm.parallel import distributed

    if port:
        distributed.initialize(f"127.0.0.1:{port}", 2, process_id, failure_timeout_s=120)
    result = {"bytes": worker_bytes, "checkpoint": worker_checkpoint}[part](*rest)
    print(json.dumps(result))
    distributed.finish()


def _plan(overrides: list[str]):
    import jax

    from jaxllm.config import apply_overrides, get_preset
    from jaxllm.optim import make_optimizer
    from jaxllm.parallel import plan as plan_lib
    from jaxllm.train.params import build_params_and_axes

    cfg = apply_overrides(get_preset("shakespeare-char"), overrides + ["model.vocab_size=72"])
    tx = make_optimizer(cfg.optim, cfg.train.steps)
    return cfg, plan_lib.plan_training(cfg, lambda rng: build_params_and_axes(cfg, rng), tx,
                                       jax.random.PRNGKey(0))


def worker_bytes() -> list[dict]:
    """This process's bytes of the batch at step 0 for each mesh, and the whole batch's."""
    import numpy as np

    from jaxllm.config import ParallelConfig
    from jaxllm.data import BatchIterator
    from jaxllm.parallel import plan as plan_lib

    it = BatchIterator([np.arange(10_000, dtype=np.int32) % 60], 16, 64, 0)
    out = []
    for mesh in ("data=8", "fsdp=8", "data=2,tensor=4", "tensor=8"):
        layout = plan_lib.layout_from_config(ParallelConfig(mesh=mesh))
        rows = plan_lib.process_rows(layout, 16)
        out.append({"mesh": mesh, "bytes": sum(x.nbytes for x in it.batch(0, rows).values()),
                    "whole": sum(x.nbytes for x in it.batch(0).values())})
    return out


def worker_checkpoint(directory: str) -> dict:
    import jax

    from jaxllm.train import Checkpoints

    _, plan = _plan(CKPT_MODEL)
    state = plan.state
    mb = sum(x.nbytes for x in jax.tree_util.tree_leaves(state)) / 2 ** 20
    out = {"mb": mb}
    for mode in ("sync", "async"):
        ckpts = Checkpoints(Path(directory) / mode, keep=2, async_save=mode == "async")
        waits, totals = [], []
        for step in range(1, 4):
            t0 = time.perf_counter()
            ckpts.save(step, state, {"step": step})
            waits.append(time.perf_counter() - t0)
            ckpts.wait()
            totals.append(time.perf_counter() - t0)
        ckpts.close()
        if mode == "sync":
            out["sync"] = statistics.median(waits)
        else:
            out["async_wait"], out["async_total"] = statistics.median(waits), statistics.median(
                totals)
    return out


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        worker(int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=["layouts", "speed", "checkpoint", "kill"])
    ap.add_argument("--append", action="store_true", help="append the table to RESULTS.md")
    ap.add_argument("--only", nargs="+", default=[], help="layouts: these rows only (names "
                    "as in LAYOUTS)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="jaxllm-multihost-"))
    try:
        load = os.getloadavg()
        parts = {"layouts": lambda w, d: part_layouts(w, d, args.only), "speed": part_speed,
                 "checkpoint": part_checkpoint, "kill": part_kill}
        table = parts[args.part](work, work / "data")
        load = f"{load[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    import jax

    cpu = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines()
        if line.startswith("Model name")), platform.processor())
    timed = "flock /tmp/jaxllm-bench.lock " if args.part in ("speed", "checkpoint") else ""
    header = (f"Command: `{timed}.venv/bin/python experiments/multihost.py "
              f"{args.part} --append`  \nDate: {time.strftime('%Y-%m-%d', time.gmtime())}; "
              f"CPU: {cpu}, {os.cpu_count()} cores shared with other jobs (load average {load}); "
              f"jax {jax.__version__}.\n")
    print(header + "\n" + table)
    if args.append:
        with open(ROOT / "experiments" / "RESULTS.md", "a") as f:
            f.write(f"\n### Multi-host: {args.part}\n\n{header}\n{table}\n")


if __name__ == "__main__":
    main()
