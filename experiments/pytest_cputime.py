"""A pytest plugin: the CPU seconds of each test and each test file, for measuring test time on
a shared machine (process_time counts the CPU this process's threads used, which other jobs on
the machine change far less than wall time; a test's subprocesses are not counted).

    CPUTIME_OUT=cpu.txt PYTHONPATH=.:experiments .venv/bin/python -m pytest -p pytest_cputime tests/test_x.py

writes the session's CPU and wall seconds, one FILE line per test file and one TEST line per
test (CPU and wall seconds), largest first.
"""

import collections
import os
import time

import pytest

_SECONDS = collections.defaultdict(float)  # nodeid -> CPU s; "wall::" + nodeid -> wall s
_START = (time.process_time(), time.perf_counter())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    cpu, wall = time.process_time(), time.perf_counter()
    yield  # setup, call and teardown of the test
    _SECONDS[item.nodeid] += time.process_time() - cpu
    _SECONDS["wall::" + item.nodeid] += time.perf_counter() - wall


def pytest_sessionfinish(session):
    out = os.environ.get("CPUTIME_OUT")
    if not out:
        return
    tests = {k: v for k, v in _SECONDS.items() if not k.startswith("wall::")}
    files = collections.defaultdict(float)
    for nodeid, cpu in tests.items():
        files[nodeid.split("::")[0]] += cpu
    lines = [f"session cpu {time.process_time() - _START[0]:.1f} s, "
             f"wall {time.perf_counter() - _START[1]:.1f} s"]
    lines += [f"FILE {cpu:8.1f} {name}" for name, cpu in sorted(files.items(), key=lambda x: -x[1])]
    lines += [f"TEST {cpu:8.1f} cpu {_SECONDS['wall::' + k]:8.1f} wall {k}"
              for k, cpu in sorted(tests.items(), key=lambda x: -x[1])]
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
