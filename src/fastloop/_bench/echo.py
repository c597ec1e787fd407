"""Networking workloads: echo servers on the loop under test, driven by a client process.

Each workload starts an echo server on the fresh loop it is given (TCP with a
`Protocol`, a `BufferedProtocol`, streams from `asyncio.start_server`, or the `sock_*`
coroutines; a Unix-socket `Protocol`; a UDP `DatagramProtocol`), then tells the client
process, the same for every loop, to open `ECHO_CONNECTIONS` connections and do a fixed
number of round trips on each: send a message, wait for the whole echo, compare every
byte. The workload returns when the client has answered and the server has seen every
connection close, and returns the number of round trips completed.

The client is `echoload` (C, compiled on first use by `cload`) where it can be built:
it costs less CPU per round trip than the servers, so the server is the bottleneck.
Elsewhere it is the Python client (`fastloop._bench.echo_client`: one `selectors` loop
over non-blocking sockets, which also drives the HTTP workloads). Either is one
long-lived process per interpreter, started by the first workload that needs it (the
runner's untimed warm-up run) and reused, so its start-up is never timed and its CPU
time is never the server's: the runner's `time.process_time()` around a run is the
server's CPU alone. They are stopped at exit, or by `stop_client()`.

`run_ceiling` does a workload's round trips against `echoload`'s plain epoll echo
server instead of a loop: the ceiling the loops are compared with (the runner's
"c-epoll" row).

Checks (each a `WorkloadError`): the client's own verdict (every echo byte-exact, in
order), the round trips and bytes it counted, the bytes the server saw, every connection
accepted and closed without error, and nothing reported to the loop's exception handler.
`run_session` is that driver without the echo-specific checks (`httpd` uses it too).
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Any, cast

from . import cload
from .base import Workload, WorkloadError, check

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from typing import TypeAlias, TypeVar

    # What a server gives the driver: its kind ("tcp", "unix" or "udp"), the address
    # the client connects to, and the coroutine function that closes it.
    Served: TypeAlias = tuple[str, list[Any] | str, Callable[[], Awaitable[None]]]
    # A server: serve(loop, stats) -> Served; stats may be a _Stats subclass (httpd's).
    _S = TypeVar("_S", bound="_Stats")
    Serve: TypeAlias = Callable[[asyncio.AbstractEventLoop, _S], Awaitable[Served]]

__all__ = ["ECHO_WORKLOADS", "SESSIONS", "EchoClient", "client", "echo_client",
           "run_ceiling", "run_echo", "run_session", "stop_client"]

# Concurrent client connections per echo workload.
ECHO_CONNECTIONS = 4
KIB = 1024
SIZES = {"1k": 1 * KIB, "10k": 10 * KIB, "100k": 100 * KIB}
# Round trips per connection for each message size: each run takes roughly 0.1-0.5 s
# on stock asyncio on a 2-core machine (the bigger messages move more bytes per trip).
TRIPS = {"1k": 1500, "10k": 1000, "100k": 250}
UDP_TRIPS = 1500
# How much a server reads at a time: asyncio's transports read 256 KiB per readiness;
# the streams and sock_* servers use the customary 64 KiB.
BUFFER_SIZE = 256 * KIB
STREAM_READ_SIZE = 64 * KIB
SOCK_RECV_SIZE = 64 * KIB
# A run that has not finished after this long is hung (a lost wake-up, a stuck write).
RUN_TIMEOUT = 60.0

_CLIENT_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "echo_client.py")


# --- the client process ---------------------------------------------------------------

def _json_line(command: dict[str, Any]) -> bytes:
    """A command as the Python client reads it."""
    return json.dumps(command).encode() + b"\n"


def _echoload_line(command: dict[str, Any]) -> bytes:
    """An echo command as echoload reads it (see echoload.c)."""
    counts = f"{command['conns']} {command['size']} {command['trips']}"
    if command["kind"] == "unix":
        return f"echo unix {counts} {command['addr']}\n".encode()
    host, port = command["addr"]
    return f"echo {command['kind']} {host} {port} {counts}\n".encode()


class EchoClient:
    """A client process, commanded by lines on its stdin, answering JSON lines on its
    stdout: by default the Python client; argv and encode make it another."""

    def __init__(self, argv: list[str] | None = None,
                 encode: Callable[[dict[str, Any]], bytes] = _json_line) -> None:
        # Run by path, not `-m`: the client needs nothing but the standard library, so it
        # works whatever sys.path the benchmark process had.
        self.proc = subprocess.Popen(
            argv or [sys.executable, _CLIENT_SCRIPT],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
        )
        assert self.proc.stdout is not None  # a PIPE
        self.fd = self.proc.stdout.fileno()
        self.encode = encode
        self._pending = b""

    def send(self, command: dict[str, Any]) -> None:
        """Send one command (a dict)."""
        assert self.proc.stdin is not None  # a PIPE
        self.proc.stdin.write(self.encode(command))
        self.proc.stdin.flush()

    def wait_answer(self) -> dict[str, Any]:
        """Block until the next answer (for a caller without a loop)."""
        os.set_blocking(self.fd, True)  # a loop's add_reader may have made it non-blocking
        while True:
            answer = self._take_line(os.read(self.fd, 65536))
            if answer is not None:
                return answer

    def _take_line(self, chunk: bytes) -> dict[str, Any] | None:
        """Feed chunk (b"" at EOF); return the parsed answer once a full line is in."""
        if not chunk:
            raise WorkloadError(f"the echo client exited (code {self.proc.poll()}) "
                                f"without answering")
        self._pending += chunk
        line, sep, rest = self._pending.partition(b"\n")
        if not sep:
            return None
        self._pending = rest
        answer: dict[str, Any] = json.loads(line)
        return answer

    def answer(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[dict[str, Any]]:
        """Return a future of the next answer, read by the (running) loop's add_reader."""
        future: asyncio.Future[dict[str, Any]] = loop.create_future()

        def on_readable() -> None:
            try:
                answer = self._take_line(os.read(self.fd, 65536))
            except BaseException as exc:
                loop.remove_reader(self.fd)
                if not future.done():
                    future.set_exception(exc)
                return
            if answer is not None:
                loop.remove_reader(self.fd)
                if not future.done():
                    future.set_result(answer)

        loop.add_reader(self.fd, on_readable)
        # A caller cancelled (timeout) must not leave the reader on a loop being closed.
        future.add_done_callback(lambda _: loop.remove_reader(self.fd))
        return future

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        """End the process (EOF on its stdin, then a kill if it lingers) and reap it."""
        assert self.proc.stdin is not None and self.proc.stdout is not None  # PIPEs
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


# The running client processes, by name: "python", "echoload".
_clients: dict[str, EchoClient] = {}


def _shared(name: str, start: Callable[[], EchoClient]) -> EchoClient:
    """Return the client process called name, starting it (start()) on first use."""
    running = _clients.get(name)
    if running is None or not running.alive():
        if running is not None:
            running.close()
        running = _clients[name] = start()
    return running


def client() -> EchoClient:
    """Return the shared Python client process, starting it on first use."""
    return _shared("python", EchoClient)


def echo_client() -> EchoClient:
    """Return the echo workloads' client: echoload if it can be built, else the
    Python one (`cload.describe()` says which, and why)."""
    try:
        binary = cload.build()
    except cload.Unavailable:
        return client()
    return _shared("echoload", lambda: EchoClient([binary, "client"], _echoload_line))


def stop_client() -> None:
    """Stop the shared client processes that are running."""
    while _clients:
        _clients.popitem()[1].close()


atexit.register(stop_client)


# --- the servers ----------------------------------------------------------------------

class _Stats:
    """What the server saw: connections accepted and closed, bytes echoed, errors."""

    __slots__ = ("conns", "accepted", "closed", "echoed", "errors", "all_closed")

    def __init__(self, loop: asyncio.AbstractEventLoop, conns: int) -> None:
        self.conns = conns
        self.accepted = 0
        self.closed = 0
        self.echoed = 0
        self.errors: list[BaseException] = []
        self.all_closed: asyncio.Future[None] = loop.create_future()

    def opened(self) -> None:
        self.accepted += 1

    def lost(self, exc: BaseException | None) -> None:
        if exc is not None:
            self.errors.append(exc)
        self.closed += 1
        if self.closed >= self.conns and not self.all_closed.done():
            self.all_closed.set_result(None)


class _EchoProtocol(asyncio.Protocol):
    """data_received -> write the same bytes back; EOF closes (the default)."""

    def __init__(self, stats: _Stats) -> None:
        self.stats = stats
        # Set by connection_made, before any data arrives.
        self.transport: asyncio.Transport = None  # type: ignore[assignment]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # a stream's
        self.stats.opened()

    def data_received(self, data: bytes) -> None:
        self.stats.echoed += len(data)
        self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.lost(exc)


class _EchoBufferedProtocol(asyncio.BufferedProtocol):
    """Reads into one preallocated buffer; writes back a copy of what arrived."""

    def __init__(self, stats: _Stats) -> None:
        self.stats = stats
        # Set by connection_made, before any data arrives.
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.buffer = memoryview(bytearray(BUFFER_SIZE))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # a stream's
        self.stats.opened()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.stats.echoed += nbytes
        # A copy: the buffer is overwritten by the next read, and a transport may keep
        # what it could not send at once.
        self.transport.write(bytes(self.buffer[:nbytes]))

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.lost(exc)


class _EchoDatagramProtocol(asyncio.DatagramProtocol):
    """datagram_received -> sendto the same bytes back to the sender."""

    def __init__(self, stats: _Stats, closed: asyncio.Future[None]) -> None:
        self.stats = stats
        # Set by connection_made, before any datagram arrives.
        self.transport: asyncio.DatagramTransport = None  # type: ignore[assignment]
        self.closed = closed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.DatagramTransport", transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.stats.echoed += len(data)
        self.transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.stats.errors.append(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.stats.errors.append(exc)
        if not self.closed.done():
            self.closed.set_result(None)


async def _close_server(server: asyncio.AbstractServer) -> None:
    server.close()
    await server.wait_closed()


async def _tcp_protocol_server(
    loop: asyncio.AbstractEventLoop, stats: _Stats,
    protocol_class: Callable[[_Stats], asyncio.BaseProtocol],
) -> Served:
    server = await loop.create_server(lambda: protocol_class(stats), "127.0.0.1", 0)
    address = server.sockets[0].getsockname()[:2]
    return "tcp", list(address), lambda: _close_server(server)


async def _serve_protocol(loop: asyncio.AbstractEventLoop, stats: _Stats) -> Served:
    return await _tcp_protocol_server(loop, stats, _EchoProtocol)


async def _serve_buffered(loop: asyncio.AbstractEventLoop, stats: _Stats) -> Served:
    return await _tcp_protocol_server(loop, stats, _EchoBufferedProtocol)


async def _serve_streams(loop: asyncio.AbstractEventLoop, stats: _Stats) -> Served:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stats.opened()
        error: Exception | None = None
        try:
            while True:
                data = await reader.read(STREAM_READ_SIZE)
                if not data:
                    break
                stats.echoed += len(data)
                writer.write(data)
                await writer.drain()
        except Exception as exc:  # counted, and fails the workload
            error = exc
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except Exception as exc:
                error = error or exc
            stats.lost(error)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    address = server.sockets[0].getsockname()[:2]
    return "tcp", list(address), lambda: _close_server(server)


async def _serve_sock(loop: asyncio.AbstractEventLoop, stats: _Stats) -> Served:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    listener.setblocking(False)

    async def serve(conn: socket.socket) -> None:
        error: Exception | None = None
        try:
            while True:
                data = await loop.sock_recv(conn, SOCK_RECV_SIZE)
                if not data:
                    break
                stats.echoed += len(data)
                await loop.sock_sendall(conn, data)
        except Exception as exc:
            error = exc
        finally:
            conn.close()
            stats.lost(error)

    async def accept_all() -> None:
        tasks: list[asyncio.Task[None]] = []
        try:
            for _ in range(stats.conns):
                conn, _ = await loop.sock_accept(listener)
                conn.setblocking(False)
                # As the transports do: no Nagle delay on the echo of a message's tail.
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                stats.opened()
                tasks.append(loop.create_task(serve(conn)))
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    acceptor = loop.create_task(accept_all())

    async def close() -> None:
        acceptor.cancel()
        try:
            await acceptor
        except asyncio.CancelledError:
            pass
        finally:
            listener.close()

    return "tcp", list(listener.getsockname()[:2]), close


async def _serve_unix(loop: asyncio.AbstractEventLoop, stats: _Stats) -> Served:
    folder = tempfile.mkdtemp(prefix="fastloop-echo-")
    path = os.path.join(folder, "echo.sock")
    try:
        server = await loop.create_unix_server(lambda: _EchoProtocol(stats), path)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise

    async def close() -> None:
        try:
            await _close_server(server)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    return "unix", path, close


async def _serve_udp(loop: asyncio.AbstractEventLoop, stats: _Stats) -> Served:
    closed = loop.create_future()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _EchoDatagramProtocol(stats, closed), local_addr=("127.0.0.1", 0))

    async def close() -> None:
        transport.close()
        await closed  # connection_lost has run: the socket is closed

    return "udp", list(transport.get_extra_info("sockname")[:2]), close


# --- the driver -----------------------------------------------------------------------

def run_session(
    loop: asyncio.AbstractEventLoop, serve: Serve[_S], stats: _S, command: dict[str, Any],
    what: str = "echo", session_client: EchoClient | None = None,
) -> dict[str, Any]:
    """Serve with serve(loop, stats) while the client (by default the Python one)
    carries out command (a dict without the server's "kind" and "addr", which are
    added here).

    Return the client's answer once it has answered and, for a stream server, the server
    has seen all stats.conns connections close. Raise WorkloadError if the client
    reports an error, the loop reported one, or the server saw a failure.
    """
    handler_errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: handler_errors.append(context))
    session_client = session_client or client()

    async def main() -> dict[str, Any]:
        kind, address, close = await serve(loop, stats)
        try:
            answer = session_client.answer(loop)
            session_client.send({**command, "kind": kind, "addr": address})
            result = await answer
            if "error" in result:
                raise WorkloadError(f"{what} client: {result['error']}")
            if kind != "udp":
                await stats.all_closed  # the client closed them all; the server saw it
        finally:
            await close()
        return result

    try:
        result = loop.run_until_complete(asyncio.wait_for(main(), RUN_TIMEOUT))
    except asyncio.TimeoutError:
        stop_client()  # it may be stuck mid-command; the next run starts a fresh one
        raise WorkloadError(f"{what} did not finish within {RUN_TIMEOUT:.0f}s "
                            f"(server saw {stats.accepted} connections, "
                            f"{stats.closed} closed, {stats.echoed} bytes)") from None
    except BaseException:
        stop_client()
        raise
    finally:
        loop.set_exception_handler(None)
    if handler_errors:
        context = handler_errors[0]
        raise WorkloadError(f"the loop reported an error: {context.get('message')!r} "
                            f"{context.get('exception')!r}")
    if stats.errors:
        raise WorkloadError(f"server side error: {stats.errors[0]!r}") from stats.errors[0]
    return result


def run_echo(
    loop: asyncio.AbstractEventLoop, serve: Serve[_Stats], size: int, trips: int,
    conns: int = ECHO_CONNECTIONS,
) -> int:
    """Serve with serve(loop, stats) while the client does conns x trips round trips.

    Return the round trips completed; raise WorkloadError on any wrong outcome.
    """
    stats = _Stats(loop, conns)
    result = run_session(loop, serve, stats,
                         {"op": "echo", "conns": conns, "size": size, "trips": trips},
                         session_client=echo_client())
    total = conns * trips
    check("round trips the client completed", result.get("trips"), total)
    check("bytes the client got back", result.get("bytes"), total * size)
    check("bytes the server echoed", stats.echoed, total * size)
    if serve is not _serve_udp:
        check("connections accepted", stats.accepted, conns)
        check("connections closed", stats.closed, conns)
    return total


def ceiling_session(
    kind: str, size: int, trips: int, server_argv: list[str] | None = None
) -> tuple[float, float, int]:
    """The round trips of run_echo against a plain C echo server; return (wall seconds,
    server CPU seconds, round trips). Raises cload.Unavailable.

    The server is echoload's epoll one, or the program `server_argv` starts: it prints
    `ready PORT` once listening, answers each line it reads with `cpu MICROSECONDS`
    (its own getrusage()), and exits at the end of its input.
    """
    binary = cload.build()
    folder = tempfile.mkdtemp(prefix="fastloop-echo-") if kind == "unix" else None
    path = os.path.join(folder, "echo.sock") if folder else None
    argv = server_argv or [binary, "server", kind]
    server = subprocess.Popen([*argv, *([path] if path else [])],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    stdin, stdout = server.stdin, server.stdout
    assert stdin is not None and stdout is not None  # PIPEs

    def server_cpu() -> float:
        # Asked of the server itself: getrusage() there has microseconds.
        stdin.write("\n")
        stdin.flush()
        return int(stdout.readline().split()[1]) / 1e6

    try:
        ready = stdout.readline().split()
        if ready[:1] != ["ready"]:
            raise WorkloadError(f"echo server {argv} did not start")
        address: list[Any] | str = path if path else ["127.0.0.1", int(ready[1])]
        session_client = echo_client()
        conns = ECHO_CONNECTIONS
        cpu = server_cpu()
        start = time.perf_counter()
        session_client.send({"op": "echo", "kind": kind, "addr": address, "conns": conns,
                             "size": size, "trips": trips})
        result = session_client.wait_answer()
        elapsed = time.perf_counter() - start
        cpu = server_cpu() - cpu
    except BaseException:
        stop_client()  # it may be stuck mid-command; the next run starts a fresh one
        raise
    finally:
        stdin.close()
        server.wait()
        stdout.close()
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
    if "error" in result:
        raise WorkloadError(f"echo client: {result['error']}")
    total = conns * trips
    check("round trips the client completed", result.get("trips"), total)
    check("bytes the client got back", result.get("bytes"), total * size)
    return elapsed, cpu, total


# Each echo workload's session, for run_ceiling: kind, message size, round trips.
SESSIONS: dict[str, tuple[str, int, int]] = {}


def run_ceiling(name: str) -> tuple[float, float, int]:
    """Do echo workload name's round trips against echoload's echo server; return (wall
    seconds, server CPU seconds, round trips). Raises KeyError for a workload that is
    not an echo one, and cload.Unavailable where echoload cannot be built."""
    return ceiling_session(*SESSIONS[name])


def _workload(
    serve: Serve[_Stats], size: int, trips: int
) -> Callable[[asyncio.AbstractEventLoop], int]:
    def run(loop: asyncio.AbstractEventLoop) -> int:
        return run_echo(loop, serve, size, trips)
    return run


_KINDS: list[tuple[str, Serve[_Stats], str]] = [
    # name, server, what
    ("tcp_proto", _serve_protocol, "TCP echo, Protocol"),
    ("tcp_buffered", _serve_buffered, "TCP echo, BufferedProtocol"),
    ("tcp_streams", _serve_streams, "TCP echo, asyncio.start_server streams"),
    ("tcp_sock", _serve_sock, "TCP echo, sock_accept/sock_recv/sock_sendall"),
]

# The echo workloads of the default comparison; the others (the 10 KiB sizes, the
# other servers' 100 KiB) tell little more and run with --all.
DEFAULT_ECHO = {"echo_tcp_proto_1k", "echo_tcp_proto_100k", "echo_tcp_buffered_1k",
                "echo_tcp_streams_1k", "echo_tcp_sock_1k", "echo_unix_proto_1k",
                "echo_udp_1k"}


def _make_workloads() -> list[Workload]:
    """Return the echo workloads, in the table's order."""
    specs: list[tuple[str, Callable[[asyncio.AbstractEventLoop], int], str, int]] = []
    for kind, serve, what in _KINDS:
        for label, size in SIZES.items():
            trips = TRIPS[label]
            SESSIONS[f"echo_{kind}_{label}"] = ("tcp", size, trips)
            specs.append((
                f"echo_{kind}_{label}", _workload(serve, size, trips),
                f"{what}, {ECHO_CONNECTIONS} conns x {trips} round trips "
                f"of {label[:-1]} KiB",
                ECHO_CONNECTIONS * trips))
    trips = TRIPS["1k"]
    SESSIONS["echo_unix_proto_1k"] = ("unix", SIZES["1k"], trips)
    SESSIONS["echo_udp_1k"] = ("udp", SIZES["1k"], UDP_TRIPS)
    specs.append((
        "echo_unix_proto_1k", _workload(_serve_unix, SIZES["1k"], trips),
        f"Unix-socket echo, Protocol, {ECHO_CONNECTIONS} conns x {trips} round trips "
        f"of 1 KiB",
        ECHO_CONNECTIONS * trips))
    specs.append((
        "echo_udp_1k", _workload(_serve_udp, SIZES["1k"], UDP_TRIPS),
        f"UDP echo, DatagramProtocol, {ECHO_CONNECTIONS} sockets x {UDP_TRIPS} round trips "
        f"of 1 KiB", ECHO_CONNECTIONS * UDP_TRIPS))
    return [Workload(*spec, extra=spec[0] not in DEFAULT_ECHO) for spec in specs]


ECHO_WORKLOADS = _make_workloads()
