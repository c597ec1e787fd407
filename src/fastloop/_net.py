"""The networking API that is not hot, written once over either core's transports.

Connection set-up (happy eyeballs, address resolution, ``Server``), TLS through
the stdlib's ``asyncio.sslproto.SSLProtocol``, ``sendfile`` and its fallback,
pipes and Unix servers are asyncio's own code, bound here as they are, so each
interpreter keeps its own semantics and messages (``all_errors`` on 3.12+,
``keep_alive`` and ``cleanup_socket`` on 3.13, ...). They reach the core only
through the names in docs/transports.md: ``_make_*_transport``, ``_add_reader``
and friends, ``_transports``, ``_ensure_fd_no_transport``, and the hot
``sock_recv``/``sock_sendall`` family, which the core itself implements.
"""

from __future__ import annotations

import os
from asyncio import base_events, selector_events, sslproto, unix_events
from asyncio.log import logger
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import asyncio
    import socket
    import ssl
    from collections.abc import Callable
    from concurrent.futures import Executor
    from typing import Protocol, TypeAlias, TypeVar

    # What the mixin is combined with (fastloop._loop.loop_class_for): the core.
    from ._cy.core import CoreLoop as _CoreLoop
    from ._cy.core import SocketTransport

    # What sendfile() may fall back on: ours, or asyncio's TLS transport over ours.
    _SendfileTransport: TypeAlias = SocketTransport | asyncio.Transport

    class _ReadIntoFile(Protocol):
        """The file sendfile() reads from: a binary file object."""

        def readinto(self, buffer: memoryview, /) -> int | None: ...
        def seek(self, offset: int, /) -> int: ...

    _T = TypeVar("_T")
else:
    _CoreLoop = object

_BaseEventLoop = base_events.BaseEventLoop
_SelectorLoop = selector_events.BaseSelectorEventLoop
_UnixLoop = unix_events._UnixSelectorEventLoop

# Bytes read from the file per step of the sendfile fallback (asyncio's figure).
_SENDFILE_BLOCK = 16384


def _sendfile_fallback_seeks_to_zero() -> bool:
    """Whether asyncio's sendfile fallback seeks for offset=0 too.

    3.14's does (whenever the file has seek()), so that offset=0 means the start
    of the file; earlier ones seek only for a non-zero offset, so 0 meant "from
    where it stands". Asked of asyncio's own fallback, which seeks before it
    refuses a transport that is not its own (here: None).
    """
    sought = []

    class _File:
        def seek(self, pos: int) -> None:
            sought.append(pos)

    coro = _BaseEventLoop._sendfile_fallback(None, None, _File(), 0, None)
    try:
        coro.send(None)
    except (TypeError, AttributeError):
        pass
    finally:
        coro.close()
    return sought == [0]


_SENDFILE_SEEKS_TO_ZERO = _sendfile_fallback_seeks_to_zero()


class _SendfileFallbackProtocol(base_events._SendfileFallbackProtocol):
    """asyncio's sendfile fallback protocol, minus its transport type check.

    It pauses the transport's reading, stands in as its protocol while the file
    is written (waiting whenever writing is paused), and restores both after.
    """

    # Any: it reads _protocol_paused and _loop, private attributes of our transports
    # and asyncio's that neither declares.
    def __init__(self, transp: Any) -> None:
        self._transport = transp
        self._proto = transp.get_protocol()
        self._should_resume_reading = transp.is_reading()
        self._should_resume_writing = transp._protocol_paused
        transp.pause_reading()
        transp.set_protocol(self)
        self._write_ready_fut = transp._loop.create_future() if self._should_resume_writing else None


class NetMixin(_CoreLoop):
    """Sockets, servers, TLS, sendfile and pipes around the core's transports."""

    if TYPE_CHECKING:
        # Provided by the loop mixin (fastloop/_loop.py), borrowed from asyncio.
        def run_in_executor(
            self, executor: Executor | None, func: Callable[..., _T], *args: Any
        ) -> asyncio.Future[_T]: ...

    def __init__(self, *, backend: str | None = None) -> None:
        super().__init__(backend=backend)
        # Listening Unix sockets made with cleanup_socket=True (3.13) -> the inode
        # of their path, unlinked by _stop_serving if it is still theirs.
        self._unix_server_sockets: dict[socket.socket, int] = {}
        # Listening socket -> its Server, from _start_serving to _stop_serving: the
        # servers that loop.stats() counts.
        self._serving: dict[socket.socket, asyncio.AbstractServer | None] = {}

    # --- Borrowed from asyncio ------------------------------------------------
    # None of these touches a selector or asyncio's transport classes; between
    # them they need only the core's names listed in docs/transports.md, the
    # mixin's (create_future, create_task, getaddrinfo, call_exception_handler,
    # run_in_executor, _debug) and each other. test_net_borrowed checks the
    # names their code objects use on the running interpreter.
    # From BaseEventLoop:
    create_connection = _BaseEventLoop.create_connection
    _connect_sock = _BaseEventLoop._connect_sock
    _create_connection_transport = _BaseEventLoop._create_connection_transport
    _ensure_resolved = _BaseEventLoop._ensure_resolved
    create_server = _BaseEventLoop.create_server
    _create_server_getaddrinfo = _BaseEventLoop._create_server_getaddrinfo
    connect_accepted_socket = _BaseEventLoop.connect_accepted_socket
    create_datagram_endpoint = _BaseEventLoop.create_datagram_endpoint
    start_tls = _BaseEventLoop.start_tls
    sendfile = _BaseEventLoop.sendfile
    sock_sendfile = _BaseEventLoop.sock_sendfile
    _sock_sendfile_fallback = _BaseEventLoop._sock_sendfile_fallback
    _check_sendfile_params = _BaseEventLoop._check_sendfile_params
    connect_read_pipe = _BaseEventLoop.connect_read_pipe
    connect_write_pipe = _BaseEventLoop.connect_write_pipe
    # From BaseSelectorEventLoop (the accept loop, sock_connect and sock_accept:
    # connection set-up, not the data path).
    _accept_connection = _SelectorLoop._accept_connection
    _accept_connection2 = _SelectorLoop._accept_connection2
    _sendfile_native = _SelectorLoop._sendfile_native
    sock_connect = _SelectorLoop.sock_connect
    _sock_connect = _SelectorLoop._sock_connect
    _sock_connect_cb = _SelectorLoop._sock_connect_cb
    sock_accept = _SelectorLoop.sock_accept
    _sock_accept = _SelectorLoop._sock_accept
    _sock_read_done = _SelectorLoop._sock_read_done
    _sock_write_done = _SelectorLoop._sock_write_done
    # From _UnixSelectorEventLoop (zero-copy os.sendfile, Unix sockets).
    create_unix_connection = _UnixLoop.create_unix_connection
    create_unix_server = _UnixLoop.create_unix_server
    _sock_sendfile_native = _UnixLoop._sock_sendfile_native
    _sock_sendfile_native_impl = _UnixLoop._sock_sendfile_native_impl
    _sock_add_cancellation_callback = _UnixLoop._sock_add_cancellation_callback
    _sock_sendfile_update_filepos = _UnixLoop._sock_sendfile_update_filepos
    # --- end of borrowed block ------------------------------------------------

    def _make_ssl_transport(
        self,
        rawsock: socket.socket,
        protocol: asyncio.BaseProtocol,
        sslcontext: ssl.SSLContext,
        waiter: asyncio.Future[Any] | None = None,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        extra: dict[str, Any] | None = None,
        server: asyncio.AbstractServer | None = None,
        **timeouts: Any,
    ) -> asyncio.Transport:
        """Run TLS as the stdlib's SSLProtocol over one of our socket transports.

        ``timeouts`` are ssl_handshake_timeout (and ssl_shutdown_timeout from
        3.11), passed on as this interpreter's SSLProtocol takes them.
        """
        self._ensure_fd_no_transport(rawsock)
        ssl_protocol = sslproto.SSLProtocol(
            cast("asyncio.AbstractEventLoop", self),  # it is one: loop_class_for
            protocol,
            sslcontext,
            waiter,  # type: ignore[arg-type]  # None is fine, but typeshed wants a Future
            server_side,
            server_hostname,
            **timeouts,
        )
        self._make_socket_transport(rawsock, ssl_protocol, extra=extra, server=server)
        return ssl_protocol._app_transport

    async def _sendfile_fallback(
        self, transp: _SendfileTransport, file: _ReadIntoFile, offset: int, count: int | None
    ) -> int:
        """sendfile() by reading ``file`` in an executor and writing to ``transp``.

        asyncio's own fallback refuses any transport that is not a
        ``transports._FlowControlMixin``, which ours are not (docs/transports.md);
        its fallback protocol is reused, set up here without that check.
        """
        if offset or (_SENDFILE_SEEKS_TO_ZERO and hasattr(file, "seek")):
            file.seek(offset)
        blocksize = min(count, _SENDFILE_BLOCK) if count else _SENDFILE_BLOCK
        buf = bytearray(blocksize)
        view = memoryview(buf)
        sent = 0
        proto = _SendfileFallbackProtocol(transp)
        try:
            while not count or sent < count:
                size = min(count - sent, blocksize) if count else blocksize
                read = await self.run_in_executor(None, file.readinto, view[:size])
                if not read:
                    break  # EOF
                await proto.drain()
                # The buffer is reused: the transport copies whatever it queues.
                transp.write(view[:read])
                sent += read
            return sent
        finally:
            if sent > 0 and hasattr(file, "seek"):
                file.seek(offset + sent)
            await proto.restore()

    def _start_serving(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        sock: socket.socket,
        sslcontext: ssl.SSLContext | None = None,
        server: asyncio.AbstractServer | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        """Accept connections on a listening socket (called by Server), as asyncio does."""
        _SelectorLoop._start_serving(
            self, protocol_factory, sock, sslcontext, server, *args, **kwargs
        )
        self._serving[sock] = server

    def _stop_serving(self, sock: socket.socket) -> None:
        """Stop accepting on a listening socket and close it (called by Server.close).

        A Unix socket made with cleanup_socket=True also loses its path, unless
        another socket has been bound there since (asyncio 3.13's rule).
        """
        self._serving.pop(sock, None)
        inode = self._unix_server_sockets.pop(sock, None)
        path = sock.getsockname() if inode is not None else None
        self._remove_reader(sock.fileno())
        sock.close()
        if path is None:
            return
        try:
            if os.stat(path).st_ino == inode:
                os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as err:
            logger.error("Unable to clean up listening UNIX socket %r: %r", path, err)

