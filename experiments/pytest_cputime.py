"""A pytest plugin: the CPU seconds and XLA compiles of each test and each test file, for
measuring test time on a shared machine (process_time counts the CPU this process's threads
used, which other jobs on the machine change far less than wall time; the CPU of the
subprocesses a test started and waited for is counted apart, as `sub`; the number of compiles
does not depend on the load at all).

    CPUTIME_OUT=cpu.txt PYTHONPATH=.:experiments .venv/bin/python -m pytest -p pytest_cputime tests/test_x.py

writes the session's CPU and wall seconds, one FILE line per test file and one TEST line per
test, largest CPU first: CPU and wall seconds, XLA programs compiled, persistent-cache hits
(programs read back instead), the CPU seconds of the test's subprocesses (`sub`: e.g. the
cluster runs' processes), and the seconds the compiles and reads took. Under pytest-xdist
(`-n 2`) each worker writes its own file, CPUTIME_OUT with `.gw0`, `.gw1`, ... appended.
"""

import collections
import os
import resource
import time

import pytest

# nodeid -> CPU s; "wall::" + nodeid -> wall s; "sub::" + nodeid -> its subprocesses' CPU s
_SECONDS = collections.defaultdict(float)
_COMPILES = collections.defaultdict(lambda: [0, 0, 0.0])  # nodeid -> [compiles, hits, seconds]


def _children_cpu() -> float:
    """CPU seconds of this process's ended and waited-for subprocesses so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


_START = (time.process_time(), time.perf_counter(), _children_cpu())
_CURRENT = [None]  # the nodeid of the running test
_LISTENING = [False]

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"  # a compile or a cache read
CACHE_HIT = "/jax/compilation_cache/cache_hits"


def _on_duration(event, seconds, **_):
    if event == BACKEND_COMPILE and _CURRENT[0]:
        counts = _COMPILES[_CURRENT[0]]
        counts[0] += 1
        counts[2] += seconds


def _on_event(event, **_):
    if event == CACHE_HIT and _CURRENT[0]:
        counts = _COMPILES[_CURRENT[0]]
        counts[0] -= 1  # read back, not compiled
        counts[1] += 1


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if not _LISTENING[0]:
        from jax import monitoring

        monitoring.register_event_duration_secs_listener(_on_duration)
        monitoring.register_event_listener(_on_event)
        _LISTENING[0] = True
    _CURRENT[0] = item.nodeid
    cpu, wall, sub = time.process_time(), time.perf_counter(), _children_cpu()
    yield  # setup, call and teardown of the test
    _SECONDS[item.nodeid] += time.process_time() - cpu
    _SECONDS["wall::" + item.nodeid] += time.perf_counter() - wall
    _SECONDS["sub::" + item.nodeid] += _children_cpu() - sub
    _CURRENT[0] = None


def _columns(cpu, wall, counts, sub):
    return (f"{cpu:8.1f} cpu {wall:8.1f} wall {counts[0]:5d} compiled {counts[1]:4d} hits "
            f"{sub:7.1f} sub {counts[2]:7.1f} s")


def pytest_sessionfinish(session):
    out = os.environ.get("CPUTIME_OUT")
    tests = {k: v for k, v in _SECONDS.items() if not k.startswith(("wall::", "sub::"))}
    if not out or not tests:  # (an xdist controller runs no test)
        return
    if "PYTEST_XDIST_WORKER" in os.environ:
        out = f"{out}.{os.environ['PYTEST_XDIST_WORKER']}"
    files = collections.defaultdict(lambda: [0.0, 0.0, [0, 0, 0.0], 0.0])
    for nodeid, cpu in tests.items():
        f = files[nodeid.split("::")[0]]
        f[0] += cpu
        f[1] += _SECONDS["wall::" + nodeid]
        f[2] = [a + b for a, b in zip(f[2], _COMPILES[nodeid])]
        f[3] += _SECONDS["sub::" + nodeid]
    lines = [(f"session cpu {time.process_time() - _START[0]:.1f} s, "
              f"wall {time.perf_counter() - _START[1]:.1f} s, "
              f"subprocesses' cpu {_children_cpu() - _START[2]:.1f} s")]
    lines += [f"FILE {_columns(*v)} {name}"
              for name, v in sorted(files.items(), key=lambda x: -x[1][0])]
    lines += [f"TEST {_columns(cpu, _SECONDS['wall::' + k], _COMPILES[k], _SECONDS['sub::' + k])}"
              f" {k}" for k, cpu in sorted(tests.items(), key=lambda x: -x[1])]
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
