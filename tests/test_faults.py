"""Faults a loop must survive as asyncio survives them (issue 13, part 4)."""

from __future__ import annotations

import errno
import os
import resource
import socket

from nethelpers import net  # noqa: F401 - net is a fixture


def test_accept_out_of_fds_keeps_serving(loop, net, exc_log):
    """EMFILE on accept: asyncio reports 'socket.accept() out of system resource' to
    the exception handler, stops accepting for a second and then resumes; the server
    keeps serving the connections it has, and accepts the waiting ones once fds are
    free again."""
    factory = net.factory()
    server = net.server(factory)
    address = server.sockets[0].getsockname()
    first = net.socket(blocking=True)
    first.connect(address)
    net.until(lambda: len(factory.made) == 1)
    # The waiting client's socket exists before the table is full: its connect
    # completes in the listener's backlog, only the server's accept() fails.
    waiting = net.socket(blocking=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fillers: list[int] = []
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 8, hard))
        try:
            while True:
                fillers.append(os.dup(0))
        except OSError as exc:
            assert exc.errno == errno.EMFILE
        waiting.connect(address)
        net.until(lambda: exc_log.contexts)
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    # One report per accept() tried in that readiness event (asyncio tries up to
    # the backlog's number before the reader is removed).
    contexts = exc_log.take()
    assert contexts
    for ctx in contexts:
        assert ctx["message"] == "socket.accept() out of system resource"
        assert isinstance(ctx["exception"], OSError)
        assert ctx["exception"].errno == errno.EMFILE
    # The connection it had is still served while accepting waits...
    first.sendall(b"still here")
    net.until(lambda: factory.made[0].data == b"still here")
    # ...and, after asyncio's one-second pause, the waiting one is accepted.
    net.until(lambda: len(factory.made) == 2)
    waiting.sendall(b"hello")
    net.until(lambda: factory.made[1].data == b"hello")
