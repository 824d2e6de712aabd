"""The flags that join a multi-host cluster, shared by train, eval and generate.

  jaxllm train --distributed --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 0 ...
  jaxllm train --distributed ...      (Cloud TPU, SLURM, Open MPI, Kubernetes: detected)

The same command runs on every host (only --process-id differs). `join` runs before the verb
touches a device; every process's error lines name it ("jaxllm train [process 1 of 2]: error:
..."), only process 0 prints results, and a process that stops with an error exits at once
(its peers' watchdogs see it and stop too) instead of waiting for them at JAX's shutdown.
"""

from __future__ import annotations

import argparse
import os
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("several hosts (jax.distributed; the same command on every host)")
    g.add_argument("--distributed", action="store_true",
                   help="join a multi-host cluster before anything else; without the three "
                        "flags below, JAX detects it (Cloud TPU, SLURM, Open MPI, Kubernetes)")
    g.add_argument("--coordinator", metavar="HOST:PORT",
                   help="address of process 0 and a free port (process 0 serves it)")
    g.add_argument("--num-processes", type=int, metavar="N", help="processes in the cluster")
    g.add_argument("--process-id", type=int, metavar="I", help="this process: 0..N-1")
    g.add_argument("--join-timeout", type=float, default=300, metavar="SECONDS",
                   help="give up (one line, exit 1) if not every process joined by then "
                        "(default 300)")
    g.add_argument("--failure-timeout", type=float, default=30, metavar="SECONDS",
                   help="stop (one line, exit 1) when another process has been silent this "
                        "long (default 30)")


def join(args, label: str) -> str:
    """Join the cluster if --distributed; return the label this process's error lines start
    with."""
    from jaxllm.errors import ConfigError

    if not getattr(args, "distributed", False):
        given = [f for f in ("coordinator", "num_processes", "process_id")
                 if getattr(args, f, None) is not None]
        if given:
            raise ConfigError(f"--{given[0].replace('_', '-')} needs --distributed")
        return label
    from jaxllm.parallel import distributed

    cluster = distributed.initialize(
        args.coordinator, args.num_processes, args.process_id, name=label,
        join_timeout_s=args.join_timeout, failure_timeout_s=args.failure_timeout)
    if cluster.process_id != 0:
        distributed.guard_stderr()  # the runtime's abort when process 0 dies: one line
        sys.stdout.flush()  # process 0 reports (C++ libraries' output on fd 1 included)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    return distributed.prefix()


def leave(args, code: int) -> None:
    """Tell the other processes how this one ended; after an error, exit at once (JAX's
    shutdown would wait for peers that may be stuck or gone)."""
    if not getattr(args, "distributed", False):
        return
    from jaxllm.parallel import distributed

    if distributed.finish(ok=code == 0) and code:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
