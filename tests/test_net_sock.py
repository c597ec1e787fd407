"""loop.sock_*: the low-level socket coroutines (recv, send, connect, accept, sendfile)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket

import pytest

from helpers import run, run_briefly
from nethelpers import HOSTS, client_context, net, refused_tcp_address  # noqa: F401 - net is a fixture


def _needs(loop, name):
    if not hasattr(loop, name):
        pytest.skip(f"{type(loop).__name__} has no {name} (asyncio added it in 3.11)")


def _listener(net_, host="127.0.0.1"):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    lsock = net_.socket(family, socket.SOCK_STREAM)
    lsock.bind((host, 0))
    lsock.listen(8)
    return lsock


# --- recv / send ------------------------------------------------------------------


def test_sock_recv_waits_for_data(loop, net):
    a, b = net.socketpair()

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(a, 100))
        for _ in range(3):
            await asyncio.sleep(0)
        assert not task.done()  # nothing sent yet
        b.send(b"hello")
        return await task

    assert run(loop, main()) == b"hello"


def test_sock_recv_returns_ready_data_and_respects_nbytes(loop, net):
    a, b = net.socketpair()
    b.sendall(b"0123456789")

    async def main():
        first = await loop.sock_recv(a, 4)
        rest = await loop.sock_recv(a, 100)
        return first, rest

    first, rest = run(loop, main())
    assert first == b"0123"
    assert rest == b"456789"


def test_sock_recv_at_eof_returns_empty_bytes(loop, net):
    a, b = net.socketpair()
    b.sendall(b"last")
    b.shutdown(socket.SHUT_WR)

    async def main():
        return [await loop.sock_recv(a, 100), await loop.sock_recv(a, 100)]

    assert run(loop, main()) == [b"last", b""]


def test_sock_recv_into(loop, net):
    a, b = net.socketpair()
    buf = bytearray(16)

    async def main():
        task = asyncio.ensure_future(loop.sock_recv_into(a, buf))
        await asyncio.sleep(0)
        b.send(b"abcdef")
        n1 = await task
        b.send(b"XYZ")
        n2 = await loop.sock_recv_into(a, memoryview(buf)[n1:])
        return n1, n2

    n1, n2 = run(loop, main())
    assert (n1, n2) == (6, 3)
    assert bytes(buf[: n1 + n2]) == b"abcdefXYZ"
    assert bytes(buf[n1 + n2 :]) == bytes(16 - n1 - n2)


def test_sock_sendall_large_with_concurrent_reader(loop, net):
    # Far more than the socket buffers hold: sock_sendall has to wait for writability.
    a, b = net.socketpair()
    payload = os.urandom(4 * 1024 * 1024)

    async def reader():
        got = bytearray()
        while len(got) < len(payload):
            chunk = await loop.sock_recv(b, 256 * 1024)
            assert chunk, "EOF before all data arrived"
            got += chunk
        return bytes(got)

    async def main():
        rtask = asyncio.ensure_future(reader())
        result = await loop.sock_sendall(a, payload)
        return result, await rtask

    result, got = run(loop, main())
    assert result is None
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()


def test_sock_sendall_accepts_buffer_types(loop, net):
    a, b = net.socketpair()

    async def main():
        await loop.sock_sendall(a, b"by")
        await loop.sock_sendall(a, bytearray(b"te"))
        await loop.sock_sendall(a, memoryview(b"xsmv")[1:])
        await loop.sock_sendall(a, b"")  # nothing to send: returns at once
        a.shutdown(socket.SHUT_WR)
        got = bytearray()
        while chunk := await loop.sock_recv(b, 100):
            got += chunk
        return bytes(got)

    assert run(loop, main()) == b"bytesmv"


def test_sock_sendall_to_closed_peer_raises(loop, net):
    a, b = net.socketpair()
    b.close()

    async def main():
        # The first send may be buffered on some kernels; keep going until it fails.
        for _ in range(100):
            await loop.sock_sendall(a, b"x" * 65536)

    with pytest.raises((BrokenPipeError, ConnectionResetError)):
        run(loop, main())


# --- datagrams (3.11+ API) -----------------------------------------------------------


def _udp_pair(net_):
    a = net_.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = net_.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0))
    b.bind(("127.0.0.1", 0))
    return a, b


def test_sock_sendto_and_recvfrom(loop, net):
    _needs(loop, "sock_recvfrom")
    a, b = _udp_pair(net)

    async def main():
        task = asyncio.ensure_future(loop.sock_recvfrom(b, 1000))
        await asyncio.sleep(0)
        assert not task.done()
        sent = await loop.sock_sendto(a, b"datagram", b.getsockname())
        return sent, await task

    sent, (data, addr) = run(loop, main())
    assert sent == len(b"datagram")
    assert data == b"datagram"
    assert addr == a.getsockname()


def test_sock_recvfrom_keeps_datagram_boundaries(loop, net):
    _needs(loop, "sock_recvfrom")
    a, b = _udp_pair(net)
    for msg in (b"one", b"two!", b"three"):
        a.sendto(msg, b.getsockname())

    async def main():
        return [(await loop.sock_recvfrom(b, 100))[0] for _ in range(3)]

    assert run(loop, main()) == [b"one", b"two!", b"three"]


def test_sock_recvfrom_into(loop, net):
    _needs(loop, "sock_recvfrom_into")
    a, b = _udp_pair(net)
    buf = bytearray(32)

    async def main():
        task = asyncio.ensure_future(loop.sock_recvfrom_into(b, buf))
        await asyncio.sleep(0)
        a.sendto(b"into-buffer", b.getsockname())
        n, addr = await task
        a.sendto(b"0123456789", b.getsockname())
        # nbytes limits the read (the rest of the datagram is dropped).
        n2, _ = await loop.sock_recvfrom_into(b, memoryview(buf)[20:], 4)
        return n, addr, n2

    n, addr, n2 = run(loop, main())
    assert n == len(b"into-buffer")
    assert addr == a.getsockname()
    assert bytes(buf[:n]) == b"into-buffer"
    assert n2 == 4
    assert bytes(buf[20:24]) == b"0123"


# --- connect / accept -------------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
def test_sock_connect_and_accept(loop, net, host):
    lsock = _listener(net, host)
    family = lsock.family
    client = net.socket(family, socket.SOCK_STREAM)

    async def main():
        accept_task = asyncio.ensure_future(loop.sock_accept(lsock))
        await loop.sock_connect(client, lsock.getsockname())
        conn, addr = await accept_task
        net.track(conn)
        await loop.sock_sendall(client, b"ping")
        got = await loop.sock_recv(conn, 10)
        return conn, addr, got

    conn, addr, got = run(loop, main())
    assert got == b"ping"
    assert addr == client.getsockname()
    assert conn.getpeername() == client.getsockname()
    assert conn.getblocking() is False  # asyncio hands back a non-blocking socket
    assert client.getpeername() == lsock.getsockname()


def test_sock_accept_waits_for_a_client(loop, net):
    lsock = _listener(net)

    async def main():
        task = asyncio.ensure_future(loop.sock_accept(lsock))
        for _ in range(3):
            await asyncio.sleep(0)
        assert not task.done()
        client = net.socket(socket.AF_INET, socket.SOCK_STREAM)
        await loop.sock_connect(client, lsock.getsockname())
        conn, _ = await task
        net.track(conn)
        return client, conn

    client, conn = run(loop, main())
    assert conn.getpeername() == client.getsockname()


def test_sock_connect_refused(loop, net):
    addr, holder = refused_tcp_address()
    net.track(holder)
    client = net.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(ConnectionRefusedError):
        run(loop, loop.sock_connect(client, addr))


def test_sock_connect_unix(loop, net):
    path = os.path.join(net.tmpdir(), "s")
    lsock = net.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(path)
    lsock.listen(1)
    client = net.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    async def main():
        await loop.sock_connect(client, path)
        conn, _ = await loop.sock_accept(lsock)
        net.track(conn)
        await loop.sock_sendall(conn, b"over unix")
        return await loop.sock_recv(client, 100)

    assert run(loop, main()) == b"over unix"


# --- sendfile ---------------------------------------------------------------------------


@pytest.fixture
def data_file(tmp_path):
    data = os.urandom(1024 * 1024 + 123)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    with open(path, "rb") as f:
        yield f, data


def _drain(loop, sock, n):
    async def reader():
        got = bytearray()
        while len(got) < n:
            chunk = await loop.sock_recv(sock, 256 * 1024)
            if not chunk:
                break
            got += chunk
        return bytes(got)

    return asyncio.ensure_future(reader())


@pytest.mark.parametrize("offset,count", [(0, None), (1000, 300000)], ids=["whole", "slice"])
def test_sock_sendfile(loop, net, data_file, offset, count):
    f, data = data_file
    a, b = net.socketpair()
    expected = data[offset : None if count is None else offset + count]

    async def main():
        rtask = _drain(loop, b, len(expected))
        sent = await loop.sock_sendfile(a, f, offset, count)
        return sent, await rtask

    sent, got = run(loop, main())
    assert sent == len(expected)
    assert got == expected
    assert f.tell() == offset + sent  # asyncio leaves the file positioned after what was sent


def test_sock_sendfile_bad_arguments(loop, net, data_file):
    f, _ = data_file
    a, _ = net.socketpair()
    udp = net.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cases = [
        (dict(sock=udp), ValueError, "only SOCK_STREAM type sockets are supported"),
        (dict(count=0), ValueError, "count must be a positive integer (got 0)"),
        (dict(count=1.5), TypeError, "count must be a positive integer (got 1.5)"),
        (dict(offset=-1), ValueError, "offset must be a non-negative integer (got -1)"),
        (dict(offset="0"), TypeError, "offset must be a non-negative integer (got '0')"),
    ]
    for kw, exc_type, message in cases:
        sock = kw.pop("sock", a)
        with pytest.raises(exc_type) as info:
            run(loop, loop.sock_sendfile(sock, f, **kw))
        assert str(info.value) == message


def test_sock_sendfile_text_file_rejected(loop, net, tmp_path):
    a, _ = net.socketpair()
    path = tmp_path / "t.txt"
    path.write_text("text")
    with open(path) as f:
        with pytest.raises(ValueError, match="file should be opened in binary mode"):
            run(loop, loop.sock_sendfile(a, f))


# --- bad input -------------------------------------------------------------------------


def _sock_calls(loop, sock, peer_addr):
    """(name, coroutine function) for every sock_* method this loop has."""
    calls = [
        ("sock_recv", lambda: loop.sock_recv(sock, 10)),
        ("sock_recv_into", lambda: loop.sock_recv_into(sock, bytearray(10))),
        ("sock_sendall", lambda: loop.sock_sendall(sock, b"x")),
        ("sock_connect", lambda: loop.sock_connect(sock, peer_addr)),
        ("sock_accept", lambda: loop.sock_accept(sock)),
    ]
    if hasattr(loop, "sock_recvfrom"):
        calls += [
            ("sock_recvfrom", lambda: loop.sock_recvfrom(sock, 10)),
            ("sock_recvfrom_into", lambda: loop.sock_recvfrom_into(sock, bytearray(10))),
            ("sock_sendto", lambda: loop.sock_sendto(sock, b"x", peer_addr)),
        ]
    return calls


def test_blocking_socket_rejected_in_debug_mode(loop, net, tmp_path):
    loop.set_debug(True)
    loop.slow_callback_duration = 60  # a loaded machine must not log slow callbacks
    sock = net.socket(socket.AF_INET, socket.SOCK_STREAM, blocking=True)
    for name, call in _sock_calls(loop, sock, ("127.0.0.1", 9)):
        with pytest.raises(ValueError) as info:
            run(loop, call())
        assert str(info.value) == "the socket must be non-blocking", name
    path = tmp_path / "f"
    path.write_bytes(b"data")
    with open(path, "rb") as f:
        with pytest.raises(ValueError, match="the socket must be non-blocking"):
            run(loop, loop.sock_sendfile(sock, f))
    # A socket with a timeout is not non-blocking either.
    sock.settimeout(5.0)
    with pytest.raises(ValueError, match="the socket must be non-blocking"):
        run(loop, loop.sock_recv(sock, 1))


def test_ssl_socket_rejected(loop, net, tmp_path):
    raw = net.socket(socket.AF_INET, socket.SOCK_STREAM)
    sslsock = client_context().wrap_socket(raw, server_hostname="localhost",
                                           do_handshake_on_connect=False)
    net.track(sslsock)
    sslsock.setblocking(False)
    for name, call in _sock_calls(loop, sslsock, ("127.0.0.1", 9)):
        with pytest.raises(TypeError) as info:
            run(loop, call())
        assert str(info.value) == "Socket cannot be of type SSLSocket", name
    path = tmp_path / "f"
    path.write_bytes(b"data")
    with open(path, "rb") as f:
        with pytest.raises(TypeError, match="Socket cannot be of type SSLSocket"):
            run(loop, loop.sock_sendfile(sslsock, f))


# --- cancellation ------------------------------------------------------------------------


def _cancel_pending(loop, coro):
    async def main():
        task = asyncio.ensure_future(coro)
        for _ in range(3):
            await asyncio.sleep(0)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(loop, main())
    run_briefly(loop, 2)


def test_cancelled_sock_recv_leaves_no_reader(loop, net):
    a, b = net.socketpair()
    _cancel_pending(loop, loop.sock_recv(a, 10))
    assert loop.remove_reader(a.fileno()) is False
    # The data that arrives later is still there for the next reader.
    b.send(b"later")
    assert run(loop, loop.sock_recv(a, 10)) == b"later"


def test_cancelled_sock_recv_into_leaves_no_reader(loop, net):
    a, b = net.socketpair()
    buf = bytearray(10)
    _cancel_pending(loop, loop.sock_recv_into(a, buf))
    assert loop.remove_reader(a.fileno()) is False
    b.send(b"x")
    run_briefly(loop, 2)
    assert buf == bytearray(10)  # the cancelled call did not write into the buffer


def test_cancelled_sock_accept_leaves_no_reader(loop, net):
    lsock = _listener(net)
    lsock.setblocking(False)
    _cancel_pending(loop, loop.sock_accept(lsock))
    assert loop.remove_reader(lsock.fileno()) is False


def test_cancelled_sock_recvfrom_leaves_no_reader(loop, net):
    _needs(loop, "sock_recvfrom")
    a, _ = _udp_pair(net)
    _cancel_pending(loop, loop.sock_recvfrom(a, 10))
    assert loop.remove_reader(a.fileno()) is False


def test_cancelled_sock_sendall_leaves_no_writer(loop, net):
    a, b = net.socketpair()
    # More than the socket buffers take, with nobody reading: sendall has to wait.
    _cancel_pending(loop, loop.sock_sendall(a, b"x" * (16 * 1024 * 1024)))
    assert loop.remove_writer(a.fileno()) is False
