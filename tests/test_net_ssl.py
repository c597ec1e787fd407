"""TLS over the loop's transports: create_server/create_connection(ssl=), start_tls, streams.

The certificates are tests/certs/ (see the README there).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import ssl

import pytest

from nethelpers import (  # noqa: F401 - net is a fixture
    HOSTS,
    PY,
    Echo,
    Recorder,
    client_context,
    net,
    server_context,
)


# asyncio's TLS (sslproto) reports the peer's close_notify through eof_received from
# 3.11 on (the rewritten sslproto); 3.10's goes straight to connection_lost.
EOF_ON_CLOSE = ["eof"] if PY >= (3, 11) else []


def _port(server):
    return server.sockets[0].getsockname()[1]


class TlsEcho(Echo):
    """Echo without the half-close (eof_received returning true means nothing over TLS)."""

    def eof_received(self):
        Recorder.eof_received(self)
        return None


def _tls_pair(net, server_cls=TlsEcho, host="127.0.0.1", **client_kw):
    factory = net.factory(server_cls)
    srv = net.server(factory, host, ssl=server_context())
    client_kw.setdefault("server_hostname", "localhost")
    tr, client = net.connect(lambda: net.proto(), host, _port(srv), ssl=client_context(),
                             **client_kw)
    net.until(lambda: factory.made and factory.made[0].transport is not None)
    return tr, client, factory.made[0]


@pytest.mark.parametrize("host", HOSTS)
def test_tls_echo(loop, net, host):
    tr, client, server = _tls_pair(net, host=host)
    payload = os.urandom(1024 * 1024)
    tr.write(payload)
    net.until(lambda: len(client.data) >= len(payload))
    assert hashlib.sha256(client.data).digest() == hashlib.sha256(payload).digest()
    assert bytes(server.data) == payload
    tr.close()
    net.run(client.lost)
    net.run(server.lost)
    assert client.lost_excs == [None]
    assert server.events == ["made", "data", *EOF_ON_CLOSE, "lost"]


def test_tls_extra_info(loop, net):
    ctx = client_context()
    factory = net.factory(TlsEcho)
    srv = net.server(factory, ssl=server_context())
    tr, client = net.connect(lambda: net.proto(), "127.0.0.1", _port(srv), ssl=ctx,
                             server_hostname="localhost")
    ssl_object = tr.get_extra_info("ssl_object")
    assert isinstance(ssl_object, ssl.SSLObject)
    assert ssl_object.server_hostname == "localhost"
    assert tr.get_extra_info("sslcontext") is ctx
    peercert = tr.get_extra_info("peercert")
    assert dict(x[0] for x in peercert["subject"])["commonName"] == "localhost"
    cipher = tr.get_extra_info("cipher")
    assert isinstance(cipher, tuple) and len(cipher) == 3
    assert tr.get_extra_info("compression") is None
    # Socket-level keys come through from the underlying transport.
    assert tr.get_extra_info("peername") == ("127.0.0.1", _port(srv))
    assert isinstance(tr.get_extra_info("socket"), asyncio.trsock.TransportSocket)
    net.until(lambda: factory.made and factory.made[0].transport)
    str_ = factory.made[0].transport
    assert isinstance(str_.get_extra_info("ssl_object"), ssl.SSLObject)
    assert str_.get_extra_info("peercert") is None  # no client certificate asked for


def test_tls_server_hostname_defaults_to_host(loop, net):
    # The certificate names IP:127.0.0.1 too, so verifying against the host works.
    tr, client, server = _tls_pair(net, server_hostname=None)
    assert tr.get_extra_info("ssl_object").server_hostname == "127.0.0.1"
    tr.write(b"ok")
    net.until(lambda: client.data)
    assert bytes(client.data) == b"ok"


def test_tls_wrong_hostname_fails_verification(loop, net):
    factory = net.factory()
    srv = net.server(factory, ssl=server_context())
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        net.run(loop.create_connection(lambda: net.proto(), "127.0.0.1", _port(srv),
                                       ssl=client_context(), server_hostname="example.com"))
    assert "example.com" in str(info.value)


def test_tls_untrusted_certificate(loop, net):
    srv = net.server(net.factory(), ssl=server_context())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no CA loaded: nothing is trusted
    with pytest.raises(ssl.SSLCertVerificationError):
        net.run(loop.create_connection(lambda: net.proto(), "127.0.0.1", _port(srv), ssl=ctx,
                                       server_hostname="localhost"))


def test_tls_half_close_is_a_close(loop, net):
    tr, client, server = _tls_pair(net)
    assert tr.can_write_eof() is False  # TLS transports cannot half-close
    with pytest.raises(NotImplementedError):
        tr.write_eof()


def test_tls_server_closes(loop, net):
    tr, client, server = _tls_pair(net, Recorder)
    server.transport.write(b"goodbye")
    server.transport.close()
    net.run(client.lost)
    net.run(server.lost)
    assert bytes(client.data) == b"goodbye"
    assert client.events == ["made", "data", *EOF_ON_CLOSE, "lost"]
    assert client.lost_excs == [None]


def test_tls_client_handshake_timeout(loop, net):
    # A plain TCP listener that never answers the ClientHello.
    lsock = net.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    with pytest.raises(ConnectionAbortedError) as info:
        net.run(loop.create_connection(lambda: net.proto(), *lsock.getsockname(),
                                       ssl=client_context(), server_hostname="localhost",
                                       ssl_handshake_timeout=0.2))
    assert str(info.value) == (
        "SSL handshake is taking longer than 0.2 seconds: aborting the connection")


def test_tls_server_handshake_timeout(loop, net):
    factory = net.factory()
    srv = net.server(factory, ssl=server_context(), ssl_handshake_timeout=0.2)
    # A plain TCP client that never starts the handshake: the server drops it.
    tr, client = net.connect(lambda: net.proto(), "127.0.0.1", _port(srv))
    net.run(client.lost)
    assert client.events == ["made", "eof", "lost"]
    assert client.lost_excs == [None]
    assert [p.events for p in factory.made] == [[]]  # made, never connection_made


def test_tls_bad_arguments(loop, net):
    f = net.factory()
    with pytest.raises(ValueError, match="server_hostname is only meaningful with ssl"):
        net.run(loop.create_connection(f, "127.0.0.1", 1, server_hostname="localhost"))
    with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful with ssl"):
        net.run(loop.create_connection(f, "127.0.0.1", 1, ssl_handshake_timeout=1))
    with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful with ssl"):
        net.run(loop.create_server(f, "127.0.0.1", 0, ssl_handshake_timeout=1))
    if PY >= (3, 11):
        with pytest.raises(ValueError, match="ssl_shutdown_timeout is only meaningful with ssl"):
            net.run(loop.create_connection(f, "127.0.0.1", 1, ssl_shutdown_timeout=1))
        with pytest.raises(ValueError, match="ssl_shutdown_timeout is only meaningful with ssl"):
            net.run(loop.create_server(f, "127.0.0.1", 0, ssl_shutdown_timeout=1))
    sock = net.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(ValueError, match="You must set server_hostname when using ssl without a host"):
        net.run(loop.create_connection(f, ssl=client_context(), sock=sock))
    assert f.made == []


# --- start_tls -----------------------------------------------------------------------------------


class _StartTlsServer(Recorder):
    """Plain until b'STARTTLS\\n', then answers b'GO\\n' and upgrades; echoes over TLS."""

    def __init__(self, loop, net=None):
        super().__init__(loop, net=net)
        self.tls = None
        self.upgraded = loop.create_future()

    def data_received(self, data):
        if self.tls is None and not self.upgraded.done():
            super().data_received(data)
            if bytes(self.data) == b"STARTTLS\n":
                self.transport.pause_reading()
                self.transport.write(b"GO\n")
                self.loop.create_task(self._upgrade())
            return
        super().data_received(data)
        self.tls.write(data)

    async def _upgrade(self):
        try:
            self.tls = await self.loop.start_tls(self.transport, self, server_context(),
                                                 server_side=True)
            self.data.clear()
            self.upgraded.set_result(self.tls)
        except BaseException as exc:  # surface it to the test, not the handler
            self.upgraded.set_exception(exc)


def test_start_tls(loop, net):
    factory = net.factory(_StartTlsServer)
    srv = net.server(factory)
    tr, client = net.connect(lambda: net.proto(), "127.0.0.1", _port(srv))
    tr.write(b"STARTTLS\n")
    net.until(lambda: bytes(client.data) == b"GO\n")
    client.data.clear()
    tls = net.run(loop.start_tls(tr, client, client_context(), server_hostname="localhost"))
    net.track(tls)
    server = factory.made[0]
    server_tls = net.run(server.upgraded)
    net.track(server_tls)
    assert tls is not tr
    assert isinstance(tls.get_extra_info("ssl_object"), ssl.SSLObject)
    assert tls.get_protocol() is client
    payload = os.urandom(100_000)
    tls.write(payload)
    net.until(lambda: len(client.data) >= len(payload))
    assert bytes(client.data) == payload
    assert bytes(server.data) == payload
    assert client.events == ["made", "data"]  # connection_made is not called again
    tls.close()
    net.run(client.lost)
    assert client.lost_excs == [None]


def test_start_tls_bad_arguments(loop, net):
    factory = net.factory()
    srv = net.server(factory)
    tr, client = net.connect(lambda: net.proto(), "127.0.0.1", _port(srv))
    with pytest.raises(TypeError, match="sslcontext is expected to be an instance of ssl.SSLContext"):
        net.run(loop.start_tls(tr, client, object()))
    # Not every transport can be upgraded: a pipe transport cannot.
    r, w = os.pipe()
    os.close(r)
    wf = open(w, "wb", buffering=0)
    net.track(wf)
    ptr, pproto = net.run(loop.connect_write_pipe(lambda: net.proto(), wf))
    net.track(ptr)
    with pytest.raises(TypeError, match="is not supported by start_tls"):
        net.run(loop.start_tls(ptr, pproto, client_context()))


# --- streams -------------------------------------------------------------------------------------


def test_tls_streams(loop, net):
    async def handle(reader, writer):
        while line := await reader.readline():
            writer.write(line.upper())
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        srv = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context())
        net.track(srv)
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", _port(srv), ssl=client_context(), server_hostname="localhost")
        net.track(writer)
        assert writer.get_extra_info("ssl_object") is not None
        lines = [b"first line\n", os.urandom(20_000).hex().encode() + b"\n", b"last\n"]
        for line in lines:
            writer.write(line)
        await writer.drain()
        got = [await reader.readline() for _ in lines]
        writer.close()
        await writer.wait_closed()
        assert await reader.read() == b""
        return lines, got

    lines, got = net.run(main())
    assert got == [line.upper() for line in lines]


@pytest.mark.skipif(PY < (3, 11), reason="StreamWriter.start_tls is new in 3.11")
def test_stream_writer_start_tls(loop, net):
    async def handle(reader, writer):
        assert await reader.readline() == b"STARTTLS\n"
        writer.write(b"GO\n")
        await writer.drain()
        await writer.start_tls(server_context())
        line = await reader.readline()
        writer.write(b"secure:" + line)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        net.track(srv)
        reader, writer = await asyncio.open_connection("127.0.0.1", _port(srv))
        net.track(writer)
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"GO\n"
        await writer.start_tls(client_context(), server_hostname="localhost")
        assert writer.get_extra_info("ssl_object") is not None
        writer.write(b"hello\n")
        reply = await reader.readline()
        writer.close()
        await writer.wait_closed()
        return reply

    assert net.run(main()) == b"secure:hello\n"
