"""TCP: create_connection / create_server, the socket transport and the Server object."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import struct
import sys
import types

import pytest

from helpers import run_briefly
from nethelpers import (  # noqa: F401 - net is a fixture
    HAS_IPV6,
    HOSTS,
    PY,
    BufferedRecorder,
    Echo,
    Recorder,
    net,
    refused_tcp_address,
)


def _port(server):
    return server.sockets[0].getsockname()[1]


def _pair(net, server_cls=Recorder, client_cls=Recorder, host="127.0.0.1", server_kw=None,
          client_kw=None):
    """A connected (client transport, client protocol, server protocol) over `host`."""
    factory = net.factory(server_cls, **(server_kw or {}))
    srv = net.server(factory, host)
    tr, client = net.connect(lambda: net.proto(client_cls, **(client_kw or {})), host,
                             _port(srv))
    net.until(lambda: factory.made and factory.made[0].transport is not None)
    return tr, client, factory.made[0]


def _reset_on_close(sock):
    """Make close() send RST instead of FIN (SO_LINGER on, timeout 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


# --- connecting, data both ways ------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
def test_echo_round_trip(loop, net, host):
    tr, client, server = _pair(net, Echo, host=host)
    assert client.events == ["made"] and client.transport is tr
    tr.write(b"hello ")
    tr.write(b"world")
    net.until(lambda: len(client.data) >= 11)
    assert bytes(client.data) == b"hello world"
    assert bytes(server.data) == b"hello world"
    tr.close()
    assert tr.is_closing()
    net.run(client.lost)
    net.run(server.lost)
    assert client.events == ["made", "data", "lost"]
    assert client.lost_excs == [None]
    # The echo server sees the EOF of the close, flushes and closes.
    assert server.events == ["made", "data", "eof", "lost"]
    assert server.lost_excs == [None]


@pytest.mark.parametrize("host", HOSTS)
def test_buffered_protocol_round_trip(loop, net, host):
    tr, client, server = _pair(net, Echo, BufferedRecorder, host=host)
    payload = os.urandom(200_000)
    tr.write(payload)
    net.until(lambda: len(client.data) >= len(payload))
    assert bytes(client.data) == payload
    assert all(h == -1 for h in client.sizehints)  # asyncio asks with sizehint -1
    assert len(client.sizehints) == len(client.updates)
    assert sum(client.updates) == len(payload)
    tr.close()
    assert net.run(client.lost) is None


def test_buffered_protocol_small_buffer(loop, net):
    tr, client, server = _pair(net, Recorder, BufferedRecorder, client_kw=dict(bufsize=7))
    server.transport.write(bytes(range(100)))
    net.until(lambda: len(client.data) >= 100)
    assert bytes(client.data) == bytes(range(100))
    assert max(client.updates) <= 7
    assert len(client.updates) >= 100 // 7


class _BadBuffer(BufferedRecorder):
    def __init__(self, loop, how, net=None):
        super().__init__(loop, net=net)
        self.how = how

    def get_buffer(self, sizehint):
        if self.how == "empty":
            return bytearray()
        raise ValueError("no buffer for you")


@pytest.mark.parametrize("how", ["empty", "raises"])
def test_buffered_protocol_bad_get_buffer_is_fatal(loop, net, exc_log, how):
    tr, client, server = _pair(net, Recorder, _BadBuffer, client_kw=dict(how=how))
    server.transport.write(b"data")
    exc = net.run(client.lost)
    if how == "empty":
        assert type(exc) is RuntimeError
        assert str(exc) == "get_buffer() returned an empty buffer"
    else:
        assert type(exc) is ValueError
    ctx = exc_log.take_one()
    assert ctx["message"] == "Fatal error: protocol.get_buffer() call failed."
    assert ctx["exception"] is exc
    assert ctx["transport"] is tr
    assert ctx["protocol"] is client
    assert client.lost_excs == [exc]
    net.run(server.lost)  # the peer sees the connection go away


class _RaisesInDataReceived(Recorder):
    def data_received(self, data):
        super().data_received(data)
        raise KeyError("boom")


def test_data_received_raising_is_fatal(loop, net, exc_log):
    tr, client, server = _pair(net, Recorder, _RaisesInDataReceived)
    server.transport.write(b"x")
    exc = net.run(client.lost)
    assert type(exc) is KeyError
    ctx = exc_log.take_one()
    assert ctx["message"] == "Fatal error: protocol.data_received() call failed."
    assert ctx["exception"] is exc
    assert client.lost_excs == [exc]


def test_create_connection_with_local_addr(loop, net):
    srv = net.server(net.factory())
    tr, client = net.connect(lambda: net.proto(), "127.0.0.1", _port(srv),
                             local_addr=("127.0.0.1", 0))
    sockname = tr.get_extra_info("sockname")
    assert sockname[0] == "127.0.0.1" and sockname[1] != 0


def test_create_connection_resolves_names(loop, net):
    srv = net.server(net.factory(), "127.0.0.1")
    tr, _ = net.connect(lambda: net.proto(), "localhost", _port(srv), family=socket.AF_INET)
    assert tr.get_extra_info("peername") == ("127.0.0.1", _port(srv))


def test_create_connection_happy_eyeballs(loop, net):
    srv = net.server(net.factory(), "127.0.0.1")
    tr, _ = net.connect(lambda: net.proto(), "localhost", _port(srv),
                        happy_eyeballs_delay=0.05, interleave=1)
    assert tr.get_extra_info("peername")[:2] == ("127.0.0.1", _port(srv))


def test_create_connection_with_sock(loop, net):
    srv = net.server(net.factory())
    sock = socket.create_connection(("127.0.0.1", _port(srv)))  # blocking, connected
    net.track(sock)
    tr, client = net.run(loop.create_connection(lambda: net.proto(), sock=sock))
    assert sock.getblocking() is False  # the loop made it non-blocking
    assert tr.get_extra_info("socket").fileno() == sock.fileno()
    tr.write(b"via sock")
    tr.close()
    net.run(client.lost)
    assert sock.fileno() == -1  # the transport closed the socket it was given


def test_create_connection_refused(loop, net):
    addr, holder = refused_tcp_address()
    net.track(holder)
    with pytest.raises(ConnectionRefusedError) as info:
        net.run(loop.create_connection(lambda: net.proto(), *addr))
    assert info.value.errno == errno.ECONNREFUSED


def test_create_connection_bad_arguments(loop, net):
    f = net.factory()
    with pytest.raises(ValueError, match="host and port was not specified and no sock specified"):
        net.run(loop.create_connection(f))
    sock = net.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(ValueError, match="host/port and sock can not be specified at the same time"):
        net.run(loop.create_connection(f, "127.0.0.1", 1, sock=sock))
    udp = net.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with pytest.raises(ValueError, match="A Stream Socket was expected, got"):
        net.run(loop.create_connection(f, sock=udp))
    assert f.made == []


# --- write side ---------------------------------------------------------------------------------


def test_write_accepts_bytes_like_and_ignores_empty(loop, net):
    tr, client, server = _pair(net)
    tr.write(b"")
    assert tr.get_write_buffer_size() == 0
    tr.write(b"a")
    tr.write(bytearray(b"b"))
    tr.write(memoryview(b"xcx")[1:2])
    tr.writelines([b"d", bytearray(b"e"), memoryview(b"f")])
    tr.writelines([])
    net.until(lambda: len(server.data) >= 6)
    assert bytes(server.data) == b"abcdef"


# gh-138703 reworded write()'s TypeError: 3.14 has the new words, 3.12 and older the
# old ones; 3.13 has either, depending on the release (the backport came mid-series).
_OLD_WRITE_TYPE_ERROR = "data argument must be a bytes-like object"
_NEW_WRITE_TYPE_ERROR = "data argument must be a bytes, bytearray, or memoryview object"
if sys.version_info >= (3, 14):
    _WRITE_TYPE_ERRORS = {_NEW_WRITE_TYPE_ERROR}
elif sys.version_info >= (3, 13):
    _WRITE_TYPE_ERRORS = {_OLD_WRITE_TYPE_ERROR, _NEW_WRITE_TYPE_ERROR}
else:
    _WRITE_TYPE_ERRORS = {_OLD_WRITE_TYPE_ERROR}


@pytest.mark.parametrize("bad", ["text", 42, None, [b"x"]])
def test_write_rejects_non_bytes(loop, net, bad):
    tr, client, server = _pair(net)
    with pytest.raises(TypeError) as info:
        tr.write(bad)
    start, sep, rest = str(info.value).rpartition(", not ")
    assert (start, sep, rest) in {(s, ", not ", repr(type(bad).__name__)) for s in _WRITE_TYPE_ERRORS}
    if sys.version_info[:2] == (3, 13):
        # Within 3.13, the words are those of the asyncio that runs.
        aio_write = asyncio.selector_events._SelectorSocketTransport.write
        with pytest.raises(TypeError) as aio_info:
            aio_write(tr, bad)
        assert str(info.value) == str(aio_info.value)


def test_writelines_keeps_order_of_a_large_batch(loop, net):
    tr, client, server = _pair(net)
    parts = [bytes([i % 256]) * (i * 997 % 50000 + 1) for i in range(200)]
    tr.writelines(parts)
    total = sum(map(len, parts))
    net.until(lambda: len(server.data) >= total)
    assert bytes(server.data) == b"".join(parts)


def test_write_buffers_what_the_socket_does_not_take(loop, net):
    tr, client, server = _pair(net)
    server.transport.pause_reading()
    tr.set_write_buffer_limits(high=2**40)  # never pause: we want a big buffer
    chunk = b"z" * (1024 * 1024)
    for _ in range(32):
        tr.write(chunk)
        if tr.get_write_buffer_size() > 0:
            break
    assert tr.get_write_buffer_size() > 0, "32 MiB went into the kernel unread?"
    sent = (_ + 1) * len(chunk)
    server.transport.resume_reading()
    net.until(lambda: len(server.data) >= sent)
    net.until(lambda: tr.get_write_buffer_size() == 0)
    assert len(server.data) == sent


def test_write_after_write_eof_raises(loop, net):
    tr, client, server = _pair(net)
    assert tr.can_write_eof() is True
    tr.write_eof()
    tr.write_eof()  # a second one is a no-op
    with pytest.raises(RuntimeError, match=r"Cannot call write\(\) after write_eof\(\)"):
        tr.write(b"x")


# Up to 3.11 asyncio's writelines() joins the buffers and calls write(): its errors
# are write()'s, and a list holding something not bytes-like fails the join first.
_WRITELINES = "writelines" if sys.version_info >= (3, 12) else "write"


def test_writelines_after_write_eof_raises_as_asyncio_does(loop, net):
    tr, client, server = _pair(net)
    tr.write_eof()
    with pytest.raises(RuntimeError, match=rf"Cannot call {_WRITELINES}\(\) after write_eof\(\)"):
        tr.writelines([b"x", b"y"])
    with pytest.raises(TypeError if _WRITELINES == "write" else RuntimeError):
        tr.writelines(["not bytes"])


def _asyncio_checks_items_of_a_lost_writelines() -> bool:
    """3.10 and 3.11 join the items first, 3.12 makes a memoryview() of each, later
    releases (3.14, some of 3.13) drop the write first: ask the running asyncio."""
    if sys.version_info < (3, 12):
        return True
    lost = types.SimpleNamespace(_eof=False, _empty_waiter=None, _conn_lost=1, _buffer=[])
    try:
        asyncio.selector_events._SelectorSocketTransport.writelines(lost, [None])
    except TypeError:
        return True
    return False


def test_writelines_on_a_lost_connection_checks_items_as_asyncio_does(loop, net):
    tr, client, server = _pair(net)
    tr.close()
    net.until(lambda: client.lost.done())
    if _asyncio_checks_items_of_a_lost_writelines():
        with pytest.raises(TypeError):
            tr.writelines([b"fine", "not bytes"])
    else:
        tr.writelines([b"fine", "not bytes"])  # dropped, as a write() would be


def test_write_after_close_is_ignored_then_warned(loop, net, caplog):
    tr, client, server = _pair(net)
    tr.close()
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        for _ in range(4):
            tr.write(b"ignored")
        assert [r for r in caplog.records if r.name == "asyncio"] == []
        tr.write(b"ignored")  # the fifth write after the connection went: warned
        records = [r for r in caplog.records if r.name == "asyncio"]
    assert [r.getMessage() for r in records] == ["socket.send() raised exception."]
    assert records[0].levelno == logging.WARNING
    net.run(server.lost)
    assert bytes(server.data) == b""


# --- EOF and half-close ----------------------------------------------------------------------------


class _ReplyOnEof(Recorder):
    def eof_received(self):
        super().eof_received()
        self.transport.write(b"reply to " + bytes(self.data))
        self.transport.close()
        return True


def test_half_close_keeps_the_other_direction_open(loop, net):
    tr, client, server = _pair(net, _ReplyOnEof)
    tr.write(b"request")
    tr.write_eof()
    net.run(client.lost)
    assert bytes(client.data) == b"reply to request"
    assert client.events == ["made", "data", "eof", "lost"]
    assert client.lost_excs == [None]
    net.run(server.lost)
    assert server.events == ["made", "data", "eof", "lost"]
    assert server.lost_excs == [None]


@pytest.mark.parametrize("result", [None, False])
def test_eof_received_false_closes_the_transport(loop, net, result):
    tr, client, server = _pair(net, server_kw=dict(eof_result=result))
    tr.write_eof()
    net.run(server.eof)
    assert server.transport.is_closing()
    net.run(server.lost)
    assert server.lost_excs == [None]
    net.run(client.eof)  # the server's close reaches the client as EOF
    net.run(client.lost)
    assert client.events == ["made", "eof", "lost"]


def test_eof_received_true_keeps_the_transport(loop, net):
    tr, client, server = _pair(net, server_kw=dict(eof_result=True))
    tr.write_eof()
    net.run(server.eof)
    run_briefly(loop, 3)
    assert not server.transport.is_closing()
    assert server.events == ["made", "eof"]
    server.transport.write(b"still open")
    net.until(lambda: len(client.data) >= 10)
    assert bytes(client.data) == b"still open"
    server.transport.close()
    net.run(server.lost)
    net.run(client.lost)
    assert client.events == ["made", "data", "eof", "lost"]


# --- reading flow control ----------------------------------------------------------------------------


def test_pause_and_resume_reading(loop, net):
    tr, client, server = _pair(net)
    assert tr.is_reading() is True
    tr.pause_reading()
    tr.pause_reading()  # idempotent
    assert tr.is_reading() is False
    server.transport.write(b"held back")
    server.transport.close()
    run_briefly(loop, 5)
    net.run(server.lost)
    run_briefly(loop, 5)
    assert client.events == ["made"]  # neither data nor EOF while paused
    tr.resume_reading()
    tr.resume_reading()  # idempotent
    assert tr.is_reading() is True
    net.run(client.lost)
    assert bytes(client.data) == b"held back"
    assert client.events == ["made", "data", "eof", "lost"]
    assert tr.is_reading() is False  # closed


def test_is_reading_false_after_close(loop, net):
    tr, client, server = _pair(net)
    tr.close()
    assert tr.is_reading() is False
    tr.pause_reading()  # no-ops on a closing transport
    tr.resume_reading()
    assert tr.is_reading() is False
    net.run(client.lost)


# --- write flow control ---------------------------------------------------------------------------------


def test_write_buffer_limits(loop, net):
    tr, client, server = _pair(net)
    assert tr.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
    tr.set_write_buffer_limits(high=100)
    assert tr.get_write_buffer_limits() == (25, 100)
    tr.set_write_buffer_limits(low=10)
    assert tr.get_write_buffer_limits() == (10, 40)
    tr.set_write_buffer_limits(high=50, low=50)
    assert tr.get_write_buffer_limits() == (50, 50)
    tr.set_write_buffer_limits(high=0)
    assert tr.get_write_buffer_limits() == (0, 0)
    tr.set_write_buffer_limits()
    assert tr.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
    for kw, high, low in [(dict(high=10, low=20), 10, 20), (dict(high=-1, low=None), -1, -1),
                          (dict(low=-4), -16, -4)]:
        with pytest.raises(ValueError) as info:
            tr.set_write_buffer_limits(**kw)
        assert str(info.value) == f"high ({high!r}) must be >= low ({low!r}) must be >= 0"
    assert tr.get_write_buffer_limits() == (16 * 1024, 64 * 1024)  # unchanged by errors
    assert tr.get_write_buffer_size() == 0


def _fill_until_paused(tr, proto, chunk=64 * 1024, limit=1024):
    for _ in range(limit):
        tr.write(b"w" * chunk)
        if "pause" in proto.events:
            return
    pytest.fail("pause_writing was never called")


def test_pause_and_resume_writing_at_the_water_marks(loop, net):
    tr, client, server = _pair(net)
    server.transport.pause_reading()
    tr.set_write_buffer_limits(high=256 * 1024, low=32 * 1024)
    low, high = tr.get_write_buffer_limits()
    _fill_until_paused(tr, client)
    assert client.events == ["made", "pause"]
    [(_, size_at_pause)] = client.write_sizes
    assert size_at_pause > high
    # More writes while paused do not pause again.
    tr.write(b"more")
    assert client.events == ["made", "pause"]
    server.transport.resume_reading()
    net.until(lambda: "resume" in client.events)
    assert client.events == ["made", "pause", "resume"]
    assert client.write_sizes[1][0] == "resume"
    assert client.write_sizes[1][1] <= low
    net.until(lambda: tr.get_write_buffer_size() == 0)
    assert client.events == ["made", "pause", "resume"]


def test_lowering_the_high_water_mark_pauses(loop, net):
    tr, client, server = _pair(net)
    server.transport.pause_reading()
    tr.set_write_buffer_limits(high=2**40)
    for _ in range(64):
        tr.write(b"q" * (1024 * 1024))
        if tr.get_write_buffer_size():
            break
    assert client.events == ["made"]
    size = tr.get_write_buffer_size()
    tr.set_write_buffer_limits(high=size - 1)
    assert client.events == ["made", "pause"]
    server.transport.resume_reading()
    net.until(lambda: "resume" in client.events)


class _BadFlow(Recorder):
    def pause_writing(self):
        super().pause_writing()
        raise ZeroDivisionError("pause")

    def resume_writing(self):
        super().resume_writing()
        raise ZeroDivisionError("resume")


def test_pause_and_resume_writing_errors_go_to_the_handler(loop, net, exc_log):
    tr, client, server = _pair(net, Recorder, _BadFlow)
    server.transport.pause_reading()
    _fill_until_paused(tr, client)
    ctx = exc_log.take_one()
    assert ctx["message"] == "protocol.pause_writing() failed"
    assert type(ctx["exception"]) is ZeroDivisionError
    assert ctx["transport"] is tr and ctx["protocol"] is client
    server.transport.resume_reading()
    net.until(lambda: "resume" in client.events)
    ctx = exc_log.take_one()
    assert ctx["message"] == "protocol.resume_writing() failed"
    assert str(ctx["exception"]) == "resume"
    assert not tr.is_closing()  # flow-control errors are not fatal


# --- connection_lost -----------------------------------------------------------------------------------------


def test_close_flushes_the_buffer_first(loop, net):
    tr, client, server = _pair(net)
    payload = os.urandom(8 * 1024 * 1024)
    tr.write(payload)
    assert tr.get_write_buffer_size() > 0
    tr.close()
    tr.close()  # twice is harmless
    net.run(client.lost)
    net.run(server.lost)
    assert bytes(server.data) == payload
    assert server.events == ["made", "data", "eof", "lost"]
    assert client.lost_excs == [None]


def test_abort_drops_the_buffer(loop, net):
    tr, client, server = _pair(net)
    server.transport.pause_reading()
    tr.set_write_buffer_limits(high=2**40)
    for written in range(1, 65):
        tr.write(b"a" * (1024 * 1024))
        if tr.get_write_buffer_size():
            break
    written *= 1024 * 1024
    assert tr.get_write_buffer_size() > 0
    tr.abort()
    tr.abort()
    tr.close()
    assert tr.is_closing()
    net.run(client.lost)
    run_briefly(loop, 3)
    assert client.lost_excs == [None]
    assert client.events == ["made", "lost"]
    server.transport.resume_reading()
    net.run(server.lost)
    # What the kernel had taken arrives, then the EOF; the transport's buffer never does.
    assert server.events == ["made", "data", "eof", "lost"]
    assert server.lost_excs == [None]
    assert len(server.data) < written
    assert set(server.data) == {ord("a")}


def test_peer_reset_reaches_connection_lost(loop, net):
    # The client is a plain socket that resets the connection.
    factory = net.factory()
    srv = net.server(factory)
    raw = socket.create_connection(("127.0.0.1", _port(srv)))
    net.track(raw)
    net.until(lambda: factory.made and factory.made[0].transport is not None)
    server = factory.made[0]
    _reset_on_close(raw)
    raw.close()
    exc = net.run(server.lost)
    assert isinstance(exc, ConnectionResetError)
    assert server.events == ["made", "lost"]
    assert server.lost_excs == [exc]


def test_server_reset_reaches_client(loop, net):
    lsock = net.socket(socket.AF_INET, socket.SOCK_STREAM, blocking=True)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    tr, client = net.connect(lambda: net.proto(), *lsock.getsockname())
    conn, _ = lsock.accept()
    _reset_on_close(conn)
    conn.close()
    exc = net.run(client.lost)
    assert isinstance(exc, ConnectionResetError)
    assert client.lost_excs == [exc]
    assert client.events == ["made", "lost"]


# --- closing from inside callbacks ----------------------------------------------------------------------------


class _CloseOnMade(Recorder):
    def connection_made(self, transport):
        super().connection_made(transport)
        transport.close()


class _CloseOnData(Recorder):
    def data_received(self, data):
        super().data_received(data)
        self.transport.close()


class _AbortOnData(Recorder):
    def data_received(self, data):
        super().data_received(data)
        self.transport.abort()


class _CloseInLost(Recorder):
    def connection_lost(self, exc):
        super().connection_lost(exc)
        self.transport.close()
        self.transport.abort()


def test_close_in_connection_made(loop, net):
    factory = net.factory(_CloseOnMade)
    srv = net.server(factory)
    tr, client = net.connect(lambda: net.proto(), "127.0.0.1", _port(srv))
    tr.write(b"too late")
    net.run(client.lost)
    net.until(lambda: factory.made and factory.made[0].lost.done())
    server = factory.made[0]
    assert server.events == ["made", "lost"]
    assert server.lost_excs == [None]
    assert client.events == ["made", "eof", "lost"]


@pytest.mark.parametrize("cls", [_CloseOnData, _AbortOnData], ids=["close", "abort"])
def test_close_in_data_received(loop, net, cls):
    tr, client, server = _pair(net, cls)
    tr.write(b"first")
    net.run(server.lost)
    tr.write(b"second")
    net.run(client.lost)
    run_briefly(loop, 3)
    assert server.events == ["made", "data", "lost"]
    assert server.lost_excs == [None]
    assert bytes(server.data) == b"first"


def test_close_in_connection_lost_is_harmless(loop, net):
    tr, client, server = _pair(net, client_cls=_CloseInLost)
    tr.close()
    net.run(client.lost)
    run_briefly(loop, 3)
    assert client.lost_excs == [None]


# --- extra info, socket options, fds -----------------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
def test_get_extra_info(loop, net, host):
    tr, client, server = _pair(net, host=host)
    str_ = server.transport
    sock = tr.get_extra_info("socket")
    assert isinstance(sock, asyncio.trsock.TransportSocket)
    assert sock.family == (socket.AF_INET6 if host == "::1" else socket.AF_INET)
    assert sock.type == socket.SOCK_STREAM
    assert tr.get_extra_info("sockname") == sock.getsockname()
    assert tr.get_extra_info("peername") == sock.getpeername()
    assert tr.get_extra_info("peername") == str_.get_extra_info("sockname")
    assert str_.get_extra_info("peername") == tr.get_extra_info("sockname")
    assert tr.get_extra_info("peername")[0] == host
    assert tr.get_extra_info("no such key") is None
    assert tr.get_extra_info("no such key", "dflt") == "dflt"
    assert tr.get_extra_info("sslcontext") is None
    assert tr.get_protocol() is client
    assert str_.get_protocol() is server


def test_tcp_nodelay_is_set(loop, net):
    tr, client, server = _pair(net)
    for t in (tr, server.transport):
        sock = t.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_set_protocol_switches_the_receiver(loop, net):
    tr, client, server = _pair(net)
    server.transport.write(b"one")
    net.until(lambda: client.data)
    second = net.proto()
    tr.set_protocol(second)
    assert tr.get_protocol() is second
    server.transport.write(b"two")
    net.until(lambda: second.data)
    third = net.proto(BufferedRecorder)
    tr.set_protocol(third)  # a BufferedProtocol is detected again
    server.transport.write(b"three")
    net.until(lambda: third.data)
    assert (bytes(client.data), bytes(second.data), bytes(third.data)) == (b"one", b"two", b"three")
    assert third.updates == [5]
    tr.close()
    net.run(third.lost)
    assert client.events == ["made", "data"] and second.events == ["data"]
    assert third.events == ["data", "lost"]


@pytest.mark.parametrize("method", ["add_reader", "add_writer", "remove_reader", "remove_writer"])
def test_fd_of_a_transport_is_off_limits(loop, net, method):
    tr, client, server = _pair(net)
    fd = tr.get_extra_info("socket").fileno()
    args = (fd, lambda: None) if method.startswith("add") else (fd,)
    with pytest.raises(RuntimeError) as info:
        getattr(loop, method)(*args)
    assert str(info.value) == f"File descriptor {fd!r} is used by transport {tr!r}"
    assert tr.is_reading()  # the transport is unharmed
    server.transport.write(b"still works")
    net.until(lambda: client.data)


def test_transport_sendfile_keeps_write_order(loop, net, tmp_path):
    tr, client, server = _pair(net)
    data = os.urandom(512 * 1024 + 7)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    tr.write(b"head:")
    with open(path, "rb") as f:
        sent = net.run(loop.sendfile(tr, f))
    tr.write(b":tail")
    assert sent == len(data)
    total = len(data) + 10
    net.until(lambda: len(server.data) >= total)
    assert bytes(server.data) == b"head:" + data + b":tail"


# --- connect_accepted_socket -------------------------------------------------------------------------------------


def test_connect_accepted_socket(loop, net):
    lsock = net.socket(socket.AF_INET, socket.SOCK_STREAM, blocking=True)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    peer = socket.create_connection(lsock.getsockname())
    net.track(peer)
    conn, _ = lsock.accept()
    tr, proto = net.run(loop.connect_accepted_socket(lambda: net.proto(Echo), conn))
    assert proto.events == ["made"] and proto.transport is tr
    assert tr.get_extra_info("peername") == peer.getsockname()
    peer.setblocking(False)

    async def echo_once():
        await loop.sock_sendall(peer, b"accepted")
        got = b""
        while len(got) < 8:
            got += await loop.sock_recv(peer, 100)
        return got

    assert net.run(echo_once()) == b"accepted"
    peer.shutdown(socket.SHUT_WR)
    net.run(proto.lost)
    assert conn.fileno() == -1
    assert proto.events == ["made", "data", "eof", "lost"]


def test_connect_accepted_socket_rejects_datagram_socket(loop, net):
    udp = net.socket(socket.AF_INET, socket.SOCK_DGRAM)
    f = net.factory()
    with pytest.raises(ValueError, match="A Stream Socket was expected, got"):
        net.run(loop.connect_accepted_socket(f, udp))
    assert f.made == []


# --- Server -------------------------------------------------------------------------------------------------------


def test_server_object(loop, net):
    factory = net.factory()
    srv = net.server(factory)
    assert isinstance(srv, asyncio.AbstractServer)
    assert srv.get_loop() is loop
    assert srv.is_serving() is True
    socks = srv.sockets
    assert isinstance(socks, tuple) and len(socks) == 1
    assert isinstance(socks[0], asyncio.trsock.TransportSocket)
    assert socks[0].getsockname()[0] == "127.0.0.1"
    assert socks[0].getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) != 0
    for i in range(3):
        net.connect(lambda: net.proto(), "127.0.0.1", _port(srv))
    net.until(lambda: len(factory.made) == 3)
    assert all(p.events == ["made"] for p in factory.made)


def test_server_close(loop, net):
    srv = net.server(net.factory())
    addr = srv.sockets[0].getsockname()
    srv.close()
    assert srv.is_serving() is False
    assert srv.sockets == ()
    srv.close()  # twice is harmless
    net.run(srv.wait_closed())
    with pytest.raises(ConnectionRefusedError):
        net.run(loop.create_connection(lambda: net.proto(), *addr))


def test_server_close_keeps_existing_connections(loop, net):
    tr, client, server = _pair(net, Echo)
    [srv] = net.servers
    srv.close()
    run_briefly(loop, 3)
    tr.write(b"after close")
    net.until(lambda: len(client.data) >= 11)
    assert bytes(client.data) == b"after close"


@pytest.mark.skipif(PY < (3, 12, 1), reason="wait_closed() waits for connections since 3.12.1")
def test_server_wait_closed_waits_for_connections(loop, net):
    tr, client, server = _pair(net)
    [srv] = net.servers

    async def main():
        waiter = asyncio.ensure_future(srv.wait_closed())
        for _ in range(5):
            await asyncio.sleep(0)
        assert not waiter.done()  # still serving
        srv.close()
        for _ in range(5):
            await asyncio.sleep(0)
        assert not waiter.done()  # a connection is still open
        tr.close()
        await waiter

    net.run(main())
    assert server.lost.done()


def test_server_async_with(loop, net):
    async def main():
        srv = await loop.create_server(net.factory(), "127.0.0.1", 0)
        async with srv as entered:
            assert entered is srv
            assert srv.is_serving()
        return srv

    srv = net.run(main())
    assert srv.is_serving() is False
    assert srv.sockets == ()


def test_server_start_serving_false(loop, net):
    factory = net.factory()
    srv = net.server(factory, start_serving=False)
    assert srv.is_serving() is False
    assert len(srv.sockets) == 1
    net.run(srv.start_serving())
    assert srv.is_serving() is True
    net.run(srv.start_serving())  # again: no-op
    net.connect(lambda: net.proto(), "127.0.0.1", _port(srv))
    net.until(lambda: factory.made)


def test_server_serve_forever(loop, net):
    factory = net.factory()
    srv = net.server(factory, start_serving=False)

    async def main():
        task = asyncio.ensure_future(srv.serve_forever())
        await asyncio.sleep(0)
        assert srv.is_serving()
        with pytest.raises(RuntimeError, match=r"is already being awaited on serve_forever\(\)"):
            await srv.serve_forever()
        await loop.create_connection(lambda: net.proto(), "127.0.0.1", _port(srv))
        while not factory.made:
            await asyncio.sleep(0.001)
        factory.made[0].transport.close()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    net.run(main())
    assert srv.is_serving() is False
    assert srv.sockets == ()
    with pytest.raises(RuntimeError, match="is closed"):
        net.run(srv.serve_forever())


def test_server_close_cancels_serve_forever(loop, net):
    srv = net.server(net.factory())

    async def main():
        task = asyncio.ensure_future(srv.serve_forever())
        await asyncio.sleep(0)
        srv.close()
        with pytest.raises(asyncio.CancelledError):
            await task

    net.run(main())


def test_server_reuse_address(loop, net):
    default = net.server(net.factory())
    explicit = net.server(net.factory(), reuse_address=True)
    off = net.server(net.factory(), reuse_address=False)
    opt = (socket.SOL_SOCKET, socket.SO_REUSEADDR)
    assert default.sockets[0].getsockopt(*opt) != 0  # the POSIX default
    assert explicit.sockets[0].getsockopt(*opt) != 0
    assert off.sockets[0].getsockopt(*opt) == 0


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT here")
def test_server_reuse_port(loop, net):
    first = net.server(net.factory(), reuse_port=True)
    port = _port(first)
    second = net.server(net.factory(), port=port, reuse_port=True)
    assert _port(second) == port
    for srv in (first, second):
        assert srv.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) != 0
    with pytest.raises(OSError) as info:
        net.server(net.factory(), port=port)  # without reuse_port: in use
    assert info.value.errno == errno.EADDRINUSE


def test_server_several_hosts(loop, net):
    hosts = ["127.0.0.1", "::1"] if HAS_IPV6 else ["127.0.0.1", "127.0.0.2"]
    factory = net.factory()
    srv = net.server(factory, hosts)
    assert sorted(s.getsockname()[0] for s in srv.sockets) == sorted(hosts)
    for s in srv.sockets:
        host, port = s.getsockname()[:2]
        tr, _ = net.connect(lambda: net.proto(), host, port)
        assert tr.get_extra_info("peername")[:2] == (host, port)
    net.until(lambda: len(factory.made) == 2)


def test_server_with_sock(loop, net):
    lsock = net.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    factory = net.factory()
    srv = net.run(loop.create_server(factory, sock=lsock))
    net.track(srv)
    assert srv.sockets[0].fileno() == lsock.fileno()
    tr, client = net.connect(lambda: net.proto(), *lsock.getsockname())
    net.until(lambda: factory.made)
    tr.close()
    net.run(factory.made[0].lost)
    srv.close()
    net.run(srv.wait_closed())
    assert lsock.fileno() == -1  # the server closes the socket it was given


def test_create_server_bad_arguments(loop, net):
    f = net.factory()
    with pytest.raises(ValueError, match="Neither host/port nor sock were specified"):
        net.run(loop.create_server(f))
    sock = net.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(ValueError, match="host/port and sock can not be specified at the same time"):
        net.run(loop.create_server(f, "127.0.0.1", 0, sock=sock))
    udp = net.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with pytest.raises(ValueError, match="A Stream Socket was expected, got"):
        net.run(loop.create_server(f, sock=udp))


def test_create_server_address_in_use(loop, net):
    srv = net.server(net.factory(), reuse_address=False)
    with pytest.raises(OSError) as info:
        net.server(net.factory(), port=_port(srv), reuse_address=False)
    assert info.value.errno == errno.EADDRINUSE


@pytest.mark.skipif(PY < (3, 13), reason="Server.close_clients/abort_clients are new in 3.13")
@pytest.mark.parametrize("how", ["close_clients", "abort_clients"])
def test_server_close_or_abort_clients(loop, net, how):
    factory = net.factory()
    srv = net.server(factory)
    clients = [net.connect(lambda: net.proto(), "127.0.0.1", _port(srv))[1] for _ in range(2)]
    net.until(lambda: len(factory.made) == 2)
    getattr(srv, how)()
    for server_side in factory.made:
        assert server_side.transport.is_closing()
        net.run(server_side.lost)
        assert server_side.lost_excs == [None]
    for c in clients:
        net.run(c.lost)
    srv.close()
    net.run(srv.wait_closed())


def test_is_an_asyncio_transport(loop, net):
    tr, _, server = _pair(net)
    for tr in (tr, server.transport):
        assert isinstance(tr, asyncio.Transport)
        assert isinstance(tr, (asyncio.ReadTransport, asyncio.WriteTransport))
        assert not isinstance(tr, asyncio.DatagramTransport)
