"""Shared pieces of the networking tests: recording protocols, cleanup, addresses, TLS.

Everything a test opens goes through a `Net` (the `net` fixture below, which each
test_net_* module imports) so that teardown closes it before the loop is closed:
with filterwarnings=error, a transport or socket left for the garbage collector is a
ResourceWarning, i.e. a failure.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import socket
import ssl
import sys
import tempfile

import pytest

from helpers import DEADLINE, run_briefly

CERTS = os.path.join(os.path.dirname(__file__), "certs")
CA_FILE = os.path.join(CERTS, "ca.pem")
SERVER_CERT = os.path.join(CERTS, "server.pem")
SERVER_KEY = os.path.join(CERTS, "server.key")

FD_DIR = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"
PY = sys.version_info[:3]


def open_fds() -> int:
    return len(os.listdir(FD_DIR))


def _ipv6_loopback_works() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


HAS_IPV6 = _ipv6_loopback_works()
needs_ipv6 = pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 loopback (::1) on this host")

HOSTS = [
    pytest.param("127.0.0.1", id="ipv4"),
    pytest.param("::1", id="ipv6", marks=needs_ipv6),
]


def server_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(SERVER_CERT, SERVER_KEY)
    return ctx


def client_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=CA_FILE)


def refused_tcp_address(family=socket.AF_INET):
    """An address on which a TCP connect is refused, and the socket holding it.

    A bound socket that does not listen answers SYNs with RST on Linux and the BSDs,
    so the port stays ours (no race with another process) and connect fails at once.
    The caller closes the returned socket.
    """
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind((host, 0))
    return s.getsockname()[:2], s


def unused_udp_address():
    """An address of a UDP port that was just closed (ICMP port unreachable)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()


class Recorder(asyncio.Protocol):
    """A stream protocol recording what the transport does to it.

    `events` keeps the order of callbacks ('made', 'data', 'eof', 'lost', 'pause',
    'resume'); consecutive data_received calls show as one 'data'.
    """

    def __init__(self, loop, eof_result=None, net=None):
        self.loop = loop
        self.transport = None
        self.events: list[str] = []
        self.data = bytearray()
        self.chunks = 0
        self.eof_result = eof_result
        self.lost_excs: list = []
        self.made = loop.create_future()
        self.eof = loop.create_future()
        self.lost = loop.create_future()
        self.write_sizes: list[tuple[str, int]] = []
        if net is not None:
            net.protocols.append(self)

    def _event(self, name):
        if name == "data" and self.events and self.events[-1] == "data":
            return
        self.events.append(name)

    def connection_made(self, transport):
        self._event("made")
        self.transport = transport
        if not self.made.done():
            self.made.set_result(transport)

    def data_received(self, data):
        assert type(data) is bytes, type(data)
        assert data, "data_received with empty data"
        self._event("data")
        self.chunks += 1
        self.data += data

    def eof_received(self):
        self._event("eof")
        if not self.eof.done():
            self.eof.set_result(None)
        return self.eof_result

    def connection_lost(self, exc):
        self._event("lost")
        self.lost_excs.append(exc)
        if not self.lost.done():
            self.lost.set_result(exc)

    def pause_writing(self):
        self._event("pause")
        self.write_sizes.append(("pause", self.transport.get_write_buffer_size()))

    def resume_writing(self):
        self._event("resume")
        self.write_sizes.append(("resume", self.transport.get_write_buffer_size()))


class Echo(Recorder):
    """Echoes what it receives; on EOF keeps the transport open until its echo is out,
    then closes (eof_received returns True and close() flushes)."""

    def data_received(self, data):
        super().data_received(data)
        self.transport.write(data)

    def eof_received(self):
        super().eof_received()
        self.transport.close()
        return True


class Net:
    """Tracks what a test opens on `loop` and closes all of it at teardown."""

    def __init__(self, loop):
        self.loop = loop
        self.protocols: list[Recorder] = []
        self.transports: list = []
        self.servers: list = []
        self.sockets: list[socket.socket] = []
        self.files: list = []
        self._tmpdirs: list[str] = []

    # --- factories ----------------------------------------------------------
    def proto(self, cls=Recorder, **kw):
        return cls(self.loop, net=self, **kw)

    def factory(self, cls=Recorder, **kw):
        """A protocol factory whose protocols are tracked; `.made` lists them."""
        made = []

        def make():
            p = cls(self.loop, net=self, **kw)
            made.append(p)
            return p

        make.made = made
        return make

    def track(self, obj):
        if isinstance(obj, socket.socket):
            self.sockets.append(obj)
        elif hasattr(obj, "serve_forever"):
            self.servers.append(obj)
        elif isinstance(obj, asyncio.StreamWriter):
            self.transports.append(obj.transport)
        elif hasattr(obj, "get_extra_info"):
            self.transports.append(obj)
        else:
            self.files.append(obj)
        return obj

    def socket(self, *args, blocking=False, **kw):
        s = socket.socket(*args, **kw)
        s.setblocking(blocking)
        return self.track(s)

    def socketpair(self, *args, blocking=False):
        a, b = socket.socketpair(*args)
        a.setblocking(blocking)
        b.setblocking(blocking)
        self.track(a)
        self.track(b)
        return a, b

    def tmpdir(self) -> str:
        """A short temporary directory (AF_UNIX paths are limited to ~100 bytes)."""
        d = tempfile.mkdtemp(prefix="fl-", dir="/tmp" if os.path.isdir("/tmp") else None)
        self._tmpdirs.append(d)
        return d

    def run(self, coro, timeout=DEADLINE):
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def until(self, predicate, timeout=DEADLINE):
        from helpers import run_until

        run_until(self.loop, predicate, timeout)

    # --- servers and connections ----------------------------------------------
    def server(self, factory, host="127.0.0.1", port=0, **kw):
        srv = self.run(self.loop.create_server(factory, host, port, **kw))
        return self.track(srv)

    def connect(self, factory, host, port, **kw):
        tr, pr = self.run(self.loop.create_connection(factory, host, port, **kw))
        self.track(tr)
        return tr, pr

    # --- teardown -------------------------------------------------------------
    def close_all(self):
        loop = self.loop
        if loop.is_closed():
            return
        transports = list(self.transports)
        transports += [p.transport for p in self.protocols if p.transport is not None]
        seen = set()
        for tr in transports:
            if id(tr) in seen:
                continue
            seen.add(id(tr))
            # Not abort() after connection_lost: asyncio's socket abort() then fails (a
            # transport closed with a buffer never counts itself lost). close() is a
            # no-op then, except on 3.10's TLS transport, which warns in __del__ unless
            # close() was called, even after the peer closed.
            if tr.get_protocol() is None:
                tr.close()
                continue
            if tr.is_closing() and tr.get_extra_info("pipe") is not None:
                continue  # asyncio's pipe abort() is not idempotent: a second lost call
            # A read-only transport (a read pipe) has no abort().
            tr.abort() if hasattr(tr, "abort") else tr.close()
        for srv in self.servers:
            srv.close()
        for srv in self.servers:
            try:
                self.run(srv.wait_closed(), timeout=10)
            except Exception:  # the test already failed; do not hide why
                pass
        # Protocols still attached to their transport (not replaced by set_protocol).
        pending = [p.lost for p in self.protocols
                   if p.transport is not None and not p.lost.done()
                   and p.transport.get_protocol() is p]
        if pending:
            try:
                self.run(asyncio.wait(pending), timeout=10)
            except Exception:
                pass
        run_briefly(loop, 3)
        for s in self.sockets:
            s.close()
        for f in self.files:
            f.close()
        for d in self._tmpdirs:
            shutil.rmtree(d, ignore_errors=True)
        # Idempotent: a test may call it itself (to count fds) before teardown does.
        self.protocols, self.transports, self.servers = [], [], []
        self.sockets, self.files, self._tmpdirs = [], [], []


@pytest.fixture
def net(loop):
    n = Net(loop)
    yield n
    n.close_all()


def fail_unless_errno(exc, *codes):
    assert isinstance(exc, OSError), repr(exc)
    assert exc.errno in codes, (exc, [errno.errorcode[c] for c in codes])


class BufferedRecorder(Recorder, asyncio.BufferedProtocol):
    """Recorder as a BufferedProtocol: reads land in `buf` (of `bufsize` bytes)."""

    def __init__(self, loop, bufsize=65536, eof_result=None, net=None):
        super().__init__(loop, eof_result=eof_result, net=net)
        self.buf = bytearray(bufsize)
        self.sizehints: list[int] = []
        self.updates: list[int] = []

    def get_buffer(self, sizehint):
        self.sizehints.append(sizehint)
        return memoryview(self.buf)

    def buffer_updated(self, nbytes):
        assert nbytes > 0
        self._event("data")
        self.updates.append(nbytes)
        self.data += self.buf[:nbytes]

    def data_received(self, data):  # pragma: no cover - must not be called
        raise AssertionError("data_received called on a BufferedProtocol")


def without_flow(events):
    """`events` without 'pause'/'resume', consecutive 'data' merged again."""
    out = []
    for e in events:
        if e in ("pause", "resume") or (e == "data" and out and out[-1] == "data"):
            continue
        out.append(e)
    return out
