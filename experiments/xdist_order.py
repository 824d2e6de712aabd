"""How long two pytest-xdist workers take for the whole suite when the test modules are handed out
in one order or another, from one measured run's per-module times (experiments/pytest_cputime.py's
CPUTIME_OUT files, one per worker).

    python experiments/xdist_order.py cpu.txt.gw0 cpu.txt.gw1

`--dist loadscope` hands whole modules to the workers: first one to each, then the next in the
queue to whichever worker is about to run out (xdist gives more when 2 or fewer of a worker's
tests are pending; taken here as when it finishes). This replays that with each module's
measured seconds (CPU, CPU with its subprocesses' CPU, or wall) for two queues: xdist's
default (--loadscope-reorder: the modules with the most tests first) and the collection order
(--no-loadscope-reorder, what `make test` uses). It prints when each worker would finish.
The replay ignores what the two workers do to each other (two cores, shared caches and tiny
runs), so it compares orders, and is no measurement of the suite's wall time.
"""

import argparse
import collections
import heapq
import re
from pathlib import Path


def read(paths, column):
    """{module: seconds}, {module: number of tests} from the FILE and TEST lines."""
    seconds, tests = {}, collections.Counter()
    for path in paths:
        for line in Path(path).read_text().splitlines():
            m = re.match(r"(FILE|TEST)\s+([\d.]+) cpu\s+([\d.]+) wall .*? (?:([\d.]+) sub )?"
                         r"\s*[\d.]+ s (.+)$", line)  # (a test id may hold spaces)
            if not m:
                continue
            kind, cpu, wall, sub, name = m.groups()
            module = name.split("::")[0].split("/")[-1]
            if kind == "FILE":
                seconds[module] = {"cpu": float(cpu), "wall": float(wall),
                                   "cpu+sub": float(cpu) + float(sub or 0)}[column]
            else:
                tests[module] += 1
    return seconds, tests


def replay(order, seconds, workers=2):
    """Greedy list scheduling: each module to the worker that is free first."""
    free = [(0.0, w) for w in range(workers)]
    for module in order:
        t, w = heapq.heappop(free)
        heapq.heappush(free, (t + seconds.get(module, 0.0), w))
    return sorted(t for t, _ in free)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="CPUTIME_OUT files of one run, one per worker")
    ap.add_argument("--column", choices=["cpu", "wall", "cpu+sub"], default="cpu",
                    help="cpu+sub: the test processes' CPU and their subprocesses' (files "
                         "written with the sub column)")
    args = ap.parse_args()

    seconds, tests = read(args.files, args.column)
    collected = sorted(seconds)  # pytest collects tests/ in file-name order
    default = sorted(collected, key=lambda m: -tests[m])  # stable: ties keep collection order
    print(f"{len(seconds)} modules, {sum(seconds.values()):.1f} {args.column} s in all; "
          f"an even split is {sum(seconds.values()) / 2:.1f} s per worker")
    for name, order in (("xdist default (most tests first)", default),
                        ("collection order", collected)):
        ends = replay(order, seconds)
        print(f"{name}: workers end at {ends[0]:.1f} and {ends[1]:.1f} s; the last module "
              f"handed out: {order[-1]}")


if __name__ == "__main__":
    main()
