"""Differential robustness of the networking API: odd arguments, same outcome on cy, py and asyncio.

The networking twin of test_bad_input_diff.py. Each case is one odd call (a socket
that is not one, a closed or blocking or SSL socket, a buffer of the wrong type, a
negative size, a listening socket to read from, a UDP socket to accept on, a sock of
the wrong type for create_connection/create_server/create_unix_*/
create_datagram_endpoint, odd hosts, ports, timeouts and delays, start_tls and
sendfile on transports that do not support them, pipes that are not pipes, and
transport methods given odd data), made in one of three modes: a normal loop, a loop
in debug mode, or a closed loop (a coroutine is then stepped by hand, with the closed
loop as the running loop: nothing can run it). Transport methods need a running loop
to make the transport, so their cases run in the normal and debug modes only; calls
that fail in their argument checks before anything is scheduled run on a normal and a
closed loop (debug mode changes nothing there), the rest in all three modes.

The call is made on stock asyncio's loop and on a fastloop loop over each core. What
must agree is the *type* of the exception raised (or the summary of the result), the
exception types the loop's exception handler received, what the protocols saw
(connection_lost / error_received exception types, EOF), the warnings emitted
(ResourceWarning for what the loop itself leaked) and the number of fds left open
(none, for the cores). Every coroutine runs under a deadline; every socket,
transport, server, file and pipe a case makes is closed before the loop is.

Most of the orchestration (create_connection, create_server, sock_connect,
sendfile, ...) is asyncio's own code bound to the running interpreter (_net.py), so
the comparison is always with the running interpreter's asyncio, whose checks differ
between versions; the cases for which it matters:

- create_datagram_endpoint(reuse_address=...): 3.10 raises ValueError for True and
  warns (DeprecationWarning) for False; 3.11+ have no such parameter (TypeError).
- ssl_shutdown_timeout exists from 3.11 (TypeError on 3.10).
- keep_alive (create_server) exists from 3.13 (TypeError before).
- asyncio.trsock.TransportSocket has the deprecated socket methods (recv, send, ...)
  on 3.10 only (a DeprecationWarning, then the call); AttributeError on 3.11+.

Where stock asyncio itself is not the reference, `aio_skip_reason` says why and the
cores must agree with each other. A real divergence is listed in `KNOWN_DIVERGENCES`
with what was seen; its case is an xfail(strict=True) that only passes as expected
when exactly the listed cores diverge (one test per case runs both cores). Messages
are not compared; `message_differences()` lists where they differ (run
`python tests/test_net_bad_input.py`; `--all` prints every outcome that differs).
"""

from __future__ import annotations

import array
import asyncio
import gc
import math
import os
import random
import re
import shutil
import socket
import ssl
import sys
import tempfile
import warnings
from dataclasses import dataclass, field

import pytest

try:
    from helpers import loop_class
except ImportError:  # run as a script
    sys.path.insert(0, os.path.dirname(__file__))
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "src"))
    from helpers import loop_class

from nethelpers import CA_FILE, SERVER_CERT, SERVER_KEY

SEED = 20250301
MODES = ("normal", "debug", "closed")
RUNNING = ("normal", "debug")
# Argument checks that run before anything is registered or scheduled: debug mode
# changes nothing there (and costs a stack extraction per handle), so such calls run
# on a normal and a closed loop; calls that get further also run in debug mode.
CHECKS = ("normal", "closed")
PY = sys.version_info[:2]
FD_DIR = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"

# Bounds a case that hangs; a case that is meant to wait says so with a short timeout.
DEADLINE = 5.0
SHORT = 0.05


# --- contexts (made once: loading certificates is not free) ---------------------

_CTX: dict[str, ssl.SSLContext] = {}


def bare_client_ctx() -> ssl.SSLContext:
    """A client context with nothing loaded: enough to wrap a socket that never shakes hands."""
    if "bare" not in _CTX:
        _CTX["bare"] = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return _CTX["bare"]


def client_ctx() -> ssl.SSLContext:
    if "client" not in _CTX:
        _CTX["client"] = ssl.create_default_context(cafile=CA_FILE)
    return _CTX["client"]


def server_ctx() -> ssl.SSLContext:
    if "server" not in _CTX:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(SERVER_CERT, SERVER_KEY)
        _CTX["server"] = ctx
    return _CTX["server"]


# --- what a case's objects report -----------------------------------------------


class Rec(asyncio.Protocol, asyncio.DatagramProtocol):
    """Stream and datagram protocol recording what happens to it, as short strings."""

    def __init__(self):
        self.transport = None
        self.events: list[str] = []

    def _ev(self, name):
        if not self.events or self.events[-1] != name:
            self.events.append(name)

    def connection_made(self, transport):
        self.transport = transport
        self._ev("made")

    def data_received(self, data):
        self._ev("data")

    def eof_received(self):
        self._ev("eof")

    def datagram_received(self, data, addr):
        self._ev("dgram")

    def error_received(self, exc):
        self._ev(f"error:{type(exc).__name__}")

    def connection_lost(self, exc):
        self._ev(f"lost:{type(exc).__name__ if exc is not None else None}")

    def pause_writing(self):
        self._ev("pause")

    def resume_writing(self):
        self._ev("resume")


class FakeSock:
    """Not a socket: fileno() returns `fd`, every I/O method would block forever."""

    family = socket.AF_UNIX
    type = socket.SOCK_STREAM
    proto = 0

    def __init__(self, fd):
        self._fd = fd

    def fileno(self):
        return self._fd

    def gettimeout(self):
        return 0.0

    def _block(self, *args):
        raise BlockingIOError(11, "would block")

    recv = recv_into = recvfrom = recvfrom_into = send = sendto = accept = _block
    connect = _block

    def __repr__(self):
        return f"<FakeSock fd={self._fd!r}>"


class SockSub(socket.socket):
    """A socket subclass whose I/O methods raise: the cores' plain-socket fast path must not apply."""

    def recv(self, *args):
        raise ZeroDivisionError("recv")

    def recv_into(self, *args):
        raise ZeroDivisionError("recv_into")

    def send(self, *args):
        raise ZeroDivisionError("send")

    def sendto(self, *args):
        raise ZeroDivisionError("sendto")

    def recvfrom(self, *args):
        raise ZeroDivisionError("recvfrom")

    def recvfrom_into(self, *args):
        raise ZeroDivisionError("recvfrom_into")

    def accept(self):
        raise ZeroDivisionError("accept")

    def connect(self, *args):
        raise ZeroDivisionError("connect")


class Env:
    """Everything one call uses, made on demand and released by close() (no fd outlives a case)."""

    def __init__(self, loop):
        self.loop = loop
        self.socks: list = []
        self.files: list = []
        self.fds: list[int] = []
        self.dirs: list[str] = []
        self.transports: list = []
        self.servers: list = []
        self.protocols: list[Rec] = []

    # --- plain resources --------------------------------------------------------
    def track(self, obj):
        if isinstance(obj, socket.socket):
            self.socks.append(obj)
        elif hasattr(obj, "serve_forever"):
            self.servers.append(obj)
        elif hasattr(obj, "get_extra_info"):
            self.transports.append(obj)
        else:
            self.files.append(obj)
        return obj

    def sock(self, family=socket.AF_INET, type=socket.SOCK_STREAM, blocking=False, cls=socket.socket):
        s = cls(family, type)
        s.setblocking(blocking)
        return self.track(s)

    def pair(self, data=b"hello", blocking=False):
        """A connected AF_UNIX stream pair; `data` is waiting to be read on the first."""
        a, b = socket.socketpair()
        self.track(a)
        self.track(b)
        a.setblocking(blocking)
        b.setblocking(False)
        if data:
            b.send(data)
        return a, b

    def tcp_pair(self, data=b"hello"):
        lst = self.listener(pending=False)
        a = self.sock()
        a.setblocking(True)
        a.connect(lst.getsockname())
        a.setblocking(False)
        lst.setblocking(True)
        b, _ = lst.accept()
        self.track(b)
        b.setblocking(False)
        if data:
            b.send(data)
        return a, b

    def listener(self, pending=True, family=socket.AF_INET):
        """A listening TCP socket on loopback; with `pending`, a connection waits to be accepted."""
        s = self.sock(family)
        s.bind(("127.0.0.1", 0) if family == socket.AF_INET else ("::1", 0))
        s.listen(8)
        if pending:
            c = self.sock(family, blocking=True)
            c.connect(s.getsockname())
        return s

    def port(self):
        return self.listener(pending=False).getsockname()[1]

    def refused_port(self):
        """A port that refuses connections (bound, not listening)."""
        s = self.sock()
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

    def udp(self, data=b"dgram"):
        """A bound UDP socket with one datagram waiting (from a peer that stays open)."""
        u = self.sock(type=socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        if data is not None:
            peer = self.sock(type=socket.SOCK_DGRAM)
            peer.sendto(data, u.getsockname())
        return u

    def closed_sock(self, type=socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET, type)
        s.close()
        return s

    def ssl_sock(self):
        raw = socket.socket()
        s = bare_client_ctx().wrap_socket(raw, server_hostname="localhost", do_handshake_on_connect=False)
        s.setblocking(False)
        return self.track(s)

    def sub_sock(self):
        a, b = socket.socketpair()
        self.track(b)
        sub = SockSub(a.family, a.type, fileno=a.detach())
        sub.setblocking(False)
        return self.track(sub)

    def pipe(self):
        r, w = os.pipe()
        self.fds += [r, w]
        return r, w

    def pipe_file(self, end="r"):
        """A file object over one end of a new pipe (the other end is tracked as an fd)."""
        r, w = os.pipe()
        if end == "r":
            os.write(w, b"p")
            self.fds.append(w)
            return self.track(open(r, "rb", buffering=0))
        self.fds.append(r)
        return self.track(open(w, "wb", buffering=0))

    def closed_fd(self):
        r, w = os.pipe()
        os.close(r)
        os.close(w)
        return w

    def bfile(self, size=1000):
        f = self.track(tempfile.TemporaryFile())
        f.write(b"x" * size)
        f.seek(0)
        return f

    def tfile(self):
        f = self.track(tempfile.TemporaryFile("w+"))
        f.write("text" * 100)
        f.seek(0)
        return f

    def closed_file(self):
        f = tempfile.TemporaryFile()
        f.close()
        return f

    def tmpdir(self):
        d = tempfile.mkdtemp(prefix="flbi-", dir="/tmp" if os.path.isdir("/tmp") else None)
        self.dirs.append(d)
        return d

    def unix_path(self):
        return os.path.join(self.tmpdir(), "s")

    def unix_listener(self):
        s = self.sock(socket.AF_UNIX)
        s.bind(self.unix_path())
        s.listen(8)
        return s

    def proto(self):
        p = Rec()
        self.protocols.append(p)
        return p

    # --- transports (need the loop running) -----------------------------------------
    async def stream(self, data=b""):
        """A socket transport over a socketpair; returns (transport, protocol, peer socket)."""
        a, b = self.pair(data=data)
        tr, pr = await self.loop.create_connection(self.proto, sock=a)
        self.track(tr)
        return tr, pr, b

    async def dgram(self, connected=True):
        peer = self.udp(data=None)
        kw = {"remote_addr": peer.getsockname()} if connected else {"local_addr": ("127.0.0.1", 0)}
        tr, pr = await self.loop.create_datagram_endpoint(self.proto, **kw)
        self.track(tr)
        return tr, pr, peer

    async def read_pipe(self):
        f = self.pipe_file("r")
        tr, pr = await self.loop.connect_read_pipe(self.proto, f)
        self.track(tr)
        return tr, pr

    async def write_pipe(self):
        f = self.pipe_file("w")
        tr, pr = await self.loop.connect_write_pipe(self.proto, f)
        self.track(tr)
        return tr, pr

    async def tls_port(self):
        srv = await self.loop.create_server(self.proto, "127.0.0.1", 0, ssl=server_ctx())
        self.track(srv)
        return srv.sockets[0].getsockname()[1]

    # --- release ----------------------------------------------------------------
    def events(self):
        return tuple(",".join(p.events) for p in self.protocols)

    def close(self):
        loop = self.loop
        if not loop.is_closed():
            for tr in self.transports:
                if not tr.is_closing():
                    tr.abort() if hasattr(tr, "abort") else tr.close()
            for p in self.protocols:
                tr = p.transport
                if tr is not None and not tr.is_closing():
                    tr.abort() if hasattr(tr, "abort") else tr.close()
            for srv in self.servers:
                srv.close()
            _spin(loop, 3)
            for srv in self.servers:
                try:
                    loop.run_until_complete(asyncio.wait_for(srv.wait_closed(), 2))
                except Exception:  # noqa: BLE001 - a case result, not this cleanup
                    pass
            _spin(loop, 2)
        for s in self.socks:
            s.close()
        for f in self.files:
            f.close()
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:  # a transport closed it already (os.close of its pipe)
                pass
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)


def _spin(loop, n):
    for _ in range(n):
        loop.stop()
        loop.run_forever()


# --- cases ---------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    op: str
    what: str
    mode: str
    call: object = field(compare=False)  # call(loop, env) -> value, or a coroutine
    timeout: float = DEADLINE

    @property
    def id(self):
        return f"{self.op}[{self.what}]-{self.mode}"


_CALLS: list[tuple] = []


def add(op, what, call, modes=MODES, timeout=DEADLINE):
    _CALLS.append((op, what, call, modes, timeout))


# Odd sockets for the sock_* coroutines: (label, factory(env), modes).
# "blocking" has data waiting (or room to write), so asyncio does not block on it
# outside debug mode; "fake_*" sockets would block forever, so the coroutine has to
# register its fd with the loop.
BAD_SOCKS = [
    ("int_fd", lambda e: e.pair()[0].fileno()),
    ("None", lambda e: None),
    ("closed", lambda e: e.closed_sock()),
    ("blocking", lambda e: e.pair(blocking=True)[0]),
    ("ssl_socket", lambda e: e.ssl_sock()),
    ("listening", lambda e: e.listener(pending=False)),
    ("listening_pending", lambda e: e.listener()),
    ("udp", lambda e: e.udp()),
    ("unconnected_tcp", lambda e: e.sock()),
    ("subclass_raising", lambda e: e.sub_sock()),
    ("TransportSocket", lambda e: asyncio.trsock.TransportSocket(e.pair()[0])),
    ("fake_fd=-1", lambda e: FakeSock(-1)),
    ("fake_fd=closed", lambda e: FakeSock(e.closed_fd())),
    ("fake_fd=str", lambda e: FakeSock("3")),
    ("fake_fd=2**70", lambda e: FakeSock(2**70)),
    ("fake_fd=regular_file", lambda e: FakeSock(e.bfile().fileno())),
]
# Fake sockets over a valid fd that never gets ready: registered, then the deadline.
WAITING_SOCKS = [
    ("fake_fd=pipe_read_end", lambda e: FakeSock(e.pipe()[0])),
]

# The socket checks are shared: the *_into/to/connect variants get the socks that
# reach a different code path in them.
FEW_SOCKS = {"None", "closed", "blocking", "ssl_socket", "listening", "udp", "fake_fd=-1",
             "fake_fd=regular_file", "subclass_raising", "unconnected_tcp"}
for label, mk in BAD_SOCKS:
    # Nobody connects to a listening socket without a pending connection: accept waits.
    add("sock_accept", f"sock={label}", lambda lp, e, mk=mk: lp.sock_accept(mk(e)),
        timeout=SHORT if label == "listening" else DEADLINE)
    add("sock_recv", f"sock={label}", lambda lp, e, mk=mk: lp.sock_recv(mk(e), 10))
    add("sock_recv_into", f"sock={label}", lambda lp, e, mk=mk: lp.sock_recv_into(mk(e), bytearray(10)))
    add("sock_recvfrom", f"sock={label}", lambda lp, e, mk=mk: lp.sock_recvfrom(mk(e), 10))
    add("sock_sendall", f"sock={label}", lambda lp, e, mk=mk: lp.sock_sendall(mk(e), b"data"))
    if label not in FEW_SOCKS:
        continue
    add("sock_recvfrom_into", f"sock={label}",
        lambda lp, e, mk=mk: lp.sock_recvfrom_into(mk(e), bytearray(10)))
    add("sock_sendto", f"sock={label}",
        lambda lp, e, mk=mk: lp.sock_sendto(mk(e), b"data", ("127.0.0.1", e.udp(None).getsockname()[1])))
    add("sock_connect", f"sock={label}",
        lambda lp, e, mk=mk: lp.sock_connect(mk(e), ("127.0.0.1", e.port())))
for label, mk in WAITING_SOCKS:
    for op, call in [
        ("sock_recv", lambda lp, e, mk=mk: lp.sock_recv(mk(e), 10)),
        ("sock_sendall", lambda lp, e, mk=mk: lp.sock_sendall(mk(e), b"data")),
        ("sock_accept", lambda lp, e, mk=mk: lp.sock_accept(mk(e))),
    ]:
        add(op, f"sock={label}", call, timeout=SHORT)


async def _cancelled_leaves_no_reader(lp, e, op):
    """A sock_* call on a fd that never gets ready, cancelled: nothing stays registered."""
    r, w = e.pipe()
    if op == "sock_sendall":
        fd = w
        os.set_blocking(w, False)
        try:
            while True:
                os.write(w, b"x" * 65536)
        except BlockingIOError:
            pass
        coro = lp.sock_sendall(FakeSock(w), b"data")
    else:
        fd = r
        coro = getattr(lp, op)(FakeSock(r), *( (10,) if op != "sock_accept" else ()))
    task = lp.create_task(coro)
    await asyncio.sleep(0)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    remove = lp.remove_writer if op == "sock_sendall" else lp.remove_reader
    return ("still registered", remove(fd))


for op in ("sock_recv", "sock_recvfrom", "sock_sendall", "sock_accept"):
    add(op, "cancelled_then_remove", lambda lp, e, op=op: _cancelled_leaves_no_reader(lp, e, op),
        modes=RUNNING)

# Odd sizes and buffers on good sockets.
SIZES = [("-1", -1), ("0", 0), ("2**70", 2**70), ("maxsize", sys.maxsize), ("1.5", 1.5),
         ("str", "1"), ("None", None), ("True", True), ("-2**70", -(2**70))]
for label, n in SIZES:
    add("sock_recv", f"n={label}", lambda lp, e, n=n: lp.sock_recv(e.pair()[0], n))
    add("sock_recvfrom", f"bufsize={label}", lambda lp, e, n=n: lp.sock_recvfrom(e.udp(), n))
add("sock_recv", "n=0,nothing_waiting", lambda lp, e: lp.sock_recv(e.pair(data=b"")[0], 0), timeout=SHORT)
add("sock_recv", "tcp,n=0,nothing_waiting", lambda lp, e: lp.sock_recv(e.tcp_pair(data=b"")[0], 0),
    timeout=SHORT)
add("sock_recv_into", "buf=empty,nothing_waiting",
    lambda lp, e: lp.sock_recv_into(e.pair(data=b"")[0], bytearray()), timeout=SHORT)
add("sock_recv_into", "tcp,buf=empty,nothing_waiting",
    lambda lp, e: lp.sock_recv_into(e.tcp_pair(data=b"")[0], bytearray()), timeout=SHORT)
add("sock_recv", "peer_closed", lambda lp, e: (lambda a, b: (b.close(), lp.sock_recv(a, 10))[1])(*e.pair(b"")))

BUFS = [
    ("bytes", lambda: b"0123456789"),
    ("str", lambda: "0123456789"),
    ("None", lambda: None),
    ("int", lambda: 10),
    ("empty_bytearray", lambda: bytearray()),
    ("readonly_memoryview", lambda: memoryview(bytearray(10)).toreadonly()),
    ("noncontiguous_memoryview", lambda: memoryview(bytearray(20))[::2]),
    ("released_memoryview", lambda: _released()),
    ("array_i", lambda: array.array("i", [0] * 4)),
    ("list", lambda: [0] * 10),
]


def _released():
    m = memoryview(bytearray(10))
    m.release()
    return m


for label, mk in BUFS:
    add("sock_recv_into", f"buf={label}", lambda lp, e, mk=mk: lp.sock_recv_into(e.pair()[0], mk()))
    if label in ("bytes", "noncontiguous_memoryview", "str"):
        add("sock_recv_into", f"tcp,buf={label}", lambda lp, e, mk=mk: lp.sock_recv_into(e.tcp_pair()[0], mk()))
    add("sock_recvfrom_into", f"buf={label}", lambda lp, e, mk=mk: lp.sock_recvfrom_into(e.udp(), mk()))
for label, nb in [("-1", -1), ("11>len", 11), ("1.5", 1.5), ("str", "1"), ("2**70", 2**70), ("None", None)]:
    add("sock_recvfrom_into", f"nbytes={label}",
        lambda lp, e, nb=nb: lp.sock_recvfrom_into(e.udp(), bytearray(10), nb))

DATAS = [
    ("str", lambda: "data"),
    ("int", lambda: 5),
    ("None", lambda: None),
    ("list", lambda: [b"d"]),
    ("empty", lambda: b""),
    ("bytearray", lambda: bytearray(b"data")),
    ("noncontiguous_memoryview", lambda: memoryview(b"0123456789")[::2]),
    ("released_memoryview", lambda: _released()),
    ("array_i", lambda: array.array("i", [1, 2, 3])),
]
for label, mk in DATAS:
    # array('i'): len() counts items, send() counts bytes; asyncio then spins on the
    # writer until the deadline (as the cores do): short timeout.
    t = SHORT if label == "array_i" else DEADLINE
    add("sock_sendall", f"data={label}", lambda lp, e, mk=mk: lp.sock_sendall(e.pair()[0], mk()), timeout=t)
    if label in ("str", "noncontiguous_memoryview", "bytearray"):
        add("sock_sendall", f"tcp,data={label}", lambda lp, e, mk=mk: lp.sock_sendall(e.tcp_pair()[0], mk()))
    add("sock_sendto", f"data={label}",
        lambda lp, e, mk=mk: lp.sock_sendto(e.udp(None), mk(), e.udp(None).getsockname()))
add("sock_sendall", "peer_closed",
    lambda lp, e: (lambda a, b: (b.close(), lp.sock_sendall(a, b"x" * 100))[1])(*e.pair(b"")))
add("sock_sendall", "unconnected_udp", lambda lp, e: lp.sock_sendall(e.udp(None), b"data"))

ADDRS = [
    ("str", "127.0.0.1"),
    ("None", None),
    ("1-tuple", ("127.0.0.1",)),
    ("3-tuple", ("127.0.0.1", 9, 0)),
    ("port=70000", ("127.0.0.1", 70000)),
    ("port=-1", ("127.0.0.1", -1)),
    ("port=str", ("127.0.0.1", "x")),
    ("host=256.0.0.1", ("256.0.0.1", 9)),
    ("host=int", (5, 9)),
    ("ipv6_on_ipv4", ("::1", 9, 0, 0)),
]
for label, addr in ADDRS:
    add("sock_sendto", f"addr={label}", lambda lp, e, addr=addr: lp.sock_sendto(e.udp(None), b"x", addr))
    add("sock_connect", f"addr={label}", lambda lp, e, addr=addr: lp.sock_connect(e.sock(), addr))
add("sock_sendto", "connected_udp_other_addr",
    lambda lp, e: _connected_udp_sendto(e, lp))


def _connected_udp_sendto(e, lp):
    u = e.udp(None)
    u.connect(e.udp(None).getsockname())
    return lp.sock_sendto(u, b"x", e.udp(None).getsockname())


add("sock_connect", "refused", lambda lp, e: lp.sock_connect(e.sock(), ("127.0.0.1", e.refused_port())))
add("sock_connect", "udp", lambda lp, e: lp.sock_connect(e.udp(None), ("127.0.0.1", e.port())))
add("sock_connect", "already_connected", lambda lp, e: lp.sock_connect(e.tcp_pair()[0], ("127.0.0.1", e.port())))
add("sock_connect", "unix_sock_inet_addr", lambda lp, e: lp.sock_connect(e.sock(socket.AF_UNIX), ("127.0.0.1", 9)))
add("sock_connect", "unix_missing_path", lambda lp, e: lp.sock_connect(e.sock(socket.AF_UNIX), e.unix_path()))
add("sock_accept", "unix_listener_pending",
    lambda lp, e: (lambda s: (e.sock(socket.AF_UNIX, blocking=True).connect(s.getsockname()),
                              lp.sock_accept(s))[1])(e.unix_listener()))

# sock_sendfile(sock, file, offset, count, fallback)
SENDFILE_ARGS = [
    ("file=int", lambda e: (5, 0, None)),
    ("file=None", lambda e: (None, 0, None)),
    ("file=text", lambda e: (e.tfile(), 0, None)),
    ("file=closed", lambda e: (e.closed_file(), 0, None)),
    ("file=BytesIO", lambda e: (__import__("io").BytesIO(b"x" * 100), 0, None)),
    ("file=pipe", lambda e: (e.pipe_file("r"), 0, 1)),
    ("offset=-1", lambda e: (e.bfile(), -1, None)),
    ("offset=1.5", lambda e: (e.bfile(), 1.5, None)),
    ("offset=str", lambda e: (e.bfile(), "0", None)),
    ("offset=past_end", lambda e: (e.bfile(), 10**6, None)),
    ("count=0", lambda e: (e.bfile(), 0, 0)),
    ("count=-1", lambda e: (e.bfile(), 0, -1)),
    ("count=1.5", lambda e: (e.bfile(), 0, 1.5)),
    ("count=str", lambda e: (e.bfile(), 0, "1")),
]
for label, mk in SENDFILE_ARGS:
    add("sock_sendfile", label, lambda lp, e, mk=mk: lp.sock_sendfile(e.pair(b"")[0], *mk(e)),
        modes=MODES if label in ("file=BytesIO", "file=pipe", "offset=past_end") else CHECKS)
    if label.startswith("file=") and label not in ("file=BytesIO", "file=pipe"):
        add("sock_sendfile", label + ",fallback=False",
            lambda lp, e, mk=mk: lp.sock_sendfile(e.pair(b"")[0], *mk(e), fallback=False), modes=CHECKS)
add("sock_sendfile", "file=pipe,fallback=False",
    lambda lp, e: lp.sock_sendfile(e.pair(b"")[0], e.pipe_file("r"), 0, 1, fallback=False))
for label, mk in [("udp", lambda e: e.udp(None)), ("ssl_socket", lambda e: e.ssl_sock()),
                  ("closed", lambda e: e.closed_sock()), ("int", lambda e: 5),
                  ("blocking", lambda e: e.pair(b"", blocking=True)[0]),
                  ("listening", lambda e: e.listener(pending=False))]:
    add("sock_sendfile", f"sock={label}", lambda lp, e, mk=mk: lp.sock_sendfile(mk(e), e.bfile()))


# --- create_connection ------------------------------------------------------------

def _cc(**kw):
    """create_connection(Rec, **kw) where `host`/`port` of "L" mean the env's listener."""

    def call(lp, e):
        kw2 = dict(kw)
        for k, v in kw2.items():
            if callable(v) and k not in ("protocol_factory",):
                kw2[k] = v(e)
        if kw2.get("port") == "L":
            kw2["port"] = e.port()
        factory = kw2.pop("protocol_factory", e.proto)
        host = kw2.pop("host", None)
        port = kw2.pop("port", None)
        return lp.create_connection(factory, host, port, **kw2)

    return call


H = "127.0.0.1"
CC = [
    ("host_without_port", dict(host=H)),
    ("port_without_host", dict(port="L")),
    ("nothing", dict()),
    ("sock_and_host", dict(host=H, port="L", sock=lambda e: e.tcp_pair()[0])),
    ("sock_and_port", dict(port="L", sock=lambda e: e.tcp_pair()[0])),
    ("sock=udp", dict(sock=lambda e: e.udp(None))),
    ("sock=int", dict(sock=lambda e: 5)),
    ("sock=closed", dict(sock=lambda e: e.closed_sock())),
    ("sock=unconnected_tcp", dict(sock=lambda e: e.sock())),
    ("sock=listening", dict(sock=lambda e: e.listener())),
    ("sock=ssl_socket", dict(sock=lambda e: e.ssl_sock())),
    ("sock=blocking_pair", dict(sock=lambda e: e.pair(blocking=True)[0])),
    ("sock=subclass_raising", dict(sock=lambda e: e.sub_sock())),
    ("ssl=True,sock=udp", dict(ssl=True, sock=lambda e: e.udp(None))),
    ("ssl=True,sock=udp,server_hostname", dict(ssl=True, sock=lambda e: e.udp(None), server_hostname="x")),
    ("ssl=ctx,sock=udp,server_hostname",
     dict(ssl=lambda e: client_ctx(), sock=lambda e: e.udp(None), server_hostname="x")),
    ("ssl=ctx,sock=int,server_hostname", dict(ssl=lambda e: client_ctx(), sock=lambda e: 5, server_hostname="x")),
    ("ssl=True,no_host", dict(ssl=True, sock=lambda e: e.tcp_pair()[0])),
    ("ssl=int", dict(host=H, port="L", ssl=5)),
    ("ssl=str", dict(host=H, port="L", ssl="ctx")),
    ("ssl=False,server_hostname", dict(host=H, port="L", ssl=False, server_hostname="x")),
    ("server_hostname_without_ssl", dict(host=H, port="L", server_hostname="x")),
    ("ssl_handshake_timeout_without_ssl", dict(host=H, port="L", ssl_handshake_timeout=1)),
    ("ssl_shutdown_timeout_without_ssl", dict(host=H, port="L", ssl_shutdown_timeout=1)),
    ("ssl_handshake_timeout=0", dict(host=H, port="L", ssl=True, ssl_handshake_timeout=0)),
    ("ssl_handshake_timeout=-1", dict(host=H, port="L", ssl=True, ssl_handshake_timeout=-1)),
    ("ssl_handshake_timeout=str", dict(host=H, port="L", ssl=True, ssl_handshake_timeout="1")),
    ("ssl_shutdown_timeout=0", dict(host=H, port="L", ssl=True, ssl_shutdown_timeout=0)),
    ("ssl_shutdown_timeout=-1", dict(host=H, port="L", ssl=True, ssl_shutdown_timeout=-1)),
    ("happy_eyeballs_delay=-1", dict(host=H, port="L", happy_eyeballs_delay=-1)),
    ("happy_eyeballs_delay=0", dict(host=H, port="L", happy_eyeballs_delay=0)),
    ("happy_eyeballs_delay=nan", dict(host=H, port="L", happy_eyeballs_delay=math.nan)),
    ("happy_eyeballs_delay=inf", dict(host=H, port="L", happy_eyeballs_delay=math.inf)),
    ("happy_eyeballs_delay=str", dict(host=H, port="L", happy_eyeballs_delay="0.1")),
    ("happy_eyeballs_delay=str,refused", dict(host=H, port=lambda e: e.refused_port(), happy_eyeballs_delay="x")),
    ("interleave=0", dict(host=H, port="L", interleave=0)),
    ("interleave=-1", dict(host=H, port="L", interleave=-1)),
    ("interleave=str", dict(host=H, port="L", interleave="1")),
    ("local_addr=256.0.0.1", dict(host=H, port="L", local_addr=("256.0.0.1", 0))),
    ("local_addr=str", dict(host=H, port="L", local_addr="127.0.0.1")),
    ("local_addr=1-tuple", dict(host=H, port="L", local_addr=("127.0.0.1",))),
    ("local_addr=port-1", dict(host=H, port="L", local_addr=("127.0.0.1", -1))),
    ("local_addr=in_use", dict(host=H, port="L", local_addr=lambda e: e.listener(pending=False).getsockname())),
    ("local_addr=ipv6_for_ipv4", dict(host=H, port="L", local_addr=("::1", 0))),
    ("family=AF_INET6,ipv4_host", dict(host=H, port="L", family=socket.AF_INET6)),
    ("family=AF_UNIX", dict(host=H, port="L", family=socket.AF_UNIX)),
    ("proto=-1", dict(host=H, port="L", proto=-1)),
    ("flags=str", dict(host=H, port="L", flags="x")),
    ("host=int", dict(host=5, port="L")),
    ("host=empty", dict(host="", port="L")),
    ("host=256.0.0.1", dict(host="256.0.0.1", port=80)),
    ("port=-1", dict(host=H, port=-1)),
    ("port=70000", dict(host=H, port=70000)),
    ("port=float", dict(host=H, port=1.5)),
    ("port=str_service", dict(host=H, port="no-such-service")),
    ("refused", dict(host=H, port=lambda e: e.refused_port())),
    ("all_errors,refused", dict(host=H, port=lambda e: e.refused_port(), all_errors=True)),
    ("factory_not_callable", dict(host=H, port="L", protocol_factory=5)),
    ("factory_raises", dict(host=H, port="L", protocol_factory=lambda: 1 / 0)),
    ("factory_returns_None", dict(host=H, port="L", protocol_factory=lambda: None)),
]
# The create_connection calls that get past the argument checks (they connect, or
# make a transport of an odd socket) also run in debug mode.
CC_DEBUG = {"host_without_port", "sock=unconnected_tcp", "sock=listening", "sock=ssl_socket",
            "sock=blocking_pair", "sock=subclass_raising", "ssl=int", "happy_eyeballs_delay=nan",
            "happy_eyeballs_delay=str", "interleave=-1", "local_addr=in_use", "refused",
            "factory_raises", "factory_returns_None"}
for label, kw in CC:
    add("create_connection", label, _cc(**kw), modes=MODES if label in CC_DEBUG else CHECKS)


async def _tls_connect(lp, e, **kw):
    port = await e.tls_port()
    tr, pr = await lp.create_connection(e.proto, "127.0.0.1", port, ssl=client_ctx(),
                                        server_hostname="localhost", **kw)
    e.track(tr)
    return tr, pr


for label, t in [("nan", math.nan), ("inf", math.inf), ("1e308", 1e308), ("True", True)]:
    add("create_connection", f"tls,ssl_handshake_timeout={label}",
        lambda lp, e, t=t: _tls_connect(lp, e, ssl_handshake_timeout=t), modes=RUNNING)


# --- create_server ------------------------------------------------------------------

def _cs(**kw):
    def call(lp, e):
        kw2 = {k: (v(e) if callable(v) else v) for k, v in kw.items()}
        host = kw2.pop("host", None)
        port = kw2.pop("port", None)
        return lp.create_server(e.proto, host, port, **kw2)

    return call


CS = [
    ("host=256.0.0.1", dict(host="256.0.0.1", port=0)),
    ("host=int", dict(host=5, port=0)),
    ("host=list_with_bad", dict(host=[H, "256.0.0.1"], port=0)),
    ("host=empty_list", dict(host=[], port=0)),
    ("host=list_of_int", dict(host=[5], port=0)),
    ("port=-1", dict(host=H, port=-1)),
    ("port=70000", dict(host=H, port=70000)),
    ("port=str", dict(host=H, port="x")),
    ("port=float", dict(host=H, port=1.5)),
    ("port=in_use", dict(host=H, port=lambda e: e.listener(pending=False).getsockname()[1], reuse_address=False)),
    ("port_only", dict(port=0)),
    ("nothing", dict()),
    ("sock_and_host", dict(host=H, sock=lambda e: e.listener(pending=False))),
    ("sock_and_port", dict(port=0, sock=lambda e: e.listener(pending=False))),
    ("sock=udp", dict(sock=lambda e: e.udp(None))),
    ("sock=int", dict(sock=lambda e: 5)),
    ("sock=closed", dict(sock=lambda e: e.closed_sock())),
    ("sock=unbound_tcp", dict(sock=lambda e: e.sock())),
    ("sock=connected_tcp", dict(sock=lambda e: e.tcp_pair()[0])),
    ("sock=ssl_socket", dict(sock=lambda e: e.ssl_sock())),
    ("backlog=-1", dict(host=H, port=0, backlog=-1)),
    ("backlog=0", dict(host=H, port=0, backlog=0)),
    ("backlog=str", dict(host=H, port=0, backlog="1")),
    ("backlog=None", dict(host=H, port=0, backlog=None)),
    ("backlog=2**70", dict(host=H, port=0, backlog=2**70)),
    ("backlog=1.5", dict(host=H, port=0, backlog=1.5)),
    ("ssl=True", dict(host=H, port=0, ssl=True)),
    ("ssl=int", dict(host=H, port=0, ssl=5)),
    ("ssl=str", dict(host=H, port=0, ssl="ctx")),
    ("ssl_handshake_timeout_without_ssl", dict(host=H, port=0, ssl_handshake_timeout=1)),
    ("ssl_shutdown_timeout_without_ssl", dict(host=H, port=0, ssl_shutdown_timeout=1)),
    ("ssl_handshake_timeout=0", dict(host=H, port=0, ssl=lambda e: server_ctx(), ssl_handshake_timeout=0)),
    ("ssl_handshake_timeout=-1", dict(host=H, port=0, ssl=lambda e: server_ctx(), ssl_handshake_timeout=-1)),
    ("family=AF_INET6,ipv4_host", dict(host=H, port=0, family=socket.AF_INET6)),
    ("family=AF_UNIX", dict(host=H, port=0, family=socket.AF_UNIX)),
    ("flags=str", dict(host=H, port=0, flags="x")),
    ("reuse_port=True", dict(host=H, port=0, reuse_port=True)),
    ("reuse_address=str", dict(host=H, port=0, reuse_address="yes")),
    ("start_serving=False", dict(host=H, port=0, start_serving=False)),
    ("keep_alive=True", dict(host=H, port=0, keep_alive=True)),
]
CS_DEBUG = {"host=list_with_bad", "sock=unbound_tcp", "sock=connected_tcp", "sock=ssl_socket",
            "backlog=-1", "ssl=int", "start_serving=False", "port=in_use"}
for label, kw in CS:
    add("create_server", label, _cs(**kw), modes=MODES if label in CS_DEBUG else CHECKS)
add("create_server", "factory_raises_on_accept",
    lambda lp, e: _server_then_connect(lp, e, lambda: 1 / 0), modes=RUNNING)
add("create_server", "factory_not_callable_on_accept",
    lambda lp, e: _server_then_connect(lp, e, 5), modes=RUNNING)


async def _server_then_connect(lp, e, factory):
    srv = e.track(await lp.create_server(factory, H, 0))
    c = e.sock()
    await lp.sock_connect(c, srv.sockets[0].getsockname())
    for _ in range(5):
        await asyncio.sleep(0)
    return "connected"


add("connect_accepted_socket", "sock=udp", lambda lp, e: lp.connect_accepted_socket(e.proto, e.udp(None)))
add("connect_accepted_socket", "sock=int", lambda lp, e: lp.connect_accepted_socket(e.proto, 5))
add("connect_accepted_socket", "sock=closed", lambda lp, e: lp.connect_accepted_socket(e.proto, e.closed_sock()))
add("connect_accepted_socket", "ssl_handshake_timeout_without_ssl",
    lambda lp, e: lp.connect_accepted_socket(e.proto, e.tcp_pair()[0], ssl_handshake_timeout=1))
add("connect_accepted_socket", "ok", lambda lp, e: lp.connect_accepted_socket(e.proto, e.tcp_pair()[0]))


# --- Unix sockets ---------------------------------------------------------------

def _ucc(path=None, sock=None, **kw):
    def call(lp, e):
        return lp.create_unix_connection(e.proto, path(e) if callable(path) else path,
                                         sock=sock(e) if sock else None, **kw)

    return call


def _ucs(path=None, sock=None, **kw):
    def call(lp, e):
        return lp.create_unix_server(e.proto, path(e) if callable(path) else path,
                                     sock=sock(e) if sock else None, **kw)

    return call


UNIX_PATHS = [
    ("empty", lambda e: ""),
    ("int", lambda e: 5),
    ("missing", lambda e: e.unix_path()),
    ("too_long", lambda e: os.path.join(e.tmpdir(), "x" * 200)),
    ("nul_inside", lambda e: e.unix_path() + "\0x"),
    ("directory", lambda e: e.tmpdir()),
    ("regular_file", lambda e: _touch(e.unix_path())),
    ("bytes_missing", lambda e: os.fsencode(e.unix_path())),
    ("abstract_missing", lambda e: "\0flbi-" + os.urandom(6).hex()),
    ("pathlike_missing", lambda e: __import__("pathlib").Path(e.unix_path())),
]


def _touch(path):
    open(path, "wb").close()
    return path


for label, mk in UNIX_PATHS:
    add("create_unix_connection", f"path={label}", _ucc(path=mk), modes=CHECKS)
    if label not in ("missing", "bytes_missing", "abstract_missing", "pathlike_missing"):
        add("create_unix_server", f"path={label}", _ucs(path=mk), modes=CHECKS)
add("create_unix_server", "path=abstract", _ucs(path=lambda e: "\0flbi-" + os.urandom(6).hex()))
add("create_unix_server", "path=in_use", _ucs(path=lambda e: e.unix_listener().getsockname()))
add("create_unix_connection", "path_and_sock", _ucc(path=lambda e: e.unix_path(), sock=lambda e: e.pair()[0]))
add("create_unix_server", "path_and_sock", _ucs(path=lambda e: e.unix_path(), sock=lambda e: e.unix_listener()))
add("create_unix_connection", "nothing", _ucc())
add("create_unix_server", "nothing", _ucs())
for label, mk in [("tcp", lambda e: e.tcp_pair()[0]), ("udp", lambda e: e.udp(None)),
                  ("unix_dgram", lambda e: e.sock(socket.AF_UNIX, socket.SOCK_DGRAM)),
                  ("int", lambda e: 5), ("closed", lambda e: e.closed_sock())]:
    add("create_unix_connection", f"sock={label}", _ucc(sock=mk), modes=CHECKS)
    add("create_unix_server", f"sock={label}", _ucs(sock=mk), modes=CHECKS)
add("create_unix_connection", "ssl=True,no_server_hostname", _ucc(sock=lambda e: e.pair()[0], ssl=True))
add("create_unix_connection", "server_hostname_without_ssl",
    _ucc(sock=lambda e: e.pair()[0], server_hostname="x"))
add("create_unix_connection", "ssl_handshake_timeout_without_ssl",
    _ucc(sock=lambda e: e.pair()[0], ssl_handshake_timeout=1))
add("create_unix_server", "ssl=True", _ucs(path=lambda e: e.unix_path(), ssl=True))
add("create_unix_server", "ssl_handshake_timeout_without_ssl",
    _ucs(path=lambda e: e.unix_path(), ssl_handshake_timeout=1))
add("create_unix_server", "backlog=str", _ucs(path=lambda e: e.unix_path(), backlog="1"))
add("create_unix_server", "cleanup_socket=False", _ucs(path=lambda e: e.unix_path(), cleanup_socket=False))
add("create_unix_server", "sock=unix_listener_ok", _ucs(sock=lambda e: e.unix_listener()))


# --- create_datagram_endpoint --------------------------------------------------------

def _cde(**kw):
    def call(lp, e):
        kw2 = {k: (v(e) if callable(v) and k != "protocol_factory" else v) for k, v in kw.items()}
        factory = kw2.pop("protocol_factory", e.proto)
        return lp.create_datagram_endpoint(factory, **kw2)

    return call


CDE = [
    ("nothing", dict()),
    ("sock=tcp", dict(sock=lambda e: e.sock())),
    ("sock=int", dict(sock=lambda e: 5)),
    ("sock=closed_udp", dict(sock=lambda e: e.closed_sock(socket.SOCK_DGRAM))),
    ("sock=ssl_socket", dict(sock=lambda e: e.ssl_sock())),
    ("sock_and_local_addr", dict(sock=lambda e: e.udp(None), local_addr=(H, 0))),
    ("sock_and_family", dict(sock=lambda e: e.udp(None), family=socket.AF_INET)),
    ("sock_and_reuse_port", dict(sock=lambda e: e.udp(None), reuse_port=True)),
    ("sock_and_allow_broadcast", dict(sock=lambda e: e.udp(None), allow_broadcast=True)),
    ("local_addr=256.0.0.1", dict(local_addr=("256.0.0.1", 0))),
    ("local_addr=str", dict(local_addr="127.0.0.1")),
    ("local_addr=1-tuple", dict(local_addr=("127.0.0.1",))),
    ("local_addr=port-1", dict(local_addr=("127.0.0.1", -1))),
    ("local_addr=port70000", dict(local_addr=("127.0.0.1", 70000))),
    ("local_addr=in_use", dict(local_addr=lambda e: e.udp(None).getsockname())),
    ("remote_addr=256.0.0.1", dict(remote_addr=("256.0.0.1", 9))),
    ("remote_addr=str", dict(remote_addr="127.0.0.1")),
    ("remote_addr=port0", dict(remote_addr=("127.0.0.1", 0))),
    ("remote_addr=None,family=AF_INET", dict(family=socket.AF_INET)),
    ("local_ipv4_remote_ipv6", dict(local_addr=("127.0.0.1", 0), remote_addr=("::1", 9))),
    ("family=AF_UNIX,str_local", dict(family=socket.AF_UNIX, local_addr=lambda e: e.unix_path())),
    ("family=AF_UNIX,tuple_local", dict(family=socket.AF_UNIX, local_addr=("127.0.0.1", 0))),
    ("family=AF_UNIX,int_local", dict(family=socket.AF_UNIX, local_addr=5)),
    ("family=AF_UNIX,remote_missing", dict(family=socket.AF_UNIX, remote_addr=lambda e: e.unix_path())),
    ("reuse_address=True", dict(local_addr=(H, 0), reuse_address=True)),
    ("reuse_address=False", dict(local_addr=(H, 0), reuse_address=False)),
    ("reuse_port=True", dict(local_addr=(H, 0), reuse_port=True)),
    ("allow_broadcast=True", dict(local_addr=(H, 0), allow_broadcast=True)),
    ("family=str", dict(local_addr=(H, 0), family="x")),
    ("proto=-1", dict(local_addr=(H, 0), proto=-1)),
    ("factory_raises", dict(local_addr=(H, 0), protocol_factory=lambda: 1 / 0)),
    ("factory_not_callable", dict(local_addr=(H, 0), protocol_factory=5)),
]
CDE_DEBUG = {"sock=closed_udp", "sock=ssl_socket", "local_addr=in_use", "remote_addr=port0",
             "family=AF_UNIX,str_local", "factory_raises", "reuse_port=True"}
for label, kw in CDE:
    add("create_datagram_endpoint", label, _cde(**kw), modes=MODES if label in CDE_DEBUG else CHECKS)


# --- start_tls, sendfile ---------------------------------------------------------------

async def _start_tls(lp, e, kind, ctx, **kw):
    if kind == "stream":
        tr = (await e.stream())[0]
    elif kind == "closed_stream":
        tr = (await e.stream())[0]
        tr.close()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    elif kind == "dgram":
        tr = (await e.dgram())[0]
    elif kind == "read_pipe":
        tr = (await e.read_pipe())[0]
    elif kind == "write_pipe":
        tr = (await e.write_pipe())[0]
    else:
        tr = kind
    pr = e.proto()
    ctx = ctx() if callable(ctx) else ctx
    new = await lp.start_tls(tr, pr, ctx, **kw)
    e.track(new)
    return new


TLS_KW = dict(server_hostname="localhost", ssl_handshake_timeout=0.1)
for label, kind, ctx in [
    ("ctx=None", "stream", None),
    ("ctx=True", "stream", True),
    ("ctx=str", "stream", "ctx"),
    ("transport=dgram", "dgram", client_ctx),
    ("transport=read_pipe", "read_pipe", client_ctx),
    ("transport=write_pipe", "write_pipe", client_ctx),
    ("transport=None", None, client_ctx),
    ("transport=int", 5, client_ctx),
    ("transport=closed_stream", "closed_stream", client_ctx),
]:
    # A closed transport: the handshake never starts, nor times out (asyncio too).
    add("start_tls", label, lambda lp, e, kind=kind, ctx=ctx: _start_tls(lp, e, kind, ctx, **TLS_KW),
        modes=RUNNING, timeout=SHORT if kind == "closed_stream" else DEADLINE)
add("start_tls", "ssl_handshake_timeout=0",
    lambda lp, e: _start_tls(lp, e, "stream", client_ctx, server_hostname="x", ssl_handshake_timeout=0),
    modes=RUNNING)
add("start_tls", "no_peer_handshake_times_out",
    lambda lp, e: _start_tls(lp, e, "stream", client_ctx, **TLS_KW), modes=RUNNING)
add("start_tls", "closed_loop,transport=None",
    lambda lp, e: lp.start_tls(None, e.proto(), client_ctx()), modes=("closed",))


async def _sendfile(lp, e, kind, file, offset=0, count=None, **kw):
    if kind == "stream":
        tr = (await e.stream())[0]
    elif kind == "closing_stream":
        tr = (await e.stream())[0]
        tr.close()
    elif kind == "dgram":
        tr = (await e.dgram())[0]
    elif kind == "write_pipe":
        tr = (await e.write_pipe())[0]
    elif kind == "paused_reading":
        tr = (await e.stream())[0]
        tr.pause_reading()
    else:
        tr = kind
    f = file(e) if callable(file) else file
    return await lp.sendfile(tr, f, offset, count, **kw)


SF = [
    ("ok", "stream", lambda e: e.bfile(), 0, None, {}),
    ("file=int", "stream", 5, 0, None, {}),
    ("file=None", "stream", None, 0, None, {}),
    ("file=text", "stream", lambda e: e.tfile(), 0, None, {}),
    ("file=closed", "stream", lambda e: e.closed_file(), 0, None, {}),
    ("file=BytesIO", "stream", lambda e: __import__("io").BytesIO(b"x" * 100), 0, None, {}),
    ("file=BytesIO,offset=1", "stream", lambda e: __import__("io").BytesIO(b"x" * 100), 1, 5, {}),
    ("file=int,fallback=False", "stream", 5, 0, None, {"fallback": False}),
    ("offset=-1", "stream", lambda e: e.bfile(), -1, None, {}),
    ("offset=str", "stream", lambda e: e.bfile(), "1", None, {}),
    ("offset=past_end", "stream", lambda e: e.bfile(), 10**6, None, {}),
    ("count=0", "stream", lambda e: e.bfile(), 0, 0, {}),
    ("count=-1", "stream", lambda e: e.bfile(), 0, -1, {}),
    ("count=1.5", "stream", lambda e: e.bfile(), 0, 1.5, {}),
    ("BytesIO,count=-1", "stream", lambda e: __import__("io").BytesIO(b"x" * 100), 0, -1, {}),
    ("BytesIO,offset=-1", "stream", lambda e: __import__("io").BytesIO(b"x" * 100), -1, None, {}),
    ("transport=closing", "closing_stream", lambda e: e.bfile(), 0, None, {}),
    ("transport=dgram", "dgram", lambda e: e.bfile(), 0, None, {}),
    ("transport=write_pipe", "write_pipe", lambda e: e.bfile(), 0, None, {}),
    ("transport=None", None, lambda e: e.bfile(), 0, None, {}),
    ("transport=int", 5, lambda e: e.bfile(), 0, None, {}),
    ("transport=paused_reading", "paused_reading", lambda e: e.bfile(), 0, 10, {}),
]
for label, kind, file, off, cnt, kw in SF:
    add("sendfile", label,
        lambda lp, e, kind=kind, file=file, off=off, cnt=cnt, kw=kw: _sendfile(lp, e, kind, file, off, cnt, **kw),
        modes=RUNNING)
add("sendfile", "closed_loop,transport=None",
    lambda lp, e: lp.sendfile(None, e.bfile()), modes=("closed",))


# sendfile() on a TLS transport always takes the fallback (its mode is FALLBACK), which
# is fastloop's own code (_net.py) rather than asyncio's; so are the transport below it.
async def _tls_call(lp, e, fn):
    tr, pr = await _tls_connect(lp, e)
    await asyncio.sleep(0)
    res = fn(tr, e)
    if asyncio.iscoroutine(res):
        res = await res
    for _ in range(3):
        await asyncio.sleep(0)
    return res


def _bytesio(data=b"x" * 100):
    import io

    return io.BytesIO(data)


TLS_OPS = [
    ("sendfile(ok)", lambda tr, e: tr._loop.sendfile(tr, e.bfile())),
    ("sendfile(offset=-1)", lambda tr, e: tr._loop.sendfile(tr, e.bfile(), -1)),
    ("sendfile(count=-1)", lambda tr, e: tr._loop.sendfile(tr, e.bfile(), 0, -1)),
    ("sendfile(count=0)", lambda tr, e: tr._loop.sendfile(tr, e.bfile(), 0, 0)),
    ("sendfile(count=1.5)", lambda tr, e: tr._loop.sendfile(tr, e.bfile(), 0, 1.5)),
    ("sendfile(offset=past_end)", lambda tr, e: tr._loop.sendfile(tr, e.bfile(), 10**6)),
    ("sendfile(text)", lambda tr, e: tr._loop.sendfile(tr, e.tfile())),
    ("sendfile(None)", lambda tr, e: tr._loop.sendfile(tr, None)),
    ("sendfile(BytesIO,offset=1,count=5)", lambda tr, e: tr._loop.sendfile(tr, _bytesio(), 1, 5)),
    ("sendfile(fallback=False)", lambda tr, e: tr._loop.sendfile(tr, e.bfile(), fallback=False)),
    ("sendfile_after_close", lambda tr, e: (tr.close(), tr._loop.sendfile(tr, e.bfile()))[1]),
    ("write(str)", lambda tr, e: tr.write("x")),
    ("writelines(None)", lambda tr, e: tr.writelines(None)),
    ("limits(high<low)", lambda tr, e: tr.set_write_buffer_limits(high=1, low=2)),
    ("get_extra_info(list)", lambda tr, e: tr.get_extra_info([])),
    ("get_extra_info(missing)", lambda tr, e: tr.get_extra_info("nope", "dflt")),
]
for label, fn in TLS_OPS:
    add("tls_transport", label, lambda lp, e, fn=fn: _tls_call(lp, e, fn), modes=RUNNING)


# --- pipes -----------------------------------------------------------------------

PIPES = [
    ("int_fd", lambda e: e.pipe()[0]),
    ("None", lambda e: None),
    ("regular_file", lambda e: e.bfile()),
    ("closed_file", lambda e: e.closed_file()),
    ("socket", lambda e: e.pair(b"")[0]),
    ("udp_socket", lambda e: e.udp(None)),
    ("listening_socket", lambda e: e.listener(pending=False)),
    ("fake_fd=-1", lambda e: FakeSock(-1)),
    ("fake_fd=closed", lambda e: FakeSock(e.closed_fd())),
    ("fake_fd=str", lambda e: FakeSock("x")),
    ("dev_null", lambda e: e.track(open(os.devnull, "rb", buffering=0))),
    ("dev_null_w", lambda e: e.track(open(os.devnull, "wb", buffering=0))),
    ("pipe_read_end", lambda e: e.pipe_file("r")),
    ("pipe_write_end", lambda e: e.pipe_file("w")),
]
for label, mk in PIPES:
    add("connect_read_pipe", f"pipe={label}", lambda lp, e, mk=mk: lp.connect_read_pipe(e.proto, mk(e)))
    add("connect_write_pipe", f"pipe={label}", lambda lp, e, mk=mk: lp.connect_write_pipe(e.proto, mk(e)))
add("connect_read_pipe", "factory_raises",
    lambda lp, e: lp.connect_read_pipe(lambda: 1 / 0, e.pipe_file("r")))
add("connect_write_pipe", "factory_returns_None",
    lambda lp, e: lp.connect_write_pipe(lambda: None, e.pipe_file("w")))


async def _pipe_twice(lp, e, which):
    f = e.pipe_file("r" if which == "read" else "w")
    connect = lp.connect_read_pipe if which == "read" else lp.connect_write_pipe
    tr, _ = await connect(e.proto, f)
    e.track(tr)
    f2 = e.track(open(os.dup(f.fileno()), "rb" if which == "read" else "wb", buffering=0))
    tr2, _ = await connect(e.proto, f2)
    e.track(tr2)
    return "connected twice"


add("connect_read_pipe", "same_pipe_twice", lambda lp, e: _pipe_twice(lp, e, "read"), modes=RUNNING)
add("connect_write_pipe", "same_pipe_twice", lambda lp, e: _pipe_twice(lp, e, "write"), modes=RUNNING)


# --- transports' fds and the reader/writer API -----------------------------------------

async def _on_transport_fd(lp, e, what):
    a, b = e.pair(b"")
    tr, _ = await lp.create_connection(e.proto, sock=a)
    e.track(tr)
    fd = a.fileno()
    if what == "add_reader":
        return lp.add_reader(fd, lambda: None)
    if what == "add_writer":
        return lp.add_writer(fd, lambda: None)
    if what == "remove_reader":
        return lp.remove_reader(fd)
    if what == "remove_writer":
        return lp.remove_writer(fd)
    if what == "add_reader_sockobj":
        return lp.add_reader(a, lambda: None)
    if what == "sock_recv":
        return await lp.sock_recv(a, 10)
    if what == "sock_sendall":
        # Fill the socket first, so that sock_sendall has to register its writer.
        try:
            while True:
                a.send(b"x" * 65536)
        except BlockingIOError:
            pass
        return await lp.sock_sendall(a, b"x" * 10)
    if what == "sock_accept":
        return await lp.sock_accept(a)
    if what == "after_close,add_reader":
        tr.close()
        return lp.add_reader(fd, lambda: None) or lp.remove_reader(fd)
    if what == "create_connection_again":
        return await lp.create_connection(e.proto, sock=a)
    raise AssertionError(what)


for what in ("add_reader", "add_writer", "remove_reader", "remove_writer", "add_reader_sockobj",
             "sock_recv", "sock_sendall", "sock_accept", "after_close,add_reader",
             "create_connection_again"):
    add("transport_fd", what, lambda lp, e, what=what: _on_transport_fd(lp, e, what), modes=RUNNING)


# --- transport methods ---------------------------------------------------------------

async def _stream_call(lp, e, fn, data=b""):
    tr, pr, peer = await e.stream(data)
    await asyncio.sleep(0)
    res = fn(tr, peer)
    for _ in range(3):
        await asyncio.sleep(0)
    return res


def _write_eof_then(f):
    def g(tr, peer):
        tr.write_eof()
        return f(tr, peer)

    return g


def _close_then(f):
    def g(tr, peer):
        tr.close()
        return f(tr, peer)

    return g


def _abort_then(f):
    def g(tr, peer):
        tr.abort()
        return f(tr, peer)

    return g


def _twice(f):
    def g(tr, peer):
        f(tr, peer)
        return f(tr, peer)

    return g


STREAM_OPS = [
    ("write(str)", lambda tr, p: tr.write("data")),
    ("write(int)", lambda tr, p: tr.write(5)),
    ("write(None)", lambda tr, p: tr.write(None)),
    ("write(list)", lambda tr, p: tr.write([b"x"])),
    ("write(empty)", lambda tr, p: tr.write(b"")),
    ("write(noncontiguous)", lambda tr, p: tr.write(memoryview(b"0123456789")[::2])),
    ("write(released_memoryview)", lambda tr, p: tr.write(_released())),
    ("write(array_i)", lambda tr, p: tr.write(memoryview(array.array("i", [1, 2, 3])))),
    ("write(bytearray)", lambda tr, p: tr.write(bytearray(b"data"))),
    ("write_after_write_eof", _write_eof_then(lambda tr, p: tr.write(b"x"))),
    ("write(str)_after_write_eof", _write_eof_then(lambda tr, p: tr.write("x"))),
    ("write_after_close", _close_then(lambda tr, p: tr.write(b"x"))),
    ("write_after_abort", _abort_then(lambda tr, p: tr.write(b"x"))),
    ("write(str)_after_close", _close_then(lambda tr, p: tr.write("x"))),
    ("write_after_peer_closed", lambda tr, p: (p.close(), tr.write(b"x" * 10))[1]),
    ("writelines(None)", lambda tr, p: tr.writelines(None)),
    ("writelines(int)", lambda tr, p: tr.writelines(5)),
    ("writelines(bytes)", lambda tr, p: tr.writelines(b"abc")),
    ("writelines([str])", lambda tr, p: tr.writelines(["x"])),
    ("writelines([bytes,str])", lambda tr, p: tr.writelines([b"a", "b"])),
    ("writelines([int])", lambda tr, p: tr.writelines([5])),
    ("writelines([None])", lambda tr, p: tr.writelines([None])),
    ("writelines([])", lambda tr, p: tr.writelines([])),
    ("writelines([empty])", lambda tr, p: tr.writelines([b""])),
    ("writelines(generator)", lambda tr, p: tr.writelines(x for x in [b"a", b"b"])),
    ("writelines([noncontiguous])", lambda tr, p: tr.writelines([memoryview(b"0123456789")[::2]])),
    ("writelines_after_write_eof", _write_eof_then(lambda tr, p: tr.writelines([b"x"]))),
    ("writelines_after_close", _close_then(lambda tr, p: tr.writelines([b"x"]))),
    ("write_eof_twice", _twice(lambda tr, p: tr.write_eof())),
    ("write_eof_after_close", _close_then(lambda tr, p: tr.write_eof())),
    ("close_twice", _twice(lambda tr, p: tr.close())),
    ("abort_twice", _twice(lambda tr, p: tr.abort())),
    ("abort_after_close", _close_then(lambda tr, p: tr.abort())),
    ("pause_reading_twice", _twice(lambda tr, p: tr.pause_reading())),
    ("resume_reading_unpaused", lambda tr, p: tr.resume_reading()),
    ("pause_reading_after_close", _close_then(lambda tr, p: tr.pause_reading())),
    ("resume_reading_after_close", _close_then(lambda tr, p: tr.resume_reading())),
    ("is_reading_after_close", _close_then(lambda tr, p: tr.is_reading())),
    ("limits(high<low)", lambda tr, p: tr.set_write_buffer_limits(high=1, low=2)),
    ("limits(high=-1)", lambda tr, p: tr.set_write_buffer_limits(high=-1)),
    ("limits(low=-1)", lambda tr, p: tr.set_write_buffer_limits(low=-1)),
    ("limits(high=-1,low=-2)", lambda tr, p: tr.set_write_buffer_limits(high=-1, low=-2)),
    ("limits(high=str)", lambda tr, p: tr.set_write_buffer_limits(high="1")),
    ("limits(low=str)", lambda tr, p: tr.set_write_buffer_limits(high=10, low="1")),
    ("limits(high=1.5)", lambda tr, p: (tr.set_write_buffer_limits(high=1.5), tr.get_write_buffer_limits())[1]),
    ("limits(high=nan)", lambda tr, p: tr.set_write_buffer_limits(high=math.nan)),
    ("limits(high=inf)", lambda tr, p: (tr.set_write_buffer_limits(high=math.inf), tr.get_write_buffer_limits())[1]),
    ("limits(high=2**70)", lambda tr, p: (tr.set_write_buffer_limits(high=2**70), tr.get_write_buffer_limits())[1]),
    ("limits(low=2**70)", lambda tr, p: tr.set_write_buffer_limits(low=2**70)),
    ("limits(high=True)", lambda tr, p: (tr.set_write_buffer_limits(high=True), tr.get_write_buffer_limits())[1]),
    ("limits(0,0)", lambda tr, p: (tr.set_write_buffer_limits(0, 0), tr.get_write_buffer_limits())[1]),
    ("limits(low=8)", lambda tr, p: (tr.set_write_buffer_limits(low=8), tr.get_write_buffer_limits())[1]),
    ("limits_positional_3", lambda tr, p: tr.set_write_buffer_limits(1, 0, 0)),
    ("limits_after_close", _close_then(lambda tr, p: tr.set_write_buffer_limits(high=1, low=2))),
    ("get_extra_info(list)", lambda tr, p: tr.get_extra_info([])),
    ("get_extra_info(None)", lambda tr, p: tr.get_extra_info(None)),
    ("get_extra_info(int)", lambda tr, p: tr.get_extra_info(5)),
    ("get_extra_info(missing,default)", lambda tr, p: tr.get_extra_info("nope", "dflt")),
    ("get_extra_info(no_args)", lambda tr, p: tr.get_extra_info()),
    ("get_extra_info(sslcontext)", lambda tr, p: tr.get_extra_info("sslcontext")),
    ("get_extra_info(peername)_after_close", _close_then(lambda tr, p: tr.get_extra_info("peername"))),
    ("get_extra_info(socket)_after_close",
     _close_then(lambda tr, p: type(tr.get_extra_info("socket")).__name__)),
    ("set_protocol(int)_then_data", lambda tr, p: (tr.set_protocol(5), p.send(b"x"))[0]),
    ("set_protocol(None)_then_eof", lambda tr, p: (tr.set_protocol(None), p.close())[0]),
    ("get_write_buffer_size_after_close", _close_then(lambda tr, p: tr.get_write_buffer_size())),
    ("can_write_eof_after_close", _close_then(lambda tr, p: tr.can_write_eof())),
]
for label, fn in STREAM_OPS:
    add("stream_transport", label, lambda lp, e, fn=fn: _stream_call(lp, e, fn), modes=RUNNING)


async def _dgram_call(lp, e, fn, connected):
    tr, pr, peer = await e.dgram(connected)
    await asyncio.sleep(0)
    res = fn(tr, peer, e)
    for _ in range(3):
        await asyncio.sleep(0)
    return res


DGRAM_OPS = [
    ("sendto(str)", lambda tr, p, e: tr.sendto("x")),
    ("sendto(int)", lambda tr, p, e: tr.sendto(5)),
    ("sendto(None)", lambda tr, p, e: tr.sendto(None)),
    ("sendto(noncontiguous)", lambda tr, p, e: tr.sendto(memoryview(b"0123456789")[::2], p.getsockname())),
    ("sendto(empty)", lambda tr, p, e: tr.sendto(b"", p.getsockname())),
    ("sendto(addr=str)", lambda tr, p, e: tr.sendto(b"x", "127.0.0.1")),
    ("sendto(addr=None)", lambda tr, p, e: tr.sendto(b"x", None)),
    ("sendto(no_addr)", lambda tr, p, e: tr.sendto(b"x")),
    ("sendto(addr=1-tuple)", lambda tr, p, e: tr.sendto(b"x", ("127.0.0.1",))),
    ("sendto(addr=port70000)", lambda tr, p, e: tr.sendto(b"x", ("127.0.0.1", 70000))),
    ("sendto(addr=port-1)", lambda tr, p, e: tr.sendto(b"x", ("127.0.0.1", -1))),
    ("sendto(addr=256.0.0.1)", lambda tr, p, e: tr.sendto(b"x", ("256.0.0.1", 9))),
    ("sendto(addr=ipv6)", lambda tr, p, e: tr.sendto(b"x", ("::1", 9, 0, 0))),
    ("sendto(other_addr)", lambda tr, p, e: tr.sendto(b"x", e.udp(None).getsockname())),
    ("sendto(same_addr)", lambda tr, p, e: tr.sendto(b"x", p.getsockname())),
    ("sendto(too_big)", lambda tr, p, e: tr.sendto(b"x" * 70000, p.getsockname())),
    ("sendto_after_close", lambda tr, p, e: (tr.close(), tr.sendto(b"x", p.getsockname()))[1]),
    ("sendto_after_abort", lambda tr, p, e: (tr.abort(), tr.sendto(b"x", p.getsockname()))[1]),
    ("limits(high<low)", lambda tr, p, e: tr.set_write_buffer_limits(high=1, low=2)),
    ("limits(high=str)", lambda tr, p, e: tr.set_write_buffer_limits(high="1")),
    ("limits(high=nan)", lambda tr, p, e: tr.set_write_buffer_limits(high=math.nan)),
    ("limits(high=2**70)", lambda tr, p, e: (tr.set_write_buffer_limits(high=2**70), tr.get_write_buffer_limits())[1]),
    ("get_extra_info(list)", lambda tr, p, e: tr.get_extra_info([])),
    ("get_extra_info(peername)", lambda tr, p, e: tr.get_extra_info("peername") is not None),
    ("write", lambda tr, p, e: tr.write(b"x")),
    ("abort_twice", lambda tr, p, e: (tr.abort(), tr.abort())[1]),
    ("close_twice", lambda tr, p, e: (tr.close(), tr.close())[1]),
    ("pause_reading_dgram", lambda tr, p, e: tr.pause_reading()),
]
for label, fn in DGRAM_OPS:
    add("dgram_transport", f"connected,{label}", lambda lp, e, fn=fn: _dgram_call(lp, e, fn, True), modes=RUNNING)
    if label.startswith("sendto"):  # the rest does not depend on a remote address
        add("dgram_transport", f"unconnected,{label}", lambda lp, e, fn=fn: _dgram_call(lp, e, fn, False),
            modes=RUNNING)


async def _pipe_call(lp, e, which, fn):
    tr, pr = await (e.write_pipe() if which == "write" else e.read_pipe())
    await asyncio.sleep(0)
    res = fn(tr)
    for _ in range(3):
        await asyncio.sleep(0)
    return res


PIPE_OPS = [
    ("write", "write(str)", lambda tr: tr.write("x")),
    ("write", "write(int)", lambda tr: tr.write(5)),
    ("write", "write(None)", lambda tr: tr.write(None)),
    ("write", "write(noncontiguous)", lambda tr: tr.write(memoryview(b"0123456789")[::2])),
    ("write", "write_after_close", lambda tr: (tr.close(), tr.write(b"x"))[1]),
    ("write", "write_after_write_eof", lambda tr: (tr.write_eof(), tr.write(b"x"))[1]),
    ("write", "writelines(None)", lambda tr: tr.writelines(None)),
    ("write", "writelines([str])", lambda tr: tr.writelines(["x"])),
    ("write", "limits(high<low)", lambda tr: tr.set_write_buffer_limits(high=1, low=2)),
    ("write", "limits(high=str)", lambda tr: tr.set_write_buffer_limits(high="1")),
    ("write", "get_extra_info(list)", lambda tr: tr.get_extra_info([])),
    ("write", "abort_twice", lambda tr: (tr.abort(), tr.abort())[1]),
    ("write", "write_eof_twice", lambda tr: (tr.write_eof(), tr.write_eof())[1]),
    ("read", "pause_reading_twice", lambda tr: (tr.pause_reading(), tr.pause_reading())[1]),
    ("read", "resume_reading_unpaused", lambda tr: tr.resume_reading()),
    ("read", "pause_reading_after_close", lambda tr: (tr.close(), tr.pause_reading())[1]),
    ("read", "get_extra_info(list)", lambda tr: tr.get_extra_info([])),
    ("read", "close_twice", lambda tr: (tr.close(), tr.close())[1]),
]
for which, label, fn in PIPE_OPS:
    add(f"{which}_pipe_transport", label, lambda lp, e, w=which, fn=fn: _pipe_call(lp, e, w, fn), modes=RUNNING)


def build_cases():
    cases = [Case(op, what, mode, call, timeout)
             for op, what, call, modes, timeout in _CALLS for mode in modes]
    random.Random(SEED).shuffle(cases)
    return cases


CASES = build_cases()


# --- where stock asyncio is not the reference ---------------------------------------


_NEW_IN_311 = ("sock_recvfrom", "sock_recvfrom_into", "sock_sendto")


def aio_skip_reason(case: Case) -> str | None:
    """Why stock asyncio cannot be the reference for this case (None: it can)."""
    if PY < (3, 11) and case.op in _NEW_IN_311:
        return (f"asyncio 3.10 has no loop.{case.op} (AttributeError); both cores have it on "
                "every version (docs/transports.md)")
    if PY < (3, 11) and case.op == "dgram_transport" and case.what.endswith("pause_reading_dgram"):
        return ("asyncio 3.10's datagram transport has no pause_reading (NotImplementedError, "
                "added in 3.11); the cores have it on every version")
    if PY < (3, 12) and case.what in ("writelines(None)", "writelines([noncontiguous])"):
        return ("asyncio before 3.12 joins the list with b''.join (TypeError for None and "
                "for a non-contiguous memoryview); the cores' writelines is 3.12's on every "
                "version ('if not list_of_data: return', then one memoryview per item)")
    if PY >= (3, 12) and case.id.startswith("stream_transport[writelines_after_close]"):
        return ("asyncio 3.12+'s close() sets _write_ready = None, so writelines() after "
                "close() raises TypeError ('NoneType' object is not callable); the cores drop "
                "the data as write() does (docs/transports.md, gh-136234)")
    if case.id.startswith("create_connection[tls,ssl_handshake_timeout=nan]"):
        return ("asyncio keeps a NaN deadline wherever heapq leaves it (all comparisons "
                "false): behind the case's own timers the handshake timeout never fires and "
                "the handshake completes; fastloop fires NaN deadlines on the next iteration "
                "(docs/core.md), so the handshake is aborted at once")
    if case.op in ("connect_read_pipe", "connect_write_pipe") and case.what in (
            "pipe=int_fd", "pipe=closed_file"):
        return ("asyncio's pipe transport fails in its constructor (pipe.fileno()) and its "
                "__del__ then fails too (repr() needs _fileno: AttributeError, reported as "
                "unraisable) before it can warn")
    return None


# (case id, core) -> what diverged (the same on 3.10 to 3.13 unless noted). Empty: the
# last findings (the Cython core's writelines of a non-contiguous buffer, half-built
# pipe transports warning in __del__) were fixed.
KNOWN_DIVERGENCES: dict[tuple[str, str], str] = {}


# --- running one case ------------------------------------------------------------


def make_loop(kind):
    if kind == "aio":
        return asyncio.SelectorEventLoop()
    return loop_class(kind)()


_HEX = re.compile(r"0x[0-9a-fA-F]+")
_NUM = re.compile(r"\b\d{4,}\b")
_FD = re.compile(r"(fd=|File descriptor )\d+")
_TMP = re.compile(r"/flbi-[^/'\s]+")
# asyncio's transport class names -> the cores' (fastloop._cy.core. prefix dropped).
_CLASSES = [("_SelectorSocketTransport", "SocketTransport"),
            ("_SelectorDatagramTransport", "DatagramTransport"),
            ("_UnixReadPipeTransport", "ReadPipeTransport"),
            ("_UnixWritePipeTransport", "WritePipeTransport"),
            ("fastloop._cy.core.", "")]


def _norm(msg: str) -> str:
    """A message without what changes from run to run (addresses, fds, ports, paths)."""
    msg = _TMP.sub("/flbi-?", _FD.sub(r"\1?", _NUM.sub("N", _HEX.sub("0x?", msg))))
    for old, new in _CLASSES:
        msg = msg.replace(old, new)
    return msg


def _is_addr(v):
    return isinstance(v, tuple) and len(v) >= 2 and isinstance(v[0], (str, bytes)) and isinstance(v[1], int)


def summarize(env, value):
    """A kind-independent description of a result; tracks what must be closed."""
    if isinstance(value, socket.socket):
        env.track(value)
        return "socket"
    if hasattr(value, "serve_forever"):
        env.track(value)
        return "server"
    if hasattr(value, "get_extra_info"):
        env.track(value)
        return "transport"
    if isinstance(value, Rec):
        return "protocol"
    if _is_addr(value):
        return "addr"
    if isinstance(value, tuple):
        return "(" + ", ".join(summarize(env, v) for v in value) + ")"
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return repr(value)
    return f"<{type(value).__name__}>"


def _open_fds() -> set:
    return set(os.listdir(FD_DIR))


@dataclass
class Outcome:
    result: tuple  # ("raise", type, message) | ("ok", summary) | ("timeout",)
    handled: tuple  # exception types the loop's exception handler got
    events: tuple  # what each protocol saw
    warned: tuple  # warning categories (ResourceWarning: something left unclosed)
    unraisable: tuple  # exception types reported from __del__ and the like
    leaked_fds: int

    def key(self):
        r = self.result[:2] if self.result[0] == "raise" else self.result
        return (r, self.handled, self.events, self.warned, self.unraisable, self.leaked_fds)


def _step_closed(loop, coro):
    """Drive a coroutine of a closed loop by hand, as if that loop ran it (nothing can).

    The closed loop is the running loop meanwhile: code that looks for the running
    loop (gather, wait_for) finds it instead of making a new one through the policy.
    """
    asyncio.events._set_running_loop(loop)
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    finally:
        asyncio.events._set_running_loop(None)
    coro.close()
    return _Pending


class _Pending:
    """The coroutine of a closed loop waited on a future that nothing would settle."""


def _run(loop, case, env):
    res = case.call(loop, env)
    if not asyncio.iscoroutine(res):
        return res
    if case.mode == "closed":
        return _step_closed(loop, res)
    task = loop.create_task(res)
    timed_out = []

    def deadline():
        timed_out.append(True)
        task.cancel()

    timer = loop.call_later(case.timeout, deadline)
    try:
        return loop.run_until_complete(task)
    except asyncio.CancelledError:
        if not timed_out:
            raise
        return _Timeout
    finally:
        timer.cancel()


class _Timeout:
    """The coroutine ran past its deadline (then it was cancelled)."""


def run_case(kind: str, case: Case) -> Outcome:
    handled: list = []
    unraisable: list = []
    # Whatever exists now (pytest's objects, which keep growing) is left out of the
    # collection below, which then only walks what this call made; the module fixture
    # unfreezes it all at the end.
    gc.freeze()
    fds_before = _open_fds()
    old_hook = sys.unraisablehook
    sys.unraisablehook = lambda u: unraisable.append(type(u.exc_value).__name__)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loop = make_loop(kind)
            loop.set_exception_handler(lambda lp, ctx: handled.append(type(ctx.get("exception")).__name__))
            if case.mode == "debug":
                loop.set_debug(True)
            elif case.mode == "closed":
                loop.close()
            env = Env(loop)
            try:
                try:
                    value = _run(loop, case, env)
                except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001 - the type is the outcome
                    result = ("raise", type(exc).__name__, _norm(str(exc)))
                    del exc
                else:
                    if value is _Timeout:
                        result = ("timeout",)
                    elif value is _Pending:
                        result = ("pending",)
                    else:
                        result = ("ok", summarize(env, value))
                    del value
                if not loop.is_closed():
                    _spin(loop, 3)
                events = env.events()
            finally:
                env.close()
                if not loop.is_closed():
                    loop.close()
                del env, loop
                gc.collect()
        warned = tuple(sorted({w.category.__name__ for w in caught}))
    finally:
        sys.unraisablehook = old_hook
    leaked = len(_open_fds() - fds_before)
    return Outcome(result, tuple(sorted(set(handled))), events, warned, tuple(sorted(unraisable)), leaked)


@pytest.fixture(scope="module", autouse=True)
def _frozen_gc():
    """gc.collect() runs after every call; freezing what exists already keeps it cheap."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture(scope="module", autouse=True)
def _no_fd_leak_overall():
    before = _open_fds()
    yield
    gc.collect()
    leaked = _open_fds() - before
    assert not leaked, f"fds left open by the module: {sorted(leaked)}"


CORES = ("cy", "py")


class KnownDivergence(AssertionError):
    """Raised when exactly the cores listed in KNOWN_DIVERGENCES diverge (the xfail)."""


def _params():
    """One test per case; both cores run in it (half the tests, and pytest's overhead
    per test is as large as a case). A case with known divergences is an
    xfail(strict=True) that only KnownDivergence satisfies: the test raises it when
    exactly the listed cores diverge, and fails outright when any other core does."""
    params = []
    for case in CASES:
        reasons = [KNOWN_DIVERGENCES[(case.id, core)]
                   for core in CORES if (case.id, core) in KNOWN_DIVERGENCES]
        marks = [pytest.mark.xfail(strict=True, raises=KnownDivergence, reason=" | ".join(reasons))] \
            if reasons else []
        params.append(pytest.param(case, id=case.id, marks=marks))
    return params


@pytest.mark.parametrize("case", _params())
def test_net_bad_input_same_outcome(case):
    # pytest.fail(pytrace=False), not assert: a traceback of this long module costs
    # pytest a quarter of a second to render.
    got = {core: run_case(core, case) for core in CORES}
    for core, outcome in got.items():
        if outcome.leaked_fds:
            pytest.fail(f"{core} left {outcome.leaked_fds} fd(s) open: {outcome!r}", pytrace=False)
    reason = aio_skip_reason(case)
    if reason is None:
        ref = run_case("aio", case)
        diverged = {core for core in CORES if got[core].key() != ref.key()}
        detail = "\n".join(f"{core} {got[core]!r}" for core in sorted(diverged)) + f"\n != aio {ref!r}"
    else:
        # asyncio is not the reference here (see aio_skip_reason): the cores agree.
        diverged = set() if got["cy"].key() == got["py"].key() else set(CORES)
        detail = f"cy {got['cy']!r}\n != py {got['py']!r} ({reason})"
    expected = {core for core in CORES if (case.id, core) in KNOWN_DIVERGENCES}
    if diverged != expected:
        pytest.fail(f"diverged: {sorted(diverged)}, known: {sorted(expected)}\n{detail}", pytrace=False)
    if diverged:
        raise KnownDivergence(detail)


def test_known_divergences_name_real_cases():
    ids = {case.id for case in CASES}
    assert {case_id for case_id, _ in KNOWN_DIVERGENCES} <= ids


def test_case_ids_are_unique():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))


def message_differences() -> list[str]:
    """Cases where the exception types agree but the messages differ."""
    diffs = []
    for case in CASES:
        if aio_skip_reason(case) is not None:
            continue
        aio = run_case("aio", case)
        for kind in ("cy", "py"):
            got = run_case(kind, case)
            if got.result[0] == aio.result[0] == "raise" and got.result[1] == aio.result[1] \
                    and got.result[2] != aio.result[2]:
                diffs.append(f"{case.id} {kind}: {got.result[1]} {got.result[2]!r} vs aio {aio.result[2]!r}")
    return diffs


if __name__ == "__main__":
    gc.collect()
    gc.freeze()
    if "--all" in sys.argv:
        for case in CASES:
            res = {k: run_case(k, case) for k in ("aio", "cy", "py")}
            if len({v.key() for v in res.values()}) > 1:
                print("DIFF", case.id)
                for k, v in res.items():
                    print("   ", k, v)
    else:
        for line in message_differences():
            print(line)
