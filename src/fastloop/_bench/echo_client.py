"""The client process of the networking workloads: the same program for every loop.

The echo and HTTP workloads (`fastloop._bench.echo`, `.httpd`) run the server on the
loop under test and this client in a separate process, so the client's own work never
lands on the loop being measured and is identical whichever loop serves. It is
stdlib-only (no fastloop import), single-threaded, and drives all its connections from
one `selectors` loop of non-blocking sockets, so it stays light on a 2-core machine.

It reads commands from stdin, one JSON object per line, and answers each with one JSON
line on stdout (a single write, atomic on a pipe):

    {"op": "echo", "kind": "tcp"|"unix"|"udp", "addr": ["127.0.0.1", port] | path,
     "conns": 4, "size": 1024, "trips": 1000}
        Open `conns` connections (UDP: connected sockets), then on each one `trips`
        times: send a `size`-byte message, wait for the whole echo and compare every byte
        (each message carries its connection and trip number, so a stale, duplicated or
        reordered echo is caught). Then close everything and answer
        {"trips": <round trips completed>, "bytes": <bytes echoed>} or {"error": "..."}.
    {"op": "http", "addr": ["127.0.0.1", port], "conns": 4, "requests": 1500, "depth": 1}
        Open `conns` keep-alive connections and send `requests` HTTP/1.1 GETs on each,
        `depth` at a time (above 1: pipelined), comparing every response with the one
        expected. Answer {"requests": <sent>, "bytes": <response bytes>} or an error.
    {"op": "hold", "kind": "tcp"|"unix", "addr": ..., "conns": 2000}
        Open `conns` idle connections and keep them; answer {"held": n}.
    {"op": "release"}
        Close the held connections; answer {"released": n}.

EOF on stdin ends the process. Run it by hand for a quick check of a server:

    python -m fastloop._bench.echo_client   # then type a command line
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import struct
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

# A selector wait longer than this without any progress means the server is stuck.
STALL_TIMEOUT = 20.0
UDP_MAX = 65507

_HEADER = struct.Struct("<II")  # connection number, trip number


class EchoError(Exception):
    """The server's echo was wrong, late or cut short."""


def _raise_nofile(wanted: int) -> None:
    """Raise the soft limit on open files towards wanted (the hard limit permitting)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - POSIX only
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _connect(kind: str, addr: Any) -> socket.socket:
    """Return a new blocking socket connected to the server (addr: from the JSON)."""
    if kind == "tcp":
        sock = socket.create_connection(tuple(addr))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    elif kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(addr)
        except BaseException:
            sock.close()
            raise
    elif kind == "udp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.connect(tuple(addr))
        except BaseException:
            sock.close()
            raise
    else:
        raise EchoError(f"unknown kind {kind!r}")
    return sock


class _Conn:
    """One connection's state: the message in flight, the answer it must get, and how
    much of each went and came back."""

    __slots__ = ("index", "sock", "out", "out_view", "expected", "inbuf", "in_view",
                 "sent", "received", "trip", "writing")

    out: bytes | bytearray
    out_view: memoryview
    expected: bytes | bytearray
    inbuf: bytearray | None
    in_view: memoryview

    def __init__(self, index: int, sock: socket.socket) -> None:
        self.index = index
        self.sock = sock
        # Each is set (by set_trip, or _echo_udp) before it is used.
        self.out = self.out_view = self.expected = None  # type: ignore[assignment]
        self.inbuf = self.in_view = None  # type: ignore[assignment]
        self.sent = 0
        self.received = 0
        self.trip = 0
        self.writing = False

    def set_trip(self, out: bytes | bytearray, expected: bytes | bytearray) -> None:
        """Make out the next message and expected the answer it must get."""
        if out is not self.out:
            self.out = out
            self.out_view = memoryview(out)
        self.expected = expected
        if self.inbuf is None or len(self.inbuf) != len(expected):
            self.inbuf = bytearray(len(expected))
            self.in_view = memoryview(self.inbuf)
        self.sent = 0
        self.received = 0


def _pattern(index: int, size: int) -> bytearray:
    """A fixed message of size bytes, different for each connection."""
    pattern = bytes((index * 31 + i) & 0xFF for i in range(256))
    return bytearray((pattern * (size // 256 + 1))[:size])


def _drive_stream(
    conns: list[_Conn], trips: int, next_trip: Callable[[_Conn], None], echo: bool
) -> int:
    """Do trips exchanges on each connection; return the bytes received.

    next_trip(conn) calls conn.set_trip() for conn.trip. Each exchange sends the whole
    message, then reads until the answer is complete and compares every byte. With echo,
    an answer longer than what was sent so far is an error too.
    """
    sel = selectors.DefaultSelector()
    active = len(conns)
    total = 0
    try:
        def start(conn: _Conn) -> None:
            # Begin the next trip, and send as much as the socket takes now.
            next_trip(conn)
            try:
                conn.sent = conn.sock.send(conn.out_view)
            except (BlockingIOError, InterruptedError):
                conn.sent = 0
            want_write = conn.sent < len(conn.out)
            if want_write != conn.writing:
                conn.writing = want_write
                events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want_write else 0)
                sel.modify(conn.sock, events, conn)

        for conn in conns:
            conn.sock.setblocking(False)
            sel.register(conn.sock, selectors.EVENT_READ, conn)
            if trips:
                start(conn)
            else:
                active -= 1
        while active:
            events = sel.select(STALL_TIMEOUT)
            if not events:
                raise EchoError(f"no progress for {STALL_TIMEOUT:.0f}s "
                                f"({active} connections still waiting)")
            for key, mask in events:
                conn = key.data
                size = len(conn.out)
                if mask & selectors.EVENT_WRITE and conn.sent < size:
                    try:
                        conn.sent += conn.sock.send(conn.out_view[conn.sent:])
                    except (BlockingIOError, InterruptedError):
                        pass
                    if conn.sent == size:
                        conn.writing = False
                        sel.modify(conn.sock, selectors.EVENT_READ, conn)
                if not mask & selectors.EVENT_READ:
                    continue
                try:
                    n = conn.sock.recv_into(conn.in_view[conn.received:])
                except (BlockingIOError, InterruptedError):
                    continue
                want = len(conn.expected)
                if n == 0:
                    raise EchoError(f"connection {conn.index}: server closed it in trip "
                                    f"{conn.trip} after answering {conn.received} of "
                                    f"{want} bytes")
                conn.received += n
                if echo and conn.received > conn.sent:
                    raise EchoError(f"connection {conn.index}: {conn.received} bytes "
                                    f"echoed but only {conn.sent} sent")
                if conn.received < want:
                    continue
                if conn.inbuf != conn.expected:
                    raise EchoError(f"connection {conn.index}: trip {conn.trip}: the "
                                    f"answer differs from the one expected")
                total += want
                conn.trip += 1
                if conn.trip < trips:
                    start(conn)
                else:
                    sel.unregister(conn.sock)
                    active -= 1
    finally:
        sel.close()
    return total


def _echo_stream(socks: list[socket.socket], size: int, trips: int) -> int:
    """Drive the echo round trips on connected stream sockets; return bytes echoed."""
    conns = [_Conn(i, sock) for i, sock in enumerate(socks)]
    messages = [_pattern(i, size) for i in range(len(conns))]
    stamp = size >= _HEADER.size

    def next_trip(conn: _Conn) -> None:
        # The same buffer every trip, its header re-stamped: the echo must match it.
        out = messages[conn.index]
        if stamp:
            _HEADER.pack_into(out, 0, conn.index, conn.trip)
        conn.set_trip(out, out)

    return _drive_stream(conns, trips, next_trip, echo=True)


# The HTTP workload's exchange. A request names a sequence number as its path (fixed
# width, so every response has the same size); the server answers with the path as the
# body. The server (fastloop._bench.httpd) builds its responses with http_response().
HTTP_REQUEST = b"GET /%08d HTTP/1.1\r\nHost: fastloop-bench\r\nUser-Agent: fastloop\r\n\r\n"
_HTTP_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "


def http_response(body: bytes) -> bytes:
    """The response the server sends for a request whose path is body."""
    return b"%s%d\r\n\r\n%s" % (_HTTP_HEAD, len(body), body)


def _http_stream(socks: list[socket.socket], requests: int, depth: int) -> int:
    """Send requests on each keep-alive connection, depth at a time (depth > 1:
    pipelined), checking every response; return the response bytes received."""
    if requests % depth:
        raise EchoError(f"{requests} requests do not split into batches of {depth}")
    conns = [_Conn(i, sock) for i, sock in enumerate(socks)]
    batches = [_http_batches(i, requests, depth) for i in range(len(conns))]

    def next_trip(conn: _Conn) -> None:
        conn.set_trip(*batches[conn.index][conn.trip])

    return _drive_stream(conns, requests // depth, next_trip, echo=False)


_batch_cache: dict[tuple[int, int, int], list[tuple[bytes, bytes]]] = {}


def _http_batches(index: int, requests: int, depth: int) -> list[tuple[bytes, bytes]]:
    """Return connection index's [(requests, expected responses)], one per batch.

    Kept for the next session with the same shape (the runner's warm-up makes them), so
    that the timed sessions spend the client's time on the sockets alone.
    """
    key = (index, requests, depth)
    if key not in _batch_cache:
        batches: list[tuple[bytes, bytes]] = []
        for first in range(index * 1_000_000, index * 1_000_000 + requests, depth):
            seqs = range(first, first + depth)
            batches.append((b"".join(HTTP_REQUEST % seq for seq in seqs),
                            b"".join(http_response(b"/%08d" % seq) for seq in seqs)))
        _batch_cache[key] = batches
    return _batch_cache[key]


def _echo_udp(socks: list[socket.socket], size: int, trips: int) -> int:
    """Drive the round trips on connected UDP sockets; return bytes echoed."""
    if size > UDP_MAX:
        raise EchoError(f"a {size}-byte datagram is larger than UDP allows ({UDP_MAX})")
    sel = selectors.DefaultSelector()
    conns = [_Conn(i, sock) for i, sock in enumerate(socks)]
    for conn in conns:
        conn.out = _pattern(conn.index, size)
    stamp = size >= _HEADER.size
    active = 0
    total = 0
    try:
        for conn in conns:
            conn.sock.setblocking(False)
            if trips:
                sel.register(conn.sock, selectors.EVENT_READ, conn)
                if stamp:
                    _HEADER.pack_into(conn.out, 0, conn.index, 0)
                conn.sock.send(conn.out)
                active += 1
        while active:
            events = sel.select(STALL_TIMEOUT)
            if not events:
                raise EchoError(f"no echo for {STALL_TIMEOUT:.0f}s "
                                f"({active} datagrams lost or never answered)")
            for key, _ in events:
                conn = key.data
                try:
                    data = conn.sock.recv(UDP_MAX + 1)
                except (BlockingIOError, InterruptedError):
                    continue
                if data != conn.out:
                    raise EchoError(f"socket {conn.index}: trip {conn.trip}: the echoed "
                                    f"datagram ({len(data)} bytes) differs from the one "
                                    f"sent")
                total += size
                conn.trip += 1
                if conn.trip < trips:
                    if stamp:
                        _HEADER.pack_into(conn.out, 0, conn.index, conn.trip)
                    conn.sock.send(conn.out)
                else:
                    sel.unregister(conn.sock)
                    active -= 1
    finally:
        sel.close()
    return total


def echo(kind: str, addr: Any, conns: int, size: int, trips: int) -> dict[str, int]:
    """Run one echo session; return the answer dict."""
    socks: list[socket.socket] = []
    try:
        for _ in range(conns):
            socks.append(_connect(kind, addr))
        if kind == "udp":
            echoed = _echo_udp(socks, size, trips)
        else:
            echoed = _echo_stream(socks, size, trips)
    finally:
        for sock in socks:
            sock.close()
    return {"trips": conns * trips, "bytes": echoed}


def http(addr: Any, conns: int, requests: int, depth: int) -> dict[str, int]:
    """Run one HTTP session over TCP; return the answer dict."""
    socks: list[socket.socket] = []
    try:
        for _ in range(conns):
            socks.append(_connect("tcp", addr))
        received = _http_stream(socks, requests, depth)
    finally:
        for sock in socks:
            sock.close()
    return {"requests": conns * requests, "bytes": received}


class Client:
    """The command interpreter: holds the idle connections between hold and release."""

    def __init__(self) -> None:
        self.held: list[socket.socket] = []

    def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        op = command.get("op")
        if op == "echo":
            return echo(command["kind"], command["addr"], int(command["conns"]),
                        int(command["size"]), int(command["trips"]))
        if op == "http":
            return http(command["addr"], int(command["conns"]), int(command["requests"]),
                        int(command["depth"]))
        if op == "hold":
            conns = int(command["conns"])
            _raise_nofile(conns + 64)
            for _ in range(conns):
                self.held.append(_connect(command["kind"], command["addr"]))
            return {"held": len(self.held)}
        if op == "release":
            count = len(self.held)
            self.release()
            return {"released": count}
        raise EchoError(f"unknown command {command!r}")

    def release(self) -> None:
        held, self.held = self.held, []
        for sock in held:
            sock.close()


def main() -> int:
    """Serve commands from stdin until EOF."""
    client = Client()
    stdin = sys.stdin.buffer
    out = sys.stdout.fileno()
    try:
        for line in stdin:
            if not line.strip():
                continue
            started = time.perf_counter()
            cpu = time.process_time()
            try:
                answer = client.handle(json.loads(line))
            except Exception as exc:  # reported to the workload, which raises it
                client.release()
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            answer["client_seconds"] = time.perf_counter() - started
            answer["client_cpu_seconds"] = time.process_time() - cpu
            os.write(out, (json.dumps(answer) + "\n").encode())
    finally:
        client.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
