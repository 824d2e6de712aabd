"""The stderr of a distributed process, with the runtime's abort turned into one line.

When the coordinator's process (process 0) dies, JAX's runtime aborts every other process at
once, from C++, with a multi-line log and a stack trace; Python cannot catch it. A process that
calls `distributed.guard_stderr` sends its stderr through this script, run as a child process
(`python stderr_filter.py PREFIX MESSAGE`; it imports nothing of jaxllm or JAX), which copies
everything through except that abort: its log lines, the fatal one and what follows become
PREFIX: error: MESSAGE. XLA log lines are held back for HOLD_S seconds in case the fatal one
follows. Once a line of ours says ": error: ", the rest is dropped: the process is ending and
what follows is the runtime's noise about it. SIGINT is ignored (Ctrl-C reaches the whole process
group); the filter ends when the process's last copy of the pipe closes.
"""

from __future__ import annotations

import os
import re
import select
import signal
import sys
import time

# XLA's C++ log lines: "E1204 05:23:57.459353    2436 file.cc:289] message"
XLA_LOG = re.compile(rb"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ [\w./-]+:\d+\] ")
XLA_FATAL = b"Terminating process because the JAX distributed service detected fatal errors"
HOLD_S = 1.0
CONTINUATION_S = 0.05  # a line this soon after a held log line belongs to it


def filter_stream(read, write, prefix: bytes, message: bytes) -> None:
    """Copy from read(timeout) (bytes; b"" at the end; None when timeout seconds passed) to
    write(bytes), as the module docstring says."""
    held: list[tuple[float, bytes]] = []
    partial, done = b"", False

    def release():
        for _, line in held:
            write(line)
        held.clear()

    while True:
        chunk = read(HOLD_S / 4 if held else None)
        now = time.monotonic()
        if chunk == b"":
            if not done:
                release()
                write(partial)
            return
        if chunk is None or done:
            if held and now - held[0][0] > HOLD_S:
                release()  # no fatal line followed
            continue
        lines = (partial + chunk).split(b"\n")
        partial = lines.pop()
        for line in (x + b"\n" for x in lines):
            if XLA_FATAL in line:
                held.clear()
                write(prefix + b": error: " + message + b"\n")
                done = True
                break
            if XLA_LOG.match(line) or (held and now - held[-1][0] < CONTINUATION_S):
                held.append((now, line))
                continue
            release()
            write(line)
            if line.startswith(prefix) and b": error: " in line:
                done = True
                break
        if not done and not held and partial and not re.match(rb"[IWEF]\d", partial):
            write(partial)  # a progress bar redraws without newlines: pass it on now
            partial = b""


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    prefix, message = sys.argv[1].encode(), sys.argv[2].encode()

    def read(timeout):
        ready, _, _ = select.select([0], [], [], timeout)
        return os.read(0, 65536) if ready else None

    def write(data: bytes):
        while data:
            data = data[os.write(1, data):]

    filter_stream(read, write, prefix, message)


if __name__ == "__main__":
    main()
