"""Stream transports of the pure-Python core: TCP and Unix stream sockets."""

from __future__ import annotations

import socket
import types
from asyncio import base_events as aio_base_events
from asyncio import constants as aio_constants
from asyncio import selector_events as aio_selector_events
from asyncio.log import logger
from itertools import islice
from typing import TYPE_CHECKING, Any

from .transport import (
    _CONNLOST_LOG,
    _PY312,
    SC_IOV_MAX,
    _asyncio_twin,
    _BufferedProtocol,
    _SocketBase,
    _unsent,
)

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Iterable

    from _typeshed import ReadableBuffer

    from .coreloop import CoreLoop


def _write_type_error() -> str:
    """The start of the TypeError asyncio's stream write() raises for a non-buffer.

    gh-138703 reworded it within release series ("a bytes-like object" became "a
    bytes, bytearray, or memoryview object" in 3.14), so the running asyncio is
    asked: its write() checks the type first, before it touches ``self``.
    """
    try:
        stdlib_cls = aio_selector_events._SelectorSocketTransport  # type: ignore[attr-defined]
        stdlib_cls.write(None, None)
    except TypeError as exc:
        start, sep, _ = str(exc).rpartition(", not ")
        if sep:
            return start
    return "data argument must be a bytes-like object"


_WRITE_TYPE_ERROR = _write_type_error()


def _writelines_checks_lost_items() -> bool:
    """Whether asyncio's writelines() checks its items on a lost connection too.

    3.12's makes a memoryview() of each before it looks at the connection; later
    releases (3.14, some of 3.13) drop the write first. The running asyncio is asked,
    with a stand-in whose connection is lost and an item that is not bytes-like.
    """
    lost = types.SimpleNamespace(_eof=False, _empty_waiter=None, _conn_lost=1, _buffer=[])
    try:
        aio_selector_events._SelectorSocketTransport.writelines(lost, [None])  # type: ignore[attr-defined]
    except TypeError:
        return True
    return False


_WRITELINES_CHECKS_LOST = _PY312 and _writelines_checks_lost_items()


class SocketTransport(_SocketBase):
    """Transport over a connected, non-blocking stream socket (TCP or Unix)."""

    __slots__ = ("_eof", "_empty_waiter", "_buffered", "_recv_into", "_send")

    _eof: bool
    _empty_waiter: asyncio.Future[None] | None
    _buffered: bool
    _recv_into: Callable[[Any], int]
    _send: Callable[[Any], int]

    _start_tls_compatible = True
    _sendfile_compatible = aio_constants._SendfileMode.TRY_NATIVE

    def __init__(
        self,
        loop: CoreLoop,
        sock: socket.socket,
        protocol: Any,
        waiter: asyncio.Future[Any] | None = None,
        extra: dict[str, Any] | None = None,
        server: Any = None,
    ) -> None:
        # Bound once: the read and write paths call them on every event.
        self._recv_into = sock.recv_into
        self._send = sock.send
        self._init_socket(loop, sock, protocol, extra, server)
        self._eof = False
        self._empty_waiter = None
        # Small writes go out without waiting for the peer's ACK.
        aio_base_events._set_nodelay(sock)  # type: ignore[attr-defined]
        self._start(waiter)

    def set_protocol(self, protocol: Any) -> None:
        self._buffered = isinstance(protocol, _BufferedProtocol)
        self._protocol = protocol

    # --- reading

    def _read_ready(self) -> None:
        """The fd is readable: one recv_into() the loop's buffer, then the protocol."""
        if self._conn_lost:
            return
        if self._buffered:
            self._read_into_buffer()
            return
        try:
            n = self._recv_into(self._rbuf)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on socket transport")
            return
        if not n:
            self._on_eof()
            return
        try:
            self._protocol.data_received(self._rbuf[:n].tobytes())
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")

    def _read_into_buffer(self) -> None:
        """BufferedProtocol: recv_into() the protocol's own buffer."""
        try:
            buf = self._protocol.get_buffer(-1)
            if not len(buf):
                raise RuntimeError("get_buffer() returned an empty buffer")
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.get_buffer() call failed.")
            return
        try:
            nbytes = self._recv_into(buf)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on socket transport")
            return
        if not nbytes:
            self._on_eof()
            return
        try:
            self._protocol.buffer_updated(nbytes)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")

    def _on_eof(self) -> None:
        if self._loop.get_debug():
            logger.debug("%r received EOF", self)
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if keep_open:
            # Half-open: the protocol may still write; nothing more can arrive.
            self._loop._remove_reader(self._sock_fd)
        else:
            self.close()

    # --- writing

    def _check_writable(self, method: str) -> None:
        if self._eof:
            raise RuntimeError(f"Cannot call {method}() after write_eof()")
        if self._empty_waiter is not None:
            raise RuntimeError(f"unable to {method}; sendfile is in progress")

    def _drop_write(self) -> None:
        """A write after the connection was lost: ignored, logged past a threshold."""
        if self._conn_lost >= _CONNLOST_LOG:
            logger.warning("socket.send() raised exception.")
        self._conn_lost += 1

    def write(self, data: ReadableBuffer) -> None:
        """Send ``data`` now if possible; buffer what the socket does not take."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"{_WRITE_TYPE_ERROR}, not {type(data).__name__!r}")
        if self._eof or self._empty_waiter is not None:
            self._check_writable("write")
        if not data:
            return
        if self._conn_lost:
            self._drop_write()
            return
        if not self._buffer:
            # Nothing queued: try to send at once, queue only the rest.
            try:
                n = self._send(data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal write error on socket transport")
                return
            if n == len(data):
                return
            data = _unsent(data, n)
            if not data:  # a multi-byte memoryview, all sent
                return
            self._loop._add_writer(self._sock_fd, self._write_ready)
        else:
            data = _unsent(data, 0)
        self._buffer.append(data)
        self._buffer_size += len(data)
        self._maybe_pause_protocol()

    def writelines(self, list_of_data: Iterable[ReadableBuffer]) -> None:
        """Queue every buffer, then flush once (sendmsg gathers them)."""
        if not _PY312:
            # asyncio 3.10 and 3.11 join and write(): their errors name write(), and
            # an item that is not bytes-like fails the join before anything else.
            self.write(b"".join(list_of_data))
            return
        if self._eof or self._empty_waiter is not None:
            self._check_writable("writelines")
        if not list_of_data:
            return
        if self._conn_lost:
            if _WRITELINES_CHECKS_LOST:
                for data in list_of_data:
                    memoryview(data)  # asyncio's check, which raises TypeError
            self._drop_write()
            return
        # Empty items are dropped: they would stay queued forever (asyncio spins).
        items = [_unsent(data, 0) for data in list_of_data]
        items = [item for item in items if item]
        if not items:
            return
        was_idle = not self._buffer
        self._buffer.extend(items)
        self._buffer_size += sum(map(len, items))
        if was_idle:
            self._write_ready()
            if self._buffer:
                self._loop._add_writer(self._sock_fd, self._write_ready)
        self._maybe_pause_protocol()

    def _write_ready(self) -> None:
        """The fd is writable: flush as much of the buffer as the socket takes."""
        if self._conn_lost:
            return
        buffer = self._buffer
        try:
            if len(buffer) > 1 and SC_IOV_MAX:
                n = self._sock.sendmsg(islice(buffer, SC_IOV_MAX))
            else:
                n = self._send(buffer[0])
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop._remove_writer(self._sock_fd)
            buffer.clear()
            self._buffer_size = 0
            self._fatal_error(exc, "Fatal write error on socket transport")
            if self._empty_waiter is not None:
                self._empty_waiter.set_exception(exc)
            return
        self._consume(n)
        self._maybe_resume_protocol()  # may write more
        if not buffer:
            self._loop._remove_writer(self._sock_fd)
            if self._empty_waiter is not None:
                self._empty_waiter.set_result(None)
            if self._closing:
                # Counted, so that a later abort() cannot call connection_lost again.
                self._conn_lost += 1
                self._call_connection_lost(None)
            elif self._eof:
                self._sock.shutdown(socket.SHUT_WR)

    def _consume(self, n: int) -> None:
        """Drop the first ``n`` sent bytes from the buffer."""
        self._buffer_size -= n
        buffer = self._buffer
        while n:
            head = buffer[0]
            size = len(head)
            if size > n:
                buffer[0] = memoryview(head)[n:]
                return
            buffer.popleft()
            n -= size

    def write_eof(self) -> None:
        """Shut down the write side once the buffer is flushed."""
        if self._closing or self._eof:
            return
        self._eof = True
        if not self._buffer:
            self._sock.shutdown(socket.SHUT_WR)

    def can_write_eof(self) -> bool:
        return True

    # --- closing and sendfile

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        super()._call_connection_lost(exc)
        waiter = self._empty_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError("Connection is closed by peer"))

    def _make_empty_waiter(self) -> asyncio.Future[None]:
        """A future done when the write buffer is empty (sendfile waits on it)."""
        if self._empty_waiter is not None:
            raise RuntimeError("Empty waiter is already set")
        self._empty_waiter = self._loop.create_future()
        if not self._buffer:
            self._empty_waiter.set_result(None)
        return self._empty_waiter

    def _reset_empty_waiter(self) -> None:
        self._empty_waiter = None


# (typeshed leaves out this private class.)
_asyncio_twin(SocketTransport, aio_selector_events._SelectorSocketTransport)  # type: ignore[attr-defined]
