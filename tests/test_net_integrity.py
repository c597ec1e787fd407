"""Data integrity under backpressure: every byte arrives once, in order, on every path.

Random message sizes (from one byte to several MiB), random read pauses on both ends
(so write buffers fill, pause_writing/resume_writing fire and the echo side stops
reading while its own output is blocked), sha256 on both ends, and the process's fd
count before and after. The seeds are fixed: a failure replays.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import socket

import pytest

from helpers import run_briefly
from nethelpers import (  # noqa: F401 - net is a fixture
    client_context,
    net,
    open_fds,
    server_context,
)

MiB = 1024 * 1024


def _messages(rng, total):
    """Random message sizes summing to `total`: many tiny, some medium, a few of MiBs."""
    sizes = []
    left = total
    while left:
        kind = rng.random()
        if kind < 0.5:
            n = rng.randint(1, 100)
        elif kind < 0.85:
            n = rng.randint(100, 256 * 1024)
        else:
            n = rng.randint(256 * 1024, 3 * MiB)
        n = min(n, left)
        sizes.append(n)
        left -= n
    blob = os.urandom(total)
    out, pos = [], 0
    for n in sizes:
        out.append(memoryview(blob)[pos : pos + n])
        pos += n
    return out, blob


class _Pauser:
    """Pauses a transport's reading now and then, for a random short while."""

    def __init__(self, loop, rng, prob):
        self.loop, self.rng, self.prob = loop, rng, prob
        self.pauses = 0
        self.timers = []

    def maybe_pause(self, transport, is_blocked=lambda: False):
        if self.rng.random() >= self.prob:
            return
        transport.pause_reading()
        self.pauses += 1

        def resume():
            if is_blocked():  # still held back by the other direction's flow control
                return
            # asyncio's TLS transport learns that the connection is gone only when the
            # protocol's connection_lost runs, an iteration after its TCP transport is
            # dropped: in between, is_closing() is still False and resume_reading()
            # fails (stock asyncio too). Its extra 'socket' is None from that moment.
            tls_gone = (transport.get_extra_info("sslcontext") is not None
                        and transport.get_extra_info("socket") is None)
            if not transport.is_closing() and not tls_gone:
                transport.resume_reading()

        self.timers.append(self.loop.call_later(self.rng.uniform(0, 0.003), resume))

    def stop(self):
        """At connection_lost: no resume_reading() on a transport that is gone."""
        for t in self.timers:
            t.cancel()


class EchoServer(asyncio.Protocol):
    """Echoes, stops reading while its own writes are paused, pauses at random."""

    def __init__(self, loop, rng, done):
        self.loop = loop
        self.pauser = _Pauser(loop, rng, 0.15)
        self.digest = hashlib.sha256()
        self.received = 0
        self.write_paused = False
        self.lost_excs = []
        self.done = done

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.digest.update(data)
        self.received += len(data)
        self.transport.write(data)
        if not self.write_paused:
            self.pauser.maybe_pause(self.transport, lambda: self.write_paused)

    def pause_writing(self):
        self.write_paused = True
        self.transport.pause_reading()

    def resume_writing(self):
        self.write_paused = False
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def eof_received(self):
        self.transport.close()  # flushes the echo first
        return True

    def connection_lost(self, exc):
        self.pauser.stop()
        self.lost_excs.append(exc)
        if not self.done.done():
            self.done.set_result(exc)


class BufferedEchoServer(EchoServer, asyncio.BufferedProtocol):
    def __init__(self, loop, rng, done):
        super().__init__(loop, rng, done)
        # Odd size: reads split messages at unaligned places.
        self.buf = bytearray(rng.randint(1000, 70000))

    def get_buffer(self, sizehint):
        return self.buf

    def buffer_updated(self, nbytes):
        self.data_received(bytes(self.buf[:nbytes]))


class PumpClient(asyncio.Protocol):
    """Sends `messages` as fast as flow control allows and hashes the echo."""

    def __init__(self, loop, rng, messages, total, use_eof=True):
        self.loop = loop
        self.pauser = _Pauser(loop, rng, 0.15)
        self.messages = list(messages)
        self.total = total
        self.use_eof = use_eof
        self.sent = hashlib.sha256()
        self.echo = hashlib.sha256()
        self.received = 0
        self.paused = False
        self.pauses = 0
        self.events = []
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        # A small send buffer: writes back up, and pause_writing comes, even when the
        # peer drains its socket as fast as it fills (io_uring's completion reads).
        sock = transport.get_extra_info("socket")
        if sock is not None:  # not on a pipe
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        self.loop.call_soon(self._pump)

    def _pump(self):
        while self.messages and not self.paused:
            m = self.messages.pop(0)
            self.sent.update(m)
            self.transport.write(m)
        if not self.messages and self.use_eof and not self.paused and "eof_sent" not in self.events:
            self.events.append("eof_sent")
            self.transport.write_eof()

    def pause_writing(self):
        assert not self.paused, "pause_writing twice in a row"
        self.paused = True
        self.pauses += 1

    def resume_writing(self):
        assert self.paused, "resume_writing without pause_writing"
        self.paused = False
        self.loop.call_soon(self._pump)

    def data_received(self, data):
        self.echo.update(data)
        self.received += len(data)
        if self.received == self.total and not self.use_eof:
            self.transport.close()
        else:
            self.pauser.maybe_pause(self.transport)

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.pauser.stop()
        self.events.append("lost")
        if not self.lost.done():
            self.lost.set_result(exc)


def _warm(loop):
    run_briefly(loop, 2)
    return open_fds()


def _check(net, client, server, blob, fds_before):
    assert net.run(client.lost) is None
    assert net.run(server.done) is None
    digest = hashlib.sha256(blob).digest()
    assert server.received == len(blob)
    assert server.digest.digest() == digest
    assert client.sent.digest() == digest
    assert client.received == len(blob)
    assert client.echo.digest() == digest
    assert client.events.count("lost") == 1
    assert server.lost_excs == [None]
    net.track(server.transport)  # closed already; close_all() closes it once more (3.10 TLS)
    net.close_all()
    assert open_fds() == fds_before


def _echo_over(net, seed, total, server_cls, serve, connect, use_eof=True):
    loop = net.loop
    fds_before = _warm(loop)
    rng = random.Random(seed)
    messages, blob = _messages(rng, total)
    done = loop.create_future()
    servers = []

    def factory():
        s = server_cls(loop, random.Random(seed + 1), done)
        servers.append(s)
        return s

    srv = net.track(net.run(serve(factory)))
    tr, client = net.run(connect(srv, lambda: PumpClient(loop, rng, messages, total, use_eof)))
    net.track(tr)
    _check(net, client, servers[0], blob, fds_before)
    return client, servers[0]


@pytest.mark.parametrize("server_cls", [EchoServer, BufferedEchoServer], ids=["protocol", "buffered"])
@pytest.mark.parametrize("seed", [1, 2])
def test_tcp_echo_integrity(loop, net, server_cls, seed):
    client, server = _echo_over(
        net, seed, 12 * MiB, server_cls,
        lambda f: loop.create_server(f, "127.0.0.1", 0),
        lambda srv, f: loop.create_connection(f, *srv.sockets[0].getsockname()))
    assert client.events == ["eof_sent", "eof", "lost"]
    assert client.pauses > 0, "the test never exercised pause_writing"
    assert client.pauser.pauses > 0 and server.pauser.pauses > 0


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no AF_UNIX here")
def test_unix_echo_integrity(loop, net):
    path = os.path.join(net.tmpdir(), "s")
    client, _ = _echo_over(
        net, 3, 8 * MiB, EchoServer,
        lambda f: loop.create_unix_server(f, path),
        lambda srv, f: loop.create_unix_connection(f, path))
    assert client.events == ["eof_sent", "eof", "lost"]
    assert client.pauses > 0


def test_tls_echo_integrity(loop, net):
    client, _ = _echo_over(
        net, 4, 3 * MiB, EchoServer,
        lambda f: loop.create_server(f, "127.0.0.1", 0, ssl=server_context()),
        lambda srv, f: loop.create_connection(f, *srv.sockets[0].getsockname(),
                                              ssl=client_context(), server_hostname="localhost"),
        use_eof=False)  # TLS transports cannot half-close
    assert client.events[-1] == "lost" and "eof_sent" not in client.events


def test_pipe_integrity(loop, net):
    fds_before = _warm(loop)
    rng = random.Random(5)
    messages, blob = _messages(rng, 8 * MiB)
    r, w = os.pipe()
    rf = net.track(open(r, "rb", buffering=0))
    wf = net.track(open(w, "wb", buffering=0))
    digest = hashlib.sha256()
    pauser = _Pauser(loop, rng, 0.2)

    class Reader(asyncio.Protocol):
        received = 0

        def connection_made(self, transport):
            self.transport = transport
            self.lost = loop.create_future()

        def data_received(self, data):
            digest.update(data)
            self.received += len(data)
            pauser.maybe_pause(self.transport)

        def connection_lost(self, exc):
            pauser.stop()
            self.lost.set_result(exc)

    class Writer(PumpClient):
        def data_received(self, data):  # pragma: no cover - a write pipe reads nothing
            raise AssertionError(data)

    rtr, reader = net.run(loop.connect_read_pipe(Reader, rf))
    net.track(rtr)
    wtr, writer = net.run(loop.connect_write_pipe(lambda: Writer(loop, rng, messages, len(blob)), wf))
    net.track(wtr)
    assert net.run(reader.lost) is None
    assert net.run(writer.lost) is None
    assert reader.received == len(blob)
    assert digest.digest() == hashlib.sha256(blob).digest()
    assert writer.sent.digest() == digest.digest()
    assert writer.pauses > 0 and pauser.pauses > 0
    net.close_all()
    assert open_fds() == fds_before


def test_streams_integrity(loop, net):
    fds_before = _warm(loop)
    rng = random.Random(6)
    messages, blob = _messages(rng, 8 * MiB)
    server_digest = hashlib.sha256()

    async def handler(reader, writer):
        srng = random.Random(7)
        while True:
            how = srng.random()
            if how < 0.3:
                try:
                    chunk = await reader.readexactly(srng.randint(1, 100_000))
                except asyncio.IncompleteReadError as e:
                    chunk = e.partial
            else:
                chunk = await reader.read(srng.randint(1, 300_000))
            if not chunk:
                break
            server_digest.update(chunk)
            writer.write(chunk)
            await writer.drain()
            if srng.random() < 0.1:
                await asyncio.sleep(srng.uniform(0, 0.002))
        writer.close()
        await writer.wait_closed()

    async def main():
        srv = net.track(await asyncio.start_server(handler, "127.0.0.1", 0))
        reader, writer = await asyncio.open_connection(*srv.sockets[0].getsockname())
        net.track(writer)

        async def send():
            for m in messages:
                writer.write(m)
                await writer.drain()
            writer.write_eof()

        async def receive():
            digest = hashlib.sha256()
            total = 0
            while chunk := await reader.read(rng.randint(1, 200_000)):
                digest.update(chunk)
                total += len(chunk)
                if rng.random() < 0.1:
                    await asyncio.sleep(rng.uniform(0, 0.002))
            return total, digest.digest()

        _, (total, digest) = await asyncio.gather(send(), receive())
        writer.close()
        await writer.wait_closed()
        srv.close()
        await srv.wait_closed()
        return total, digest

    total, digest = net.run(main())
    assert total == len(blob)
    assert digest == hashlib.sha256(blob).digest()
    assert server_digest.digest() == digest
    net.close_all()
    assert open_fds() == fds_before


def test_many_connections_leave_no_fds(loop, net):
    fds_before = _warm(loop)

    async def handler(reader, writer):
        writer.write(await reader.read())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def one(port, i):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        payload = os.urandom(i * 1000 + 1)
        writer.write(payload)
        writer.write_eof()
        got = await reader.read()
        writer.close()
        await writer.wait_closed()
        return got == payload

    async def main():
        srv = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        try:
            results = await asyncio.gather(*(one(port, i) for i in range(50)))
        finally:
            srv.close()
            await srv.wait_closed()
        return results

    assert net.run(main()) == [True] * 50
    run_briefly(loop, 3)
    assert open_fds() == fds_before
