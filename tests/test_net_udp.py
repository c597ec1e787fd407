"""Datagrams: create_datagram_endpoint and the datagram transport."""

from __future__ import annotations

import asyncio
import os
import socket
import sys

import pytest

from helpers import run_briefly
from nethelpers import HOSTS, net, unused_udp_address  # noqa: F401 - net is a fixture


class Datagrams(asyncio.DatagramProtocol):
    def __init__(self, loop, net=None):
        self.loop = loop
        self.transport = None
        self.events = []
        self.received: list[tuple[bytes, object]] = []
        self.errors: list[Exception] = []
        self.lost_excs = []
        self.lost = loop.create_future()
        if net is not None:
            net.protocols.append(self)

    def connection_made(self, transport):
        self.events.append("made")
        self.transport = transport

    def datagram_received(self, data, addr):
        assert type(data) is bytes
        self.events.append("datagram")
        self.received.append((data, addr))

    def error_received(self, exc):
        self.events.append("error")
        self.errors.append(exc)

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost_excs.append(exc)
        if not self.lost.done():
            self.lost.set_result(exc)


def _endpoint(net, **kw):
    tr, pr = net.run(net.loop.create_datagram_endpoint(lambda: Datagrams(net.loop, net), **kw))
    net.track(tr)
    assert pr.transport is tr and pr.events == ["made"]
    return tr, pr


@pytest.mark.parametrize("host", HOSTS)
def test_local_and_remote_endpoints(loop, net, host):
    server_tr, server = _endpoint(net, local_addr=(host, 0))
    server_addr = server_tr.get_extra_info("sockname")
    assert server_addr[0] == host and server_addr[1] != 0
    assert server_tr.get_extra_info("peername") is None
    client_tr, client = _endpoint(net, remote_addr=server_addr[:2])
    assert client_tr.get_extra_info("peername")[:2] == server_addr[:2]
    client_addr = client_tr.get_extra_info("sockname")

    client_tr.sendto(b"ping")
    client_tr.sendto(b"ping2", server_addr)  # the connected address itself is allowed
    net.until(lambda: len(server.received) == 2)
    assert server.received == [(b"ping", client_addr), (b"ping2", client_addr)]
    server_tr.sendto(b"pong", client_addr)
    net.until(lambda: client.received)
    assert client.received[0][0] == b"pong"
    assert client.received[0][1][:2] == server_addr[:2]
    assert server.errors == [] and client.errors == []


@pytest.mark.parametrize("host", HOSTS)
def test_sender_address_is_what_socket_recvfrom_gives(loop, net, host):
    # The Cython core builds IP addresses itself: same tuple, same element types.
    server_tr, server = _endpoint(net, local_addr=(host, 0))
    family = server_tr.get_extra_info("socket").family
    with socket.socket(family, socket.SOCK_DGRAM) as sender, \
            socket.socket(family, socket.SOCK_DGRAM) as plain:
        sender.bind((host, 0))
        plain.bind((host, 0))
        plain.settimeout(5)
        sender.sendto(b"to the transport", server_tr.get_extra_info("sockname"))
        sender.sendto(b"", server_tr.get_extra_info("sockname"))
        sender.sendto(b"to a plain socket", plain.getsockname())
        _, expected = plain.recvfrom(100)
        net.until(lambda: len(server.received) == 2)
    assert server.received == [(b"to the transport", expected), (b"", expected)]
    assert [type(x) for x in server.received[0][1]] == [type(x) for x in expected]


class Upper(Datagrams):
    """Answers every datagram, upper-cased, to the address object it came with."""

    def datagram_received(self, data, addr):
        super().datagram_received(data, addr)
        self.transport.sendto(data.upper(), addr)


@pytest.mark.parametrize("host", HOSTS)
def test_answering_alternating_peers(loop, net, host):
    # Each answer goes to the address the datagram came with (the Cython core reuses
    # the last sender's tuple, and sends to it without parsing it again).
    server_tr, _ = net.run(net.loop.create_datagram_endpoint(
        lambda: Upper(net.loop, net), local_addr=(host, 0)))
    net.track(server_tr)
    server_addr = server_tr.get_extra_info("sockname")
    a, pa = _endpoint(net, remote_addr=server_addr[:2])
    b, pb = _endpoint(net, remote_addr=server_addr[:2])
    for i in range(3):
        a.sendto(b"a%d" % i)
        net.until(lambda: len(pa.received) == i + 1)
        b.sendto(b"b%d" % i)
        b.sendto(b"again b%d" % i)
        net.until(lambda: len(pb.received) == 2 * i + 2)
    assert [d for d, _ in pa.received] == [b"A0", b"A1", b"A2"]
    assert [d for d, _ in pb.received] == [b"B0", b"AGAIN B0", b"B1", b"AGAIN B1", b"B2",
                                           b"AGAIN B2"]
    assert pa.errors == [] and pb.errors == []


@pytest.mark.parametrize("host", HOSTS)
def test_more_peers_than_the_transport_remembers(loop, net, host):
    # The Cython core keeps the address tuples of its 8 latest senders (PEER_CACHE);
    # 10 peers taking turns, twice, evict them all: each datagram still comes with its
    # sender's address, and each answer reaches the peer it is meant for.
    server_tr, server = net.run(net.loop.create_datagram_endpoint(
        lambda: Upper(net.loop, net), local_addr=(host, 0)))
    net.track(server_tr)
    server_addr = server_tr.get_extra_info("sockname")
    family = server_tr.get_extra_info("socket").family
    peers = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(10)]
    try:
        for peer in peers:
            peer.bind((host, 0))
            peer.settimeout(5)
        for turn in range(2):
            for i, peer in enumerate(peers):
                peer.sendto(b"peer %d turn %d" % (i, turn), server_addr)
            net.until(lambda: len(server.received) == 10 * (turn + 1))
            for i, peer in enumerate(peers):
                assert peer.recv(100) == b"PEER %d TURN %d" % (i, turn)
        names = [peer.getsockname() for peer in peers]
    finally:
        for peer in peers:
            peer.close()
    assert server.received == [(b"peer %d turn %d" % (i, turn), names[i])
                               for turn in range(2) for i in range(10)]
    assert server.errors == []


def test_datagram_boundaries_and_buffer_types(loop, net):
    server_tr, server = _endpoint(net, local_addr=("127.0.0.1", 0))
    addr = server_tr.get_extra_info("sockname")
    client_tr, _ = _endpoint(net, local_addr=("127.0.0.1", 0))
    msgs = [b"a", bytearray(b"bb"), memoryview(b"xccc")[1:], os.urandom(60000)]
    for m in msgs:
        client_tr.sendto(m, addr)
    net.until(lambda: len(server.received) == len(msgs))
    assert [d for d, _ in server.received] == [bytes(m) for m in msgs]
    assert client_tr.get_write_buffer_size() == 0


def test_sendto_rejects_non_bytes(loop, net):
    tr, _ = _endpoint(net, local_addr=("127.0.0.1", 0))
    for bad in ("text", 1, None):
        with pytest.raises(TypeError) as info:
            tr.sendto(bad, ("127.0.0.1", 9))
        assert str(info.value) == (
            f"data argument must be a bytes-like object, not {type(bad).__name__!r}")


def test_sendto_other_address_on_connected_endpoint(loop, net):
    server_tr, server = _endpoint(net, local_addr=("127.0.0.1", 0))
    addr = server_tr.get_extra_info("sockname")
    client_tr, _ = _endpoint(net, remote_addr=addr)
    other = ("127.0.0.1", addr[1] + 1 if addr[1] < 65535 else addr[1] - 1)
    with pytest.raises(ValueError) as info:
        client_tr.sendto(b"x", other)
    assert str(info.value) == f"Invalid address: must be None or {addr}"
    run_briefly(loop, 3)
    assert server.received == []


def test_error_received_on_icmp_unreachable(loop, net):
    addr = unused_udp_address()
    tr, proto = _endpoint(net, remote_addr=addr)
    # A connected UDP socket learns of the ICMP port unreachable on its next call.
    for _ in range(100):
        tr.sendto(b"anyone?")
        run_briefly(loop, 2)
        if proto.errors:
            break
    assert proto.errors, "no error_received after 100 datagrams to a closed port"
    assert isinstance(proto.errors[0], ConnectionRefusedError)
    assert not tr.is_closing()  # errors of this kind are not fatal
    assert "lost" not in proto.events


def test_close_and_abort_call_connection_lost_once(loop, net):
    for how in ("close", "abort"):
        tr, proto = _endpoint(net, local_addr=("127.0.0.1", 0))
        getattr(tr, how)()
        assert tr.is_closing()
        tr.close()
        net.run(proto.lost)
        run_briefly(loop, 3)
        assert proto.lost_excs == [None]
        assert proto.events == ["made", "lost"]


def test_reply_after_close_never_reaches_a_socket_that_took_the_fd(loop, net):
    # A reply to the address object datagram_received() gave, once the transport is
    # closed: asyncio's sendto() fails on the socket it dropped (AttributeError), and
    # nothing is sent, not even by the socket that now has the closed one's number.
    server_tr, server = _endpoint(net, local_addr=("127.0.0.1", 0))
    client_tr, client = _endpoint(net, local_addr=("127.0.0.1", 0))
    client_tr.sendto(b"ping", server_tr.get_extra_info("sockname"))
    net.until(lambda: server.received)
    sender = server.received[0][1]
    fd = server_tr.get_extra_info("socket").fileno()
    server_tr.close()
    net.run(server.lost)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as newcomer:
        if newcomer.fileno() != fd:
            os.dup2(newcomer.fileno(), fd)  # the closed fd's number, reused
        try:
            with pytest.raises(AttributeError):
                server_tr.sendto(b"late reply", sender)
        finally:
            if newcomer.fileno() != fd:
                os.close(fd)
    run_briefly(loop, 3)
    assert client.received == []


def test_close_flushes_buffered_datagrams(loop, net):
    server_tr, server = _endpoint(net, local_addr=("127.0.0.1", 0))
    addr = server_tr.get_extra_info("sockname")
    client_tr, client = _endpoint(net, local_addr=("127.0.0.1", 0))
    client_tr.sendto(b"1", addr)
    client_tr.sendto(b"2", addr)
    client_tr.close()
    net.run(client.lost)
    net.until(lambda: len(server.received) == 2)
    assert [d for d, _ in server.received] == [b"1", b"2"]


def test_extra_info(loop, net):
    tr, _ = _endpoint(net, local_addr=("127.0.0.1", 0))
    sock = tr.get_extra_info("socket")
    assert isinstance(sock, asyncio.trsock.TransportSocket)
    assert sock.type == socket.SOCK_DGRAM
    assert tr.get_extra_info("sockname") == sock.getsockname()
    assert tr.get_extra_info("nothing", 5) == 5


def test_allow_broadcast(loop, net):
    tr, _ = _endpoint(net, local_addr=("127.0.0.1", 0), allow_broadcast=True)
    assert tr.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST) != 0
    tr2, _ = _endpoint(net, local_addr=("127.0.0.1", 0))
    assert tr2.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST) == 0


def test_with_sock(loop, net):
    sock = net.socket(socket.AF_INET, socket.SOCK_DGRAM, blocking=True)
    sock.bind(("127.0.0.1", 0))
    tr, proto = _endpoint(net, sock=sock)
    assert sock.getblocking() is False
    assert tr.get_extra_info("sockname") == sock.getsockname()
    peer = net.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.sendto(b"to sock", sock.getsockname())
    net.until(lambda: proto.received)
    assert proto.received == [(b"to sock", peer.getsockname())]
    tr.close()
    net.run(proto.lost)
    assert sock.fileno() == -1  # the transport closes the socket it was given


def test_bad_arguments(loop, net):
    f = lambda: Datagrams(loop)  # noqa: E731
    with pytest.raises(ValueError, match="unexpected address family"):
        net.run(loop.create_datagram_endpoint(f))
    sock = net.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with pytest.raises(ValueError) as info:
        net.run(loop.create_datagram_endpoint(f, local_addr=("127.0.0.1", 0), sock=sock))
    assert str(info.value).startswith(
        "socket modifier keyword arguments can not be used when sock is specified. (")
    assert "local_addr=" in str(info.value)
    tcp = net.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(ValueError, match="(?i)socket was expected, got"):  # wording varies
        net.run(loop.create_datagram_endpoint(f, sock=tcp))


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no AF_UNIX here")
def test_unix_datagrams(loop, net):
    d = net.tmpdir()
    server_path = os.path.join(d, "server")
    client_path = os.path.join(d, "client")
    server_tr, server = _endpoint(net, family=socket.AF_UNIX, local_addr=server_path)
    assert server_tr.get_extra_info("sockname") == server_path
    client_tr, client = _endpoint(net, family=socket.AF_UNIX, local_addr=client_path,
                                  remote_addr=server_path)
    assert client_tr.get_extra_info("peername") == server_path
    client_tr.sendto(b"unix datagram")
    net.until(lambda: server.received)
    assert server.received == [(b"unix datagram", client_path)]
    server_tr.sendto(b"reply", client_path)
    net.until(lambda: client.received)
    assert client.received == [(b"reply", server_path)]


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no AF_UNIX here")
def test_unix_datagram_address_must_be_a_string(loop, net):
    with pytest.raises(TypeError, match="string is expected"):
        net.run(loop.create_datagram_endpoint(lambda: Datagrams(loop), family=socket.AF_UNIX,
                                              local_addr=("127.0.0.1", 0)))


def test_is_an_asyncio_datagram_transport(loop, net):
    tr, _ = _endpoint(net, local_addr=("127.0.0.1", 0))
    assert isinstance(tr, asyncio.Transport)
    # asyncio's datagram transport is an asyncio.DatagramTransport from 3.12 on.
    assert isinstance(tr, asyncio.DatagramTransport) == (sys.version_info >= (3, 12))
    # What asyncio.WriteTransport leaves unimplemented stays so.
    with pytest.raises(NotImplementedError):
        tr.write(b"x")
    with pytest.raises(NotImplementedError):
        tr.writelines([b"x", b"y"])
    with pytest.raises(NotImplementedError):
        tr.write_eof()
    with pytest.raises(NotImplementedError):
        tr.can_write_eof()


class Logging(Datagrams):
    """Logs each datagram, and what the test's hook does in response."""

    def __init__(self, loop, net, hook):
        super().__init__(loop, net)
        self.log = []
        self.hook = hook

    def datagram_received(self, data, addr):
        super().datagram_received(data, addr)
        self.log.append(data.decode())
        self.hook(self, data.decode())


def _queued_datagrams(net, hook, count=3):
    """A server endpoint with `count` datagrams waiting in its socket, none read yet."""
    server_tr, server = net.run(net.loop.create_datagram_endpoint(
        lambda: Logging(net.loop, net, hook), local_addr=("127.0.0.1", 0)))
    net.track(server_tr)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for i in range(count):
            sender.sendto(b"d%d" % i, server_tr.get_extra_info("sockname"))
    return server_tr, server


def test_callbacks_scheduled_by_a_datagram_run_before_the_next(loop, net):
    # Several datagrams wait at once; what datagram_received schedules runs before the
    # next datagram is delivered (the loop reads on only when nothing else is ready).
    def hook(proto, name):
        proto.loop.call_soon(proto.log.append, "cb" + name[1:])

    _, server = _queued_datagrams(net, hook)
    net.until(lambda: len(server.log) == 6)
    assert server.log == ["d0", "cb0", "d1", "cb1", "d2", "cb2"]


def test_due_timers_interleave_with_waiting_datagrams(loop, net):
    # A timer due after one datagram fires in the iteration that delivers the next.
    def hook(proto, name):
        proto.loop.call_later(0, proto.log.append, "t" + name[1:])

    _, server = _queued_datagrams(net, hook)
    net.until(lambda: len(server.log) == 6)
    assert server.log == ["d0", "d1", "t0", "d2", "t1", "t2"]


def test_pause_reading_from_datagram_received_stops_delivery(loop, loop_kind, net):
    if loop_kind == "aio" and sys.version_info < (3, 11):
        pytest.skip("asyncio 3.10's datagram transport has no pause_reading "
                    "(NotImplementedError, added in 3.11); both cores have it")

    def hook(proto, name):
        if name == "d0":
            proto.transport.pause_reading()

    server_tr, server = _queued_datagrams(net, hook)
    net.until(lambda: server.log)
    run_briefly(loop, 5)
    assert server.log == ["d0"] and not server_tr.is_reading()
    server_tr.resume_reading()
    net.until(lambda: len(server.log) == 3)
    assert server.log == ["d0", "d1", "d2"]


def test_close_from_datagram_received_stops_delivery(loop, net):
    def hook(proto, name):
        proto.transport.close()

    _, server = _queued_datagrams(net, hook)
    net.run(server.lost)
    run_briefly(loop, 3)
    assert server.log == ["d0"] and server.events == ["made", "datagram", "lost"]
