"""Every byte to the right peer, at scale: a stress run of one event loop.

Clients and servers share one loop (so both ends exercise it). Each client session
opens a connection (TCP, Unix or TLS), sends tagged requests of random sizes, and
then, at random, waits for every answer and closes, aborts mid-request, resets
(SO_LINGER 0) or closes right after a large write. The server answers each request
after a random delay and now and then aborts a connection itself while answers are
still scheduled, or pauses reading for a moment. Connections come and go by the
thousand, so fd numbers are reused while callbacks of the transports that had them
are still queued.

What is checked: every request reaches the server byte-exact and on the connection
of the client that sent it; every answer reaches the client that asked, byte-exact;
a client that waited for its answers gets all of them unless the server aborted it;
no protocol gets a callback before connection_made or after connection_lost; every
connection the server accepted is lost exactly once by the end; the loop's exception
handler is never called.

The suite runs a short version (tests/test_stress.py); anyone can run it longer:

    python tests/stress.py --loop cy --minutes 10 --tcp 5000

(`--help` for the knobs). It prints what it held and what it checked, and exits 1 on
any violation.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import os
import random
import resource
import socket
import ssl
import struct
import sys
import tempfile
import time

# Request: tag, payload length, the delay the server waits before answering (ms).
# Answer: tag, payload length, 0, then the request's payload reversed.
HEADER = struct.Struct("!QII")
MAX_PAYLOAD = 1 << 20
# A tag is the connection's serial number (unique in the run) and the request's index.
TAG_BITS = 20
# Payloads are slices of one random block, at an offset that depends on the tag: a
# byte moved, lost or taken from another request shows as a mismatch.
BLOCK = random.Random(13).randbytes(2 * MAX_PAYLOAD)
SCENARIOS = ("answered", "abort", "reset", "close-after-write")
SCENARIO_WEIGHTS = (70, 10, 10, 10)
DELAYS_MS = (0, 0, 0, 1, 5, 20, 100)
# A session that waits for its answers fails after this long (a hang, not a speed bound).
ANSWER_DEADLINE = 120.0


def payload_for(tag: int, n: int) -> bytes:
    offset = (tag * 2654435761) % (len(BLOCK) - n)
    return BLOCK[offset : offset + n]


def request_size(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.6:
        return rng.randint(0, 512)
    if r < 0.9:
        return rng.randint(512, 16384)
    if r < 0.99:
        return rng.randint(16384, 262144)
    return rng.randint(262144, MAX_PAYLOAD)


class Stats:
    """Counters of one run and the violations found (each a message)."""

    def __init__(self) -> None:
        self.count: collections.Counter[str] = collections.Counter()
        self.errors: list[str] = []
        self.open_now = 0
        self.open_peak = 0
        self.server_aborted: set[int] = set()
        # fd -> the protocol that last had it, to see fds reused while the server
        # still had answers scheduled for the old connection.
        self.fd_owner: dict[int, Framed] = {}

    def error(self, message: str) -> None:
        if len(self.errors) < 50:
            self.errors.append(message)
        self.count["violations"] += 1

    def opened(self) -> None:
        self.open_now += 1
        self.open_peak = max(self.open_peak, self.open_now)


class Framed(asyncio.Protocol):
    """Splits the stream into frames and checks the callback order of the protocol."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.buf = bytearray()
        self.state = "new"
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        if self.state != "new":
            self.stats.error(f"{type(self).__name__}: connection_made when {self.state}")
        self.state = "open"
        self.transport = transport
        self.stats.opened()
        sock = transport.get_extra_info("socket")
        fd = sock.fileno() if sock is not None else -1
        old = self.stats.fd_owner.get(fd)
        if old is not None:
            self.stats.count["fds reused"] += 1
            if getattr(old, "scheduled", 0):
                self.stats.count["fds reused while answers of the old one were pending"] += 1
        self.stats.fd_owner[fd] = self

    def data_received(self, data: bytes) -> None:
        if self.state != "open":
            self.stats.error(f"{type(self).__name__}: data_received when {self.state}")
            return
        buf = self.buf
        buf += data
        size = HEADER.size
        while len(buf) >= size and not self.transport.is_closing():
            tag, n, delay = HEADER.unpack_from(buf)
            if n > MAX_PAYLOAD:
                self.stats.error(f"{type(self).__name__}: garbage header {bytes(buf[:size])!r}")
                self.transport.abort()
                return
            if len(buf) < size + n:
                break
            payload = bytes(buf[size : size + n])
            del buf[: size + n]
            self.frame(tag, payload, delay)

    def eof_received(self):
        if self.state != "open":
            self.stats.error(f"{type(self).__name__}: eof_received when {self.state}")
        return None  # close

    def connection_lost(self, exc) -> None:
        if self.state != "open":
            self.stats.error(f"{type(self).__name__}: connection_lost when {self.state}")
        self.state = "lost"
        self.stats.open_now -= 1
        # Before 3.11 a TLS transport lost by its peer still warns "unclosed
        # transport" when collected unless closed; a no-op for the others.
        self.transport.close()

    def frame(self, tag: int, payload: bytes, delay: int) -> None:
        raise NotImplementedError


class ServerProtocol(Framed):
    def __init__(self, stats: Stats, loop, rng: random.Random) -> None:
        super().__init__(stats)
        self.loop = loop
        self.rng = rng
        self.serial: int | None = None
        self.scheduled = 0

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.stats.count["server connections"] += 1

    def frame(self, tag: int, payload: bytes, delay: int) -> None:
        stats = self.stats
        serial = tag >> TAG_BITS
        if self.serial is None:
            self.serial = serial
        elif serial != self.serial:
            stats.error(f"server: request of connection {serial} on connection {self.serial}")
        if payload != payload_for(tag, len(payload)):
            stats.error(f"server: request {tag:#x} corrupted ({len(payload)} bytes)")
        stats.count["requests"] += 1
        stats.count["request bytes"] += len(payload)
        answer = HEADER.pack(tag, len(payload), 0) + payload[::-1]
        if delay:
            self.scheduled += 1
            self.loop.call_later(delay / 1000, self.answer_later, answer)
        else:
            self.transport.write(answer)
        r = self.rng.random()
        if r < 0.02:
            # Abort with answers still scheduled: their callbacks must find it closed.
            stats.server_aborted.add(serial)
            stats.count["server aborts"] += 1
            self.transport.abort()
        elif r < 0.04:
            self.transport.pause_reading()
            self.loop.call_later(0.002, self.resume)
            stats.count["server read pauses"] += 1

    def answer_later(self, answer: bytes) -> None:
        self.scheduled -= 1
        if self.state != "open" or self.transport.is_closing():
            self.stats.count["answers dropped: connection gone"] += 1
            return
        self.transport.write(answer)

    def resume(self) -> None:
        if self.state != "open" or self.transport.is_closing():
            return
        ssl_protocol = getattr(self.transport, "_ssl_protocol", None)
        if sys.version_info < (3, 11) and ssl_protocol and ssl_protocol._transport is None:
            # 3.10's sslproto drops its socket transport one callback before it tells
            # the app protocol, and resume_reading() then fails (asyncio's own gap).
            return
        self.transport.resume_reading()


class ClientProtocol(Framed):
    def __init__(self, stats: Stats, serial: int) -> None:
        super().__init__(stats)
        self.serial = serial
        self.expected: dict[int, int] = {}  # tag -> payload length
        self.sent: set[int] = set()
        self.all_sent = False  # until then, no answer missing does not mean done
        self.done = asyncio.get_running_loop().create_future()

    def frame(self, tag: int, payload: bytes, delay: int) -> None:
        stats = self.stats
        if tag >> TAG_BITS != self.serial:
            stats.error(f"client {self.serial}: got the answer for connection {tag >> TAG_BITS}")
            return
        if tag not in self.sent:
            stats.error(f"client {self.serial}: answer {tag:#x} to nothing it sent")
            return
        self.sent.discard(tag)
        if payload != payload_for(tag, len(payload))[::-1]:
            stats.error(f"client {self.serial}: answer {tag:#x} corrupted ({len(payload)} bytes)")
        stats.count["answers checked"] += 1
        stats.count["answer bytes"] += len(payload)
        self.expected.pop(tag, None)
        self.check_done()

    def check_done(self) -> None:
        if self.all_sent and not self.expected and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc) -> None:
        super().connection_lost(exc)
        if not self.done.done():
            self.done.set_result(None)


class Run:
    """One stress run: servers, client slots, and the checks at the end."""

    def __init__(self, loop, args, certs: tuple[str, str, str] | None) -> None:
        self.loop = loop
        self.args = args
        self.stats = Stats()
        self.rng = random.Random(args.seed)
        self.serials = itertools.count(1)
        self.servers: list = []
        self.certs = certs
        self.deadline = time.monotonic() + args.seconds if args.seconds else None
        self.left: dict[str, int] = {}

    def handle_exception(self, loop, context) -> None:
        self.stats.error(f"exception handler called: {context.get('message')!r} "
                         f"{context.get('exception')!r}")

    async def start(self, tmpdir: str) -> dict[str, tuple]:
        """Start the servers; return the connect arguments per kind."""
        loop = self.loop
        factory = lambda: ServerProtocol(self.stats, loop, self.rng)  # noqa: E731
        connect: dict[str, tuple] = {}
        if self.args.tcp:
            # Several ports: every connection ends in TIME_WAIT somewhere, and a long
            # run would exhaust one address pair's ephemeral ports.
            ports = []
            for _ in range(self.args.tcp_ports):
                server = await loop.create_server(factory, "127.0.0.1", 0, backlog=4096)
                self.servers.append(server)
                ports.append(server.sockets[0].getsockname()[1])
            connect["tcp"] = (ports, None)
        if self.args.unix:
            path = os.path.join(tmpdir, "stress.sock")
            self.servers.append(await loop.create_unix_server(factory, path, backlog=4096))
            connect["unix"] = (path, None)
        if self.args.tls:
            ca, cert, key = self.certs
            server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server_ctx.load_cert_chain(cert, key)
            client_ctx = ssl.create_default_context(cafile=ca)
            server = await loop.create_server(
                factory, "127.0.0.1", 0, ssl=server_ctx, backlog=4096
            )
            self.servers.append(server)
            connect["tls"] = ([server.sockets[0].getsockname()[1]], client_ctx)
        return connect

    def more(self, kind: str) -> bool:
        if self.deadline is not None:
            return time.monotonic() < self.deadline
        if self.left[kind] <= 0:
            return False
        self.left[kind] -= 1
        return True

    async def slot(self, kind: str, target, rng: random.Random) -> None:
        while self.more(kind):
            await self.session(kind, target, rng)

    async def session(self, kind: str, target, rng: random.Random) -> None:
        loop, stats = self.loop, self.stats
        serial = next(self.serials)
        proto = ClientProtocol(stats, serial)
        where, ctx = target
        try:
            if kind == "unix":
                transport, _ = await loop.create_unix_connection(lambda: proto, where)
            else:
                port = rng.choice(where)
                extra = {"ssl": ctx, "server_hostname": "localhost"} if ctx else {}
                transport, _ = await loop.create_connection(
                    lambda: proto, "127.0.0.1", port, **extra
                )
        except OSError as exc:
            stats.error(f"{kind} connect failed: {exc!r}")
            return
        stats.count[f"{kind} sessions"] += 1
        scenario = rng.choices(SCENARIOS, SCENARIO_WEIGHTS)[0]
        stats.count[f"scenario {scenario}"] += 1
        for i in range(rng.randint(1, 6)):
            tag = serial << TAG_BITS | i
            n = request_size(rng)
            if scenario == "close-after-write" and i == 0:
                n = max(n, 256 * 1024)  # more than the socket buffers take at once
            frame = HEADER.pack(tag, n, rng.choice(DELAYS_MS)) + payload_for(tag, n)
            proto.sent.add(tag)
            if scenario == "answered":
                proto.expected[tag] = n
            if transport.is_closing():
                break
            if rng.random() < 0.2:
                # In two writes, one loop iteration apart: frames cut anywhere.
                cut = rng.randint(0, len(frame))
                transport.write(frame[:cut])
                await asyncio.sleep(0)
                if transport.is_closing():
                    break
                transport.write(frame[cut:])
            else:
                transport.write(frame)
            if rng.random() < 0.3:
                await asyncio.sleep(0)
        proto.all_sent = True
        proto.check_done()
        if transport.is_closing():  # the server aborted us meanwhile
            await proto.done
        elif scenario == "answered":
            try:
                await asyncio.wait_for(asyncio.shield(proto.done), ANSWER_DEADLINE)
            except asyncio.TimeoutError:
                stats.error(f"{kind} client {serial}: answers missing after "
                            f"{ANSWER_DEADLINE} s: {sorted(proto.expected)}")
            transport.close()
        elif scenario == "abort":
            transport.write(HEADER.pack(serial << TAG_BITS | 63, 1000, 0) + b"partial")
            transport.abort()
        elif scenario == "reset":
            sock = transport.get_extra_info("socket")
            # (3.10's TLS transport may no longer name its socket once closing.)
            if kind != "unix" and sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            transport.close()
        await proto.done
        if scenario == "answered" and proto.expected and serial not in stats.server_aborted:
            stats.error(f"{kind} client {serial}: connection lost with answers "
                        f"{sorted(proto.expected)} missing, and the server did not abort it")

    async def main(self) -> None:
        self.loop.set_exception_handler(self.handle_exception)
        with tempfile.TemporaryDirectory() as tmpdir:
            connect = await self.start(tmpdir)
            slots = []
            for kind, target in connect.items():
                n = getattr(self.args, kind)
                self.left[kind] = n * self.args.sessions
                slots += [self.slot(kind, target, random.Random(self.rng.random()))
                          for _ in range(n)]
            await asyncio.gather(*slots)
            # Every connection the server saw must be lost by now, or soon.
            for _ in range(int(ANSWER_DEADLINE * 100)):
                if self.stats.open_now == 0:
                    break
                await asyncio.sleep(0.01)
            else:
                self.stats.error(f"{self.stats.open_now} connections never lost")
            for server in self.servers:
                server.close()
                await server.wait_closed()
            self.stats.fd_owner.clear()


def raise_fd_limit(wanted: int) -> int:
    """Raise RLIMIT_NOFILE's soft limit towards `wanted`; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return soft


def fds_needed(args) -> int:
    # Both ends of every connection live in this process, and a slot may open its next
    # connection before the server has closed its end of the last one (a run with 8500
    # slots peaked at 17562 ends), plus headroom for the rest of the process.
    return 5 * (args.tcp + args.unix + args.tls) // 2 + 256


def run(loop, args, certs=None) -> Stats:
    """Run one stress round on `loop` (not closed here); return its Stats."""
    runner = Run(loop, args, certs)
    loop.run_until_complete(runner.main())
    return runner.stats


def report(stats: Stats, args, elapsed: float, out=sys.stdout) -> None:
    print(f"held: {args.tcp} TCP + {args.unix} Unix + {args.tls} TLS client slots at once, "
          f"{stats.open_peak} connection ends open at the peak; {elapsed:.1f} s", file=out)
    for key in sorted(stats.count):
        print(f"  {key}: {stats.count[key]}", file=out)
    if stats.errors:
        print(f"VIOLATIONS ({stats.count['violations']}), the first ones:", file=out)
        for message in stats.errors:
            print(f"  {message}", file=out)
    else:
        print("checked: every request and answer byte-exact on the right connection, "
              "callback order, every connection lost once, no exception handler call: OK",
              file=out)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loop", choices=("cy", "py", "aio"), default="cy")
    p.add_argument("--minutes", type=float, default=1.0, help="how long to run")
    p.add_argument("--tcp", type=int, default=4000, help="concurrent TCP client slots")
    p.add_argument("--tcp-ports", type=int, default=4, help="TCP server ports")
    p.add_argument("--unix", type=int, default=400, help="concurrent Unix client slots")
    p.add_argument("--tls", type=int, default=100, help="concurrent TLS client slots")
    p.add_argument("--sessions", type=int, default=0,
                   help="sessions per slot instead of --minutes")
    p.add_argument("--seed", type=int, default=None)
    return p


def make_loop(kind: str):
    if kind == "aio":
        return asyncio.SelectorEventLoop()
    from helpers import loop_class

    return loop_class(kind)()


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(1 << 32)
    args.seconds = 0 if args.sessions else args.minutes * 60
    limit = raise_fd_limit(fds_needed(args))
    if limit < fds_needed(args):
        print(f"RLIMIT_NOFILE's hard limit is {limit}: use fewer slots", file=sys.stderr)
        return 2
    here = os.path.dirname(os.path.abspath(__file__))
    certs = tuple(os.path.join(here, "certs", f) for f in ("ca.pem", "server.pem", "server.key"))
    loop = make_loop(args.loop)
    print(f"stress: loop {args.loop} ({type(loop).__module__}), seed {args.seed}", flush=True)
    t0 = time.monotonic()
    try:
        stats = run(loop, args, certs)
    finally:
        loop.close()
    report(stats, args, time.monotonic() - t0)
    return 1 if stats.errors else 0


if __name__ == "__main__":
    sys.exit(main())
