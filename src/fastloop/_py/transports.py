"""Transports of the pure-Python core: stream sockets, datagram sockets, pipes.

Everything observable is asyncio's (``selector_events._SelectorSocketTransport``,
``_SelectorDatagramTransport``, ``unix_events._UnixReadPipeTransport`` and
``_UnixWritePipeTransport`` of the running interpreter); docs/transports.md is
the contract and lists where we differ on purpose. The code is our own, shaped
for the hot path: one syscall per readiness event, writes tried at once, bound
socket methods, a running count of buffered bytes.

The transports talk to the core only through ``loop._add_reader/_add_writer``,
``loop._remove_reader/_remove_writer``, ``loop.call_soon``, ``loop._transports``
and (for ``__repr__``) the fd table ``loop._fds``.
"""

from __future__ import annotations

import collections
import errno
import os
import socket
import stat
import sys
import warnings
from asyncio import base_events as aio_base_events
from asyncio import constants as aio_constants
from asyncio import futures as aio_futures
from asyncio import protocols as aio_protocols
from asyncio import selector_events as aio_selector_events
from asyncio import transports as aio_transports
from asyncio import trsock as aio_trsock
from asyncio import unix_events as aio_unix_events
from asyncio.log import logger
from itertools import islice
from typing import TYPE_CHECKING, Any

from .poller import READ, WRITE

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Iterable

    from _typeshed import ReadableBuffer

    from .coreloop import CoreLoop

MAX_SIZE = 256 * 1024  # bytes asked of one recv()/read()

# write() calls after the connection was lost that pass silently before each
# further one logs a warning.
_CONNLOST_LOG = aio_constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES

try:  # how many buffers one sendmsg() may gather
    SC_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(socket.socket, "sendmsg") else 0
except OSError:
    SC_IOV_MAX = 0

_PY313 = sys.version_info >= (3, 13)
# 3.13 counts 8 bytes of header per queued datagram and lets empty datagrams through.
_DGRAM_HEADER = 8 if _PY313 else 0
# At most this many datagrams are read per readiness report (libuv reads up to 32).
DGRAMS_PER_WAKEUP = 16


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

_set_result_unless_cancelled = (
    aio_futures._set_result_unless_cancelled  # type: ignore[attr-defined]
)
_BufferedProtocol = aio_protocols.BufferedProtocol
_os_readv = os.readv
_os_write = os.write


def _read_view(loop: CoreLoop) -> memoryview:
    """Return the loop's read buffer (made on first use), a memoryview of MAX_SIZE bytes.

    Reads land there and only what arrived is copied out into a fresh bytes
    object, before any protocol code runs (so one buffer serves every transport
    of the loop). asyncio's recv(256 KiB) instead allocates 256 KiB per call and
    shrinks it: measured 4-7x slower for 100 B to 250 KiB messages.
    """
    view = loop._read_view
    if view is None:
        view = loop._read_view = memoryview(bytearray(MAX_SIZE))
    return view


def _polling(loop: CoreLoop, fd: int, event: int) -> bool:
    """Return whether ``loop`` watches ``fd`` for ``event`` (READ or WRITE)."""
    entry = loop._fds.get(fd)
    return entry is not None and entry[event - 1] is not None


def _unsent(data: ReadableBuffer, n: int) -> bytes | memoryview:
    """Return ``data`` from byte ``n`` on, in a form the caller can no longer change.

    bytes are immutable, so a view is enough; bytearrays and other buffers are
    copied (asyncio 3.12 keeps a view, so a caller reusing its bytearray would
    change queued data, or fail to resize it). Multi-byte formats (array('i'))
    become byte views, so that len() counts bytes.
    """
    if isinstance(data, bytes):
        return memoryview(data)[n:] if n else data
    view = memoryview(data)
    if view.itemsize != 1 or view.ndim != 1:
        view = view.cast("B")
    if view.readonly and isinstance(view.obj, bytes):
        return view[n:]
    return bytes(view[n:])


# --- shared bases ----------------------------------------------------------------


class _Transport:
    """What every transport has: extra info, protocol, closing state."""

    # __dict__: as on asyncio's transports, a test may replace a method on one
    # instance (transport.pause_reading = Mock()).
    __slots__ = ("_extra", "_loop", "_protocol", "_closing", "__weakref__", "__dict__")

    _extra: dict[str, Any]
    # The loop and the protocol are let go (None) once connection_lost() ran;
    # only a closed transport's __repr__ and close() still look.
    _loop: Any
    _protocol: Any
    _closing: bool

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """Return optional transport information (``socket``, ``peername``, ``pipe``...)."""
        return self._extra.get(name, default)

    def get_protocol(self) -> Any:
        return self._protocol

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol

    def is_closing(self) -> bool:
        """Return True if the transport is closing or closed."""
        return self._closing

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        # isinstance(transport, asyncio.Transport) (see _asyncio_twin).
        return _ASYNCIO_TWINS.get(type(self), type(self))

    def _report(self, message: str, exc: BaseException) -> None:
        """Hand ``exc`` to the loop's exception handler, as asyncio's transports do."""
        self._loop.call_exception_handler(
            {"message": message, "exception": exc, "transport": self, "protocol": self._protocol}
        )


class _FlowControl(_Transport):
    """Write flow control, as asyncio's transports._FlowControlMixin.

    pause_writing() once when the buffer grows above the high mark,
    resume_writing() once when it drains to the low mark or below.
    """

    __slots__ = ("_protocol_paused", "_high_water", "_low_water")

    _protocol_paused: bool
    _high_water: int
    _low_water: int

    if TYPE_CHECKING:

        def get_write_buffer_size(self) -> int: ...  # each transport's own

    def _init_flow_control(self) -> None:
        self._protocol_paused = False
        self._set_write_buffer_limits()

    def _maybe_pause_protocol(self) -> None:
        if self.get_write_buffer_size() <= self._high_water or self._protocol_paused:
            return
        self._protocol_paused = True
        try:
            self._protocol.pause_writing()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._report("protocol.pause_writing() failed", exc)

    def _maybe_resume_protocol(self) -> None:
        if self._protocol_paused and self.get_write_buffer_size() <= self._low_water:
            self._protocol_paused = False
            try:
                self._protocol.resume_writing()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._report("protocol.resume_writing() failed", exc)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """Return ``(low, high)``."""
        return (self._low_water, self._high_water)

    def _set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high_water = high
        self._low_water = low

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the marks; default high is 64 KiB, low is high // 4."""
        self._set_write_buffer_limits(high=high, low=low)
        self._maybe_pause_protocol()


class _Reader(_Transport):
    """Pausing and resuming reads: what the socket and read pipe transports share."""

    __slots__ = ()

    _paused: bool

    def _reading_fd(self) -> int:
        raise NotImplementedError

    def _read_ready(self) -> None:
        raise NotImplementedError

    def _start_reading(self) -> None:
        if self.is_reading():
            self._loop._add_reader(self._reading_fd(), self._read_ready)

    def is_reading(self) -> bool:
        return not self._closing and not self._paused

    def pause_reading(self) -> None:
        if not self.is_reading():
            return
        self._paused = True
        self._loop._remove_reader(self._reading_fd())
        if self._loop.get_debug():
            logger.debug("%r pauses reading", self)

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._start_reading()
        if self._loop.get_debug():
            logger.debug("%r resumes reading", self)


class _SocketBase(_FlowControl, _Reader):
    """What stream and datagram socket transports share (asyncio's _SelectorTransport).

    ``_buffer`` is a deque of queued writes, ``_buffer_size`` their size in bytes.
    ``_conn_lost`` counts from the moment connection_lost() is scheduled.
    """

    __slots__ = (
        "_sock",
        "_sock_fd",
        "_server",
        "_buffer",
        "_buffer_size",
        "_conn_lost",
        "_paused",
        "_rbuf",
    )

    _sock: Any  # the socket.socket, None once closed
    _sock_fd: int
    _server: Any
    _buffer: collections.deque[Any]
    _buffer_size: int
    _conn_lost: int
    _paused: bool
    _rbuf: memoryview

    max_size = MAX_SIZE  # what one read may return (read-only here: the buffer's size)

    if TYPE_CHECKING:

        def _read_ready(self) -> None: ...  # stream or datagram

    def _init_socket(
        self,
        loop: CoreLoop,
        sock: socket.socket,
        protocol: Any,
        extra: dict[str, Any] | None,
        server: Any,
    ) -> None:
        self._extra = {} if extra is None else extra
        self._loop = loop
        self._init_flow_control()
        self._extra["socket"] = aio_trsock.TransportSocket(sock)
        try:
            self._extra["sockname"] = sock.getsockname()
        except OSError:
            self._extra["sockname"] = None
        if "peername" not in self._extra:
            try:
                self._extra["peername"] = sock.getpeername()
            except OSError:
                self._extra["peername"] = None
        self._sock = sock
        self._sock_fd = sock.fileno()
        self.set_protocol(protocol)
        self._server = server
        self._buffer = collections.deque()
        self._buffer_size = 0
        self._conn_lost = 0
        self._closing = False
        self._paused = False
        self._rbuf = _read_view(loop)
        if server is not None:
            if _PY313:
                server._attach(self)
            else:
                server._attach()
        loop._transports[self._sock_fd] = self

    def _start(self, waiter: asyncio.Future[Any] | None) -> None:
        """Schedule connection_made, then reading, then the waiter: asyncio's order."""
        call_soon = self._loop.call_soon
        call_soon(self._protocol.connection_made, self)
        # Only read once connection_made() has run.
        call_soon(self._start_reading)
        if waiter is not None:
            call_soon(_set_result_unless_cancelled, waiter, None)

    def _reading_fd(self) -> int:
        return self._sock_fd

    def __repr__(self) -> str:
        info = [self.__class__.__name__]
        if self._sock is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._sock_fd}")
        loop = self._loop
        if loop is not None and not loop.is_closed():
            reading = _polling(loop, self._sock_fd, READ)
            info.append("read=polling" if reading else "read=idle")
            writing = "polling" if _polling(loop, self._sock_fd, WRITE) else "idle"
            info.append(f"write=<{writing}, bufsize={self.get_write_buffer_size()}>")
        return "<{}>".format(" ".join(info))

    def get_write_buffer_size(self) -> int:
        return self._buffer_size

    def abort(self) -> None:
        """Close at once: buffered data is lost, connection_lost(None) follows."""
        self._force_close(None)

    def close(self) -> None:
        """Stop reading; connection_lost(None) once the buffer is flushed."""
        if self._closing:
            return
        self._closing = True
        self._loop._remove_reader(self._sock_fd)
        if not self._buffer:
            self._conn_lost += 1
            self._loop._remove_writer(self._sock_fd)
            self._loop.call_soon(self._call_connection_lost, None)

    def __del__(self, _warn: Callable[..., object] = warnings.warn) -> None:
        sock = getattr(self, "_sock", None)  # None too if __init__ failed early
        if sock is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            sock.close()
            server = getattr(self, "_server", None)
            if _PY313 and server is not None:
                server._detach(self)

    def _fatal_error(self, exc: BaseException, message: str = "Fatal error on transport") -> None:
        # OSErrors (resets, broken pipes) are the peer's doing: debug log only.
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._report(message, exc)
        self._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        if self._buffer:
            self._buffer.clear()
            self._buffer_size = 0
            self._loop._remove_writer(self._sock_fd)
        if not self._closing:
            self._closing = True
            self._loop._remove_reader(self._sock_fd)
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._sock.close()
            self._sock = None
            self._protocol = None
            self._loop = None
            server = self._server
            if server is not None:
                if _PY313:
                    server._detach(self)
                else:
                    server._detach()
                self._server = None


# --- stream sockets ------------------------------------------------------------------


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
        if self._eof or self._empty_waiter is not None:
            self._check_writable("writelines")
        if not list_of_data:
            return
        if self._conn_lost:
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


# --- datagram sockets ----------------------------------------------------------------


class DatagramTransport(_SocketBase):
    """Transport over a datagram socket (UDP or Unix), connected or not."""

    __slots__ = ("_address", "_recvfrom_into")

    _address: Any
    _recvfrom_into: Callable[[Any], tuple[int, Any]]

    def __init__(
        self,
        loop: CoreLoop,
        sock: socket.socket,
        protocol: Any,
        address: Any = None,
        waiter: asyncio.Future[Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self._recvfrom_into = sock.recvfrom_into
        self._init_socket(loop, sock, protocol, extra, None)
        self._address = address
        self._start(waiter)

    def _read_ready(self) -> None:
        """The fd is readable: datagrams to the protocol.

        While the loop has nothing else to do, the next datagram is read at once: the
        poll in between would only report this socket again. Bounded, so that a flood
        cannot keep other sockets waiting long.
        """
        if self._conn_lost:
            return
        for i in range(DGRAMS_PER_WAKEUP):
            if i and (self._closing or self._paused or not self._loop._idle_now()):
                return
            try:
                n, addr = self._recvfrom_into(self._rbuf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal read error on datagram transport")
                return
            self._protocol.datagram_received(self._rbuf[:n].tobytes(), addr)

    def _send_one(self, data: ReadableBuffer, addr: Any) -> None:
        if self._extra["peername"]:
            self._sock.send(data)
        else:
            self._sock.sendto(data, addr)

    # What asyncio's datagram transport inherits from asyncio.WriteTransport unchanged.
    def write(self, data: ReadableBuffer) -> None:
        raise NotImplementedError

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        raise NotImplementedError

    def can_write_eof(self) -> bool:
        raise NotImplementedError

    def sendto(self, data: ReadableBuffer, addr: Any = None) -> None:
        """Send one datagram, at once if nothing is queued."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"data argument must be a bytes-like object, not {type(data).__name__!r}"
            )
        if not data and not _PY313:
            return
        if self._address:
            if addr not in (None, self._address):
                raise ValueError(f"Invalid address: must be None or {self._address}")
            addr = self._address
        if self._conn_lost and self._address:
            if self._conn_lost >= _CONNLOST_LOG:
                logger.warning("socket.send() raised exception.")
            self._conn_lost += 1
            return
        if not self._buffer:
            try:
                self._send_one(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                self._loop._add_writer(self._sock_fd, self._sendto_ready)
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal write error on datagram transport")
                return
        data = bytes(data)  # our own copy: the caller may reuse its buffer
        self._buffer.append((data, addr))
        self._buffer_size += len(data) + _DGRAM_HEADER
        self._maybe_pause_protocol()

    def _sendto_ready(self) -> None:
        """The fd is writable: send queued datagrams until the socket would block."""
        buffer = self._buffer
        while buffer:
            data, addr = buffer[0]
            try:
                self._send_one(data, addr)
            except (BlockingIOError, InterruptedError):
                break  # try again on the next writable event
            except OSError as exc:
                self._dequeue()
                self._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._dequeue()
                self._fatal_error(exc, "Fatal write error on datagram transport")
                return
            self._dequeue()
        self._maybe_resume_protocol()  # may send more
        if not buffer:
            self._loop._remove_writer(self._sock_fd)
            if self._closing:
                self._conn_lost += 1  # see SocketTransport._write_ready
                self._call_connection_lost(None)

    def _dequeue(self) -> None:
        data, _ = self._buffer.popleft()
        self._buffer_size -= len(data) + _DGRAM_HEADER


# --- pipes ---------------------------------------------------------------------------


def _pipe_mode(fd: int) -> int:
    return os.fstat(fd).st_mode


class ReadPipeTransport(_Reader):
    """Read side of a pipe, FIFO, character device or socket."""

    __slots__ = ("_pipe", "_fileno", "_paused", "_rbuf")

    _pipe: Any  # None once closed, as are _fileno and _protocol
    _fileno: Any
    _paused: bool
    _rbuf: memoryview

    max_size = MAX_SIZE

    def __init__(
        self,
        loop: CoreLoop,
        pipe: Any,
        protocol: Any,
        waiter: asyncio.Future[Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self._extra = {} if extra is None else extra
        self._extra["pipe"] = pipe
        self._loop = loop
        # The fd first: a pipe that has none leaves no half-open transport to warn of.
        self._fileno = pipe.fileno()
        self._pipe = pipe
        self._protocol = protocol
        self._closing = False
        self._paused = False
        self._rbuf = _read_view(loop)
        mode = _pipe_mode(self._fileno)
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
            self._pipe = self._fileno = self._protocol = None
            raise ValueError("Pipe transport is for pipes/sockets only.")
        os.set_blocking(self._fileno, False)
        loop.call_soon(protocol.connection_made, self)
        loop.call_soon(self._start_reading)  # after connection_made()
        if waiter is not None:
            loop.call_soon(_set_result_unless_cancelled, waiter, None)

    def _reading_fd(self) -> int:
        return int(self._fileno)

    def __repr__(self) -> str:
        info = [self.__class__.__name__]
        if self._pipe is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._fileno}")
        # A closed loop polls nothing: asyncio then says 'open'.
        if self._pipe is not None and self._loop is not None and not self._loop.is_closed():
            info.append("polling" if _polling(self._loop, self._fileno, READ) else "idle")
        elif self._pipe is not None:
            info.append("open")
        else:
            info.append("closed")
        return "<{}>".format(" ".join(info))

    def _read_ready(self) -> None:
        try:
            n = _os_readv(self._fileno, [self._rbuf])  # see _read_view
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            self._fatal_error(exc, "Fatal read error on pipe transport")
        else:
            if n:
                self._protocol.data_received(self._rbuf[:n].tobytes())
                return
            if self._loop.get_debug():
                logger.info("%r was closed by peer", self)
            self._closing = True
            self._loop._remove_reader(self._fileno)
            self._loop.call_soon(self._protocol.eof_received)
            self._loop.call_soon(self._call_connection_lost, None)

    def close(self) -> None:
        if not self._closing:
            self._close(None)

    def __del__(self, _warn: Callable[..., object] = warnings.warn) -> None:
        pipe = getattr(self, "_pipe", None)
        if pipe is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            pipe.close()

    def _fatal_error(
        self, exc: BaseException, message: str = "Fatal error on pipe transport"
    ) -> None:
        # EIO: the other end of a pty went away, an ordinary end.
        if isinstance(exc, OSError) and exc.errno == errno.EIO:
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._report(message, exc)
        self._close(exc)

    def _close(self, exc: BaseException | None) -> None:
        self._closing = True
        self._loop._remove_reader(self._fileno)
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._pipe.close()
            self._pipe = None
            self._protocol = None
            self._loop = None


class WritePipeTransport(_FlowControl):
    """Write side of a pipe, FIFO, character device or socket."""

    __slots__ = ("_pipe", "_fileno", "_buffer", "_conn_lost")

    _pipe: Any  # None once closed, as are _fileno and _protocol
    _fileno: Any
    _buffer: bytearray
    _conn_lost: int

    def __init__(
        self,
        loop: CoreLoop,
        pipe: Any,
        protocol: Any,
        waiter: asyncio.Future[Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self._extra = {} if extra is None else extra
        self._loop = loop
        self._init_flow_control()
        self._extra["pipe"] = pipe
        self._fileno = pipe.fileno()  # first, as in ReadPipeTransport
        self._pipe = pipe
        self._protocol = protocol
        self._buffer = bytearray()
        self._conn_lost = 0
        self._closing = False  # close() or write_eof() was called
        mode = _pipe_mode(self._fileno)
        is_fifo = stat.S_ISFIFO(mode)
        is_socket = stat.S_ISSOCK(mode)
        if not (stat.S_ISCHR(mode) or is_fifo or is_socket):
            self._pipe = self._fileno = self._protocol = None
            raise ValueError("Pipe transport is only for pipes, sockets and character devices")
        os.set_blocking(self._fileno, False)
        loop.call_soon(protocol.connection_made, self)
        # The read end going away makes our end readable (EOF / hang-up): watch for
        # it, to report a broken pipe without waiting for a write. (AIX: sockets only.)
        if is_socket or (is_fifo and not sys.platform.startswith("aix")):
            loop.call_soon(loop._add_reader, self._fileno, self._read_ready)
        if waiter is not None:
            loop.call_soon(_set_result_unless_cancelled, waiter, None)

    def __repr__(self) -> str:
        info = [self.__class__.__name__]
        if self._pipe is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._fileno}")
        # A closed loop polls nothing: asyncio then says 'open'.
        if self._pipe is not None and self._loop is not None and not self._loop.is_closed():
            info.append("polling" if _polling(self._loop, self._fileno, WRITE) else "idle")
            info.append(f"bufsize={self.get_write_buffer_size()}")
        elif self._pipe is not None:
            info.append("open")
        else:
            info.append("closed")
        return "<{}>".format(" ".join(info))

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    def _read_ready(self) -> None:
        # The reader went away.
        if self._loop.get_debug():
            logger.info("%r was closed by peer", self)
        if self._buffer:
            self._close(BrokenPipeError())
        else:
            self._close()

    # What asyncio's write pipe transport inherits from asyncio.ReadTransport unchanged.
    def is_reading(self) -> bool:
        raise NotImplementedError

    def pause_reading(self) -> None:
        raise NotImplementedError

    def resume_reading(self) -> None:
        raise NotImplementedError

    def write(self, data: ReadableBuffer) -> None:
        """Write ``data`` now if possible; buffer what the pipe does not take."""
        assert isinstance(data, (bytes, bytearray, memoryview)), repr(data)
        if not isinstance(data, bytes):
            data = memoryview(data)
            if data.itemsize != 1 or data.ndim != 1:
                data = data.cast("B")  # len() must count bytes
        if not data:
            return
        if self._conn_lost or self._closing:
            if self._conn_lost >= _CONNLOST_LOG:
                logger.warning("pipe closed by peer or os.write(pipe, data) raised exception.")
            self._conn_lost += 1
            return
        if not self._buffer:
            try:
                n = _os_write(self._fileno, data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._conn_lost += 1
                self._fatal_error(exc, "Fatal write error on pipe transport")
                return
            if n == len(data):
                return
            if n > 0:
                data = memoryview(data)[n:]
            self._loop._add_writer(self._fileno, self._write_ready)
        self._buffer += data  # a copy: the caller may reuse its buffer
        self._maybe_pause_protocol()

    def _write_ready(self) -> None:
        """The fd is writable: flush as much of the buffer as the pipe takes."""
        try:
            n = _os_write(self._fileno, self._buffer)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._buffer.clear()
            self._conn_lost += 1
            # _fatal_error() does not remove the writer when the buffer is empty.
            self._loop._remove_writer(self._fileno)
            self._fatal_error(exc, "Fatal write error on pipe transport")
            return
        if n == len(self._buffer):
            self._buffer.clear()
            self._loop._remove_writer(self._fileno)
            self._maybe_resume_protocol()  # may write more
            if self._closing:
                self._loop._remove_reader(self._fileno)
                self._call_connection_lost(None)
        elif n > 0:
            del self._buffer[:n]

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """Close the pipe once the buffer is flushed."""
        if self._closing:
            return
        assert self._pipe
        self._closing = True
        if not self._buffer:
            self._loop._remove_reader(self._fileno)
            self._loop.call_soon(self._call_connection_lost, None)

    def writelines(self, list_of_data: Iterable[ReadableBuffer]) -> None:
        self.write(b"".join(list_of_data))

    def close(self) -> None:
        if self._pipe is not None and not self._closing:
            self.write_eof()  # all a write pipe needs to close

    def __del__(self, _warn: Callable[..., object] = warnings.warn) -> None:
        pipe = getattr(self, "_pipe", None)
        if pipe is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            pipe.close()

    def abort(self) -> None:
        self._close(None)

    def _fatal_error(
        self, exc: BaseException, message: str = "Fatal error on pipe transport"
    ) -> None:
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._report(message, exc)
        self._close(exc)

    def _close(self, exc: BaseException | None = None) -> None:
        self._closing = True
        if self._buffer:
            self._loop._remove_writer(self._fileno)
        self._buffer.clear()
        self._loop._remove_reader(self._fileno)
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._pipe.close()
            self._pipe = None
            self._protocol = None
            self._loop = None


# The Cython twin cannot derive from asyncio's Python transport classes, so neither
# does this one, yet programs (and CPython's tests) check isinstance(transport,
# asyncio.Transport). isinstance() falls back to obj.__class__ when type(obj) is not
# a subclass (how unittest.mock's spec objects pass): each transport's __class__ is a
# Python twin, of the same name, that derives from the public asyncio classes the
# stdlib's own transport derives from.
_ASYNCIO_TWINS: dict[type, type] = {}


def _asyncio_twin(cls: type, stdlib_cls: type) -> type:
    """Make isinstance(an instance of cls, C) true for each public asyncio transport
    class C that stdlib_cls derives from (which ones varies by version); return the twin."""
    public = [c for c in (aio_transports.Transport, aio_transports.DatagramTransport,
                          aio_transports.ReadTransport, aio_transports.WriteTransport)
              if issubclass(stdlib_cls, c)]
    bases = tuple(c for c in public if not any(o is not c and issubclass(o, c) for o in public))
    twin = type(cls.__name__, bases, {
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
        "__slots__": (),
    })
    _ASYNCIO_TWINS[cls] = twin
    return twin


# (typeshed leaves out these private classes.)
_asyncio_twin(SocketTransport, aio_selector_events._SelectorSocketTransport)  # type: ignore[attr-defined]
_asyncio_twin(DatagramTransport, aio_selector_events._SelectorDatagramTransport)  # type: ignore[attr-defined]
_asyncio_twin(ReadPipeTransport, aio_unix_events._UnixReadPipeTransport)  # type: ignore[attr-defined]
_asyncio_twin(WritePipeTransport, aio_unix_events._UnixWritePipeTransport)  # type: ignore[attr-defined]
