"""asyncio streams (open_connection, start_server, the Unix variants) on top of the loop.

The streams layer is asyncio's own code; these tests check that it works unchanged over
the loop's transports (StreamReaderProtocol, flow control through drain(), EOF, close).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket

import pytest

from nethelpers import HOSTS, net, refused_tcp_address  # noqa: F401 - net is a fixture


def _port(server):
    return server.sockets[0].getsockname()[1]


async def _upper_handler(reader, writer):
    try:
        while line := await reader.readline():
            writer.write(line.upper())
            await writer.drain()
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize("host", HOSTS)
def test_open_connection_and_start_server(loop, net, host):
    async def main():
        srv = net.track(await asyncio.start_server(_upper_handler, host, 0))
        reader, writer = await asyncio.open_connection(host, _port(srv))
        net.track(writer)
        assert writer.get_extra_info("peername")[:2] == (host, _port(srv))
        writer.write(b"hello\n")
        writer.writelines([b"wor", b"ld\n"])
        await writer.drain()
        first = await reader.readline()
        second = await reader.readuntil(b"\n")
        writer.write_eof()
        rest = await reader.read()
        at_eof = reader.at_eof()
        writer.close()
        await writer.wait_closed()
        return first, second, rest, at_eof, writer.is_closing()

    first, second, rest, at_eof, closing = net.run(main())
    assert (first, second, rest) == (b"HELLO\n", b"WORLD\n", b"")
    assert at_eof is True and closing is True


def test_stream_reader_exact_and_incomplete(loop, net):
    async def handler(reader, writer):
        writer.write(b"0123456789abc")
        writer.close()
        await writer.wait_closed()

    async def main():
        srv = net.track(await asyncio.start_server(handler, "127.0.0.1", 0))
        reader, writer = await asyncio.open_connection("127.0.0.1", _port(srv))
        net.track(writer)
        exact = await reader.readexactly(10)
        with pytest.raises(asyncio.IncompleteReadError) as info:
            await reader.readexactly(10)
        writer.close()
        await writer.wait_closed()
        return exact, info.value

    exact, err = net.run(main())
    assert exact == b"0123456789"
    assert err.partial == b"abc" and err.expected == 10


def test_stream_readline_limit(loop, net):
    async def handler(reader, writer):
        writer.write(b"x" * 200 + b"\nshort\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        srv = net.track(await asyncio.start_server(handler, "127.0.0.1", 0))
        reader, writer = await asyncio.open_connection("127.0.0.1", _port(srv), limit=64)
        net.track(writer)
        with pytest.raises(asyncio.LimitOverrunError):
            await reader.readuntil(b"\n")
        await reader.readexactly(201)
        line = await reader.readline()
        writer.close()
        await writer.wait_closed()
        return line

    assert net.run(main()) == b"short\n"


def test_stream_large_transfer_with_drain(loop, net):
    payload = os.urandom(6 * 1024 * 1024)

    async def handler(reader, writer):
        digest = hashlib.sha256()
        total = 0
        while chunk := await reader.read(65536):
            digest.update(chunk)
            total += len(chunk)
            await asyncio.sleep(0)  # a slow-ish reader: the client has to wait in drain()
        writer.write(f"{total} {digest.hexdigest()}\n".encode())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        srv = net.track(await asyncio.start_server(handler, "127.0.0.1", 0))
        reader, writer = await asyncio.open_connection("127.0.0.1", _port(srv))
        net.track(writer)
        view = memoryview(payload)
        for i in range(0, len(payload), 1024 * 1024):
            writer.write(view[i : i + 1024 * 1024])
            await writer.drain()
        writer.write_eof()
        answer = await reader.readline()
        writer.close()
        await writer.wait_closed()
        return answer

    total, digest = net.run(main()).split()
    assert int(total) == len(payload)
    assert digest.decode() == hashlib.sha256(payload).hexdigest()


def test_open_connection_refused(loop, net):
    addr, holder = refused_tcp_address()
    net.track(holder)
    with pytest.raises(ConnectionRefusedError):
        net.run(asyncio.open_connection(*addr))


def test_stream_server_serve_forever_and_close(loop, net):
    async def main():
        srv = net.track(await asyncio.start_server(_upper_handler, "127.0.0.1", 0,
                                                   start_serving=False))
        assert not srv.is_serving()
        forever = asyncio.ensure_future(srv.serve_forever())
        await asyncio.sleep(0)  # serve_forever starts serving when it first runs
        assert srv.is_serving()
        reader, writer = await asyncio.open_connection("127.0.0.1", _port(srv))
        net.track(writer)
        writer.write(b"served\n")
        line = await reader.readline()
        writer.close()
        await writer.wait_closed()
        forever.cancel()
        with pytest.raises(asyncio.CancelledError):
            await forever
        return line, srv.is_serving()

    assert net.run(main()) == (b"SERVED\n", False)


def test_stream_peer_reset(loop, net):
    import struct

    async def main():
        lsock = net.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        connect = asyncio.ensure_future(asyncio.open_connection(*lsock.getsockname()))
        conn, _ = await loop.sock_accept(lsock)
        reader, writer = await connect
        net.track(writer)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        with pytest.raises(ConnectionResetError):
            await reader.read(100)
        writer.close()
        with pytest.raises(ConnectionResetError):
            await writer.wait_closed()

    net.run(main())


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no AF_UNIX here")
def test_unix_streams(loop, net):
    path = os.path.join(net.tmpdir(), "s")

    async def main():
        # The default 64 KiB limit would refuse the long line.
        srv = net.track(await asyncio.start_unix_server(_upper_handler, path, limit=2**21))
        reader, writer = await asyncio.open_unix_connection(path, limit=2**21)
        net.track(writer)
        assert writer.get_extra_info("peername") == path
        big = os.urandom(400_000).hex().encode()
        writer.write(b"unix\n" + big + b"\n")
        await writer.drain()
        first = await reader.readline()
        second = await reader.readline()
        writer.close()
        await writer.wait_closed()
        srv.close()
        await srv.wait_closed()
        return first, second, big

    first, second, big = net.run(main())
    assert first == b"UNIX\n"
    assert second == big.upper() + b"\n"
