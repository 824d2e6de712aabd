"""One process of a two-process test cluster (tests/test_multihost.py starts two of these).

    python tests/multihost_worker.py PROCESS_ID PORT TASKS_JSON

Each process has 4 CPU devices, joins the cluster with jaxllm.parallel.distributed.initialize,
then runs the tasks in order (one jax.distributed session for all of them):

    {"train": DIR, "overrides": [...]}         jaxllm.train.train on a preset + overrides
    {"restore": DIR, "mesh": SPEC, "out": NPZ}  restore DIR's latest checkpoint onto SPEC's
                                                layout; process 0 saves the params to NPZ
    {"cli": [ARGS], "out": TXT}                run a `jaxllm` verb (joined already); process 0
                                                saves what it printed to TXT
    {"error": JSON, "overrides": [...]}         train on them, expecting a ConfigError:
                                                its message is saved to JSON
    {"audit": JSON}                            record every file this process opens for
                                                writing (all tasks), saved to JSON at the end
    {"batch": JSON, "mesh": SPEC, "tokens": [...], "batch_size": B, "seq_len": T, "seed": S,
     "step": N}                                 load this process's rows of a BatchIterator
                                                batch, assemble the global batch on SPEC's mesh
                                                (plan.place_batch) and reduce it across both
                                                processes; each saves what it saw to JSON
                                                ({i}: the process id)

Kept apart from the test module so that the pytest process (8 devices) never imports it.
"""

import gc
import json
import os
import sys
import time

# 4 devices in this process; the other flags it was started with (tests/conftest.py's) kept
os.environ["XLA_FLAGS"] = " ".join(
    [f for f in os.environ.get("XLA_FLAGS", "").split()
     if not f.startswith("--xla_force_host_platform_device_count")]
    + ["--xla_force_host_platform_device_count=4"])

from jaxllm.platform import configure_cpu  # noqa: E402

configure_cpu()
gc.set_threshold(100_000, 50, 1000)  # as tests/conftest.py sets it (GC_THRESHOLD), and why
gc.freeze()

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND


def main(process_id: int, port: int, tasks: list[dict]) -> None:
    from jaxllm.parallel import distributed

    written: list[str] = []
    audit = next((t["audit"] for t in tasks if "audit" in t), None)
    if audit:
        def hook(event, args):
            if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)) and (
                    (isinstance(args[1], str) and any(c in args[1] for c in "wax+"))
                    or (isinstance(args[2], int) and args[2] & WRITE_FLAGS)):
                written.append(os.fsdecode(args[0]))
        sys.addaudithook(hook)
    distributed.initialize(f"127.0.0.1:{port}", 2, process_id, join_timeout_s=120,
                           failure_timeout_s=60)
    print(f"started and joined: {time.process_time():.1f} s CPU", flush=True)

    def train(overrides, out):  # imported here: a `batch` task needs no model code
        from jaxllm.config import apply_overrides, get_preset
        from jaxllm.train import train as train_run

        train_run(apply_overrides(get_preset("shakespeare-char"), overrides), out,
                  progress=False)

    for task in tasks:
        started, cpu = time.perf_counter(), time.process_time()
        if "train" in task:
            train(task["overrides"], task["train"])
        elif "batch" in task:
            batch(process_id, task)
        elif "restore" in task:
            restore(task["restore"], task["mesh"], task["out"])
        elif "cli" in task:
            cli(task["cli"], task["out"])
        elif "error" in task:
            from jaxllm.errors import ConfigError
            try:
                train(task["overrides"], os.path.join(os.path.dirname(task["error"]), "never"))
                message = None
            except ConfigError as e:
                message = str(e)
            with open(task["error"], "w") as f:
                json.dump(message, f)
        # each task's wall and CPU seconds in the log (logs/<i>.out), to see where the test's
        # time goes (CPU: the same on a busy machine)
        print(f"{json.dumps(task)[:120]}: {time.perf_counter() - started:.1f} s wall, "
              f"{time.process_time() - cpu:.1f} s CPU", flush=True)
    if audit:
        with open(audit, "w") as f:
            json.dump(sorted(set(written)), f)
    distributed.finish()


def cli(argv: list[str], out: str) -> None:
    """What a verb prints, as `jaxllm VERB ... --distributed` runs it after joining."""
    import contextlib
    import io

    from jaxllm.cli.main import VERBS, build_parser
    from jaxllm.parallel import distributed

    args = build_parser().parse_args(argv)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        VERBS[args.verb].run(args)
    if distributed.is_primary():
        with open(out, "w") as f:
            f.write(printed.getvalue())


def batch(process_id: int, task: dict) -> None:
    """This process's rows of one batch, the global batch they assemble into, and a weighted sum
    of it computed on the mesh (a reduction across both processes)."""
    from types import SimpleNamespace

    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxllm.data.batches import BatchIterator
    from jaxllm.parallel import distributed
    from jaxllm.parallel import plan as plan_lib
    from jaxllm.parallel.layout import Layout
    from jaxllm.parallel.mesh import make_mesh

    layout = Layout.build(make_mesh(task["mesh"]))
    n = task["batch_size"]
    rows = plan_lib.process_rows(layout, n)
    batches = BatchIterator([np.asarray(task["tokens"], np.int32)], n, task["seq_len"],
                            task["seed"])
    local = batches.batch(task["step"], rows)
    # place_batch reads only plan.setup.shardings.batch: the batch sharding a training plan
    # gives, without building a model
    shardings = SimpleNamespace(batch=lambda x: layout.sharding(layout.batch_spec(x.ndim)))
    placed = plan_lib.place_batch(SimpleNamespace(setup=SimpleNamespace(shardings=shardings)),
                                  local, rows, n)
    weights = jnp.arange(1, n + 1, dtype=jnp.int32)[:, None]
    total = jax.jit(lambda b: jnp.sum(b["inputs"] * weights) - jnp.sum(b["targets"]))(placed)
    whole = distributed.fetch(placed)
    with open(task["batch"].format(process_id), "w") as f:
        json.dump({"rows": rows.tolist(),
                   "loaded_bytes": sum(v.nbytes for v in local.values()),
                   "total": int(distributed.fetch(total)),
                   "batch": {k: v.tolist() for k, v in whole.items()}}, f)


def restore(run_dir: str, mesh: str, out: str) -> None:
    """The run's latest checkpoint restored onto another layout, gathered, saved by process 0."""
    from dataclasses import replace

    import jax
    import numpy as np

    from jaxllm.optim import make_optimizer
    from jaxllm.parallel import distributed
    from jaxllm.parallel import plan as plan_lib
    from jaxllm.train import Checkpoints, RunDir
    from jaxllm.train.params import build_params_and_axes

    run = RunDir(run_dir)
    cfg = run.load_config()
    cfg = replace(cfg, parallel=replace(cfg.parallel, mesh=mesh))
    tx = make_optimizer(cfg.optim, cfg.train.steps)
    plan = plan_lib.plan_training(cfg, lambda rng: build_params_and_axes(cfg, rng), tx,
                                  jax.random.PRNGKey(1))
    ckpts = Checkpoints(run.checkpoints, read_only=True)
    state, _ = ckpts.restore(ckpts.latest_step(), plan.state)
    ckpts.close()
    params = distributed.fetch(state.params)
    if distributed.is_primary():
        flat = jax.tree_util.tree_leaves_with_path(params)
        np.savez(out, **{jax.tree_util.keystr(k): v for k, v in flat})


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3]))
