"""Reading on stream transports: pauses while data keeps coming, closing while it
arrives, many connections receiving at once, and a socket number reused at once.

On every loop. With FASTLOOP_BACKEND=io_uring the Cython core reads on completions
(the kernel receives into a buffer ring shared by the loop's sockets, and a pause or
close cancels that request while data may still be completing): these are the cases
where that could lose, reorder or misdeliver bytes, or keep a closed socket open.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket

import pytest

from helpers import run_briefly
from nethelpers import BufferedRecorder, Recorder, net  # noqa: F401 - net is a fixture

MiB = 1024 * 1024


def _port(server):
    return server.sockets[0].getsockname()[1]


def _pair(net, client_cls=Recorder, **client_kw):
    factory = net.factory(Recorder)
    srv = net.server(factory)
    tr, client = net.connect(lambda: net.proto(client_cls, **client_kw), "127.0.0.1", _port(srv))
    net.until(lambda: factory.made and factory.made[0].transport is not None)
    return tr, client, factory.made[0]


class PausingRecorder(Recorder):
    """Pauses reading after each data_received; records what came while paused."""

    def __init__(self, loop, net=None):
        super().__init__(loop, net=net)
        self.while_paused: list[str] = []

    def data_received(self, data):
        if not self.transport.is_reading():
            self.while_paused.append("data")
        super().data_received(data)
        self.transport.pause_reading()

    def eof_received(self):
        if not self.transport.is_reading():
            self.while_paused.append("eof")
        return super().eof_received()


def test_pause_in_data_received_while_the_peer_keeps_sending(loop, net):
    tr, client, server = _pair(net, PausingRecorder)
    blob = os.urandom(3 * MiB)
    piece = 32 * 1024

    def send(offset=0):  # a piece per iteration: arrivals race with the pauses
        server.transport.write(blob[offset:offset + piece])
        if offset + piece < len(blob):
            loop.call_soon(send, offset + piece)
        else:
            server.transport.write_eof()

    send()
    while True:
        net.until(lambda: not tr.is_reading() or client.eof.done())
        if client.eof.done():
            break
        before = len(client.data)
        run_briefly(loop, 3)  # paused: whatever arrives meanwhile is held back
        assert len(client.data) == before and not client.eof.done()
        tr.resume_reading()
    assert client.while_paused == []
    assert bytes(client.data) == blob
    assert client.events[:3] == ["made", "data", "eof"]


def test_pause_in_buffer_updated_keeps_the_rest(loop, net):
    class Pausing(BufferedRecorder):
        def buffer_updated(self, nbytes):
            super().buffer_updated(nbytes)
            self.transport.pause_reading()

    tr, client, server = _pair(net, Pausing, bufsize=1000)
    blob = os.urandom(20000)
    server.transport.write(blob)
    while len(client.data) < len(blob):
        net.until(lambda: not tr.is_reading())
        before = len(client.data)
        run_briefly(loop, 2)
        assert len(client.data) == before
        tr.resume_reading()
    assert bytes(client.data) == blob
    assert max(client.updates) <= 1000


def test_close_while_reading_lets_the_socket_go(loop, net):
    """After close() the peer sees EOF: a closed transport holds nothing that keeps its
    socket open (everything sent to it was read first, so the close is a FIN)."""
    tr, client, server = _pair(net)
    server.transport.write(b"x" * 100)
    net.until(lambda: len(client.data) == 100)
    tr.close()
    net.run(client.lost)
    net.run(server.lost)
    assert client.events == ["made", "data", "lost"]
    assert server.events == ["made", "eof", "lost"]


def test_many_connections_receiving_at_once(loop, net):
    """More bytes in flight than any read-ahead holds: every connection gets its own
    stream, whole and in order."""
    count, size = 24, 1 * MiB
    factory = net.factory(Recorder)
    srv = net.server(factory)
    clients = [net.connect(lambda: net.proto(Recorder), "127.0.0.1", _port(srv))[1]
               for _ in range(count)]
    net.until(lambda: len(factory.made) == count
              and all(p.transport is not None for p in factory.made))
    blobs = {}
    for i, server in enumerate(factory.made):
        blob = (i.to_bytes(2, "big") * (size // 2))
        blobs[i] = hashlib.sha256(blob).digest()
        server.transport.write(blob)
        server.transport.write_eof()
    for client in clients:
        net.run(client.eof)
    got = {int.from_bytes(bytes(c.data[:2]), "big"): hashlib.sha256(bytes(c.data)).digest()
           for c in clients}
    assert got == blobs
    assert all(len(c.data) == size for c in clients)


def test_a_reused_socket_number_gets_only_its_own_bytes(loop, net):
    """Close a connection while its peer is still sending, then connect again at once:
    the new socket usually gets the old one's number. Nothing of the old stream may
    reach the new transport."""
    listener = net.track(socket.create_server(("127.0.0.1", 0)))
    listener.setblocking(False)
    for round_ in range(5):
        ours = socket.create_connection(listener.getsockname())
        peer, _ = listener.accept()
        net.track(peer)
        peer.setblocking(False)
        tr, proto = net.run(loop.create_connection(lambda: Recorder(loop), sock=ours))
        net.track(tr)
        old_fd = tr.get_extra_info("socket").fileno()
        try:
            peer.send(b"old" * 20000)
        except BlockingIOError:
            pass
        net.until(lambda: proto.data)
        tr.close()
        net.run(proto.lost)
        try:
            peer.send(b"old" * 1000)
        except OSError:
            pass
        fresh = socket.create_connection(listener.getsockname())
        fresh_peer, _ = listener.accept()
        net.track(fresh_peer)
        tr2, proto2 = net.run(loop.create_connection(lambda: Recorder(loop), sock=fresh))
        net.track(tr2)
        reused = tr2.get_extra_info("socket").fileno() == old_fd
        fresh_peer.sendall(b"new-%d" % round_)
        net.until(lambda: len(proto2.data) >= 5)
        run_briefly(loop, 3)
        assert bytes(proto2.data) == b"new-%d" % round_, (round_, reused)
        tr2.close()
        net.run(proto2.lost)
        peer.close()
        fresh_peer.close()


@pytest.mark.parametrize("family", ["tcp", "unix"])
def test_closing_with_bytes_unread_resets_the_peer(loop, net, family):
    """A socket closed with bytes in it that the protocol never got resets its peer
    (TCP sends an RST; a Unix socket's peer reads ECONNRESET) instead of ending the
    stream. Here the reader takes 1 byte of 1000 and closes: the peer's next read
    fails with ConnectionResetError on every loop, although a completion read may
    have taken all 1000 bytes out of the socket already."""

    class TakesOneByte(BufferedRecorder):
        def buffer_updated(self, nbytes):
            super().buffer_updated(nbytes)
            self.transport.close()

    if family == "tcp":
        tr, client, server = _pair(net, TakesOneByte, bufsize=1)
    else:
        ours, theirs = (net.track(s) for s in socket.socketpair())
        tr, client = net.run(loop.create_connection(
            lambda: TakesOneByte(loop, bufsize=1), sock=ours))
        _, server = net.run(loop.create_connection(lambda: Recorder(loop), sock=theirs))
        net.track(tr)
    server.transport.write(b"x" * 1000)
    net.run(client.lost)
    net.run(server.lost)
    assert bytes(client.data) == b"x"
    assert server.events == ["made", "lost"]
    assert [type(exc) for exc in server.lost_excs] == [ConnectionResetError]


def test_a_read_takes_what_arrived_before_its_callback_ran(loop, net):
    """A reader reads the socket when its callback runs: bytes sent earlier in the
    same iteration, after the poll that reported the first ones, come in the same
    data_received (the kernel received them on completions after that poll)."""
    tr, client, server = _pair(net)

    def first():
        server.transport.write(b"a")
        loop.call_soon(server.transport.write, b"b")  # runs before the client's read

    loop.call_soon(first)
    net.until(lambda: len(client.data) == 2)
    assert client.chunks == 1 and bytes(client.data) == b"ab"
