"""Many hosts, one mesh: joining JAX's multi-controller runtime (`jax.distributed`).

One process runs per host (or per accelerator group), each with its own devices. Once every
process has called `initialize`, `jax.devices()` lists all of them and the usual mesh spans the
hosts: the same `--mesh data=8` trains on 2 hosts x 4 devices as on 1 host x 8.

    from jaxllm.parallel import distributed
    distributed.initialize("10.0.0.1:1234", num_processes=2, process_id=0)   # host 0
    distributed.initialize("10.0.0.1:1234", num_processes=2, process_id=1)   # host 1
    distributed.initialize()    # Cloud TPU, SLURM, Open MPI, Kubernetes: JAX detects the rest

Call it first, before anything touches a device (the `jaxllm` command does, for `--distributed`).
Process 0 serves the coordinator at HOST:PORT; the others connect to it.

Three things are added to what `jax.distributed.initialize` does:

- Arguments are checked first, each mistake a one-line ConfigError, and joining is bounded: if
  not every process has joined within `join_timeout_s` (a coordinator that does not answer, a
  process that was never started), the process prints one line and exits 1 (JAX's own timeout
  aborts with a C++ stack trace; a timer thread fires first).
- A watchdog thread: each process bumps a heartbeat key in the coordinator's key-value store every
  `failure_timeout_s / 10` seconds and reads the others'. A peer whose heartbeat stops for
  `failure_timeout_s` (killed, crashed, its host gone), or that marked itself failed, or a
  coordinator that stops answering makes the process print one line naming the process and exit 1,
  instead of waiting forever in its next collective. JAX's own heartbeat timeout is kept longer.
  A process that ends cleanly marks itself done (`finish`), so a normal exit is not a death.
- On CPU the processes' collectives run over gloo (TCP); other backends bring their own.

`guard_stderr` (used by the command) keeps one more failure to one line: when the coordinator's
process dies, JAX's runtime aborts every other process at once with a multi-line C++ log.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading
import time
from typing import NamedTuple

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxllm.errors import ConfigError
from jaxllm.parallel import stderr_filter


class Cluster(NamedTuple):
    process_id: int
    num_processes: int
    coordinator: str


_watchdog: _Watchdog | None = None
_prefix = "jaxllm"  # how this process's lines start: "jaxllm train [process 1 of 2]"


def parse_coordinator(address: str) -> tuple[str, int]:
    """("10.0.0.1", 1234) from "10.0.0.1:1234" (or "[::1]:1234"); ConfigError otherwise."""
    host, sep, port = str(address).rpartition(":")
    ok = sep and host and port.isdigit() and 0 < int(port) < 65536
    if ok and host.startswith("["):
        ok = host.endswith("]") and len(host) > 2
    if not ok:
        raise ConfigError(f"--coordinator {address!r} is not HOST:PORT (for example "
                          f"10.0.0.1:1234, the address of process 0 and a free port)")
    return host.strip("[]"), int(port)


def check_arguments(coordinator: str | None, num_processes: int | None,
                    process_id: int | None) -> None:
    """The three arguments are all given (checked) or all None (auto-detection)."""
    given = {"--coordinator": coordinator, "--num-processes": num_processes,
             "--process-id": process_id}
    missing = [k for k, v in given.items() if v is None]
    if missing and len(missing) < 3:
        raise ConfigError(f"{', '.join(missing)} missing: give --coordinator, --num-processes "
                          f"and --process-id together, or none of them to let JAX detect the "
                          f"cluster (Cloud TPU, SLURM, Open MPI, Kubernetes)")
    if missing:
        return
    parse_coordinator(coordinator)
    if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
        raise ConfigError(f"--num-processes {num_processes!r}: must be an integer >= 1")
    if (isinstance(process_id, bool) or not isinstance(process_id, int)
            or not 0 <= process_id < num_processes):
        raise ConfigError(f"--process-id {process_id!r} is out of range for --num-processes "
                          f"{num_processes}; use 0 to {num_processes - 1}")


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, join_timeout_s: float = 300,
               failure_timeout_s: float = 30, name: str = "jaxllm") -> Cluster:
    """Join the cluster (see the module docstring). Returns this process's place in it. The
    lines it prints start with `name` and the process: "jaxllm train [process 1 of 2]: error:"."""
    global _watchdog, _prefix
    check_arguments(coordinator, num_processes, process_id)
    if failure_timeout_s <= 0 or join_timeout_s <= 0:
        raise ConfigError(f"the join and failure timeouts must be > 0 seconds (got "
                          f"{join_timeout_s} and {failure_timeout_s})")
    if jax.distributed.is_initialized():
        raise ConfigError("jax.distributed is already initialized in this process; call "
                          "initialize once")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # jaxllm has no preemption sync points; the service's polling only adds log noise
    jax.config.update("jax_enable_preemption_service", False)
    if process_id is not None:
        _prefix = f"{name} [process {process_id} of {num_processes}]"
    timer = threading.Timer(join_timeout_s, _exit_now, (
        (f"not every process joined the coordinator at {coordinator or '(detected)'} within "
         f"{join_timeout_s:g} s; start all of them with the same --coordinator and "
         f"--num-processes (process 0 serves the coordinator), and check the address"),))
    timer.daemon = True
    timer.start()
    try:
        jax.distributed.initialize(
            coordinator, num_processes, process_id,
            initialization_timeout=int(join_timeout_s) + 30,  # ours fires first
            heartbeat_timeout_seconds=int(max(100, 3 * failure_timeout_s)))
    except ValueError as e:  # auto-detection found nothing, or JAX refused an argument
        timer.cancel()
        if coordinator is None:
            raise ConfigError("--distributed without --coordinator, --num-processes and "
                              "--process-id needs a cluster JAX detects (Cloud TPU, SLURM, Open "
                              "MPI, Kubernetes) and none was found; pass the three flags") from None
        raise ConfigError(f"jax.distributed.initialize refused the arguments: {e}") from None
    except RuntimeError as e:
        timer.cancel()
        raise ConfigError(f"cannot join the cluster: {str(e).splitlines()[0]} (initialize must "
                          f"run before anything uses a device)") from None
    timer.cancel()
    # the runtime's client (its key-value store holds the heartbeats); JAX has no public name
    # for it, orbax reaches it the same way
    from jax._src.distributed import global_state

    cluster = Cluster(jax.process_index(), jax.process_count(), global_state.coordinator_address)
    _prefix = f"{name} [process {cluster.process_id} of {cluster.num_processes}]"
    if cluster.num_processes > 1:
        _watchdog = _Watchdog(global_state.client, cluster, failure_timeout_s)
        _watchdog.start()
        atexit.register(finish)  # before JAX's own exit handler (atexit runs last-in first)
        previous = sys.excepthook

        def fail(*exc):  # an uncaught exception: tell the peers, print it, exit at once
            finish(ok=False)
            previous(*exc)
            sys.stderr.flush()
            os._exit(1)  # JAX's shutdown would wait for peers that stop on seeing the failure

        sys.excepthook = fail
    return cluster


def finish(ok: bool = True) -> bool:
    """Mark this process done (or failed) for its peers' watchdogs and stop its own. Returns
    whether it had peers to tell (False without a cluster, or when already finished)."""
    global _watchdog
    if _watchdog is None:
        return False
    _watchdog.stop("done" if ok else "failed")
    _watchdog = None
    return True


def prefix() -> str:
    """How this process's error lines start ("jaxllm train [process 1 of 2]" once joined)."""
    return _prefix


def is_primary() -> bool:
    """True on the process that writes run files and reports (process 0)."""
    return jax.process_index() == 0


def fetch(tree):
    """jax.device_get that also works on a multi-process mesh: an array no process holds whole
    is read from this process's copy when it is replicated (metrics, the step counter) and
    gathered from every process otherwise (a collective: every process must call it)."""
    def one(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return jax.device_get(x)
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree_util.tree_map(one, tree)


def barrier(name: str) -> None:
    """Wait until every process got here (nothing to wait for with one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def _exit_now(message: str, code: int = 1) -> None:
    print(f"{_prefix}: error: {message}", file=sys.stderr, flush=True)
    os._exit(code)  # not sys.exit: the main thread may be blocked inside a collective


class _Watchdog(threading.Thread):
    """Heartbeats through the coordinator's key-value store; stops the process when a peer
    stops (see the module docstring)."""

    def __init__(self, client, cluster: Cluster, timeout: float):
        super().__init__(name="jaxllm-watchdog", daemon=True)
        self.client, self.cluster, self.timeout = client, cluster, timeout
        self.period = min(2.0, timeout / 10)
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

    def _key(self, kind: str, process: int | None = None) -> str:
        return f"jaxllm/{kind}/{self.cluster.process_id if process is None else process}"

    def stop(self, status: str) -> None:
        with self._lock:  # not in the middle of a check that would misread our own exit
            self._stop_event.set()
            try:
                self.client.key_value_set(self._key("exit"), status, allow_overwrite=True)
            except Exception:  # the coordinator is gone: nobody is left to tell
                pass

    def run(self) -> None:
        me, n = self.cluster.process_id, self.cluster.num_processes
        last_beat: dict[int, str] = {}
        last_change = {p: time.monotonic() for p in range(n) if p != me}
        beat = 0
        while not self._stop_event.is_set():
            with self._lock:
                if self._stop_event.is_set():
                    return
                beat += 1
                try:
                    self.client.key_value_set(self._key("beat"), str(beat), allow_overwrite=True)
                    beats = dict(self.client.key_value_dir_get("jaxllm/beat/"))
                    exits = dict(self.client.key_value_dir_get("jaxllm/exit/"))
                except Exception:
                    _exit_now(f"the coordinator ({self.cluster.coordinator}, process 0) "
                              f"stopped answering; stopping this process too")
                now = time.monotonic()
                for p in list(last_change):
                    status = exits.get(self._key("exit", p))
                    if status == "done":
                        del last_change[p]
                    elif status == "failed":
                        _exit_now(f"process {p} stopped with an error (its own log says "
                                  f"which); stopping this process too")
                    elif beats.get(self._key("beat", p)) != last_beat.get(p):
                        last_beat[p], last_change[p] = beats.get(self._key("beat", p)), now
                    elif now - last_change[p] > self.timeout:
                        _exit_now(f"process {p} stopped responding (no heartbeat for "
                                  f"{self.timeout:g} s: killed, crashed or its host is down); "
                                  f"stopping this process too")
            self._stop_event.wait(self.period)


# --- one-line errors when the coordinator dies ----------------------------------------------

def guard_stderr() -> None:
    """Send this process's stderr (file descriptor 2, C++ logs included) through a small child
    process (stderr_filter.py) that turns the runtime's abort into one line and outlives it."""
    message = "the coordinator (process 0) or the runtime stopped; stopping this process too"
    child = subprocess.Popen([sys.executable, stderr_filter.__file__, _prefix, message],
                             stdin=subprocess.PIPE, stdout=sys.stderr.fileno(),
                             stderr=subprocess.DEVNULL)
    sys.stderr.flush()
    os.dup2(child.stdin.fileno(), 2)
    child.stdin.close()
