"""Unix stream sockets: create_unix_connection / create_unix_server."""

from __future__ import annotations

import asyncio
import errno
import os
import pathlib
import socket
import sys
import uuid

import pytest

from helpers import run_briefly
from nethelpers import PY, Echo, Recorder, net, without_flow  # noqa: F401 - net is a fixture

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no AF_UNIX here")


def _path(net):
    return os.path.join(net.tmpdir(), "srv.sock")


def _unix_server(net, factory, path, **kw):
    return net.track(net.run(net.loop.create_unix_server(factory, path, **kw)))


def _unix_connect(net, factory, path, **kw):
    tr, pr = net.run(net.loop.create_unix_connection(factory, path, **kw))
    net.track(tr)
    return tr, pr


def test_unix_echo_round_trip(loop, net):
    path = _path(net)
    factory = net.factory(Echo)
    srv = _unix_server(net, factory, path)
    assert srv.is_serving()
    assert srv.sockets[0].getsockname() == path
    assert srv.sockets[0].family == socket.AF_UNIX
    tr, client = _unix_connect(net, lambda: net.proto(), path)
    payload = os.urandom(300_000)
    tr.write(payload)
    net.until(lambda: len(client.data) >= len(payload))
    assert bytes(client.data) == payload
    tr.close()
    net.run(client.lost)
    net.until(lambda: factory.made[0].lost.done())
    # 300 kB overflows AF_UNIX socket buffers: flow control may pause and resume.
    flow = [e for e in client.events if e in ("pause", "resume")]
    assert flow == ["pause", "resume"] * (len(flow) // 2)
    assert without_flow(client.events) == ["made", "data", "lost"]
    assert without_flow(factory.made[0].events) == ["made", "data", "eof", "lost"]
    assert factory.made[0].lost_excs == [None]


def test_unix_extra_info(loop, net):
    path = _path(net)
    factory = net.factory()
    _unix_server(net, factory, path)
    tr, client = _unix_connect(net, lambda: net.proto(), path)
    net.until(lambda: factory.made and factory.made[0].transport)
    str_ = factory.made[0].transport
    assert tr.get_extra_info("peername") == path
    assert tr.get_extra_info("sockname") == ""  # an unbound client socket
    assert str_.get_extra_info("sockname") == path
    assert str_.get_extra_info("peername") == ""
    sock = tr.get_extra_info("socket")
    assert isinstance(sock, asyncio.trsock.TransportSocket)
    assert sock.family == socket.AF_UNIX and sock.type == socket.SOCK_STREAM


def test_unix_half_close(loop, net):
    path = _path(net)
    factory = net.factory(Echo)
    _unix_server(net, factory, path)
    tr, client = _unix_connect(net, lambda: net.proto(), path)
    assert tr.can_write_eof() is True
    tr.write(b"before eof")
    tr.write_eof()
    net.run(client.lost)
    assert bytes(client.data) == b"before eof"
    assert client.events == ["made", "data", "eof", "lost"]


def test_unix_server_accepts_pathlike(loop, net):
    path = pathlib.Path(_path(net))
    factory = net.factory()
    srv = _unix_server(net, factory, path)
    assert srv.sockets[0].getsockname() == str(path)
    _unix_connect(net, lambda: net.proto(), path)
    net.until(lambda: factory.made)


def test_unix_server_replaces_a_stale_socket_file(loop, net):
    path = _path(net)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # the file stays behind
    assert os.path.exists(path)
    factory = net.factory()
    _unix_server(net, factory, path)
    _unix_connect(net, lambda: net.proto(), path)
    net.until(lambda: factory.made)


def test_unix_server_refuses_to_replace_a_regular_file(loop, net):
    path = _path(net)
    with open(path, "w") as f:
        f.write("not a socket")
    with pytest.raises(OSError) as info:
        net.run(loop.create_unix_server(net.factory(), path))
    assert info.value.errno == errno.EADDRINUSE
    with open(path) as f:
        assert f.read() == "not a socket"


def test_unix_server_with_sock(loop, net):
    path = _path(net)
    lsock = net.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(path)
    factory = net.factory()
    srv = _unix_server(net, factory, None, sock=lsock)
    assert srv.sockets[0].fileno() == lsock.fileno()
    _unix_connect(net, lambda: net.proto(), path)
    net.until(lambda: factory.made)


def test_unix_connection_with_sock(loop, net):
    path = _path(net)
    factory = net.factory(Echo)
    _unix_server(net, factory, path)
    sock = net.socket(socket.AF_UNIX, socket.SOCK_STREAM, blocking=True)
    sock.connect(path)
    tr, client = _unix_connect(net, lambda: net.proto(), None, sock=sock)
    tr.write(b"ping")
    net.until(lambda: client.data)
    assert bytes(client.data) == b"ping"


def test_unix_connection_to_missing_path(loop, net):
    path = os.path.join(net.tmpdir(), "nobody-here")
    with pytest.raises(FileNotFoundError):
        net.run(loop.create_unix_connection(net.factory(), path))


def test_unix_connection_refused_by_a_stale_file(loop, net):
    path = _path(net)
    stale = net.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)  # bound, not listening
    with pytest.raises(ConnectionRefusedError):
        net.run(loop.create_unix_connection(net.factory(), path))


def test_unix_bad_arguments(loop, net):
    f = net.factory()
    path = _path(net)
    sock = net.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with pytest.raises(ValueError, match="path and sock can not be specified at the same time"):
        net.run(loop.create_unix_connection(f, path, sock=sock))
    with pytest.raises(ValueError, match="no path and sock were specified"):
        net.run(loop.create_unix_connection(f))
    with pytest.raises(ValueError, match="path and sock can not be specified at the same time"):
        net.run(loop.create_unix_server(f, path, sock=sock))
    with pytest.raises(ValueError, match="path was not specified, and no sock specified"):
        net.run(loop.create_unix_server(f))
    tcp = net.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(ValueError, match="A UNIX Domain Stream Socket was expected, got"):
        net.run(loop.create_unix_connection(f, sock=tcp))
    with pytest.raises(ValueError, match="A UNIX Domain Stream Socket was expected, got"):
        net.run(loop.create_unix_server(f, sock=tcp))
    with pytest.raises(ValueError, match="server_hostname is only meaningful with ssl"):
        net.run(loop.create_unix_connection(f, path, server_hostname="x"))
    assert f.made == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract namespace is Linux-only")
def test_unix_abstract_namespace(loop, net):
    name = "\0fastloop-test-" + uuid.uuid4().hex
    factory = net.factory(Echo)
    srv = _unix_server(net, factory, name)
    # Python reports abstract names as bytes.
    assert srv.sockets[0].getsockname() == name.encode()
    tr, client = _unix_connect(net, lambda: net.proto(), name)
    tr.write(b"abstract")
    net.until(lambda: len(client.data) >= 8)
    assert bytes(client.data) == b"abstract"
    tr.close()
    net.run(client.lost)
    srv.close()
    net.run(srv.wait_closed())


def test_unix_server_close_stops_accepting(loop, net):
    path = _path(net)
    kw = dict(cleanup_socket=False) if PY >= (3, 13) else {}  # keep the file (3.13 removes it)
    srv = _unix_server(net, net.factory(), path, **kw)
    srv.close()
    net.run(srv.wait_closed())
    assert not srv.is_serving()
    run_briefly(loop, 2)
    assert os.path.exists(path)
    with pytest.raises(ConnectionRefusedError):
        net.run(loop.create_unix_connection(net.factory(), path))


@pytest.mark.skipif(PY < (3, 13), reason="cleanup_socket is new in 3.13 (before it the file stays)")
def test_unix_server_cleanup_socket(loop, net):
    path = _path(net)
    srv = _unix_server(net, net.factory(), path)
    assert os.path.exists(path)
    srv.close()
    net.run(srv.wait_closed())
    assert not os.path.exists(path)  # cleanup_socket=True is the default

    srv = _unix_server(net, net.factory(), path, cleanup_socket=False)
    srv.close()
    net.run(srv.wait_closed())
    assert os.path.exists(path)

    # A file that another server took over is not removed.
    srv = _unix_server(net, net.factory(), path)
    os.unlink(path)
    other = net.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(path)
    srv.close()
    net.run(srv.wait_closed())
    assert os.path.exists(path)


@pytest.mark.skipif(PY >= (3, 13), reason="3.13 removes the file (cleanup_socket)")
def test_unix_server_leaves_socket_file_before_3_13(loop, net):
    path = _path(net)
    srv = _unix_server(net, net.factory(), path)
    srv.close()
    net.run(srv.wait_closed())
    assert os.path.exists(path)


def test_unix_fd_of_a_transport_is_off_limits(loop, net):
    path = _path(net)
    _unix_server(net, net.factory(), path)
    tr, _ = _unix_connect(net, lambda: net.proto(), path)
    fd = tr.get_extra_info("socket").fileno()
    with pytest.raises(RuntimeError, match="is used by transport"):
        loop.add_reader(fd, lambda: None)


def test_unix_peer_closing_mid_stream(loop, net):
    path = _path(net)
    factory = net.factory()
    _unix_server(net, factory, path)
    tr, client = _unix_connect(net, lambda: net.proto(), path)
    net.until(lambda: factory.made and factory.made[0].transport)
    server = factory.made[0]
    server.transport.write(b"bye")
    server.transport.close()
    net.run(client.lost)
    assert bytes(client.data) == b"bye"
    assert client.events == ["made", "data", "eof", "lost"]
    assert client.lost_excs == [None]
    assert isinstance(server, Recorder) and server.lost_excs == [None]
