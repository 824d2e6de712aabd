"""The pieces of jaxllm.parallel.distributed that need no cluster: the stderr filter that turns
the runtime's abort (recorded from a run whose coordinator was killed) into one line.
The cluster itself is tested with real processes in test_multihost.py."""

import pytest

from jaxllm.parallel import stderr_filter

PREFIX, MESSAGE = b"jaxllm train [process 1 of 2]", b"the coordinator stopped"
# stderr of process 1 when process 0 was killed (jax 0.10.2, CPU), shortened stack trace
ABORT = (
    b"E1204 05:23:57.459353    2436 coordination_service_agent.cc:289] Polled an error from "
    b"coordination service (this can be an error from this or another task).\n"
    b"F1204 05:23:57.459419    2436 client.h:80] Terminating process because the JAX distributed "
    b"service detected fatal errors. This most likely indicates that another task died; see the "
    b"other task logs for more details. absl::Status: UNAVAILABLE: Failed to send RPC to "
    b"coordination service.\n"
    b"Additional GRPC error information from remote target coordination_service while calling "
    b"/xla.coordination.CoordinationService/PollForError:\n"
    b":UNKNOWN:Error received from peer  {grpc_message:\"Socket closed\", grpc_status:14}\n"
    b"*** Check failure stack trace: ***\n"
    b"    @     0x7f0706040634  absl::lts_20260107::log_internal::LogMessage::SendToLog()\n"
    b"    @     0x7f07021040ee  xla::CoordinationServiceAgent::SetError()\n")
WARNING = (b"W1204 05:20:01.000001    2436 gloo_communicator.cc:12] slow connection\n"
           b"a continuation line of that warning\n")


def run_filter(chunks, monkeypatch):
    """The filter's output for stderr arriving as chunks (None: a pause longer than HOLD_S)."""
    monkeypatch.setattr(stderr_filter, "HOLD_S", 0.0)  # a pause releases held lines at once
    feed, out = list(chunks) + [b""], []
    stderr_filter.filter_stream(lambda timeout: feed.pop(0), out.append, PREFIX, MESSAGE)
    return b"".join(out)


def test_the_runtime_abort_becomes_one_line(monkeypatch):
    before = b"step 6: val_loss 4.3225\n"
    got = run_filter([before, WARNING, None, ABORT[:150], ABORT[150:], b"more noise\n"],
                     monkeypatch)
    assert got == before + WARNING + PREFIX + b": error: " + MESSAGE + b"\n"


def test_everything_else_passes_unchanged(monkeypatch):
    text = [b"plain line\n", b"\r 40%|####      | 4/10", b"\r 50%|#####     | 5/10", b"\n",
            WARNING, None, b"last line without newline"]
    assert run_filter(text, monkeypatch) == b"".join(t for t in text if t)


@pytest.mark.parametrize("after", [ABORT, b"runtime noise\n"])
def test_nothing_after_our_own_error_line(monkeypatch, after):
    ours = PREFIX + b": error: process 0 stopped responding\n"
    assert run_filter([b"ok\n", ours, after], monkeypatch) == b"ok\n" + ours
