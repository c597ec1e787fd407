"""The client process of the networking workloads: the same program for every loop.

The echo workloads (`fastloop._bench.echo`) run the server on the loop under test and
this client in a separate process, so the client's own work never lands on the loop
being measured and is identical whichever loop serves. It is stdlib-only (no fastloop
import), single-threaded, and drives all its connections from one `selectors` loop of
non-blocking sockets, so it stays light on a 2-core machine.

It reads commands from stdin, one JSON object per line, and answers each with one JSON
line on stdout (a single write, atomic on a pipe):

    {"op": "echo", "kind": "tcp"|"unix"|"udp", "addr": ["127.0.0.1", port] | path,
     "conns": 4, "size": 1024, "trips": 1000}
        Open `conns` connections (UDP: connected sockets), then on each one `trips`
        times: send a `size`-byte message, wait for the whole echo and compare every byte
        (each message carries its connection and trip number, so a stale, duplicated or
        reordered echo is caught). Then close everything and answer
        {"trips": <round trips completed>, "bytes": <bytes echoed>} or {"error": "..."}.
    {"op": "hold", "kind": "tcp"|"unix", "addr": ..., "conns": 2000}
        Open `conns` idle connections and keep them; answer {"held": n}.
    {"op": "release"}
        Close the held connections; answer {"released": n}.

EOF on stdin ends the process. Run it by hand for a quick check of a server:

    python -m fastloop._bench.echo_client   # then type a command line
"""

import json
import os
import selectors
import socket
import struct
import sys
import time

# A selector wait longer than this without any progress means the server is stuck.
STALL_TIMEOUT = 20.0
UDP_MAX = 65507

_HEADER = struct.Struct("<II")  # connection number, trip number


class EchoError(Exception):
    """The server's echo was wrong, late or cut short."""


def _raise_nofile(wanted):
    """Raise the soft limit on open files towards wanted (the hard limit permitting)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - POSIX only
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _connect(kind, addr):
    """Return a new blocking socket connected to the server."""
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
    """One connection's state: the message in flight and how much of it went/came back."""

    __slots__ = ("index", "sock", "out", "out_view", "inbuf", "in_view", "sent",
                 "received", "trip", "writing")

    def __init__(self, index, sock, size):
        self.index = index
        self.sock = sock
        # A fixed pattern per connection; the header is re-stamped for every trip.
        pattern = bytes((index * 31 + i) & 0xFF for i in range(256))
        self.out = bytearray((pattern * (size // 256 + 1))[:size])
        self.out_view = memoryview(self.out)
        self.inbuf = bytearray(size)
        self.in_view = memoryview(self.inbuf)
        self.sent = 0
        self.received = 0
        self.trip = 0
        self.writing = False


def _echo_stream(socks, size, trips):
    """Drive the round trips on connected stream sockets; return bytes echoed."""
    sel = selectors.DefaultSelector()
    conns = [_Conn(i, sock, size) for i, sock in enumerate(socks)]
    stamp = size >= _HEADER.size
    active = len(conns)
    total = 0
    try:
        def start(conn):
            # Begin the next trip: stamp, then send as much as the socket takes now.
            if stamp:
                _HEADER.pack_into(conn.out, 0, conn.index, conn.trip)
            conn.received = 0
            try:
                conn.sent = conn.sock.send(conn.out_view)
            except (BlockingIOError, InterruptedError):
                conn.sent = 0
            want_write = conn.sent < size
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
                if n == 0:
                    raise EchoError(f"connection {conn.index}: server closed it in trip "
                                    f"{conn.trip} after echoing {conn.received} of "
                                    f"{size} bytes")
                conn.received += n
                if conn.received > conn.sent:
                    raise EchoError(f"connection {conn.index}: {conn.received} bytes "
                                    f"echoed but only {conn.sent} sent")
                if conn.received < size:
                    continue
                if conn.inbuf != conn.out:
                    raise EchoError(f"connection {conn.index}: trip {conn.trip}: the echo "
                                    f"differs from the message sent")
                total += size
                conn.trip += 1
                if conn.trip < trips:
                    start(conn)
                else:
                    sel.unregister(conn.sock)
                    active -= 1
    finally:
        sel.close()
    return total


def _echo_udp(socks, size, trips):
    """Drive the round trips on connected UDP sockets; return bytes echoed."""
    if size > UDP_MAX:
        raise EchoError(f"a {size}-byte datagram is larger than UDP allows ({UDP_MAX})")
    sel = selectors.DefaultSelector()
    conns = [_Conn(i, sock, size) for i, sock in enumerate(socks)]
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


def echo(kind, addr, conns, size, trips):
    """Run one echo session; return the answer dict."""
    socks = []
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


class Client:
    """The command interpreter: holds the idle connections between hold and release."""

    def __init__(self):
        self.held = []

    def handle(self, command):
        op = command.get("op")
        if op == "echo":
            return echo(command["kind"], command["addr"], int(command["conns"]),
                        int(command["size"]), int(command["trips"]))
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

    def release(self):
        held, self.held = self.held, []
        for sock in held:
            sock.close()


def main():
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
